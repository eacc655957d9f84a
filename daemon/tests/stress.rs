//! Real stress-ng in a real container's cgroups: the container's CPU usage rises during the
//! fault and falls after; every stress-ng process sits in the container's cgroups; none is
//! left after stop, after a ttl, or after the daemon is killed and restarted.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, eventually};
use faultline_e2e::containerd::{cgroup_cpu_usage_ns, start_or_skip};
use faultline_e2e::unique_name;
use serde_json::{Value, json};

/// Processes carrying the fault's mark.
fn marked(fault_id: &str) -> Vec<u32> {
    let wanted = format!("FAULTLINE_FAULT_ID={fault_id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .collect()
}

/// CPU time the cgroup of `pid` used over `window`.
async fn cpu_over(pid: u32, window: Duration) -> Duration {
    let before = cgroup_cpu_usage_ns(pid).unwrap();
    tokio::time::sleep(window).await;
    Duration::from_nanos(cgroup_cpu_usage_ns(pid).unwrap() - before)
}

fn fault_id(v: &Value) -> String {
    v["faultId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn stress_counts_against_the_target_cgroup_and_leaves_nothing() {
    let Some(c) = start_or_skip("stress_counts_against_the_target_cgroup_and_leaves_nothing")
    else {
        return;
    };
    let (opts, _link) = common::containerd_options(&c);
    let mut d = Daemon::start(opts).await;
    let app = c.run(&unique_name("stress"), &["sleep", "1000"]).unwrap();
    let target = json!({"containerId": app.container_id()});
    let idle = cpu_over(app.pid(), Duration::from_millis(500)).await;

    let started = Instant::now();
    let id = fault_id(
        &d.ok(
            "stress.start",
            json!({"target": target, "stressors": {"cpu": {"workers": 1, "load": 100}}}),
        )
        .await,
    );
    eprintln!("stress.start answered in {:?}", started.elapsed());
    // One worker at 100 %: at least a quarter of a CPU even on this shared 2-core machine
    // under a parallel build, and far above the idle container.
    let busy = cpu_over(app.pid(), Duration::from_secs(2)).await;
    assert!(
        busy > Duration::from_millis(500) && busy > idle * 10 + Duration::from_millis(100),
        "the container's cgroup should burn CPU: {busy:?} in 2 s (idle {idle:?} in 0.5 s)"
    );
    // Every process of the fault is in the container's cgroups (cpu and memory included).
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", app.pid())).unwrap();
    let pids = marked(&id);
    assert!(!pids.is_empty());
    for pid in &pids {
        let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if !theirs.is_empty() {
            assert_eq!(
                theirs, own,
                "stress-ng {pid} is not in the target's cgroups"
            );
        }
    }
    let listed = d.ok("faults.list", json!({})).await;
    assert_eq!(listed["faults"][0]["kind"], "stress", "{listed}");
    assert_eq!(d.journal().len(), 1);

    d.ok("stress.stop", json!({"faultId": id})).await;
    assert!(marked(&id).is_empty(), "stress-ng left after stop");
    let after = cpu_over(app.pid(), Duration::from_millis(500)).await;
    assert!(
        after < Duration::from_millis(100),
        "CPU after stop: {after:?}"
    );
    assert!(d.journal().is_empty());
    assert_eq!(d.ok("faults.list", json!({})).await, json!({"faults": []}));

    // A ttl: the daemon stops it by itself.
    let id = fault_id(
        &d.ok(
            "stress.start",
            json!({"target": target, "stressors": {"cpu": {"workers": 1}}, "ttl": "1s"}),
        )
        .await,
    );
    assert!(!marked(&id).is_empty());
    eventually("the ttl recovers the fault", Duration::from_secs(5), || {
        marked(&id).is_empty() && d.journal().is_empty()
    })
    .await;
    assert!(d.metrics_text().await.contains("reason=\"ttl\""));

    // Raw stress-ng arguments are arguments, never a shell line.
    let err = d
        .call(
            "stress.start",
            json!({"target": target, "stressngStressors": "--cpu 1; touch /tmp/pwned"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    assert!(d.journal().is_empty(), "a refused start journals nothing");

    // SIGTERM recovers every fault before the daemon exits.
    let id = fault_id(
        &d.ok(
            "stress.start",
            json!({"target": target, "stressngStressors": "--cpu 1 --cpu-load 50"}),
        )
        .await,
    );
    assert!(!marked(&id).is_empty());
    assert!(d.terminate().success());
    assert!(marked(&id).is_empty(), "stress-ng left after SIGTERM");
    assert!(d.journal().is_empty());
}

#[tokio::test]
async fn a_pid_target_without_kubernetes() {
    if !common::root_or_skip("a_pid_target_without_kubernetes") {
        return;
    }
    let d = Daemon::start(Default::default()).await;
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let id = fault_id(
        &d.ok(
            "stress.start",
            json!({"target": {"pid": sleeper.id()}, "stressors": {"memory": {"workers": 1, "size": "16MiB"}}}),
        )
        .await,
    );
    assert!(!marked(&id).is_empty());
    d.ok("faults.recoverAll", json!({})).await;
    assert!(marked(&id).is_empty());

    // A client-chosen id: applying again renews the ttl instead of starting a second stress.
    let params = |ttl: &str| json!({"target": {"pid": sleeper.id()}, "stressors": {"cpu": {"workers": 1}}, "ttl": ttl, "faultId": "exp-7f3a-target-1"});
    let first = fault_id(&d.ok("stress.start", params("2s")).await);
    assert_eq!(first, "exp-7f3a-target-1");
    let running = marked(&first).len();
    let expires = |list: &Value| list["faults"][0]["expiresAt"].as_str().unwrap().to_owned();
    let before = expires(&d.ok("faults.list", json!({})).await);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(fault_id(&d.ok("stress.start", params("2s")).await), first);
    assert_eq!(marked(&first).len(), running, "renewed, not started twice");
    let listed = d.ok("faults.list", json!({})).await;
    assert_eq!(listed["faults"].as_array().unwrap().len(), 1);
    assert!(expires(&listed) > before, "the ttl moved: {listed}");
    // The first ttl (2 s after the first call) has passed; the renewed one has not.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert!(!marked(&first).is_empty(), "the renewed ttl holds");
    // Recovery kills stress-ng, then removes the journal entry (fsync'd): wait for both.
    let state = d.state_dir.clone();
    d.eventually(
        "the renewed ttl ends the fault",
        Duration::from_secs(5),
        || marked(&first).is_empty() && common::journal_files(&state).is_empty(),
    )
    .await;
    let err = d
        .call(
            "stress.start",
            json!({"target": {"pid": sleeper.id()}, "stressors": {"cpu": {"workers": 1}}, "faultId": "Bad/Id"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["data"]["field"], "faultId", "{err}");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // The target is gone: a clear error, nothing journaled.
    let err = d
        .call(
            "stress.start",
            json!({"target": {"pid": sleeper.id()}, "stressors": {"cpu": {"workers": 1}}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32001, "{err}");
    assert!(d.journal().is_empty(), "{:?}\n{}", d.journal(), d.log());
}
