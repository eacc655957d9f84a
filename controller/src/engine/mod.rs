//! The shared engine: one reconcile for every kind. Finalizer first (kube's `finalizer`
//! helper adds it before anything is injected), then: decide the goal (`lifecycle`), find the
//! targets (selected once, then the records' pods), run each target's task toward the goal in
//! parallel, and write the status (records and conditions) and Events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use faultline_api::status::{RecordPhase, TargetRecord};
use faultline_webhook::policy::Policy;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Client, ResourceExt};

mod dispatch;
mod gone;
mod lookup;
mod memory;
mod status;
mod step;

pub use memory::{Backoff, Renewals, Stale};
use status::{OnConflict, write_status};

use crate::daemon_client::Daemons;
use crate::kinds::Chaos;
use crate::lifecycle::{Goal, RecoverWhy, Situation, decide, started};
use crate::metrics::Metrics;
use crate::plan::Task;
use crate::selection::PodInfo;

/// The finalizer (DESIGN.md §1).
pub const FINALIZER: &str = "chaos.faultline.dev/recover";
pub const PAUSE: &str = "faultline.dev/pause";
pub const FORCE_RECOVER: &str = "faultline.dev/force-recover";
/// A status write refused with 409: decide again soon, from the object as it is now.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// Events being published at once.
const EVENTS_IN_FLIGHT: usize = 16;

/// What every reconcile shares.
pub struct Ctx {
    pub client: Client,
    pub daemons: Daemons,
    pub policy: Arc<ArcSwap<Policy>>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// `--pod-events-per-pass`.
    pub pod_events_per_pass: usize,
    /// When each experiment's faults were last sent in full.
    pub renewals: Renewals,
    /// Each experiment's consecutive failed passes.
    pub backoff: Backoff,
    /// Object versions a status write was refused for.
    pub stale: Stale,
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("recovery incomplete, retried: {0}")]
    Recovery(String),
    /// The object changed since it was read (409): decide again from the new one.
    #[error("{0} changed since it was read; deciding again")]
    Conflict(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Kube {
        what,
        source: Box::new(source),
    }
}

fn pod_ref(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        ..Default::default()
    }
}

async fn publish(
    ctx: &Ctx,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
    action: &str,
) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&ev, reference).await {
        tracing::debug!(%err, "event not published");
    }
}

/// What one reconcile pass of one experiment works toward.
/// [`Chaos::recover_gone`] of one experiment: (record id, fault id) → the daemon call.
type RecoverGone<'a> = dyn Fn(&str, &str) -> Option<(&'static str, serde_json::Value)> + Sync + 'a;

struct Pass<'a> {
    ctx: &'a Ctx,
    kind: &'static str,
    /// The experiment's UID (fault ids derive from it).
    uid: &'a str,
    /// [`Chaos::recover_gone`] of the experiment.
    recover_gone: &'a RecoverGone<'a>,
    goal: Goal,
    mode: step::Mode,
    now: &'a Time,
    reference: &'a ObjectReference,
}

/// Runs every task toward the pass's goal; returns the records and whether something should be
/// retried.
async fn drive(
    pass: &Pass<'_>,
    tasks: &[Task],
    pods: &BTreeMap<String, PodInfo>,
    old: &[TargetRecord],
) -> (Vec<TargetRecord>, bool) {
    let Pass {
        ctx,
        goal,
        mode,
        now,
        ..
    } = *pass;
    let by_id: BTreeMap<&str, &TargetRecord> = old.iter().map(|r| (r.id.as_str(), r)).collect();
    let olds: Vec<Option<&TargetRecord>> = tasks
        .iter()
        .map(|t| by_id.get(t.record_id.as_str()).copied())
        .collect();
    let mut sent: Vec<Option<step::Sent>> = vec![None; tasks.len()];
    let mut calls = Vec::new();
    for (i, (task, old)) in tasks.iter().zip(&olds).enumerate() {
        match step::work(task, *old, goal, mode) {
            step::Work::Skip => {}
            step::Work::Settled(result) => sent[i] = Some(result),
            step::Work::Call(call) => calls.push((i, call)),
        }
    }
    let (sending, began) = (calls.len(), std::time::Instant::now());
    for (i, result) in dispatch::send_all(ctx, calls).await {
        sent[i] = Some(result);
    }
    tracing::debug!(
        calls = sending,
        took_ms = began.elapsed().as_millis() as u64,
        "sent"
    );
    let mut retry = false;
    let mut records = Vec::with_capacity(tasks.len());
    let mut events = Vec::new();
    for ((task, old), sent) in tasks.iter().zip(olds).zip(sent) {
        let o = step::outcome(task, old, goal, now, sent);
        retry |= o.retry;
        if let Some(event) = o.event {
            events.push((task, event));
        }
        records.push(o.record);
    }
    let (telling, began) = (events.len(), std::time::Instant::now());
    publish_outcomes(pass, pods, events).await;
    tracing::debug!(
        events = telling,
        took_ms = began.elapsed().as_millis() as u64,
        "told"
    );
    let have: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let gone: Vec<&TargetRecord> = old
        .iter()
        .filter(|r| !have.contains(r.id.as_str()))
        .collect();
    records.extend(gone::recover(pass, gone).await);
    records.sort_by(|a, b| a.id.cmp(&b.id));
    (records, retry)
}

