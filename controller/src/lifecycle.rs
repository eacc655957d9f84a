//! The experiment's lifecycle as pure decisions: what the targets should be now (injected or
//! recovered, and why), when to look again, and the status that follows from the records.
//!
//! ```text
//!             select            inject all              duration ends
//! (created) ─────────▶ Pending ───────────▶ Running ─────────────────▶ Finished (AllRecovered)
//!                                 ▲   │ pause / policy halt     ▲
//!                      resume     │   ▼                         │ one-shot actions:
//!                                 Paused (recovered)            │ Finished once injected
//! delete ─▶ recover every target ─▶ finalizer removed (force-recover: after one attempt)
//! ```

use std::time::Duration;

use faultline_api::status::{
    ChaosCondition, ChaosStatus, ConditionStatus, ConditionType, ExperimentPhase, RecordPhase,
    TargetRecord,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// How often a running experiment's lasting faults are re-sent (renewing their ttl, and
/// re-injecting a target whose daemon restarted).
pub const RENEW_EVERY: Duration = Duration::from_secs(30);
/// A fault's ttl is the time left plus this, so a controller that dies leaves it running at
/// most this long past its experiment.
pub const TTL_MARGIN: Duration = Duration::from_secs(60);

/// Why targets are recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverWhy {
    Ended,
    Paused,
    Halted,
    Deleted,
}

impl RecoverWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoverWhy::Ended => "DurationEnded",
            RecoverWhy::Paused => "Paused",
            RecoverWhy::Halted => "PolicyHalt",
            RecoverWhy::Deleted => "Deleted",
        }
    }
}

/// What the targets should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Injected; lasting faults get `ttl` (None = a one-shot action or no ttl).
    Injected {
        ttl: Option<Duration>,
    },
    Recovered(RecoverWhy),
}

/// The inputs of a decision.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    pub lasts: bool,
    pub duration: Option<Duration>,
    /// When the experiment started (its `Selected` condition); `None` before selection.
    pub started: Option<Timestamp>,
    pub now: Timestamp,
    pub paused: bool,
    pub halted: bool,
}

/// The goal now, and when to reconcile again (`None`: only on a change).
pub fn decide(s: &Situation) -> (Goal, Option<Duration>) {
    if s.halted {
        return (Goal::Recovered(RecoverWhy::Halted), None);
    }
    if s.paused {
        return (Goal::Recovered(RecoverWhy::Paused), None);
    }
    if !s.lasts {
        return (Goal::Injected { ttl: None }, None);
    }
    let started = s.started.unwrap_or(s.now);
    match s.duration {
        Some(d) => {
            let end = started + d;
            let left = end.duration_since(s.now);
            if left.is_negative() || left.is_zero() {
                (Goal::Recovered(RecoverWhy::Ended), None)
            } else {
                let left: Duration = left.unsigned_abs();
                // Wake exactly at the end, or earlier to renew.
                (
                    Goal::Injected {
                        ttl: Some(left + TTL_MARGIN),
                    },
                    Some(left.min(RENEW_EVERY)),
                )
            }
        }
        None => (
            Goal::Injected {
                ttl: Some(RENEW_EVERY * 2 + TTL_MARGIN),
            },
            Some(RENEW_EVERY),
        ),
    }
}

fn condition(
    type_: ConditionType,
    ok: bool,
    reason: &str,
    message: String,
    now: &Time,
    old: &[ChaosCondition],
) -> ChaosCondition {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    // The transition time moves only when the status does.
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    ChaosCondition {
        type_,
        status,
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: Some(since),
    }
}

/// How many of `records` are in `phase`.
pub fn count(records: &[TargetRecord], phase: RecordPhase) -> usize {
    records.iter().filter(|r| r.phase == phase).count()
}

/// The status that follows from the records and the goal.
pub fn status(
    old: &ChaosStatus,
    records: Vec<TargetRecord>,
    goal: Goal,
    lasts: bool,
    now: &Time,
) -> ChaosStatus {
    let n = records.len();
    let injected = count(&records, RecordPhase::Injected);
    let recovered = count(&records, RecordPhase::Recovered);
    let failed = count(&records, RecordPhase::Failed);
    let all_injected = n > 0 && injected == n;
    let all_recovered = n > 0 && recovered == n;
    let paused = matches!(
        goal,
        Goal::Recovered(RecoverWhy::Paused | RecoverWhy::Halted)
    );
    let phase = match goal {
        // A one-shot target whose pod is gone by now (killed, and recorded Recovered at a
        // later pass) is done as well: without it the experiment would stay Running forever.
        Goal::Injected { .. } if !lasts && injected + failed + recovered == n => {
            if failed == n {
                ExperimentPhase::Failed
            } else {
                ExperimentPhase::Finished
            }
        }
        Goal::Injected { .. } => ExperimentPhase::Running,
        Goal::Recovered(RecoverWhy::Paused | RecoverWhy::Halted) => ExperimentPhase::Paused,
        Goal::Recovered(_) if all_recovered || n == 0 => ExperimentPhase::Finished,
        Goal::Recovered(_) => ExperimentPhase::Running,
    };
    let paused_reason = match goal {
        Goal::Recovered(RecoverWhy::Halted) => "PolicyHalt",
        _ => "PauseAnnotation",
    };
    let conditions = vec![
        condition(
            ConditionType::Selected,
            n > 0,
            "TargetsSelected",
            format!("{n} targets"),
            now,
            &old.conditions,
        ),
        condition(
            ConditionType::AllInjected,
            all_injected,
            if all_injected {
                "AllInjected"
            } else {
                "NotAllInjected"
            },
            format!("{injected} of {n} injected, {failed} failed"),
            now,
            &old.conditions,
        ),
        condition(
            ConditionType::AllRecovered,
            all_recovered || (lasts && n == 0),
            if all_recovered {
                "AllRecovered"
            } else {
                "NotAllRecovered"
            },
            format!("{recovered} of {n} recovered"),
            now,
            &old.conditions,
        ),
        condition(
            ConditionType::Paused,
            paused,
            if paused { paused_reason } else { "NotPaused" },
            if paused {
                format!("recovered for {paused_reason}")
            } else {
                "running".to_owned()
            },
            now,
            &old.conditions,
        ),
    ];
    ChaosStatus {
        phase: Some(phase),
        conditions,
        records,
    }
}

