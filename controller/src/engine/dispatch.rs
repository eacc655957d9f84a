//! Sending a pass's calls: daemon calls grouped by node and sent as JSON-RPC batches (one
//! request per [`BATCH`] calls), at most [`BATCHES_PER_NODE`] batches in flight to one daemon
//! and [`NODES_IN_FLIGHT`] daemons at once; pod deletions through the (rate-limited) API
//! client. A 5,000-pod experiment on 100 nodes is about 100 requests to daemons, not 5,000.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use serde_json::Value;

use super::Ctx;
use super::step::{Send, Sent};
use crate::daemon_client::DaemonCallError;

/// Calls per JSON-RPC batch. The daemon runs a batch's calls one after another, so a batch is
/// kept small enough that its slowest calls (stress.start, ~40 ms) do not queue for long.
pub(super) const BATCH: usize = 10;
/// Batches in flight to one daemon.
const BATCHES_PER_NODE: usize = 4;
/// Daemons called at once.
const NODES_IN_FLIGHT: usize = 64;
/// Pod deletions in flight (they also wait for the client's QPS tokens).
const DELETES_IN_FLIGHT: usize = 16;

/// What a daemon call is for, as far as reading its answer goes.
#[derive(Debug, Clone, Copy)]
struct Purpose {
    recover: bool,
    no_daemon_is_done: bool,
}

/// A daemon call's answer as the step sees it: a recovery of a fault that is not there (any
/// more) or whose target is gone is done; so is one of a never-confirmed fault on a node
/// without a daemon ([`Send::Daemon`]'s `no_daemon_is_done`).
fn daemon_sent(purpose: Purpose, result: Result<Value, DaemonCallError>) -> Sent {
    match result {
        Ok(_) => Ok(()),
        Err(e) if purpose.recover && (e.unknown_fault() || e.target_gone()) => Ok(()),
        Err(DaemonCallError::NoDaemon { .. }) if purpose.recover && purpose.no_daemon_is_done => {
            Ok(())
        }
        Err(e) => Err((e.transient(), e.to_string())),
    }
}

/// Deletes the pod that was selected, with its uid as a precondition. 404 (it is gone) and 409
/// (the name is another pod's now) both mean the selected pod is gone. Only a refusal that
/// certainly deleted nothing (429, too many requests) is retried: after a timeout or a 5xx the
/// pod may be deleted already, and a later pass would find a same-name replacement under the
/// record's name — with that pod's uid — and kill it too. Such a kill fails for good instead.
async fn delete_pod(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    uid: Option<String>,
    grace: Option<i64>,
) -> Sent {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let dp = DeleteParams {
        grace_period_seconds: grace.and_then(|g| u32::try_from(g).ok()),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 429 => Err((true, s.message)),
        Err(e) => Err((
            false,
            format!(
                "{} (the pod may be deleted or not; not retried, so that a replacement pod is \
                 never killed)",
                faultline_api::report::error_text(&e)
            ),
        )),
    }
}

type Indexed = Vec<(usize, Sent)>;
/// A daemon call with its index: (index, method, params, what it is for).
type NodeCall = (usize, &'static str, Value, Purpose);

/// One node's calls, in batches of [`BATCH`], [`BATCHES_PER_NODE`] at a time.
async fn send_node(ctx: &Ctx, node: String, calls: Vec<NodeCall>) -> Indexed {
    let mut batches: Vec<BoxFuture<'_, Indexed>> = Vec::new();
    let mut calls = calls.into_iter().peekable();
    while calls.peek().is_some() {
        let batch: Vec<NodeCall> = calls.by_ref().take(BATCH).collect();
        batches.push(Box::pin(send_batch(ctx, &node, batch)));
    }
    futures::stream::iter(batches)
        .buffer_unordered(BATCHES_PER_NODE)
        .concat()
        .await
}

async fn send_batch(ctx: &Ctx, node: &str, batch: Vec<NodeCall>) -> Indexed {
    let mut keys = Vec::with_capacity(batch.len());
    let mut wire = Vec::with_capacity(batch.len());
    for (i, method, params, purpose) in batch {
        keys.push((i, purpose));
        wire.push((method, params));
    }
    let answers = ctx.daemons.call_batch(node, wire).await;
    keys.into_iter()
        .zip(answers)
        .map(|((i, purpose), answer)| (i, daemon_sent(purpose, answer)))
        .collect()
}

/// Sends every call; the results carry the index each call came with.
pub(super) async fn send_all(ctx: &Ctx, calls: Vec<(usize, Send)>) -> Indexed {
    let mut by_node: BTreeMap<String, Vec<NodeCall>> = BTreeMap::new();
    let mut deletes: Vec<BoxFuture<'_, Indexed>> = Vec::new();
    for (i, call) in calls {
        match call {
            Send::Daemon {
                node,
                method,
                params,
                recover,
                no_daemon_is_done,
            } => by_node.entry(node).or_default().push((
                i,
                method,
                params,
                Purpose {
                    recover,
                    no_daemon_is_done,
                },
            )),
            Send::DeletePod {
                namespace,
                name,
                uid,
                grace_period,
            } => deletes.push(Box::pin(async move {
                vec![(
                    i,
                    delete_pod(ctx, &namespace, &name, uid, grace_period).await,
                )]
            })),
        }
    }
    let nodes: Vec<BoxFuture<'_, Indexed>> = by_node
        .into_iter()
        .map(|(node, calls)| -> BoxFuture<'_, Indexed> { Box::pin(send_node(ctx, node, calls)) })
        .collect();
    let (daemons, deleted) = futures::join!(
        futures::stream::iter(nodes)
            .buffer_unordered(NODES_IN_FLIGHT)
            .concat(),
        futures::stream::iter(deletes)
            .buffer_unordered(DELETES_IN_FLIGHT)
            .concat(),
    );
    daemons.into_iter().chain(deleted).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_daemon() -> Result<Value, DaemonCallError> {
        Err(DaemonCallError::NoDaemon {
            node: "node-a".into(),
            namespace: "faultline-system".into(),
        })
    }

    #[test]
    fn no_daemon_is_done_only_for_a_recovery_that_says_so() {
        let purpose = |recover, no_daemon_is_done| Purpose {
            recover,
            no_daemon_is_done,
        };
        assert_eq!(daemon_sent(purpose(true, true), no_daemon()), Ok(()));
        for (recover, done) in [(true, false), (false, false), (false, true)] {
            let Err((transient, why)) = daemon_sent(purpose(recover, done), no_daemon()) else {
                panic!("recover {recover}, no_daemon_is_done {done}: must fail");
            };
            assert!(transient, "retried");
            assert!(why.contains("node-a"), "{why}");
        }
    }
}
