//! What to do to each target of an experiment: a pure function of the experiment and its
//! selected pods. One [`Task`] per record (`ns/pod` or `ns/pod/container`): the call that
//! injects, the call that recovers (none for one-shot actions), the node whose daemon takes
//! them, and a fault id derived from the experiment's UID and the record — the same on every
//! reconcile, so re-sending a call renews the fault instead of applying it twice (the daemon
//! treats a known `faultId` as a renewal of its `ttl`).

use faultline_api::convert::io::io_rule;
use faultline_api::io_chaos::IOChaosSpec;
use faultline_api::network_chaos::{NetworkChaosAction, NetworkChaosSpec};
use faultline_api::pod_chaos::{PodChaosAction, PodChaosSpec};
use faultline_api::stress_chaos::StressChaosSpec;
use faultline_webhook::inject::SidecarStatus;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::selection::PodInfo;

/// The annotation the webhook writes on a pod it injected the fault sidecar into.
pub use faultline_webhook::inject::STATUS_ANNOTATION as SIDECAR_STATUS;

/// The pod (`ns/pod`) of a record id (`ns/pod[/container]`).
pub fn pod_key(record_id: &str) -> String {
    record_id
        .splitn(3, '/')
        .take(2)
        .collect::<Vec<_>>()
        .join("/")
}

/// A call that injects.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A daemon method on the target's node (`faultId` is in `params`; `ttl` is added when the
    /// call is sent, from the time left).
    Daemon {
        method: &'static str,
        params: Value,
        /// Whether `params` take a `ttl` (faults that last).
        ttl: bool,
    },
    /// `pod-kill` through the API.
    DeletePod {
        namespace: String,
        name: String,
        /// The selected pod's uid, sent as a precondition.
        uid: Option<String>,
        grace_period: Option<i64>,
    },
}

/// One target's work.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub record_id: String,
    pub node: Option<String>,
    pub fault_id: String,
    /// `Err`: this target cannot be injected, and why (the record says so).
    pub inject: Result<Call, String>,
    /// Daemon method + params that recover it; `None` for one-shot actions.
    pub recover: Option<(&'static str, Value)>,
}

/// `f-<16 hex of the UID's hash>-<16 hex of the record's>`: 35 characters of `[a-z0-9-]`.
pub fn fault_id(uid: &str, record_id: &str) -> String {
    let hex = |s: &str| -> String {
        Sha256::digest(s.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    format!("f-{}-{}", hex(uid), hex(record_id))
}

fn record(pod: &PodInfo, container: Option<&str>) -> String {
    match container {
        Some(c) => format!("{}/{}/{c}", pod.namespace, pod.name),
        None => pod.key(),
    }
}

/// The containers a kind acts on: `containerNames` (those the pod has), else the first one.
fn containers<'a>(pod: &'a PodInfo, names: &[String]) -> Vec<(&'a str, Option<&'a str>)> {
    let all = pod
        .containers
        .iter()
        .map(|(n, id)| (n.as_str(), id.as_deref()));
    if names.is_empty() {
        all.take(1).collect()
    } else {
        all.filter(|(n, _)| names.iter().any(|w| w == n)).collect()
    }
}

fn target(id: Option<&str>, what: &str) -> Result<Value, String> {
    id.map(|cid| json!({"containerId": cid}))
        .ok_or_else(|| format!("{what} has no containerID yet (not started)"))
}

fn task(
    uid: &str,
    pod: &PodInfo,
    container: Option<&str>,
    inject: Result<Call, String>,
    recover: Option<(&'static str, Value)>,
) -> Task {
    let record_id = record(pod, container);
    Task {
        fault_id: fault_id(uid, &record_id),
        record_id,
        node: pod.node.clone(),
        inject,
        recover,
    }
}

pub fn pod_chaos(spec: &PodChaosSpec, uid: &str, pods: &[PodInfo]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for pod in pods {
        match spec.action {
            PodChaosAction::PodKill => tasks.push(task(
                uid,
                pod,
                None,
                Ok(Call::DeletePod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    grace_period: spec.grace_period,
                }),
                None,
            )),
            PodChaosAction::PodFailure => {
                let id = fault_id(uid, &pod.key());
                let params = json!({"namespace": pod.namespace, "pod": pod.name, "faultId": id});
                tasks.push(task(
                    uid,
                    pod,
                    None,
                    Ok(Call::Daemon {
                        method: "podFailure.apply",
                        params: params.clone(),
                        ttl: true,
                    }),
                    Some(("podFailure.recover", params)),
                ));
            }
            PodChaosAction::ContainerKill => {
                for (name, cid) in containers(pod, &spec.container_names) {
                    let inject = target(cid, &format!("container {name}")).map(|t| Call::Daemon {
                        method: "container.kill",
                        params: json!({"target": t}),
                        ttl: false,
                    });
                    tasks.push(task(uid, pod, Some(name), inject, None));
                }
            }
        }
    }
    tasks
}

fn value<T: serde::Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(|x| serde_json::to_value(x).ok())
}

