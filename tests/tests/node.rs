//! The node stand-in against the real API server: a registered Node, a pod bound to it and
//! reported Running with the container IDs the test chose, found the way a node agent finds
//! its pods (field selector on `spec.nodeName`).

use std::collections::BTreeMap;

use faultline_e2e::node::{NodeStandIn, PodReport};
use faultline_e2e::{setup, unique_name};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_stand_in_reports_a_pod_as_a_kubelet_would() {
    let Some(env) = setup("node_stand_in").await else {
        return;
    };
    let host = "127.0.0.1".parse().expect("ip");
    let node = NodeStandIn::register(&env.client, &unique_name("node"), host)
        .await
        .expect("register the node");
    let stored = Api::<Node>::all(env.client.clone())
        .get(&node.name)
        .await
        .expect("node");
    let ready = stored.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "initContainers": [
                {"name": "schema", "image": "busybox:1.36"},
                {"name": "sidecar", "image": "busybox:1.36", "restartPolicy": "Always"}
            ],
            "containers": [{"name": "db", "image": "postgres:16"}, {"name": "metrics", "image": "busybox:1.36"}]
        }
    }))
    .expect("pod");
    let pods = Api::<Pod>::namespaced(env.client.clone(), &env.namespace);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let db_id = format!("containerd://{}", "ab".repeat(32));
    let report = PodReport {
        pod_ip: "10.244.0.7".parse().expect("ip"),
        container_ids: BTreeMap::from([("db".to_owned(), db_id.clone())]),
    };
    let running = node
        .run_pod(&env.namespace, "db", &report)
        .await
        .expect("report the pod running");
    // Reporting again (already bound) changes nothing that matters.
    let running_again = node
        .run_pod(&env.namespace, "db", &report)
        .await
        .expect("report again");
    assert_eq!(
        running.spec.as_ref().and_then(|s| s.node_name.clone()),
        running_again
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
    );

    let spec = running.spec.expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
    let status = running.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.7"));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let containers = status.container_statuses.expect("container statuses");
    let db = containers
        .iter()
        .find(|c| c.name == "db")
        .expect("db status");
    assert_eq!(db.container_id.as_deref(), Some(db_id.as_str()));
    assert!(db.ready && db.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    let metrics = containers
        .iter()
        .find(|c| c.name == "metrics")
        .expect("metrics");
    assert!(
        metrics
            .container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://"))
    );
    let init = status.init_container_statuses.expect("init statuses");
    let schema = init.iter().find(|c| c.name == "schema").expect("schema");
    assert_eq!(
        schema
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(0)
    );
    let sidecar = init.iter().find(|c| c.name == "sidecar").expect("sidecar");
    assert!(
        sidecar
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .is_some()
    );

    // A node agent lists the pods of its node.
    let on_node = Api::<Pod>::all(env.client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", node.name)))
        .await
        .expect("list by node");
    let names: Vec<_> = on_node
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["db"]);
}