/// When the experiment started: its `Selected` condition turning True.
pub fn started(status: &ChaosStatus) -> Option<Timestamp> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Selected && c.status == ConditionStatus::True)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn situation(now: i64) -> Situation {
        Situation {
            lasts: true,
            duration: Some(Duration::from_secs(100)),
            started: Some(at(0)),
            now: at(now),
            paused: false,
            halted: false,
        }
    }

    #[test]
    fn timing() {
        // Early: injected with ttl = time left + margin, woken to renew.
        let (goal, wake) = decide(&situation(10));
        assert_eq!(
            goal,
            Goal::Injected {
                ttl: Some(Duration::from_secs(90) + TTL_MARGIN)
            }
        );
        assert_eq!(wake, Some(RENEW_EVERY));
        // Close to the end: woken exactly at it.
        assert_eq!(decide(&situation(95)).1, Some(Duration::from_secs(5)));
        // At or after the end: recovered, nothing to wait for.
        assert_eq!(
            decide(&situation(100)),
            (Goal::Recovered(RecoverWhy::Ended), None)
        );
        // Halt beats pause beats everything.
        let mut s = situation(10);
        s.paused = true;
        assert_eq!(decide(&s).0, Goal::Recovered(RecoverWhy::Paused));
        s.halted = true;
        assert_eq!(decide(&s).0, Goal::Recovered(RecoverWhy::Halted));
        // One-shot actions: injected once, no ttl, no wake-up.
        let mut s = situation(500);
        s.lasts = false;
        assert_eq!(decide(&s), (Goal::Injected { ttl: None }, None));
        // No duration: renewed until deleted.
        let mut s = situation(10_000);
        s.duration = None;
        assert_eq!(decide(&s).1, Some(RENEW_EVERY));
    }

    #[test]
    fn a_one_shot_experiment_whose_killed_pod_is_gone_is_finished() {
        let rec = |id: &str, phase| TargetRecord {
            id: id.into(),
            node: None,
            phase,
            message: None,
            injected_at: None,
            recovered_at: None,
        };
        let records = vec![
            rec("ns/a", RecordPhase::Injected),
            rec("ns/b", RecordPhase::Recovered),
            rec("ns/c", RecordPhase::Failed),
        ];
        let kill = Goal::Injected { ttl: None };
        let s = status(&ChaosStatus::default(), records, kill, false, &Time(at(0)));
        assert_eq!(s.phase, Some(ExperimentPhase::Finished));
        let pending = vec![rec("ns/a", RecordPhase::Pending)];
        let s = status(&ChaosStatus::default(), pending, kill, false, &Time(at(0)));
        assert_eq!(s.phase, Some(ExperimentPhase::Running), "not sent yet");
    }

    #[test]
    fn status_from_records() {
        let now = Time(at(0));
        let rec = |phase| TargetRecord {
            id: "ns/p".into(),
            node: None,
            phase,
            message: None,
            injected_at: None,
            recovered_at: None,
        };
        let s = status(
            &ChaosStatus::default(),
            vec![rec(RecordPhase::Injected)],
            Goal::Injected { ttl: None },
            true,
            &now,
        );
        assert_eq!(s.phase, Some(ExperimentPhase::Running));
        assert_eq!(s.conditions[1].status, ConditionStatus::True);
        assert_eq!(started(&s), Some(at(0)));
        let later = Time(at(50));
        let s2 = status(
            &s,
            vec![rec(RecordPhase::Recovered)],
            Goal::Recovered(RecoverWhy::Ended),
            true,
            &later,
        );
        assert_eq!(s2.phase, Some(ExperimentPhase::Finished));
        // Selected stayed True: its time did not move.
        assert_eq!(started(&s2), Some(at(0)));
        assert_eq!(s2.conditions[2].last_transition_time, Some(later));
        let s3 = status(
            &s,
            vec![rec(RecordPhase::Recovered)],
            Goal::Recovered(RecoverWhy::Paused),
            true,
            &now,
        );
        assert_eq!(s3.phase, Some(ExperimentPhase::Paused));
        assert_eq!(s3.conditions[3].status, ConditionStatus::True);
    }
}