/// Daemon params for a NetworkChaos on one pod; `peers` are the IPs/CIDRs a partition cuts.
pub fn network_chaos(
    spec: &NetworkChaosSpec,
    uid: &str,
    pods: &[PodInfo],
    peers: &Result<Vec<String>, String>,
) -> Vec<Task> {
    use NetworkChaosAction as A;
    let mut body = serde_json::Map::new();
    if spec.action != A::Bandwidth && spec.action != A::Partition {
        // Every netem block present, whatever the netem action (as Chaos Mesh and the api's
        // conversion read them).
        let mut netem = serde_json::Map::new();
        for (key, v) in [
            ("delay", value(&spec.delay)),
            ("loss", value(&spec.loss)),
            ("duplicate", value(&spec.duplicate)),
            ("corrupt", value(&spec.corrupt)),
            ("rate", value(&spec.rate)),
        ] {
            if let Some(v) = v {
                netem.insert(key.to_owned(), v);
            }
        }
        body.insert("netem".into(), Value::Object(netem));
    }
    if spec.action == A::Bandwidth
        && let Some(b) = value(&spec.bandwidth)
    {
        body.insert("bandwidth".into(), b);
    }
    if spec.action == A::Partition {
        let direction = spec
            .direction
            .unwrap_or(faultline_api::network_chaos::Direction::To);
        let targets = peers.as_ref().map(Vec::as_slice).unwrap_or_default();
        body.insert(
            "partition".into(),
            json!({"direction": direction, "targets": targets}),
        );
    }
    if let Some(device) = &spec.device {
        body.insert("device".into(), json!(device));
    }
    let mut tasks = Vec::new();
    for pod in pods {
        let record_id = pod.key();
        let id = fault_id(uid, &record_id);
        // Any container of the pod names its network namespace; the daemon uses the sandbox.
        let cid = pod.containers.first().and_then(|(_, id)| id.as_deref());
        let inject = target(cid, &format!("pod {}", pod.key())).and_then(|t| {
            if spec.action == A::Partition
                && let Err(why) = peers
            {
                return Err(why.clone());
            }
            let mut params = body.clone();
            params.insert("target".into(), t);
            params.insert("faultId".into(), json!(id));
            Ok(Call::Daemon {
                method: "network.apply",
                params: Value::Object(params),
                ttl: true,
            })
        });
        tasks.push(task(
            uid,
            pod,
            None,
            inject,
            Some(("network.recover", json!({"faultId": id}))),
        ));
    }
    tasks
}

pub fn stress_chaos(spec: &StressChaosSpec, uid: &str, pods: &[PodInfo]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for pod in pods {
        for (name, cid) in containers(pod, &spec.container_names) {
            let record_id = record(pod, Some(name));
            let id = fault_id(uid, &record_id);
            let inject = target(cid, &format!("container {name}")).map(|t| {
                let mut params = json!({"target": t, "faultId": id});
                if let Some(s) = &spec.stressors {
                    params["stressors"] = serde_json::to_value(s).unwrap_or_default();
                }
                if let Some(raw) = &spec.stressng_stressors {
                    params["stressngStressors"] = json!(raw);
                }
                Call::Daemon {
                    method: "stress.start",
                    params,
                    ttl: true,
                }
            });
            tasks.push(task(
                uid,
                pod,
                Some(name),
                inject,
                Some(("stress.stop", json!({"faultId": id}))),
            ));
        }
    }
    tasks
}

/// Whether the pod's fault sidecar (the webhook's `faultline.dev/sidecar-status` annotation)
/// serves the volume at `volume_path`; if not, why, for the record.
fn sidecar_volume(pod: &PodInfo, volume_path: &str) -> Result<(), String> {
    let Some(text) = pod.annotations.get(SIDECAR_STATUS) else {
        return Err("the pod has no fault sidecar (label it faultline.dev/inject=\"true\" in an opted-in namespace and recreate it)".to_owned());
    };
    let status = SidecarStatus::parse(text)
        .map_err(|e| format!("the pod's {SIDECAR_STATUS} annotation is not readable: {e}"))?;
    status
        .volume(volume_path)
        .map(|_| ())
        .map_err(|e| format!("spec.volumePath: {e}"))
}

pub fn io_chaos(spec: &IOChaosSpec, uid: &str, pods: &[PodInfo]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for pod in pods {
        let record_id = pod.key();
        let id = fault_id(uid, &record_id);
        let cid = pod.containers.first().and_then(|(_, id)| id.as_deref());
        let inject = sidecar_volume(pod, &spec.volume_path).and_then(|()| {
            match io_rule(spec, None) {
                Err(v) => Err(faultline_api::validate::describe(&v)),
                Ok(rule) => target(cid, &format!("pod {}", pod.key())).map(|t| Call::Daemon {
                    method: "io.apply",
                    // The sidecar serves every injected volume: the rule goes to the one the app
                    // mounts at `volumePath`.
                    params: json!({"target": t, "rules": [rule], "faultId": id, "mount": spec.volume_path}),
                    ttl: true,
                }),
            }
        });
        tasks.push(task(
            uid,
            pod,
            None,
            inject,
            Some(("io.recover", json!({"faultId": id}))),
        ));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_ids_are_stable_and_daemon_safe() {
        let a = fault_id("uid-1", "shop/cart-0");
        assert_eq!(a, fault_id("uid-1", "shop/cart-0"));
        assert_ne!(a, fault_id("uid-2", "shop/cart-0"));
        assert_ne!(a, fault_id("uid-1", "shop/cart-1"));
        assert!(a.len() <= 63);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }
}
