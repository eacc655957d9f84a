//! The controller against the real API server, a real daemon and real containers: an
//! experiment is selected, injected, timed, recorded and recovered; pause, policy halt,
//! deletion mid-run, a daemon that is down and comes back, and one-shot container kills.

mod common;

use std::time::Duration;

use common::{World, condition, stress_processes};
use faultline_controller::plan::fault_id;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap().to_owned()
}

fn phase(obj: &Value) -> &str {
    obj["status"]["phase"].as_str().unwrap_or("")
}

#[tokio::test]
async fn stress_runs_for_its_duration_and_is_recovered() {
    let Some(w) = World::start("ctl-stress").await else {
        return;
    };
    w.sleeping_pod("cart-0", "cart").await;
    let obj = w.cpu_burn("burn", "6s").await;
    assert!(
        obj["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "chaos.faultline.dev/recover")
    );
    assert!(condition(&obj, "Selected"));
    assert_eq!(
        obj["status"]["records"][0]["id"],
        format!("{}/cart-0/app", w.env.namespace)
    );
    let id = fault_id(&uid(&obj), &format!("{}/cart-0/app", w.env.namespace));
    assert!(
        stress_processes(&id) > 0,
        "stress-ng runs in the container's cgroups"
    );
    // The duration ends: recovered by the controller, stress-ng gone.
    let obj = w
        .until_condition(
            "StressChaos",
            "burn",
            "AllRecovered",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(phase(&obj), "Finished");
    assert_eq!(stress_processes(&id), 0);
    // Deleting a finished experiment removes the finalizer at once.
    w.delete_until_gone("StressChaos", "burn", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn pause_resume_halt_and_delete_mid_run() {
    let Some(w) = World::start("ctl-pause").await else {
        return;
    };
    w.sleeping_pod("cart-1", "cart").await;
    w.create(
        "StressChaos",
        "long",
        json!({"mode": "one", "selector": {"labelSelectors": {"app": "cart"}}, "stressors": {"cpu": {"workers": 1}}}),
        json!({}),
    )
    .await;
    let obj = w
        .until_condition(
            "StressChaos",
            "long",
            "AllInjected",
            Duration::from_secs(30),
        )
        .await;
    let id = fault_id(&uid(&obj), &format!("{}/cart-1/app", w.env.namespace));
    assert!(stress_processes(&id) > 0);
    let api = w.api("StressChaos");
    let annotate = |v: Value| json!({"metadata": {"annotations": {"faultline.dev/pause": v}}});

    // Pause: recovered, Paused.
    api.patch(
        "long",
        &PatchParams::default(),
        &Patch::Merge(&annotate(json!("true"))),
    )
    .await
    .unwrap();
    w.until(
        "StressChaos",
        "long",
        "Paused",
        Duration::from_secs(20),
        |o| condition(o, "Paused") && phase(o) == "Paused",
    )
    .await;
    assert_eq!(stress_processes(&id), 0);
    // Resume: injected again.
    api.patch(
        "long",
        &PatchParams::default(),
        &Patch::Merge(&annotate(Value::Null)),
    )
    .await
    .unwrap();
    w.until(
        "StressChaos",
        "long",
        "re-injected",
        Duration::from_secs(20),
        |o| condition(o, "AllInjected") && !condition(o, "Paused"),
    )
    .await;
    assert!(stress_processes(&id) > 0);

    // The policy's halt recovers it within seconds; lifting it re-injects.
    let policy = std::fs::read_to_string(&w.policy).unwrap();
    std::fs::write(&w.policy, format!("{policy}halt: true\n")).unwrap();
    w.until(
        "StressChaos",
        "long",
        "halted",
        Duration::from_secs(10),
        |o| phase(o) == "Paused",
    )
    .await;
    assert_eq!(stress_processes(&id), 0);
    std::fs::write(&w.policy, &policy).unwrap();
    w.until(
        "StressChaos",
        "long",
        "running after halt",
        Duration::from_secs(20),
        |o| phase(o) == "Running" && condition(o, "AllInjected"),
    )
    .await;
    assert!(stress_processes(&id) > 0);

    // Its namespace protected by the policy since: halted the same way, and told.
    let ns = &w.env.namespace;
    std::fs::write(&w.policy, format!("{policy}protectedNamespaces: [{ns}]\n")).unwrap();
    let halted = w
        .until(
            "StressChaos",
            "long",
            "halted by protection",
            Duration::from_secs(10),
            |o| phase(o) == "Paused",
        )
        .await;
    assert_eq!(stress_processes(&id), 0);
    assert_eq!(halted["status"]["records"][0]["phase"], "Recovered");
    let events = w.events_of("long").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "ProtectedNamespace" && note.contains(ns.as_str())),
        "{events:?}"
    );
    std::fs::write(&w.policy, &policy).unwrap();
    w.until(
        "StressChaos",
        "long",
        "running after protection",
        Duration::from_secs(20),
        |o| phase(o) == "Running" && condition(o, "AllInjected"),
    )
    .await;
    assert!(stress_processes(&id) > 0);

    // Delete mid-run: recovered, then the finalizer goes.
    w.delete_until_gone("StressChaos", "long", Duration::from_secs(20))
        .await;
    assert_eq!(stress_processes(&id), 0);
}

#[tokio::test]
async fn a_daemon_that_is_down_is_retried_and_a_container_kill_is_one_shot() {
    let Some(mut w) = World::start("ctl-daemon").await else {
        return;
    };
    let c = w.sleeping_pod("cart-2", "cart").await;
    w.stop_daemon();
    w.create(
        "PodChaos",
        "kill",
        json!({"action": "container-kill", "mode": "one", "containerNames": ["app"],
               "selector": {"labelSelectors": {"app": "cart"}}}),
        json!({}),
    )
    .await;
    let obj = w
        .until(
            "PodChaos",
            "kill",
            "a failed record",
            Duration::from_secs(30),
            |o| o["status"]["records"][0]["phase"] == "Failed",
        )
        .await;
    let message = obj["status"]["records"][0]["message"]
        .as_str()
        .unwrap_or("");
    assert!(message.contains("unreachable"), "{obj:#}");
    assert!(c.is_running(), "nothing killed while the daemon is down");
    // The daemon comes back: the retry kills the container, once.
    w.start_daemon().await;
    w.until(
        "PodChaos",
        "kill",
        "Finished",
        Duration::from_secs(30),
        |o| phase(o) == "Finished",
    )
    .await;
    c.wait_exited(Duration::from_secs(10)).unwrap();
    w.delete_until_gone("PodChaos", "kill", Duration::from_secs(20))
        .await;
}

#[tokio::test]
async fn a_restarted_controller_keeps_its_targets_and_injects_nothing_twice() {
    let Some(mut w) = World::start("ctl-restart").await else {
        return;
    };
    w.sleeping_pod("cart-3", "cart").await;
    let obj = w.cpu_burn("steady", "25s").await;
    let id = fault_id(&uid(&obj), &format!("{}/cart-3/app", w.env.namespace));
    let running = stress_processes(&id);
    assert!(running > 0);
    w.stop_controller();
    w.start_controller().await;
    // The new controller acts (renews) on the same fault: never a second stress-ng.
    w.until(
        "StressChaos",
        "steady",
        "re-reconciled by the new controller",
        Duration::from_secs(40),
        |o| {
            o["status"]["phase"] == "Running"
                && w.leaders() == 1
                && w.log_of(1).contains("leading: reconciling")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stress_processes(&id), running, "no double injection");
    w.until_condition(
        "StressChaos",
        "steady",
        "AllRecovered",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(stress_processes(&id), 0);
}

#[tokio::test]
async fn two_replicas_only_the_leader_acts_and_the_other_takes_over() {
    let Some(mut w) = World::start("ctl-replicas").await else {
        return;
    };
    w.start_controller().await;
    let c = w.sleeping_pod("cart-4", "cart").await;
    w.cpu_burn("first", "5m").await;
    assert_eq!(
        w.leaders(),
        1,
        "exactly one replica leads:\n{}",
        w.controller_log()
    );
    // The leader dies without releasing the Lease: the other takes over when it expires.
    w.kill_leader();
    w.create(
        "PodChaos",
        "after",
        json!({"action": "container-kill", "mode": "one", "containerNames": ["app"],
               "selector": {"labelSelectors": {"app": "cart"}}}),
        json!({}),
    )
    .await;
    w.until(
        "PodChaos",
        "after",
        "done by the new leader",
        Duration::from_secs(60),
        |o| o["status"]["phase"] == "Finished",
    )
    .await;
    assert_eq!(w.leaders(), 1);
    c.wait_exited(Duration::from_secs(10)).unwrap();
    w.delete_until_gone("StressChaos", "first", Duration::from_secs(30))
        .await;
}
