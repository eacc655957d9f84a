//! One target's step toward the goal, as two pure halves around the I/O: [`work`] says what to
//! send (a daemon call, a pod deletion, or nothing), [`outcome`] turns what came back into the
//! record and the Event. The sending (batched per node) is `dispatch`'s.

use std::collections::BTreeMap;
use std::time::Duration;

use faultline_api::status::{RecordPhase, TargetRecord};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::lifecycle::Goal;
use crate::plan::{Call, Task};

const NOT_SCHEDULED: &str = "the pod is not scheduled on a node";

/// The result of sending: `Err((transient, why))`; transient failures are retried soon.
pub(super) type Sent = Result<(), (bool, String)>;

/// A call to make for one target.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Send {
    Daemon {
        node: String,
        method: &'static str,
        params: Value,
        /// A recovery: "no such fault" and "target gone" count as done.
        recover: bool,
        /// A recovery of a fault no daemon ever confirmed: "no daemon on that node" counts as
        /// done too. Nothing can run there (a daemon recovers every fault of its journal when
        /// it stops and when it starts), and retrying would hold the experiment and its
        /// finalizer for as long as the node has no daemon (a taint it does not tolerate).
        no_daemon_is_done: bool,
    },
    DeletePod {
        namespace: String,
        name: String,
        uid: Option<String>,
        grace_period: Option<i64>,
    },
}

/// What one target needs this pass.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Work {
    /// Nothing to do: the record stays as it is.
    Skip,
    /// Settled without a call (e.g. the target cannot be injected, and why).
    Settled(Sent),
    Call(Send),
}

/// The outcome of one target's step.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) record: TargetRecord,
    /// Failed for a reason that may pass (daemon unreachable): retry soon.
    pub(super) retry: bool,
    pub(super) event: Option<(EventType, &'static str, String)>,
}

fn phase_of(old: Option<&TargetRecord>) -> RecordPhase {
    old.map_or(RecordPhase::Pending, |r| r.phase)
}

/// How a pass treats targets that are injected already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mode {
    /// The fault lasts (vs a one-shot action, which runs once).
    pub(super) lasts: bool,
    /// Renewals are due: injected lasting faults are sent again (the daemon renews a known
    /// fault id's `ttl`). Other passes leave them be.
    pub(super) renew: bool,
}

/// What moving `task` toward `goal` takes.
pub(super) fn work(task: &Task, old: Option<&TargetRecord>, goal: Goal, mode: Mode) -> Work {
    let was = phase_of(old);
    match goal {
        Goal::Injected { ttl } => {
            if was == RecordPhase::Injected && !(mode.lasts && mode.renew) {
                return Work::Skip;
            }
            // A one-shot action runs once per target: a killed pod recorded Recovered (it was
            // gone at a pass) must not be killed again when a same-name replacement appears.
            if !mode.lasts && was == RecordPhase::Recovered {
                return Work::Skip;
            }
            match &task.inject {
                Err(why) => Work::Settled(Err((false, why.clone()))),
                Ok(Call::DeletePod {
                    namespace,
                    name,
                    uid,
                    grace_period,
                }) => Work::Call(Send::DeletePod {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    uid: uid.clone(),
                    grace_period: *grace_period,
                }),
                Ok(Call::Daemon {
                    method,
                    params,
                    ttl: takes_ttl,
                }) => {
                    let Some(node) = &task.node else {
                        return Work::Settled(Err((false, NOT_SCHEDULED.to_owned())));
                    };
                    let mut params = params.clone();
                    if let (true, Some(ttl)) = (*takes_ttl, ttl) {
                        params["ttl"] = json!(ttl_text(ttl));
                    }
                    Work::Call(Send::Daemon {
                        node: node.clone(),
                        method,
                        params,
                        recover: false,
                        no_daemon_is_done: false,
                    })
                }
            }
        }
        Goal::Recovered(_) => {
            if was == RecordPhase::Recovered
                || (task.recover.is_none() && was != RecordPhase::Pending)
            {
                return Work::Skip;
            }
            let Some((method, params)) = &task.recover else {
                // A one-shot action never run: nothing to undo.
                return Work::Settled(Ok(()));
            };
            // The fault lives where it was sent: a same-name replacement pod may run on
            // another node, or on none yet.
            let Some(node) = old.and_then(|r| r.node.as_ref()).or(task.node.as_ref()) else {
                return Work::Settled(Err((false, NOT_SCHEDULED.to_owned())));
            };
            Work::Call(Send::Daemon {
                node: node.clone(),
                method,
                params: params.clone(),
                recover: true,
                no_daemon_is_done: old.is_none_or(|r| r.injected_at.is_none()),
            })
        }
    }
}

