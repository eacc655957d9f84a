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
