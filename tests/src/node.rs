//! A node stand-in: there is no kubelet here, so this registers a `Node` and reports a pod's
//! status the way a kubelet would — and nothing else.
//!
//! It plays **only the kubelet's reporting role**, through the same API calls a kubelet makes
//! (Node create + `nodes/status`, `pods/binding` as the scheduler would, `pods/status`). It runs
//! no container, mounts nothing, and never stands in for a part of Faultline: the daemon, the
//! controller and the webhook under test are always the real ones. The container IDs it reports
//! are the ones the test chooses (e.g. of real containerd containers a daemon test started), so
//! code that reads pod status sees what it would see on a real node.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// What the stand-in reports for one pod.
#[derive(Debug, Clone)]
pub struct PodReport {
    /// `status.podIP` (and `podIPs`).
    pub pod_ip: IpAddr,
    /// `containerID` per container or init container name, e.g. `containerd://<64 hex>`.
    /// A container without an entry gets `containerd://<pod uid prefix>-<name>`.
    pub container_ids: BTreeMap<String, String>,
}

/// A registered Node whose "kubelet" is this struct.
#[derive(Clone)]
pub struct NodeStandIn {
    client: Client,
    /// The Node's name.
    pub name: String,
    /// Its `InternalIP`, reported as every pod's `hostIP`.
    pub ip: IpAddr,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl NodeStandIn {
    /// Creates Node `name` and reports it Ready, with address `ip`, as a kubelet does at start.
    pub async fn register(client: &Client, name: &str, ip: IpAddr) -> Result<Self, kube::Error> {
        let nodes = Api::<Node>::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
            }
        }))
        .map_err(kube::Error::SerdeError)?;
        nodes.create(&PostParams::default(), &node).await?;
        let time = now();
        let status = json!({"status": {
            "addresses": [
                {"type": "InternalIP", "address": ip.to_string()},
                {"type": "Hostname", "address": name}
            ],
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "faultline-e2e node stand-in (reports status only)",
                "lastHeartbeatTime": time, "lastTransitionTime": time
            }],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "faultline-e2e node stand-in",
                "containerRuntimeVersion": "containerd://stand-in",
                "kubeletVersion": "v0.0.0-stand-in", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": std::env::consts::ARCH
            }
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(Self {
            client: client.clone(),
            name: name.to_owned(),
            ip,
        })
    }

    /// Binds pod `namespace/name` to this node (as the scheduler would, unless it is bound
    /// already) and reports it Running with `report`'s IP and container IDs, every container
    /// ready and started. Returns the pod as the API server stored it.
    pub async fn run_pod(
        &self,
        namespace: &str,
        name: &str,
        report: &PodReport,
    ) -> Result<Pod, kube::Error> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let pod = pods.get(name).await?;
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
        {
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}
            });
            let _: Value = pods
                .create_subresource("binding", name, &PostParams::default(), &binding)
                .await?;
        }
        let pod = pods.get(name).await?;
        let status = self.running_status(&pod, report);
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
    }

    fn running_status(&self, pod: &Pod, report: &PodReport) -> Value {
        let time = now();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let id = |container: &str| {
            report
                .container_ids
                .get(container)
                .cloned()
                .unwrap_or_else(|| format!("containerd://{}-{container}", &uid[..uid.len().min(8)]))
        };
        let running = |c: &k8s_openapi::api::core::v1::Container| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "containerID": id(&c.name),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": time}}
            })
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let containers: Vec<Value> = spec.containers.iter().map(running).collect();
        // Native sidecars (restartPolicy: Always) keep running; other init containers ran to
        // completion before the app containers started.
        let init: Vec<Value> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                if c.restart_policy.as_deref() == Some("Always") {
                    running(c)
                } else {
                    json!({
                        "name": c.name,
                        "image": c.image.clone().unwrap_or_default(),
                        "imageID": "",
                        "containerID": id(&c.name),
                        "ready": true, "started": false, "restartCount": 0,
                        "state": {"terminated": {
                            "exitCode": 0, "reason": "Completed",
                            "startedAt": time, "finishedAt": time,
                            "containerID": id(&c.name)
                        }}
                    })
                }
            })
            .collect();
        let condition =
            |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": time});
        json!({"status": {
            "phase": "Running",
            "hostIP": self.ip.to_string(),
            "hostIPs": [{"ip": self.ip.to_string()}],
            "podIP": report.pod_ip.to_string(),
            "podIPs": [{"ip": report.pod_ip.to_string()}],
            "startTime": time,
            "conditions": [
                condition("PodScheduled"), condition("Initialized"),
                condition("ContainersReady"), condition("Ready")
            ],
            "containerStatuses": containers,
            "initContainerStatuses": init,
        }})
    }
}
