//! A daemon killed with SIGKILL while faults are applied: started again on the same state dir,
//! it recovers every journaled fault (stress-ng killed, pod images restored) within 2 s, and a
//! corrupt journal entry is reported and set aside, never a crash.

mod common;

use std::time::{Duration, Instant};

use common::Daemon;
use faultline_e2e::containerd::start_or_skip;
use faultline_e2e::unique_name;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

fn stress_processes(fault_id: &str) -> usize {
    let wanted = format!("FAULTLINE_FAULT_ID={fault_id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .count()
}

fn images(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.image.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn kill_9_with_stress_and_pod_failure_applied_then_restart_recovers_both() {
    let Some(c) = start_or_skip("kill_9_with_stress_and_pod_failure") else {
        return;
    };
    let Some(env) = faultline_e2e::setup("daemon-crash").await else {
        return;
    };
    let (mut opts, _link) = common::containerd_options(&c);
    opts.kubeconfig = Some(env.kubeconfig.clone());
    let mut d = Daemon::start(opts).await;

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "cart-0"},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [{"name": "app", "image": "shop/cart:7"}]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let real = images(&pods.get("cart-0").await.unwrap());

    let app = c.run(&unique_name("crash"), &["sleep", "1000"]).unwrap();
    let stress = d
        .ok(
            "stress.start",
            json!({"target": {"containerId": app.container_id()}, "stressors": {"cpu": {"workers": 1}}}),
        )
        .await;
    let stress_id = stress["faultId"].as_str().unwrap().to_owned();
    d.ok(
        "podFailure.apply",
        json!({"namespace": env.namespace, "pod": "cart-0", "pauseImage": "pause:crash"}),
    )
    .await;
    assert_eq!(
        images(&pods.get("cart-0").await.unwrap()),
        ["pause:crash"; 2]
    );
    assert!(stress_processes(&stress_id) > 0);
    assert_eq!(d.journal().len(), 2);

    d.kill9();
    // The crash leaves the faults in place: stress-ng runs on, the pod stays failed.
    assert!(stress_processes(&stress_id) > 0);

    // A corrupt entry beside them is reported and set aside.
    std::fs::write(
        d.state_dir.join("journal/stress-badbadbadbadbadba.json"),
        b"{\"version\": 1,",
    )
    .unwrap();

    let restarted = Instant::now();
    d.restart().await;
    let journal_dir = d.state_dir.clone();
    d.eventually(
        "both faults recovered after the restart",
        Duration::from_secs(2),
        || stress_processes(&stress_id) == 0 && common::journal_files(&journal_dir).is_empty(),
    )
    .await;
    assert_eq!(images(&pods.get("cart-0").await.unwrap()), real);
    eprintln!(
        "recovered {:?} after the restart began",
        restarted.elapsed()
    );
    assert!(restarted.elapsed() < Duration::from_secs(2) + Duration::from_millis(500));

    let log = d.log();
    assert!(log.contains("journal entry unreadable"), "{log}");
    assert!(
        d.state_dir
            .join("journal/stress-badbadbadbadbadba.json.corrupt")
            .exists()
    );
    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains("faultline_daemon_journal_unreadable_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"startup\""), "{metrics}");
    assert_eq!(d.ok("faults.list", json!({})).await, json!({"faults": []}));
}
