//! `faultline-daemon`'s methods (DESIGN.md §5): params and results.
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `capabilities` | – | [`Capabilities`] |
//! | `container.pid` | [`TargetParams`] | [`PidResult`] |
//! | `container.kill` | [`KillParams`] | `{}` |
//! | `network.apply` | [`NetworkApplyParams`] | [`FaultIdResult`] |
//! | `stress.start` | [`StressStartParams`] | [`FaultIdResult`] |
//! | `podFailure.apply` / `podFailure.recover` | [`PodFailureParams`] | [`FaultIdResult`] / `{}` |
//! | `io.apply` | [`IoApplyParams`] | [`FaultIdResult`] |
//! | `io.recover` | [`IoRecoverParams`] | `{}` |
//! | `network.recover`, `stress.stop` | [`FaultIdParams`] | `{}` |
//! | `faults.list` | – | [`FaultsList`] |
//! | `faults.recoverAll` | – | [`FaultsList`] (what was recovered) |

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::iorule::IoRule;
use crate::network_chaos::{
    BandwidthSpec, CorruptSpec, DelaySpec, Direction, DuplicateSpec, LossSpec, RateSpec,
};
use crate::stress_chaos::Stressors;

/// What a fault acts on: a container known to the runtime, or a bare process (hosts without
/// Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, untagged)]
pub enum Target {
    /// `{"containerId": "containerd://<id>"}` as a pod's `containerStatuses[].containerID`.
    Container {
        #[serde(rename = "containerId")]
        container_id: String,
    },
    /// `{"pid": N}`.
    Pid {
        /// The process.
        pid: u32,
    },
}

/// The id the daemon gives an applied fault; recovery names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FaultId(pub String);

impl fmt::Display for FaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `{"target": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetParams {
    /// The container or process.
    pub target: Target,
}

/// `container.kill {"target": …, "signal"?: "SIGKILL"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KillParams {
    /// The container or process.
    pub target: Target,
    /// Signal name (`SIGKILL` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// netem in the NetworkChaos spec shapes; each block optional, at least one required.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetemParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelaySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<DuplicateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
}

/// A partition: drop traffic to, from or both ways between the target and these peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartitionParams {
    /// Which way traffic is dropped.
    pub direction: Direction,
    /// Peer IPs or CIDRs (the controller resolves pods and names).
    pub targets: Vec<String>,
}

/// `network.apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkApplyParams {
    /// Whose network namespace.
    pub target: Target,
    /// Interface inside it (`eth0` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netem: Option<NetemParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionParams>,
    /// Go duration after which the daemon recovers the fault by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Client-chosen fault id (`[a-z0-9-]`, 1–63 characters): applying again with an id that
    /// is active renews its `ttl` instead of applying the fault twice (the controller's
    /// renewals, and retries after a lost answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_id: Option<FaultId>,
}

/// `stress.start`: the StressChaos `stressors` shape, or a raw stress-ng command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StressStartParams {
    /// Whose cgroup the stressors join.
    pub target: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stressors: Option<Stressors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stressng_stressors: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Client-chosen fault id (`[a-z0-9-]`, 1–63 characters): applying again with an id that
    /// is active renews its `ttl` instead of applying the fault twice (the controller's
    /// renewals, and retries after a lost answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_id: Option<FaultId>,
}

/// `podFailure.apply` / `podFailure.recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodFailureParams {
    pub namespace: String,
    pub pod: String,
    /// Image the containers are swapped to (`apply` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_image: Option<String>,
    /// `apply`: the client-chosen id of this hold (applying again with an active id renews its
    /// `ttl`, nothing else). `recover`: release just this hold (the real images come back when
    /// no hold is left); absent = every hold this daemon has on the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_id: Option<FaultId>,
    /// `apply` only: Go duration after which the daemon releases the hold by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// `io.apply`: rules relayed to the target pod's sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IoApplyParams {
    pub target: Target,
    pub rules: Vec<IoRule>,
    /// Client-chosen fault id (`[a-z0-9-]`, 1–63 characters): applying again with an id that
    /// is active renews its `ttl` instead of applying the fault twice (the controller's
    /// renewals, and retries after a lost answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_id: Option<FaultId>,
    /// Which volume of the pod's one sidecar the rules go to: an IOChaos `volumePath` (where an
    /// app container mounts the volume) or the volume name. Relayed as the sidecar's `mount`
    /// param (`rules.add {"rule", "mount"}`); may be left out when the sidecar serves one volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Go duration after which the daemon removes the rules by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// `io.recover`: every I/O fault on a target, or one fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum IoRecoverParams {
    /// `{"target": …}`: every I/O fault this daemon applied to the target.
    Target {
        /// The container or process named at `io.apply`.
        target: Target,
    },
    /// `{"faultId": …}`: one.
    Fault {
        #[serde(rename = "faultId")]
        fault_id: FaultId,
    },
}

/// `network.recover`, `stress.stop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultIdParams {
    pub fault_id: FaultId,
}

/// `{"faultId": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultIdResult {
    pub fault_id: FaultId,
}

/// `{"pid": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidResult {
    pub pid: u32,
}

/// The kinds of fault the daemon keeps in its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    Network,
    Stress,
    PodFailure,
    Io,
}

