//! One target's step toward the goal: the inject call (daemon or API) or the recover call,
//! and the record and Event that follow.

use std::time::Duration;

use faultline_api::status::{RecordPhase, TargetRecord};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::Ctx;
use crate::daemon_client::DaemonCallError;
use crate::lifecycle::Goal;
use crate::plan::{Call, Task};

/// The outcome of one target's task.
pub(super) struct Outcome {
    pub(super) record: TargetRecord,
    /// Failed for a reason that may pass (daemon unreachable): retry soon.
    pub(super) retry: bool,
    pub(super) event: Option<(EventType, &'static str, String)>,
}

async fn send(
    ctx: &Ctx,
    task: &Task,
    call: &Call,
    ttl: Option<Duration>,
) -> Result<(), (bool, String)> {
    match call {
        Call::DeletePod {
            namespace,
            name,
            grace_period,
        } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
            let dp = DeleteParams {
                grace_period_seconds: grace_period.and_then(|g| u32::try_from(g).ok()),
                ..DeleteParams::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err((true, faultline_api::report::error_text(&e))),
            }
        }
        Call::Daemon {
            method,
            params,
            ttl: takes_ttl,
        } => {
            let node = task
                .node
                .as_deref()
                .ok_or((false, "the pod is not scheduled on a node".to_owned()))?;
            let mut params = params.clone();
            if let (true, Some(ttl)) = (*takes_ttl, ttl) {
                params["ttl"] = json!(format!("{}s", ttl.as_secs().max(1)));
            }
            ctx.daemons
                .call(node, method, params)
                .await
                .map(|_| ())
                .map_err(|e| (e.transient(), e.to_string()))
        }
    }
}

async fn recover_one(ctx: &Ctx, task: &Task) -> Result<(), (bool, String)> {
    let Some((method, params)) = &task.recover else {
        return Ok(());
    };
    let node = task
        .node
        .as_deref()
        .ok_or((false, "the pod is not scheduled on a node".to_owned()))?;
    match ctx.daemons.call(node, method, params.clone()).await {
        Ok(_) => Ok(()),
        // Already gone (expired, daemon restarted and recovered it, or the target went).
        Err(e) if e.unknown_fault() || e.target_gone() => Ok(()),
        Err(e @ DaemonCallError::NoDaemon { .. }) => Err((true, e.to_string())),
        Err(e) => Err((e.transient(), e.to_string())),
    }
}

/// Moves one target toward `goal`.
pub(super) async fn step(
    ctx: &Ctx,
    task: &Task,
    old: Option<&TargetRecord>,
    goal: Goal,
    lasts: bool,
    now: &Time,
) -> Outcome {
    let mut record = old.cloned().unwrap_or(TargetRecord {
        id: task.record_id.clone(),
        node: task.node.clone(),
        phase: RecordPhase::Pending,
        message: None,
        injected_at: None,
        recovered_at: None,
    });
    record.node = task.node.clone().or(record.node);
    let was = record.phase;
    match goal {
        Goal::Injected { ttl } => {
            // One-shot actions run once; lasting faults are re-sent (renewal, re-injection).
            if !lasts && was == RecordPhase::Injected {
                return Outcome {
                    record,
                    retry: false,
                    event: None,
                };
            }
            match &task.inject {
                Err(why) => {
                    record.phase = RecordPhase::Failed;
                    record.message = Some(why.clone());
                    let event = (was != RecordPhase::Failed)
                        .then(|| (EventType::Warning, "InjectFailed", why.clone()));
                    Outcome {
                        record,
                        retry: false,
                        event,
                    }
                }
                Ok(call) => match send(ctx, task, call, ttl).await {
                    Ok(()) => {
                        record.phase = RecordPhase::Injected;
                        record.message = None;
                        if was != RecordPhase::Injected {
                            record.injected_at = Some(now.clone());
                            record.recovered_at = None;
                        }
                        let event = (was != RecordPhase::Injected).then(|| {
                            (
                                EventType::Normal,
                                "Injected",
                                format!("fault injected ({})", task.record_id),
                            )
                        });
                        Outcome {
                            record,
                            retry: false,
                            event,
                        }
                    }
                    Err((transient, why)) => {
                        record.phase = RecordPhase::Failed;
                        record.message = Some(why.clone());
                        let event = (record.message != old.and_then(|o| o.message.clone())
                            || was != RecordPhase::Failed)
                            .then_some((EventType::Warning, "InjectFailed", why));
                        Outcome {
                            record,
                            retry: transient,
                            event,
                        }
                    }
                },
            }
        }
        Goal::Recovered(_) => {
            if was == RecordPhase::Recovered
                || (task.recover.is_none() && was != RecordPhase::Pending)
            {
                return Outcome {
                    record,
                    retry: false,
                    event: None,
                };
            }
            match recover_one(ctx, task).await {
                Ok(()) => {
                    record.phase = RecordPhase::Recovered;
                    record.message = None;
                    record.recovered_at = Some(now.clone());
                    let event = (was == RecordPhase::Injected).then(|| {
                        (
                            EventType::Normal,
                            "Recovered",
                            format!("fault recovered ({})", task.record_id),
                        )
                    });
                    Outcome {
                        record,
                        retry: false,
                        event,
                    }
                }
                Err((_, why)) => {
                    record.message = Some(format!("recovery failed: {why}"));
                    Outcome {
                        record,
                        retry: true,
                        event: Some((EventType::Warning, "RecoverFailed", why)),
                    }
                }
            }
        }
    }
}
