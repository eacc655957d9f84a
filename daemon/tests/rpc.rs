//! The RPC contract on a real daemon process: strict params, errors that name the target and
//! the reason, and a daemon that keeps serving after each of them. No root needed.

mod common;

use common::{Daemon, Options, binary};
use serde_json::json;

#[tokio::test]
async fn bad_calls_get_clear_errors_and_the_daemon_keeps_serving() {
    let d = Daemon::start(Options::default()).await;

    let err = d.call("container.explode", json!({})).await.unwrap_err();
    assert_eq!(err["code"], -32601);
    assert!(
        err["message"].as_str().unwrap().contains("container.kill"),
        "{err}"
    );

    // A misspelled field is named, never ignored.
    let err = d
        .call(
            "container.kill",
            json!({"target": {"pid": 1}, "signl": "SIGTERM"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(err["message"].as_str().unwrap().contains("signl"), "{err}");

    let err = d
        .call(
            "container.kill",
            json!({"target": {"pid": 1}, "signal": "SIGKILLL"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);
    assert_eq!(err["data"]["field"], "signal");

    // A dead pid: -32001 naming the process.
    let err = d
        .call("container.pid", json!({"target": {"pid": 4_000_000}}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32001, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("process 4000000"),
        "{err}"
    );

    // Another runtime's scheme names what is supported.
    let err = d
        .call(
            "container.pid",
            json!({"target": {"containerId": "docker://abc"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("containerd://"),
        "{err}"
    );

    // No containerd: -32002 naming the socket, and the daemon still answers.
    let err = d
        .call(
            "container.kill",
            json!({"target": {"containerId": "containerd://abc"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32002, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no-containerd.sock"),
        "{err}"
    );

    let err = d
        .call("stress.stop", json!({"faultId": "stress-0000"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32004, "{err}");

    let err = d
        .call(
            "io.apply",
            json!({"target": {"pid": 1}, "rules": [{"type": "latency"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    assert!(
        err["data"]["field"]
            .as_str()
            .unwrap()
            .starts_with("rules[0]"),
        "{err}"
    );

    let err = d
        .call("faults.list", json!({"all": true}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);

    assert_eq!(d.ok("faults.list", json!({})).await, json!({"faults": []}));
    let caps = d.ok("capabilities", json!([])).await;
    assert_eq!(caps["version"], env!("CARGO_PKG_VERSION"));
    assert!(caps["runtime"].is_null(), "{caps}");
    assert!(["v1", "v2", "hybrid"].contains(&caps["cgroup"].as_str().unwrap()));
    assert!(caps["qdiscs"]["tbf"].is_boolean() && caps["qdiscs"]["netem"].is_boolean());

    let metrics = d.metrics_text().await;
    assert!(
        metrics.contains(
            "faultline_daemon_rpc_calls_total{method=\"container.pid\",outcome=\"error\"}"
        ),
        "{metrics}"
    );
}

#[test]
fn insecure_listen_is_refused_off_loopback_and_listen_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(binary())
        .args(["--insecure-listen", "0.0.0.0:31767", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let out = std::process::Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--client-ca"), "{stderr}");

    let out = std::process::Command::new(binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--state-dir"));
}

/// One daemon per state dir: a second one refuses to start instead of recovering the first
/// one's faults under it.
#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let d = Daemon::start(Options::default()).await;
    let out = std::process::Command::new(binary())
        .args(["--insecure-listen", "127.0.0.1:0", "--state-dir"])
        .arg(&d.state_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another faultline-daemon"), "{stderr}");
}
