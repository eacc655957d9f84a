//! Deleted target pods wake their experiments at once.
//!
//! A pass finds that a target pod is gone when it looks for the pod and the API server no
//! longer has it; the record is then recovered and the leftovers on the node cleaned
//! (`engine::gone`). Without a trigger, that pass comes at the experiment's next renewal (up to
//! [`RENEW_EVERY`](crate::lifecycle::RENEW_EVERY) later) or at the end of its `duration`.
//!
//! One metadata-only watch of every pod (object metadata, no spec or status) feeds the
//! controllers of all four kinds: each deletion wakes the chaos objects whose records name that
//! pod and are not recovered yet. A lost event (a watch restart, a slow kind) costs only that
//! wait: the renewal still comes. `--pod-deletion-watch=false` turns the watch off for clusters
//! where a cluster-wide pod watch is not wanted.

use std::sync::Arc;

use faultline_api::status::{ChaosStatus, RecordPhase};
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use tokio::sync::broadcast;

use crate::kinds::Chaos;

/// A deleted pod: (namespace, name).
pub type DeletedPod = Arc<(String, String)>;

/// Whether `status` has a record of pod `namespace/name` (`ns/pod` or `ns/pod/container`) that
/// is not recovered yet.
pub fn names_pod(status: Option<&ChaosStatus>, namespace: &str, name: &str) -> bool {
    let Some(status) = status else {
        return false;
    };
    status.records.iter().any(|r| {
        r.phase != RecordPhase::Recovered
            && r.id
                .strip_prefix(namespace)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Starts the pod watch; every deletion is sent on the returned channel.
pub fn watch(client: Client) -> broadcast::Sender<DeletedPod> {
    let (tx, _) = broadcast::channel(1024);
    let sender = tx.clone();
    tokio::spawn(async move {
        // `PartialObjectMeta`: the API server sends metadata only, never specs or statuses.
        // `any_semantic`: (re)lists are served from the API server's watch cache, not etcd.
        let api: Api<PartialObjectMeta<Pod>> = Api::all(client);
        let mut events = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .boxed();
        // Warned of a failure and not working since: one warning per outage, not per retry.
        let mut failing = false;
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if failing {
                        failing = false;
                        tracing::info!("pod watch working again");
                    }
                    if let watcher::Event::Delete(pod) = event
                        && let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name)
                    {
                        // An error only when no kind listens (shutting down): nothing to wake.
                        let _ = sender.send(Arc::new((ns, name)));
                    }
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(
                        error = %err,
                        "pod watch failed, retrying: a deleted target pod is noticed at its experiment's next renewal (30 s) until it works; it needs list and watch on pods in every namespace (or --pod-deletion-watch=false)"
                    );
                }
                Err(err) => tracing::debug!(error = %err, "pod watch"),
            }
        }
    });
    tx
}

/// The chaos objects of kind `K` (from the controller's own cache) to wake for each deletion.
pub fn wakes<K>(
    store: Store<K>,
    deleted: broadcast::Receiver<DeletedPod>,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Chaos + Clone + kube::Resource<DynamicType = ()>,
{
    futures::stream::unfold(deleted, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(pod) => return Some((pod, rx)),
                // Missed deletions wait for their experiment's renewal.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(kind = K::KIND, missed, "pod deletions missed");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |pod| {
        let (ns, name) = &*pod;
        let refs: Vec<ObjectRef<K>> = store
            .state()
            .iter()
            .filter(|obj| names_pod(obj.status(), ns, name))
            .map(|obj| ObjectRef::from_obj(obj.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_api::status::TargetRecord;

    fn status(records: &[(&str, RecordPhase)]) -> ChaosStatus {
        ChaosStatus {
            records: records
                .iter()
                .map(|(id, phase)| TargetRecord {
                    id: (*id).into(),
                    node: None,
                    phase: *phase,
                    message: None,
                    injected_at: None,
                    recovered_at: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_names_its_pod_and_no_other() {
        let s = status(&[
            ("shop/cart-1", RecordPhase::Injected),
            ("shop/web-2/app", RecordPhase::Pending),
            ("shop/db-0", RecordPhase::Recovered),
        ]);
        assert!(names_pod(Some(&s), "shop", "cart-1"));
        assert!(names_pod(Some(&s), "shop", "web-2"), "a container record");
        // Prefixes of a name or namespace are other pods.
        assert!(!names_pod(Some(&s), "shop", "cart"));
        assert!(!names_pod(Some(&s), "shop", "web"));
        assert!(!names_pod(Some(&s), "sho", "p/cart-1"));
        assert!(!names_pod(Some(&s), "other", "cart-1"));
        // Already recovered: nothing to wake for.
        assert!(!names_pod(Some(&s), "shop", "db-0"));
        assert!(!names_pod(None, "shop", "cart-1"));
    }
}
