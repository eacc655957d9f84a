//! The four kinds behind one interface, so one engine runs them all: each kind says how its
//! targets become [`Task`]s; everything else (selection, timing, status, recovery) is shared.

use faultline_api::experiment::Experiment;
use faultline_api::io_chaos::IOChaos;
use faultline_api::network_chaos::NetworkChaos;
use faultline_api::peer::Peer;
use faultline_api::pod_chaos::{PodChaos, PodChaosAction};
use faultline_api::selector::PodSelector;
use faultline_api::status::ChaosStatus;
use faultline_api::stress_chaos::StressChaos;
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde_json::{Value, json};

use crate::plan::{self, Task};
use crate::selection::PodInfo;

/// A chaos kind the engine runs.
pub trait Chaos:
    Experiment + Resource<Scope = NamespaceResourceScope> + std::fmt::Debug + Send + Sync + 'static
{
    /// `PodChaos`, …
    const KIND: &'static str;
    fn status(&self) -> Option<&ChaosStatus>;
    /// The pods the experiment acts on.
    fn scope(&self) -> &PodSelector;
    /// NetworkChaos `target`: the peers a partition cuts.
    fn peers(&self) -> Option<&PodSelector> {
        None
    }
    /// NetworkChaos `externalTargets`, read (`None`: not a NetworkChaos partition).
    fn external_peers(&self) -> Option<Result<Vec<Peer>, String>> {
        None
    }
    /// One task per record for `pods`; `peers` are the partition's peers in the daemon's
    /// canonical form (`10.0.0.0/8:22`), or why there are none.
    fn tasks(&self, uid: &str, pods: &[PodInfo], peers: &Result<Vec<String>, String>) -> Vec<Task>;
    /// The daemon call that recovers the fault of record `record_id` (id `fault_id`) once its
    /// pod is gone: its journal entry, stress-ng or I/O rules may outlive the pod on the node.
    /// `None`: nothing of it outlives the pod.
    fn recover_gone(&self, record_id: &str, fault_id: &str) -> Option<(&'static str, Value)> {
        let _ = (record_id, fault_id);
        None
    }
}

impl Chaos for PodChaos {
    const KIND: &'static str = "PodChaos";
    /// pod-failure's journal entry (it has no ttl) is closed by its recovery, which the daemon
    /// answers with "target gone" once the pod is.
    fn recover_gone(&self, record_id: &str, fault_id: &str) -> Option<(&'static str, Value)> {
        let (namespace, pod) = record_id.split_once('/')?;
        (self.spec.action == PodChaosAction::PodFailure).then(|| {
            let params = json!({"namespace": namespace, "pod": pod, "faultId": fault_id});
            ("podFailure.recover", params)
        })
    }
    fn status(&self) -> Option<&ChaosStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> &PodSelector {
        &self.spec.scope
    }
    fn tasks(&self, uid: &str, pods: &[PodInfo], _: &Result<Vec<String>, String>) -> Vec<Task> {
        plan::pod_chaos(&self.spec, uid, pods)
    }
}

impl Chaos for NetworkChaos {
    const KIND: &'static str = "NetworkChaos";
    fn recover_gone(&self, _: &str, fault_id: &str) -> Option<(&'static str, Value)> {
        Some(("network.recover", json!({"faultId": fault_id})))
    }
    fn status(&self) -> Option<&ChaosStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> &PodSelector {
        &self.spec.scope
    }
    fn peers(&self) -> Option<&PodSelector> {
        self.spec.target.as_ref()
    }
    fn external_peers(&self) -> Option<Result<Vec<Peer>, String>> {
        (self.spec.action == faultline_api::network_chaos::NetworkChaosAction::Partition).then(
            || {
                faultline_api::convert::network::external_peers(&self.spec)
                    .map_err(|v| faultline_api::validate::describe(&v))
            },
        )
    }
    fn tasks(&self, uid: &str, pods: &[PodInfo], peers: &Result<Vec<String>, String>) -> Vec<Task> {
        plan::network_chaos(&self.spec, uid, pods, peers)
    }
}

impl Chaos for StressChaos {
    const KIND: &'static str = "StressChaos";
    fn recover_gone(&self, _: &str, fault_id: &str) -> Option<(&'static str, Value)> {
        Some(("stress.stop", json!({"faultId": fault_id})))
    }
    fn status(&self) -> Option<&ChaosStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> &PodSelector {
        &self.spec.scope
    }
    fn tasks(&self, uid: &str, pods: &[PodInfo], _: &Result<Vec<String>, String>) -> Vec<Task> {
        plan::stress_chaos(&self.spec, uid, pods)
    }
}

impl Chaos for IOChaos {
    const KIND: &'static str = "IOChaos";
    fn recover_gone(&self, _: &str, fault_id: &str) -> Option<(&'static str, Value)> {
        Some(("io.recover", json!({"faultId": fault_id})))
    }
    fn status(&self) -> Option<&ChaosStatus> {
        self.status.as_ref()
    }
    fn scope(&self) -> &PodSelector {
        &self.spec.scope
    }
    fn tasks(&self, uid: &str, pods: &[PodInfo], _: &Result<Vec<String>, String>) -> Vec<Task> {
        plan::io_chaos(&self.spec, uid, pods)
    }
}