/// Counts the targets' outcomes and tells them as Events: on each target pod (failures on
/// the chaos object too), up to `--pod-events-per-pass`; the rest as one Event per reason on
/// the chaos object.
async fn publish_outcomes(
    pass: &Pass<'_>,
    pods: &BTreeMap<String, PodInfo>,
    events: Vec<(&Task, (EventType, &'static str, String))>,
) {
    let ctx = pass.ctx;
    let mut untold: BTreeMap<(&'static str, bool), usize> = BTreeMap::new();
    let mut told = Vec::new();
    for (task, (type_, reason, note)) in events {
        let outcome = match reason {
            "Injected" => "injected",
            "Recovered" => "recovered",
            _ => "failed",
        };
        ctx.metrics.target(pass.kind, outcome);
        let warning = type_ == EventType::Warning;
        // The cap counts Events published (a failure is told on the pod and on the object).
        if told.len() >= ctx.pod_events_per_pass {
            *untold.entry((reason, warning)).or_default() += 1;
            continue;
        }
        if let Some(pod) = pods.get(&crate::plan::pod_key(&task.record_id)) {
            told.push((pod_ref(pod), type_, reason, note.clone()));
        }
        if warning {
            told.push((pass.reference.clone(), type_, reason, note));
        }
    }
    for ((reason, warning), count) in untold {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!(
            "{reason}: {count} more targets (Events on pods are capped at {} per pass; \
             status.records has every target)",
            ctx.pod_events_per_pass
        );
        told.push((pass.reference.clone(), type_, reason, note));
    }
    futures::stream::iter(told)
        .for_each_concurrent(
            EVENTS_IN_FLIGHT,
            |(reference, type_, reason, note)| async move {
                publish(ctx, &reference, type_, reason, note, reason).await;
            },
        )
        .await;
}

/// Ends an experiment that cannot start: phase Failed, the reason on its condition and in a
/// Warning Event. Nothing was injected (it has no records).
async fn refuse<K: Chaos>(
    ctx: &Ctx,
    obj: &K,
    old: &faultline_api::status::ChaosStatus,
    goal: Goal,
    now: &Time,
    reason: &str,
    why: String,
) -> Result<Action, ReconcileError> {
    let reference = obj.object_ref(&());
    publish(
        ctx,
        &reference,
        EventType::Warning,
        reason,
        why.clone(),
        "Select",
    )
    .await;
    let mut status = crate::lifecycle::status(old, Vec::new(), goal, obj.lasts(), now);
    status.phase = Some(faultline_api::status::ExperimentPhase::Failed);
    if let Some(c) = status.conditions.first_mut() {
        c.reason = Some(reason.into());
        c.message = Some(why);
    }
    write_status(ctx, obj, &status, OnConflict::KeepRecords).await?;
    Ok(Action::await_change())
}

/// One pass toward the goal; `deleting` = the cleanup branch.
async fn run<K: Chaos>(obj: &K, ctx: &Ctx, deleting: bool) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let reference = obj.object_ref(&());
    if ctx.stale.is_stale(&uid, obj.resource_version().as_deref()) {
        // The cache still has the version a write was refused for: wait for the newer one.
        let what = format!("{}/{}", K::KIND, obj.name_any());
        return if deleting {
            Err(ReconcileError::Conflict(what))
        } else {
            Ok(Action::requeue(CONFLICT_RETRY))
        };
    }
    let old = obj.status().cloned().unwrap_or_default();
    let now = Time(Timestamp::now());
    let began = std::time::Instant::now();
    let annotation = |key: &str| obj.annotations().get(key).is_some_and(|v| v == "true");
    let policy = ctx.policy.load();
    let protected = lookup::protected_target(&old.records, &policy.protected()).map(str::to_owned);
    let situation = Situation {
        lasts: obj.lasts(),
        duration: obj.duration(),
        started: started(&old),
        now: now.0,
        paused: annotation(PAUSE),
        // A namespace the policy protects since the targets were selected halts the
        // experiment as `halt: true` does, for as long as it is protected.
        halted: policy.halt || protected.is_some(),
    };
    // Not held across the pass's awaits (an `arc_swap` guard is meant to be short-lived).
    drop(policy);
    let (goal, wake) = if deleting {
        (Goal::Recovered(RecoverWhy::Deleted), None)
    } else {
        decide(&situation)
    };
    // A finished experiment stays as it is until it is deleted.
    if !deleting && old.phase == Some(faultline_api::status::ExperimentPhase::Finished) {
        return Ok(Action::await_change());
    }
    // Told once, when it starts to hold (not to a finished experiment: nothing runs).
    if let Some(ns) = &protected
        && !deleting
        && old.phase != Some(faultline_api::status::ExperimentPhase::Paused)
    {
        let note = format!(
            "the policy protects namespace {ns} now: every target is recovered, and the \
             experiment stays paused while it does"
        );
        publish(
            ctx,
            &reference,
            EventType::Warning,
            "ProtectedNamespace",
            note,
            "Halt",
        )
        .await;
    }
    if old.records.is_empty() && matches!(goal, Goal::Recovered(_)) {
        // Nothing was ever injected.
        if !deleting {
            let status = crate::lifecycle::status(&old, Vec::new(), goal, obj.lasts(), &now);
            write_status(ctx, obj, &status, OnConflict::KeepRecords).await?;
        }
        return Ok(Action::await_change());
    }
    if old.records.is_empty() && matches!(goal, Goal::Injected { .. }) {
        // The webhook refuses these, but the controller does not count on it being deployed
        // (or having been, when the object was written): an invalid `duration` would read as
        // "none" and run until deleted.
        let violations = obj.validate();
        if !violations.is_empty() {
            let why = faultline_api::validate::describe(&violations);
            return refuse(ctx, obj, &old, goal, &now, "InvalidSpec", why).await;
        }
    }
    let pods = match lookup::targets(obj, ctx, &old, &ns, &uid).await? {
        Ok(p) => p,
        Err(why) => return refuse(ctx, obj, &old, goal, &now, "SelectionFailed", why).await,
    };
    if pods.is_empty() && old.records.is_empty() {
        let mut status = crate::lifecycle::status(&old, Vec::new(), goal, obj.lasts(), &now);
        status.phase = Some(faultline_api::status::ExperimentPhase::Pending);
        if let Some(c) = status.conditions.first_mut() {
            c.reason = Some("NoTargets".into());
            c.message = Some(
                "no target: no running pod matches the selector, or its mode and value round to \
                 zero pods; looking again in 30 s"
                    .into(),
            );
        }
        write_status(ctx, obj, &status, OnConflict::KeepRecords).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let peers = if matches!(goal, Goal::Injected { .. }) {
        lookup::peers(obj, ctx, &ns, &uid).await?
    } else {
        Ok(Vec::new())
    };
    let tasks = obj.tasks(&uid, &pods, &peers);
    let renew = ctx.renewals.due(&uid);
    let mode = step::Mode {
        lasts: obj.lasts(),
        renew,
    };
    // Records first, then the calls (see `step::ahead`); the rest of the pass stands on the
    // version that write made.
    let written_ahead;
    let (obj, old) = match step::ahead(&tasks, &old.records, goal, mode) {
        Some(records) => {
            let status = faultline_api::status::ChaosStatus {
                records,
                ..old.clone()
            };
            match write_status(ctx, obj, &status, OnConflict::DecideAgain).await? {
                Some(written) => {
                    written_ahead = written;
                    (&written_ahead, status)
                }
                None => (obj, old),
            }
        }
        None => (obj, old),
    };
    let recover_gone = |record: &str, fault: &str| obj.recover_gone(record, fault);
    let by_key: BTreeMap<String, PodInfo> = pods.into_iter().map(|p| (p.key(), p)).collect();
    let pass = Pass {
        ctx,
        kind: K::KIND,
        uid: &uid,
        recover_gone: &recover_gone,
        goal,
        mode,
        now: &now,
        reference: &reference,
    };
    let (records, retry) = drive(&pass, &tasks, &by_key, &old.records).await;
    ctx.renewals.passed(&uid, goal, renew && obj.lasts());
    let mut status = crate::lifecycle::status(&old, records, goal, obj.lasts(), &now);
    if retry && status.phase == Some(faultline_api::status::ExperimentPhase::Finished) {
        // A one-shot experiment with a target still to retry is not finished yet (a finished
        // experiment is never looked at again).
        status.phase = Some(faultline_api::status::ExperimentPhase::Running);
    }
    if status != old {
        let count = |p: RecordPhase| crate::lifecycle::count(&status.records, p);
        tracing::info!(
            kind = K::KIND,
            namespace = %ns,
            name = %obj.name_any(),
            goal = ?goal,
            targets = status.records.len(),
            injected = count(RecordPhase::Injected),
            recovered = count(RecordPhase::Recovered),
            failed = count(RecordPhase::Failed),
            took_ms = began.elapsed().as_millis() as u64,
            "pass"
        );
    }
    if status.phase != old.phase
        && let Some(phase) = status.phase
    {
        publish(
            ctx,
            &reference,
            EventType::Normal,
            &format!("{phase:?}"),
            format!("experiment {phase:?}"),
            "Reconcile",
        )
        .await;
    }
    write_status(ctx, obj, &status, OnConflict::KeepRecords).await?;
    if retry {
        if deleting {
            let failed: Vec<String> = status
                .records
                .iter()
                .filter(|r| r.phase != RecordPhase::Recovered)
                .map(|r| format!("{}: {}", r.id, r.message.clone().unwrap_or_default()))
                .collect();
            return Err(ReconcileError::Recovery(failed.join("; ")));
        }
        // A retry never postpones the end of the duration.
        let retry_in = ctx.backoff.failed(&uid);
        return Ok(Action::requeue(wake.map_or(retry_in, |w| w.min(retry_in))));
    }
    ctx.backoff.passed(&uid);
    Ok(wake.map_or_else(Action::await_change, Action::requeue))
}

/// Deletion: recover every target, then let the finalizer go. With `faultline.dev/force-recover:
/// "true"` the finalizer goes after one recovery attempt whatever its result, with a Warning
/// Event — an attempt that sent its calls: a pass that could not get that far (the API
/// unreachable, an outdated cached version) is retried as usual.
async fn cleanup<K: Chaos>(obj: &K, ctx: &Ctx) -> Result<Action, ReconcileError> {
    match run(obj, ctx, true).await {
        Ok(action) => {
            ctx.stale.forget(&obj.uid().unwrap_or_default());
            Ok(action)
        }
        Err(err @ ReconcileError::Recovery(_))
            if obj
                .annotations()
                .get(FORCE_RECOVER)
                .is_some_and(|v| v == "true") =>
        {
            let note =
                format!("finalizer removed after a failed recovery attempt (force-recover): {err}");
            tracing::warn!(kind = K::KIND, name = %obj.name_any(), %note);
            let uid = obj.uid().unwrap_or_default();
            ctx.backoff.passed(&uid);
            ctx.renewals
                .passed(&uid, Goal::Recovered(RecoverWhy::Deleted), false);
            publish(
                ctx,
                &obj.object_ref(&()),
                EventType::Warning,
                "ForceRecovered",
                note,
                "Delete",
            )
            .await;
            Ok(Action::await_change())
        }
        Err(err) => Err(err),
    }
}

/// The reconcile of kind `K`.
pub async fn reconcile<K>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<ReconcileError>>
where
    K: Chaos + Clone + serde::de::DeserializeOwned + serde::Serialize,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => match run(&*o, &ctx, false).await {
                Err(ReconcileError::Conflict(what)) => {
                    tracing::debug!(%what, "status conflict; reconciling again");
                    Ok(Action::requeue(CONFLICT_RETRY))
                }
                other => other,
            },
            Event::Cleanup(o) => cleanup(&*o, &ctx).await,
        }
    })
    .await;
    ctx.metrics.reconcile(K::KIND, result.is_ok());
    result
}

/// After a failed reconcile: log and retry with backoff.
pub fn error_policy<K: Chaos>(
    obj: Arc<K>,
    err: &kube::runtime::finalizer::Error<ReconcileError>,
    ctx: Arc<Ctx>,
) -> Action {
    let wait = ctx.backoff.failed(&obj.uid().unwrap_or_default());
    tracing::warn!(kind = K::KIND, name = %obj.name_any(), error = %faultline_api::report::error_text(err), retry_in = ?wait, "reconcile failed; retrying");
    Action::requeue(wait)
}

#[cfg(test)]
mod tests;