/// One entry of `faults.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultEntry {
    pub fault_id: FaultId,
    pub kind: FaultKind,
    /// The target as given at apply (absent for pod failure, which names the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// RFC 3339 time the fault was applied.
    pub applied_at: String,
    /// RFC 3339 time the daemon recovers it by itself, when a `ttl` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `{"faults": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsList {
    pub faults: Vec<FaultEntry>,
}

/// The container runtime the daemon reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// `containerd`.
    pub kind: String,
    pub version: String,
    pub socket: String,
}

/// The node's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    V1,
    V2,
    /// Controllers on v1, an (empty or partial) v2 hierarchy beside them.
    Hybrid,
}

/// `capabilities()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub version: String,
    /// `null` when no container runtime is reachable.
    pub runtime: Option<Runtime>,
    pub cgroup: CgroupLayout,
    /// qdisc kind → whether the kernel accepts it (`netem`, `tbf`, …).
    pub qdiscs: BTreeMap<String, bool>,
    pub stress_ng: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(
        value: Value,
    ) -> T {
        let typed: T = serde_json::from_value(value.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&typed).expect("serializes"), value);
        typed
    }

    /// The examples of DESIGN.md §5, as written there.
    #[test]
    fn design_examples_round_trip() {
        let p: NetworkApplyParams = round_trip(json!({
            "target": {"pid": 42}, "device": "veth1",
            "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}, "ttl": "10m"
        }));
        assert_eq!(p.target, Target::Pid { pid: 42 });
        let p: NetworkApplyParams = round_trip(json!({
            "target": {"containerId": "containerd://abc"},
            "netem": {"delay": {"latency": "100ms", "jitter": "10ms", "correlation": "25"}, "loss": {"loss": "5"}},
            "partition": {"direction": "both", "targets": ["10.0.0.2/32"]}
        }));
        assert_eq!(
            p.target,
            Target::Container {
                container_id: "containerd://abc".into()
            }
        );
        let _: StressStartParams = round_trip(json!({
            "target": {"pid": 7}, "stressors": {"cpu": {"workers": 2, "load": 50}}, "ttl": "1m"
        }));
        let _: FaultIdResult = round_trip(json!({"faultId": "net-1"}));
        let _: PidResult = round_trip(json!({"pid": 4242}));
        let _: FaultsList = round_trip(json!({"faults": [
            {"faultId": "net-1", "kind": "network", "target": {"pid": 1}, "appliedAt": "2026-12-01T10:00:00Z", "expiresAt": "2026-12-01T10:10:00Z"},
            {"faultId": "pf-1", "kind": "podFailure", "appliedAt": "2026-12-01T10:00:00Z"}
        ]}));
        let caps: Capabilities = round_trip(json!({
            "version": "0.1.0",
            "runtime": {"kind": "containerd", "version": "1.6.20", "socket": "/run/containerd/containerd.sock"},
            "cgroup": "hybrid", "qdiscs": {"netem": false, "tbf": true}, "stressNg": true
        }));
        assert_eq!(caps.cgroup, CgroupLayout::Hybrid);
        let caps: Capabilities = round_trip(json!({
            "version": "0.1.0", "runtime": null, "cgroup": "v2", "qdiscs": {}, "stressNg": false
        }));
        assert!(caps.runtime.is_none());
        let _: PodFailureParams =
            round_trip(json!({"namespace": "shop", "pod": "cart-0", "pauseImage": "pause:3.9"}));
        let _: PodFailureParams =
            round_trip(json!({"namespace": "shop", "pod": "cart-0", "faultId": "podfail-1"}));
        let p: IoApplyParams = round_trip(json!({
            "target": {"containerId": "containerd://abc"}, "faultId": "io-1",
            "rules": [{"type": "latency", "latency": "10ms"}], "mount": "/var/lib/db"
        }));
        assert_eq!(p.mount.as_deref(), Some("/var/lib/db"));
        let p: IoRecoverParams = round_trip(json!({"target": {"pid": 3}}));
        assert!(matches!(p, IoRecoverParams::Target { .. }));
        let p: IoRecoverParams = round_trip(json!({"faultId": "io-1"}));
        assert!(matches!(p, IoRecoverParams::Fault { .. }));
        let _: FaultIdParams = round_trip(json!({"faultId": "net-1"}));
        let _: KillParams = round_trip(json!({"target": {"pid": 9}, "signal": "SIGTERM"}));
    }

    /// A misspelled field is an error naming it, never a parameter left at its default.
    #[test]
    fn unknown_fields_are_refused() {
        for (value, field) in [
            (json!({"target": {"pid": 1}, "devcie": "eth0"}), "devcie"),
            (
                json!({"target": {"pid": 1}, "netem": {"dealy": {"latency": "1ms"}}}),
                "dealy",
            ),
            (
                json!({"target": {"pid": 1}, "partition": {"direction": "to", "targets": [], "port": 80}}),
                "port",
            ),
        ] {
            let err = serde_json::from_value::<NetworkApplyParams>(value).expect_err("refused");
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(
            serde_json::from_value::<TargetParams>(json!({"target": {"pid": 1, "ns": "x"}}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<TargetParams>(json!({"target": {"containerID": "x"}}))
                .is_err()
        );
        assert!(serde_json::from_value::<FaultIdParams>(json!({"id": "x"})).is_err());
    }
}
