//! The JSON-RPC contract of DESIGN.md §4 against the real binary, for what needs a mount or the
//! process: methods with faults seen by a client, WebSocket on the same port, /ready and
//! /metrics, the Unix socket and its mode, the loopback rule, logs. Params and error objects are
//! tested in-process, without FUSE (`src/rpc/tests.rs`).

mod common;

use common::Sidecar;
use serde_json::json;

#[test]
fn methods_generations_and_listing() {
    require_fuse!();
    let sc = Sidecar::start(21);
    assert_eq!(sc.call("rules.list", json!({}))["generation"], 0);
    let g = sc.set_rules(json!([
        {"id": "lat", "type": "latency", "path": "nope/**", "latency": "1ms"},
        {"type": "fault", "methods": ["mkdir"], "path": "blocked", "faults": [{"errno": 28}]},
    ]));
    assert_eq!(g, 1);
    let added = sc.call("rules.add", json!({"rule": {"id": "x", "type": "attrOverride", "path": "nothing", "attr": {"size": 1}}}));
    let mnt = sc.mnt.to_str().unwrap();
    assert_eq!(added, json!({"id": "x", "generation": 2, "mount": mnt}));
    assert_eq!(
        common::errno(std::fs::create_dir(sc.m("blocked"))),
        Some(libc::ENOSPC)
    );
    let list = sc.call("rules.list", json!({}));
    let rules = list["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0]["id"], "lat");
    assert_eq!(rules[1]["hits"], 1, "mkdir fault counted");
    assert_eq!(rules[1]["rule"]["type"], "fault");
    assert_eq!(
        sc.call("rules.remove", json!({"id": "x"})),
        json!({"generation": 3})
    );
    assert_eq!(sc.call("rules.clear", json!({})), json!({"generation": 4}));
    // An ordinary ENOENT of the source is an error, the injected ENOSPC is counted apart.
    assert!(std::fs::metadata(sc.m("absent")).is_err());
    let status = sc.call("status", json!({}));
    assert_eq!(status["generation"], 4);
    assert_eq!(status["mounted"], true);
    assert_eq!(status["mounts"][0]["source"], sc.source.to_str().unwrap());
    assert_eq!(
        status["mounts"][0]["name"], mnt,
        "an unnamed mount is named by its mountpoint"
    );
    assert_eq!(status["ops"]["mkdir"]["injected"], 1, "{status}");
    assert_eq!(status["ops"]["mkdir"]["errors"], 0, "{status}");
    assert!(
        status["ops"]["lookup"]["errors"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(status["ops"]["lookup"]["injected"], 0, "{status}");

    let logs = sc.logs();
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes when stderr is a file:\n{logs}"
    );
    assert!(
        logs.contains(&format!("addr={}", sc.addr)),
        "the address as an address:\n{logs}"
    );
    for needle in [
        "rule added rule=lat type=latency path=nope/**",
        "rule added rule=x type=attrOverride path=nothing",
        "rule removed rule=x type=attrOverride path=nothing hits=0 reason=rules.remove",
        "rule removed rule=lat type=latency path=nope/** hits=0 reason=rules.clear",
    ] {
        assert!(logs.contains(needle), "missing {needle:?} in\n{logs}");
    }
}

#[test]
fn websocket_on_the_same_port_and_round_trip() {
    require_fuse!();
    let sc = Sidecar::start(23);
    std::fs::write(sc.s("f"), b"x").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use jsonrpsee::core::client::ClientT;
        use jsonrpsee::core::params::ObjectParams;
        let ws = jsonrpsee::ws_client::WsClientBuilder::default()
            .build(format!("ws://{}/", sc.addr))
            .await
            .expect("websocket connect");
        let mut p = ObjectParams::new();
        p.insert(
            "rule",
            json!({"type": "fault", "path": "f", "methods": ["open"], "faults": [{"errno": 5}]}),
        )
        .unwrap();
        let r: serde_json::Value = ws.request("rules.add", p).await.expect("rules.add over ws");
        assert_eq!(r["generation"], 1);
        // Round trip: the next op sees the rule.
        assert_eq!(
            common::errno(std::fs::File::open(sc.m("f"))),
            Some(libc::EIO)
        );
        let r: serde_json::Value = ws
            .request("rules.clear", jsonrpsee::rpc_params![])
            .await
            .expect("rules.clear over ws");
        assert_eq!(r["generation"], 2);
    });
    assert!(std::fs::File::open(sc.m("f")).is_ok());
}

