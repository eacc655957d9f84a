use std::time::Duration;

use super::*;
use crate::lifecycle::RecoverWhy;

fn task(inject: Result<Call, String>, recover: bool) -> Task {
    Task {
        record_id: "ns/web-0".into(),
        node: Some("node-a".into()),
        fault_id: "f-1-2".into(),
        inject,
        recover: recover.then(|| ("stress.stop", json!({"faultId": "f-1-2"}))),
    }
}

fn stress() -> Call {
    Call::Daemon {
        method: "stress.start",
        params: json!({"faultId": "f-1-2"}),
        ttl: true,
    }
}

fn record(phase: RecordPhase, message: Option<&str>) -> TargetRecord {
    TargetRecord {
        id: "ns/web-0".into(),
        node: Some("node-a".into()),
        phase,
        message: message.map(str::to_owned),
        injected_at: None,
        recovered_at: None,
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

const RENEW: Mode = Mode {
    lasts: true,
    renew: true,
};
const LASTING: Mode = Mode {
    lasts: true,
    renew: false,
};
const ONE_SHOT: Mode = Mode {
    lasts: false,
    renew: true,
};

const INJECT: Goal = Goal::Injected {
    ttl: Some(Duration::from_secs(90)),
};

#[test]
fn a_lasting_fault_is_resent_with_its_ttl_every_pass() {
    let t = task(Ok(stress()), true);
    let injected = record(RecordPhase::Injected, None);
    let Work::Call(Send::Daemon { params, .. }) = work(&t, Some(&injected), INJECT, RENEW) else {
        panic!("a renewal is sent");
    };
    assert_eq!(
        work(&t, Some(&injected), INJECT, LASTING),
        Work::Skip,
        "only when renewals are due"
    );
    assert_eq!(params["ttl"], "90s");
    let o = outcome(&t, Some(&injected), INJECT, &now(), Some(Ok(())));
    assert!(o.event.is_none(), "a renewal is no news");
}

#[test]
fn a_one_shot_action_runs_once() {
    let kill = Call::Daemon {
        method: "container.kill",
        params: json!({}),
        ttl: false,
    };
    let t = task(Ok(kill), false);
    let done = record(RecordPhase::Injected, None);
    assert_eq!(work(&t, Some(&done), INJECT, ONE_SHOT), Work::Skip);
    // and has nothing to recover once done
    let recover = Goal::Recovered(RecoverWhy::Ended);
    assert_eq!(work(&t, Some(&done), recover, ONE_SHOT), Work::Skip);
}

#[test]
fn an_uninjectable_target_fails_once_with_its_reason() {
    let t = task(Err("the pod has no fault sidecar".into()), true);
    let w = work(&t, None, INJECT, LASTING);
    let Work::Settled(sent) = w else {
        panic!("{w:?}")
    };
    let o = outcome(&t, None, INJECT, &now(), Some(sent.clone()));
    assert_eq!(o.record.phase, RecordPhase::Failed);
    assert!(!o.retry, "not a passing reason");
    assert!(o.event.is_some());
    let again = outcome(&t, Some(&o.record), INJECT, &now(), Some(sent));
    assert!(again.event.is_none(), "the same failure is not told twice");
}

#[test]
fn an_unreachable_daemon_is_retried_and_a_recovery_failure_keeps_the_phase() {
    let t = task(Ok(stress()), true);
    let o = outcome(&t, None, INJECT, &now(), Some(Err((true, "down".into()))));
    assert!(o.retry);
    let injected = record(RecordPhase::Injected, None);
    let recover = Goal::Recovered(RecoverWhy::Ended);
    let o = outcome(
        &t,
        Some(&injected),
        recover,
        &now(),
        Some(Err((true, "down".into()))),
    );
    assert_eq!(o.record.phase, RecordPhase::Injected, "still injected");
    assert!(o.retry);
    assert_eq!(o.record.message.as_deref(), Some("recovery failed: down"));
    let again = outcome(
        &t,
        Some(&o.record),
        recover,
        &now(),
        Some(Err((true, "down".into()))),
    );
    assert!(
        again.event.is_none(),
        "the same recovery failure is told once"
    );
}

#[test]
fn a_pod_without_a_node_cannot_be_injected_by_a_daemon() {
    let mut t = task(Ok(stress()), true);
    t.node = None;
    assert!(matches!(
        work(&t, None, INJECT, LASTING),
        Work::Settled(Err((false, _)))
    ));
}

#[test]
fn a_target_gets_a_pending_record_before_its_first_inject_goes_out() {
    let t = task(Ok(stress()), true);
    let ahead = ahead(std::slice::from_ref(&t), &[], INJECT, LASTING).expect("written first");
    assert_eq!(ahead.len(), 1);
    assert_eq!(ahead[0].id, "ns/web-0");
    assert_eq!(ahead[0].phase, RecordPhase::Pending);
    assert_eq!(ahead[0].node.as_deref(), Some("node-a"));
    // A pending record is one recovery sends a call for.
    let recover = Goal::Recovered(RecoverWhy::Deleted);
    assert!(matches!(
        work(&t, Some(&ahead[0]), recover, LASTING),
        Work::Call(Send::Daemon { recover: true, .. })
    ));
}

#[test]
fn a_recovered_target_is_pending_again_before_it_is_injected_again() {
    let t = task(Ok(stress()), true);
    let mut resumed = record(RecordPhase::Recovered, Some("paused"));
    resumed.recovered_at = Some(now());
    let other = TargetRecord {
        id: "ns/other".into(),
        ..record(RecordPhase::Recovered, None)
    };
    let ahead = ahead(
        std::slice::from_ref(&t),
        &[other.clone(), resumed],
        INJECT,
        LASTING,
    )
    .expect("written first");
    assert_eq!(ahead.len(), 2, "records without a task stay: {ahead:?}");
    assert_eq!(ahead[0], other);
    assert_eq!(ahead[1].phase, RecordPhase::Pending);
    assert_eq!(ahead[1].message, None);
}

#[test]
fn nothing_is_written_first_for_renewals_recoveries_or_targets_that_cannot_be_injected() {
    let t = task(Ok(stress()), true);
    let injected = record(RecordPhase::Injected, None);
    let failed = record(RecordPhase::Failed, Some("down"));
    assert_eq!(
        ahead(std::slice::from_ref(&t), &[injected], INJECT, RENEW),
        None
    );
    assert_eq!(
        ahead(std::slice::from_ref(&t), &[failed], INJECT, LASTING),
        None,
        "a failed record is recovered already"
    );
    let recover = Goal::Recovered(RecoverWhy::Ended);
    assert_eq!(ahead(std::slice::from_ref(&t), &[], recover, LASTING), None);
    let no_sidecar = task(Err("the pod has no fault sidecar".into()), true);
    assert_eq!(ahead(&[no_sidecar], &[], INJECT, LASTING), None);
}

#[test]
fn a_killed_pod_recorded_recovered_is_never_killed_again() {
    let kill = Call::DeletePod {
        namespace: "ns".into(),
        name: "web-0".into(),
        uid: Some("u-1".into()),
        grace_period: None,
    };
    let t = task(Ok(kill), false);
    // The pod was gone at a pass; a same-name replacement now stands in its place.
    let gone = record(RecordPhase::Recovered, Some("the target pod is gone"));
    assert_eq!(work(&t, Some(&gone), INJECT, ONE_SHOT), Work::Skip);
    assert_eq!(
        ahead(std::slice::from_ref(&t), &[gone], INJECT, ONE_SHOT),
        None
    );
    let Work::Call(Send::DeletePod { uid, .. }) = work(&t, None, INJECT, ONE_SHOT) else {
        panic!("a first kill is sent");
    };
    assert_eq!(uid.as_deref(), Some("u-1"), "with the selected pod's uid");
}

#[test]
fn recovery_goes_to_the_node_the_fault_was_sent_to() {
    let mut t = task(Ok(stress()), true);
    t.node = Some("node-b".into());
    let injected = record(RecordPhase::Injected, None);
    let recover = Goal::Recovered(RecoverWhy::Ended);
    let Work::Call(Send::Daemon { node, .. }) = work(&t, Some(&injected), recover, LASTING) else {
        panic!("a recovery is sent");
    };
    assert_eq!(node, "node-a");
    // A same-name replacement not scheduled yet does not hold the recovery up.
    t.node = None;
    assert!(matches!(
        work(&t, Some(&injected), recover, LASTING),
        Work::Call(Send::Daemon { node, .. }) if node == "node-a"
    ));
}

#[test]
fn only_a_never_confirmed_fault_counts_as_recovered_on_a_node_without_a_daemon() {
    let t = task(Ok(stress()), true);
    let recover = Goal::Recovered(RecoverWhy::Deleted);
    let mut injected = record(RecordPhase::Injected, None);
    injected.injected_at = Some(now());
    let failed = record(
        RecordPhase::Failed,
        Some("no faultline-daemon runs on node node-a"),
    );
    let pending = record(RecordPhase::Pending, None);
    let no_daemon_is_done = |r: &TargetRecord| match work(&t, Some(r), recover, LASTING) {
        Work::Call(Send::Daemon {
            no_daemon_is_done, ..
        }) => no_daemon_is_done,
        other => panic!("{other:?}"),
    };
    assert!(!no_daemon_is_done(&injected));
    assert!(no_daemon_is_done(&failed));
    assert!(no_daemon_is_done(&pending));
}

#[test]
fn a_failed_recovery_keeps_the_node_the_fault_was_sent_to() {
    let mut t = task(Ok(stress()), true);
    t.node = Some("node-b".into());
    let injected = record(RecordPhase::Injected, None);
    let recover = Goal::Recovered(RecoverWhy::Ended);
    let down = Some(Err((true, "unreachable".into())));
    let o = outcome(&t, Some(&injected), recover, &now(), down);
    assert_eq!(o.record.node.as_deref(), Some("node-a"));
    // An inject does move it: the fault is sent where the pod runs now.
    let o = outcome(&t, Some(&injected), INJECT, &now(), Some(Ok(())));
    assert_eq!(o.record.node.as_deref(), Some("node-b"));
}
