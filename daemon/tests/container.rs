//! Container targets through a real containerd (started by the test, with its own root, state
//! and socket): pid resolution, kill through the task API, and the errors when the container
//! or containerd is not there.

mod common;

use std::time::Duration;

use common::Daemon;
use faultline_e2e::containerd::{Containerd, start_or_skip};
use faultline_e2e::unique_name;
use serde_json::json;

async fn daemon_for(c: &Containerd) -> (Daemon, tempfile::TempDir) {
    let (opts, link) = common::containerd_options(c);
    (Daemon::start(opts).await, link)
}

#[tokio::test]
async fn pid_and_kill_through_containerd() {
    let Some(c) = start_or_skip("pid_and_kill_through_containerd") else {
        return;
    };
    let (d, _link) = daemon_for(&c).await;
    let caps = d.ok("capabilities", json!({})).await;
    assert_eq!(caps["runtime"]["kind"], "containerd", "{caps}");
    assert!(
        caps["runtime"]["version"]
            .as_str()
            .unwrap()
            .starts_with('1')
            || caps["runtime"]["version"]
                .as_str()
                .unwrap()
                .starts_with('2')
    );

    let killed = c.run(&unique_name("kill"), &["sleep", "1000"]).unwrap();
    let pid = d
        .ok(
            "container.pid",
            json!({"target": {"containerId": killed.container_id()}}),
        )
        .await;
    assert_eq!(pid["pid"], killed.pid(), "the task's init process");

    // Default signal: SIGKILL.
    d.ok(
        "container.kill",
        json!({"target": {"containerId": killed.container_id()}}),
    )
    .await;
    killed.wait_exited(Duration::from_secs(10)).unwrap();

    // A signal by name; sh as pid 1 ignores SIGTERM unless it traps it, so use a trap.
    let termed = c
        .run(
            &unique_name("term"),
            &["sh", "-c", "trap 'exit 7' TERM; while :; do sleep 1; done"],
        )
        .unwrap();
    d.ok(
        "container.kill",
        json!({"target": {"containerId": termed.container_id()}, "signal": "SIGTERM"}),
    )
    .await;
    termed.wait_exited(Duration::from_secs(10)).unwrap();

    // A container that does not exist: -32001 naming it.
    let err = d
        .call(
            "container.kill",
            json!({"target": {"containerId": "containerd://no-such-container"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32001, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no-such-container"),
        "{err}"
    );
    // A stopped container has no process to name.
    let err = d
        .call(
            "container.pid",
            json!({"target": {"containerId": killed.container_id()}}),
        )
        .await
        .unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains(&killed.id),
        "{err}"
    );
}

#[tokio::test]
async fn a_containerd_that_goes_down_is_an_error_not_a_hang() {
    let Some(c) = start_or_skip("a_containerd_that_goes_down_is_an_error_not_a_hang") else {
        return;
    };
    let (d, _link) = daemon_for(&c).await;
    let alive = c.run(&unique_name("down"), &["sleep", "1000"]).unwrap();
    let target = json!({"target": {"containerId": alive.container_id()}});
    d.ok("container.pid", target.clone()).await;
    drop(c);
    let started = std::time::Instant::now();
    let err = d.call("container.pid", target).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(err["code"], -32002, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("containerd.sock"),
        "{err}"
    );
    // Still serving.
    d.ok("faults.list", json!({})).await;
}