#[test]
fn ready_and_metrics_endpoints() {
    require_fuse!();
    let sc = Sidecar::start(24);
    let mnt = sc.mnt.to_str().unwrap();
    std::fs::write(sc.s("f"), b"x").unwrap();
    sc.set_rules(json!([{"id": "r", "type": "fault", "path": "f", "methods": ["open"], "faults": [{"errno": 5}]}]));
    let _ = std::fs::File::open(sc.m("f"));
    let (code, body) = common::http_get(sc.addr, "/ready").unwrap();
    assert_eq!((code, body.trim()), (200, "ready"));
    // An op is counted just after its reply is sent: the app may be back before that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let metrics = loop {
        let (code, metrics) = common::http_get(sc.addr, "/metrics").unwrap();
        assert_eq!(code, 200);
        if metrics.contains(&format!(
            "faultline_sidecar_op_injected_errors_total{{mount={mnt:?},op=\"open\"}} 1"
        )) || std::time::Instant::now() > deadline
        {
            break metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    for needle in [
        format!("faultline_sidecar_ops_total{{mount={mnt:?},op=\"open\"}}"),
        format!("faultline_sidecar_op_injected_errors_total{{mount={mnt:?},op=\"open\"}} 1"),
        format!(
            "faultline_sidecar_faults_injected_total{{mount={mnt:?},rule=\"r\",kind=\"fault\"}} 1"
        ),
        "faultline_sidecar_op_duration_seconds_bucket".into(),
        "faultline_sidecar_rules_generation 1".into(),
    ] {
        assert!(metrics.contains(&needle), "missing {needle} in\n{metrics}");
    }
}

#[test]
fn rules_file_unix_socket_and_metrics_listener() {
    require_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        json!({"rules": [{"id": "boot", "type": "fault", "path": "locked", "methods": ["open"], "faults": [{"errno": 13}]}]})
            .to_string(),
    )
    .unwrap();
    let sock = dir.path().join("rpc.sock");
    let metrics = common::free_port();
    // Whoever can connect controls the faults: the socket is the owner's alone.
    let sc = Sidecar::start_with(
        25,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--rpc-socket",
            sock.to_str().unwrap(),
            "--metrics-listen",
            &metrics.to_string(),
        ],
    );
    std::fs::write(sc.s("locked"), b"x").unwrap();
    assert_eq!(
        common::errno(std::fs::File::open(sc.m("locked"))),
        Some(libc::EACCES),
        "initial rules applied"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o7777, 0o600);

    // The same JSON-RPC service on the Unix socket.
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect unix socket");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "rules.list"}).to_string();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["result"]["rules"][0]["id"], "boot");
    assert_eq!(v["result"]["rules"][0]["hits"], 1);

    let (code, text) = common::http_get(metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        text.contains(&format!(
            "faultline_sidecar_faults_injected_total{{mount={:?},rule=\"boot\",kind=\"fault\"}} 1",
            sc.mnt.display().to_string()
        )),
        "{text}"
    );
    assert_eq!(common::http_get(metrics, "/").unwrap().0, 404);
}

#[test]
fn socket_mode_is_configurable() {
    require_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("rpc.sock");
    let _sc = Sidecar::start_with(
        26,
        &[
            "--rpc-socket",
            sock.to_str().unwrap(),
            "--rpc-socket-mode",
            "0660",
        ],
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o7777, 0o660);
}

#[test]
fn rpc_listen_resolves_names() {
    require_fuse!();
    let sc = Sidecar::start_on(27, Some("localhost"), &[]);
    assert_eq!(sc.call("rules.list", json!({}))["generation"], 0);
}

/// No FUSE needed: the address is checked before anything is mounted.
#[test]
fn a_non_loopback_rpc_listen_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(common::bin())
            .arg("--source")
            .arg(dir.path())
            .arg("--mountpoint")
            .arg(dir.path().join("no-such-mountpoint"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--rpc-listen", "0.0.0.0:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--rpc-listen 0.0.0.0:1 is not a loopback address")
            && err.contains("fault control must not be reachable from the network")
            && err.contains("--rpc-listen-allow-non-loopback"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    let out = run(&["--rpc-socket-mode", "rw"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be octal digits"), "{err}");
}