/// The records to write *before* this pass sends anything, or `None` when the written ones
/// will do. A target about to be injected for the first time (or again, after it was
/// recovered) gets a `Pending` record first: recovery goes by the written records, so one whose
/// inject went out while the pass's final status write then failed (a crash, a lost Lease, an
/// API error, the object deleted meanwhile) is still recovered, and a one-shot experiment never
/// selects again (a second kill). Writing it also proves the pass read the latest version
/// (the write is conflict-checked), so a pass on a lagging cache sends nothing.
pub(super) fn ahead(
    tasks: &[Task],
    old: &[TargetRecord],
    goal: Goal,
    mode: Mode,
) -> Option<Vec<TargetRecord>> {
    if !matches!(goal, Goal::Injected { .. }) {
        return None;
    }
    let mut records: BTreeMap<&str, TargetRecord> =
        old.iter().map(|r| (r.id.as_str(), r.clone())).collect();
    let mut changed = false;
    for task in tasks {
        let prior = records.get(task.record_id.as_str());
        if prior.is_some_and(|r| r.phase != RecordPhase::Recovered)
            || !matches!(work(task, prior, goal, mode), Work::Call(_))
        {
            continue;
        }
        changed = true;
        let record = records
            .entry(task.record_id.as_str())
            .or_insert_with(|| TargetRecord {
                id: task.record_id.clone(),
                node: None,
                phase: RecordPhase::Pending,
                message: None,
                injected_at: None,
                recovered_at: None,
            });
        record.phase = RecordPhase::Pending;
        record.message = None;
        record.node = task.node.clone().or(record.node.take());
    }
    changed.then(|| records.into_values().collect())
}

fn ttl_text(ttl: Duration) -> String {
    format!("{}s", ttl.as_secs().max(1))
}

/// The record and Event after `work` for `task` came back with `sent` (`None`: skipped).
pub(super) fn outcome(
    task: &Task,
    old: Option<&TargetRecord>,
    goal: Goal,
    now: &Time,
    sent: Option<Sent>,
) -> Outcome {
    let mut record = old.cloned().unwrap_or(TargetRecord {
        id: task.record_id.clone(),
        node: task.node.clone(),
        phase: RecordPhase::Pending,
        message: None,
        injected_at: None,
        recovered_at: None,
    });
    // Where the fault was sent, for recovery: only an inject moves it (a failed recovery must
    // not point the next one at a same-name replacement's node).
    if matches!(goal, Goal::Injected { .. }) {
        record.node = task.node.clone().or(record.node);
    }
    let was = record.phase;
    let old_message = old.and_then(|o| o.message.clone());
    let Some(sent) = sent else {
        return Outcome {
            record,
            retry: false,
            event: None,
        };
    };
    let (retry, event) = match (goal, sent) {
        (Goal::Injected { .. }, Ok(())) => {
            record.phase = RecordPhase::Injected;
            record.message = None;
            if was != RecordPhase::Injected {
                record.injected_at = Some(now.clone());
                record.recovered_at = None;
            }
            let event = (was != RecordPhase::Injected).then(|| {
                let note = format!("fault injected ({})", task.record_id);
                (EventType::Normal, "Injected", note)
            });
            (false, event)
        }
        (Goal::Injected { .. }, Err((transient, why))) => {
            record.phase = RecordPhase::Failed;
            record.message = Some(why.clone());
            let news = record.message != old_message || was != RecordPhase::Failed;
            (
                transient,
                news.then_some((EventType::Warning, "InjectFailed", why)),
            )
        }
        (Goal::Recovered(_), Ok(())) => {
            record.phase = RecordPhase::Recovered;
            record.message = None;
            record.recovered_at = Some(now.clone());
            let event = (was == RecordPhase::Injected).then(|| {
                let note = format!("fault recovered ({})", task.record_id);
                (EventType::Normal, "Recovered", note)
            });
            (false, event)
        }
        (Goal::Recovered(_), Err((_, why))) => {
            record.message = Some(format!("recovery failed: {why}"));
            let news = record.message != old_message;
            (
                true,
                news.then_some((EventType::Warning, "RecoverFailed", why)),
            )
        }
    };
    Outcome {
        record,
        retry,
        event,
    }
}

#[cfg(test)]
mod tests;
