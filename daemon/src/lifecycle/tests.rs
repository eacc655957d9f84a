//! The apply/recover lifecycle over a real registry and journal, with stand-in acts. The
//! faults are stress records whose undo (killing processes marked with the fault id) finds
//! nothing to kill, so they need no runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faultline_api::rpc::daemon::{FaultId, FaultKind, Target};
use tokio::sync::oneshot;

use crate::Daemon;
use crate::error::{ApplyError, DaemonError};
use crate::faults::recover;
use crate::metrics::Reason;
use crate::process::ProcessRef;
use crate::record::{Entry, Record};

fn entry(id: &FaultId) -> Entry {
    let me = std::process::id();
    Entry::new(
        id.clone(),
        Some(Target::Pid { pid: me }),
        None,
        Record::Stress {
            target: ProcessRef::of(me).expect("this process"),
            stress_ng: None,
        },
    )
}

fn journaled(d: &Daemon) -> Vec<String> {
    let (entries, bad) = d.faults.journal().load().expect("journal");
    assert!(bad.is_empty(), "{bad:?}");
    entries.into_iter().map(|e| e.fault_id.0).collect()
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < end,
            "not within {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Applies `id` (ttl `ttl`) with an act that waits for `go` and then sets `acted`.
async fn apply_waiting(
    d: &Arc<Daemon>,
    id: &FaultId,
    ttl: Option<Duration>,
    go: oneshot::Receiver<()>,
    acted: Arc<AtomicBool>,
) -> Result<FaultId, DaemonError> {
    let ttl = ttl.map(|t| (t, "2099-01-01T00:00:00Z".to_owned()));
    d.apply_exclusive(Some(id), FaultKind::Stress, ttl, |d, id, ttl| async move {
        let act = async move {
            let _ = go.await;
            acted.store(true, Ordering::SeqCst);
            Ok(None)
        };
        d.applied(entry(&id), ttl.map(|t| t.0), act).await
    })
    .await
}

/// Applies `id` at once (ttl `ttl`).
async fn apply_now(d: &Arc<Daemon>, id: &FaultId, ttl: Option<Duration>) {
    let (go, wait) = oneshot::channel();
    go.send(()).unwrap();
    apply_waiting(d, id, ttl, wait, Arc::default())
        .await
        .expect("applied");
}

/// Applies `id` with an act that fails with `failure`.
async fn apply_failing(
    d: &Arc<Daemon>,
    id: &FaultId,
    failure: ApplyError,
) -> Result<FaultId, DaemonError> {
    d.apply_exclusive(Some(id), FaultKind::Stress, None, |d, id, _| async move {
        d.applied(entry(&id), None, async { Err(failure) }).await
    })
    .await
}

fn failed() -> DaemonError {
    DaemonError::Failed {
        what: "stand-in act".into(),
        reason: "refused".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_waits_for_the_apply_of_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-overlap".into());
    let (go, wait) = oneshot::channel();
    let acted = Arc::new(AtomicBool::new(false));
    let apply = tokio::spawn({
        let (d, id, acted) = (d.clone(), id.clone(), acted.clone());
        async move { apply_waiting(&d, &id, None, wait, acted).await }
    });
    // Journaled and registered: the act is running.
    eventually("the apply began", Duration::from_secs(2), || {
        d.faults.kind_of(&id).is_some()
    })
    .await;
    let recovery = tokio::spawn({
        let (d, id) = (d.clone(), id.clone());
        async move { recover(&d, &id, Reason::Request).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !recovery.is_finished(),
        "a recovery of a fault whose apply is still running must wait for it"
    );
    go.send(()).unwrap();
    apply.await.unwrap().expect("applied");
    recovery.await.unwrap().expect("recovered after the apply");
    assert!(acted.load(Ordering::SeqCst));
    assert!(d.faults.ids().is_empty());
    assert!(journaled(&d).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_apply_waits_and_renews_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-retried".into());
    let (go, wait) = oneshot::channel();
    let first = tokio::spawn({
        let (d, id) = (d.clone(), id.clone());
        async move { apply_waiting(&d, &id, None, wait, Arc::default()).await }
    });
    eventually("the first apply began", Duration::from_secs(2), || {
        d.faults.kind_of(&id).is_some()
    })
    .await;
    // The retry fails if it acts: it must find the first one's fault instead.
    let retry = tokio::spawn({
        let (d, id) = (d.clone(), id.clone());
        async move { apply_failing(&d, &id, ApplyError::undone(failed())).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !retry.is_finished(),
        "a retried apply must wait for the first"
    );
    go.send(()).unwrap();
    first.await.unwrap().expect("applied");
    // It found the first one's fault (a renewal) and did not act.
    let renewed = retry.await.unwrap().expect("renewed");
    assert_eq!(renewed, id);
    assert_eq!(journaled(&d), ["stress-retried"]);
    assert_eq!(d.faults.ids(), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_apply_call_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-dropped".into());
    let (go, wait) = oneshot::channel();
    let acted = Arc::new(AtomicBool::new(false));
    // The client goes away mid-apply: the server drops the call's future.
    let call = apply_waiting(&d, &id, Some(Duration::from_secs(300)), wait, acted.clone());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    go.send(()).unwrap();
    eventually("the apply finished", Duration::from_secs(2), || {
        acted.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(d.faults.ids(), [id]);
    assert_eq!(journaled(&d), ["stress-dropped"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_recover_call_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-dropped-recovery".into());
    apply_now(&d, &id, None).await;
    // Something else works on the fault, so the recovery is still waiting when dropped.
    let busy = d.faults.hold(&id).await;
    let call = recover(&d, &id, Reason::Request);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    drop(busy);
    eventually("the recovery finished", Duration::from_secs(2), || {
        d.faults.ids().is_empty()
    })
    .await;
    assert!(journaled(&d).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_that_left_something_stays_journaled_until_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    // Undone: nothing is kept.
    let clean = FaultId("stress-clean".into());
    apply_failing(&d, &clean, ApplyError::undone(failed()))
        .await
        .expect_err("failed");
    assert!(d.faults.ids().is_empty());
    assert!(journaled(&d).is_empty());
    // Its clean-up failed: kept, then recovered in the background.
    let left = FaultId("stress-left".into());
    apply_failing(&d, &left, ApplyError::left_behind(failed()))
        .await
        .expect_err("failed");
    assert_eq!(d.faults.kind_of(&left), Some(FaultKind::Stress));
    assert_eq!(journaled(&d), ["stress-left"]);
    // A retried apply is not taken for a renewal of what is left: it is told to come back.
    let (go, wait) = oneshot::channel();
    go.send(()).unwrap();
    let retried = apply_waiting(
        &d,
        &left,
        Some(Duration::from_secs(600)),
        wait,
        Arc::default(),
    )
    .await;
    assert!(
        matches!(&retried, Err(DaemonError::Recovering(id)) if *id == left),
        "{retried:?}"
    );
    eventually(
        "recovered in the background",
        Duration::from_secs(5),
        || d.faults.ids().is_empty(),
    )
    .await;
    assert!(journaled(&d).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_journal_update_undoes_the_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-update".into());
    let journal_dir = dir.path().join("journal");
    let err = d
        .apply_exclusive(Some(&id), FaultKind::Stress, None, |d, id, _| async move {
            let first = entry(&id);
            let mut learned = first.clone();
            learned.expires_at = Some("2099-01-01T00:00:00Z".into());
            let act = async move {
                // The journal breaks between the first write and the update.
                std::fs::remove_dir_all(&journal_dir).unwrap();
                Ok(Some(learned))
            };
            d.applied(first, Some(Duration::from_secs(300)), act).await
        })
        .await
        .expect_err("the update failed");
    assert!(matches!(err, DaemonError::Journal(_)), "{err}");
    assert!(
        d.faults.ids().is_empty(),
        "the fault was undone, not left registered with no ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_faults_timer_does_not_recover_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-reused".into());
    apply_now(&d, &id, Some(Duration::from_millis(300))).await;
    recover(&d, &id, Reason::Request).await.expect("recovered");
    // The same id again (controllers re-use theirs), with no ttl.
    apply_now(&d, &id, None).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        d.faults.ids(),
        [id],
        "the first fault's timer recovered the second"
    );
    assert_eq!(journaled(&d), ["stress-reused"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_ahead_of_an_expiring_ttl_keeps_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-renewed".into());
    apply_now(&d, &id, Some(Duration::from_millis(200))).await;
    // While something else works on the fault, a renewal queues up, then the ttl expires and
    // its recovery queues up behind it.
    let busy = d.faults.hold(&id).await;
    let renewal = tokio::spawn({
        let (d, id) = (d.clone(), id.clone());
        async move { apply_now(&d, &id, Some(Duration::from_secs(300))).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(busy);
    renewal.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(d.faults.ids(), [id], "the renewed fault was recovered");
    assert_eq!(journaled(&d), ["stress-renewed"]);
}

#[tokio::test]
async fn io_apply_refuses_too_many_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let rule = serde_json::json!({"type": "latency", "latency": "10ms"});
    let rules = vec![rule; crate::io_relay::MAX_RULES + 1];
    let p = serde_json::from_value(serde_json::json!({"target": {"pid": 1}, "rules": rules}))
        .expect("params");
    match d.io_apply(p).await {
        Err(DaemonError::InvalidParams(v)) => {
            assert_eq!(v[0].field, "rules");
            assert!(v[0].reason.contains("at most 64"), "{}", v[0].reason);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_apply_in_flight_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::for_tests(dir.path());
    let id = FaultId("stress-at-shutdown".into());
    let (go, wait) = oneshot::channel();
    let apply = tokio::spawn({
        let (d, id) = (d.clone(), id.clone());
        async move { apply_waiting(&d, &id, None, wait, Arc::default()).await }
    });
    eventually("the apply began", Duration::from_secs(2), || {
        d.faults.kind_of(&id).is_some()
    })
    .await;
    let closing = tokio::spawn({
        let d = d.clone();
        async move { d.close().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !closing.is_finished(),
        "shutdown must wait for the apply in flight, or the last recovery pass misses it"
    );
    go.send(()).unwrap();
    apply.await.unwrap().expect("the apply in flight finishes");
    closing.await.unwrap();
    let (go, wait) = oneshot::channel();
    go.send(()).unwrap();
    let late = FaultId("stress-too-late".into());
    let refused = apply_waiting(&d, &late, None, wait, Arc::default()).await;
    assert!(
        matches!(refused, Err(DaemonError::ShuttingDown)),
        "{refused:?}"
    );
    assert_eq!(
        journaled(&d),
        std::slice::from_ref(&id.0),
        "nothing of the refused apply"
    );
    d.recover_all().await.expect("recovered");
    assert!(d.faults.ids().is_empty());
    assert!(journaled(&d).is_empty());
}
