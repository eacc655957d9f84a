//! The JSON-RPC contract in-process: the real server on a loopback port, with rules and metrics
//! but no FUSE mount (so these run anywhere, without root). Mount-dependent parts stay in
//! `tests/rpc.rs`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use faultline_api::rpc::sidecar::AppPath;

use super::{Listeners, RpcServer, start};
use crate::app::App;
use crate::client::{Client, ClientError};
use crate::delay::Shutdown;
use crate::metrics::Metrics;
use crate::rules::{RuleStore, Sequence};
use crate::volume::Volume;

struct Served {
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    server: Option<RpcServer>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// One unnamed mount, as `--source DIR --mountpoint DIR` makes.
    fn new() -> Self {
        Self::with_mounts(&[(None, &[])])
    }

    /// Mounts named as given (`None`: unnamed), each with its app paths (`path` or
    /// `path:subPath`), under `<tmp>/mnt/<i>`.
    fn with_mounts(mounts: &[(Option<&str>, &[&str])]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = Arc::new(Metrics::new());
        let sequence = Arc::new(Sequence::default());
        let volumes = mounts
            .iter()
            .enumerate()
            .map(|(i, (name, app))| {
                let mountpoint = dir.path().join("mnt").join(i.to_string());
                let name = name.map_or_else(|| mountpoint.display().to_string(), str::to_owned);
                let mount_metrics = Arc::new(metrics.mount(&name));
                let rules = Arc::new(RuleStore::new(
                    &name,
                    Some(1),
                    mount_metrics.clone(),
                    sequence.clone(),
                ));
                let app_paths = app
                    .iter()
                    .map(|p| match p.split_once(':') {
                        Some((path, sub)) => AppPath {
                            path: path.into(),
                            sub_path: Some(sub.into()),
                        },
                        None => AppPath {
                            path: p.into(),
                            sub_path: None,
                        },
                    })
                    .collect();
                Arc::new(Volume::new(
                    name,
                    dir.path().join("src"),
                    mountpoint,
                    app_paths,
                    rules,
                    mount_metrics,
                ))
            })
            .collect();
        let app = Arc::new(App::new(
            volumes,
            metrics,
            sequence,
            Arc::new(Shutdown::default()),
        ));
        let listeners = Listeners::bind(Some("127.0.0.1:0"), false, None).expect("bind");
        let addr = listeners.tcp[0].local_addr().expect("local addr");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(start(app, listeners)).expect("start");
        Served {
            addr,
            rt,
            server: Some(server),
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::tcp(&self.addr.to_string(), Duration::from_secs(5))
    }

    fn call(&self, method: &str, params: Value) -> Value {
        self.client()
            .call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// The error object of a refused call: (code, message, data).
    fn refused(&self, method: &str, params: Value) -> (i64, String, Value) {
        match self.client().call(method, params.clone()) {
            Err(ClientError::Rpc {
                code,
                message,
                data,
            }) => (code, message, data.unwrap_or(Value::Null)),
            other => panic!("{method} {params}: expected a refusal, got {other:?}"),
        }
    }

    /// POSTs `body` as is; the parsed JSON answer.
    fn post_raw(&self, body: &str) -> Value {
        let mut s = std::net::TcpStream::connect(self.addr).expect("connect");
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let body = out.split_once("\r\n\r\n").map_or("", |x| x.1);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{out:?}: {e}"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.stop());
        }
    }
}

fn fields(data: &Value) -> Vec<String> {
    data["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|x| x["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_misspelled_field_is_refused_not_dropped() {
    let s = Served::new();
    let (code, message, data) = s.refused(
        "rules.add",
        json!({"rule": {"type": "fault", "pth": "logs/**", "faults": [{"errno": 5}]}}),
    );
    assert_eq!(code, -32602);
    assert_eq!(
        message,
        "invalid params: rule.pth: unknown field (accepted: id, type, path, methods, percent, \
         latency, faults, attr, mistake, ttl)"
    );
    assert_eq!(data["field"], "rule.pth");
    assert_eq!(data["violations"][0]["rule"], "unknown-field");
    // Nested objects too, all at once.
    let (_, _, data) = s.refused(
        "rules.set",
        json!({"rules": [
            {"type": "fault", "faults": [{"errno": 5, "wieght": 2}]},
            {"type": "attrOverride", "attr": {"size": 1, "mtime": {"sec": 1, "nsecs": 0}}},
            {"type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1, "len": 2}},
        ]}),
    );
    assert_eq!(
        fields(&data),
        [
            "rules[0].faults[0].wieght",
            "rules[1].attr.mtime.nsecs",
            "rules[2].mistake.len"
        ]
    );
    // And in params.
    let (code, message, _) = s.refused("rules.set", json!({"rules": [], "dryRun": true}));
    assert_eq!(code, -32602);
    assert_eq!(
        message,
        "invalid params: dryRun: unknown field (accepted: rules, mount)"
    );
    let (_, message, _) = s.refused("rules.clear", json!({"force": true}));
    assert_eq!(
        message,
        "invalid params: force: unknown field (accepted: mount)"
    );
    assert_eq!(
        s.call("rules.list", json!({}))["generation"],
        0,
        "refused changes change nothing"
    );
}

#[test]
fn every_violation_in_words_with_its_path() {
    let s = Served::new();
    let cases = [
        (
            "rules.set",
            json!({"rules": [{"type": "latency", "latency": "5ms"}, {"type": "latency", "latency": "soon"}]}),
            vec!["rules[1].latency"],
        ),
        (
            "rules.set",
            json!({"rules": [{"type": "bogus"}]}),
            vec!["rules[0].type"],
        ),
        ("rules.set", json!({}), vec!["rules"]),
        ("rules.set", json!({"rules": 3}), vec!["rules"]),
        (
            "rules.add",
            json!({"rule": {"type": "fault", "faults": [{"errno": 9999}, {"errno": "EIOO"}]}}),
            vec!["rule.faults[0].errno", "rule.faults[1].errno"],
        ),
        (
            "rules.add",
            json!({"rule": {"type": "fault", "methods": ["frob"], "percent": -5, "faults": [{"errno": 5}]}}),
            vec!["rule.methods[0]", "rule.percent"],
        ),
        ("rules.remove", json!({"id": "missing"}), vec!["id"]),
        ("rules.remove", json!({"id": 5}), vec!["id"]),
        ("rules.remove", json!({}), vec!["id"]),
        ("rules.list", json!({"mount": 3}), vec!["mount"]),
        (
            "rules.add",
            json!({"rule": {"type": "latency"}, "mount": ""}),
            vec!["rule.latency", "mount"],
        ),
    ];
    for (method, params, want) in cases {
        let (code, message, data) = s.refused(method, params.clone());
        assert_eq!(code, -32602, "{method} {params}");
        assert_eq!(fields(&data), want, "{method} {params}: {message}");
        assert_eq!(data["field"], want[0], "{method} {params}");
        for field in &want {
            assert_eq!(
                message.matches(&format!("{field}: ")).count(),
                1,
                "{field} named once in {message:?}"
            );
        }
    }
    let (_, message, _) = s.refused(
        "rules.add",
        json!({"rule": {"type": "latency", "latency": "1ms", "percent": -5}}),
    );
    assert_eq!(
        message,
        "invalid params: rule.percent: -5 is out of range: must be from 0 to 100"
    );
}

#[test]
fn duplicate_and_unknown_ids_are_named_once() {
    let s = Served::new();
    s.call(
        "rules.add",
        json!({"rule": {"id": "x", "type": "latency", "latency": "1ms"}}),
    );
    let (_, message, data) = s.refused(
        "rules.add",
        json!({"rule": {"id": "x", "type": "latency", "latency": "1ms"}}),
    );
    assert_eq!(
        message,
        "invalid params: rule.id: duplicate rule id `x` (already used by a loaded rule)"
    );
    assert_eq!(data["violations"][0]["rule"], "duplicate-id");
    let (_, message, _) = s.refused("rules.remove", json!({"id": "y"}));
    assert_eq!(message, "invalid params: id: no rule has id `y` (ids: x)");
}

#[test]
fn errnos_by_name_and_modes_in_octal() {
    let s = Served::new();
    s.call(
        "rules.set",
        json!({"rules": [
            {"id": "f", "type": "fault", "faults": [{"errno": "EIO", "weight": 3}, {"errno": 28}]},
            {"id": "ro", "type": "attrOverride", "attr": {"perm": "0444"}},
        ]}),
    );
    let list = s.call("rules.list", json!({}));
    assert_eq!(
        list["rules"][0]["rule"]["faults"],
        json!([{"errno": 5, "weight": 3}, {"errno": 28, "weight": 1}])
    );
    assert_eq!(list["rules"][1]["rule"]["attr"]["perm"], 0o444);
    let (_, message, _) = s.refused(
        "rules.add",
        json!({"rule": {"type": "attrOverride", "attr": {"perm": "rw-r--r--"}}}),
    );
    assert_eq!(
        message,
        "invalid params: rule.attr.perm: `rw-r--r--` is not a file mode: must be octal digits \
         like \"0644\""
    );
}

#[test]
fn unknown_methods_are_named_with_the_list() {
    let s = Served::new();
    let (code, message, data) = s.refused("rules.ad", json!({}));
    assert_eq!(code, -32601);
    assert_eq!(
        message,
        "method `rules.ad` not found; methods: rules.set, rules.add, rules.remove, rules.clear, \
         rules.list, status"
    );
    assert_eq!(data["methods"].as_array().map(Vec::len), Some(6));
    // In a batch as well, next to a call that works.
    let answer = s.post_raw(
        r#"[{"jsonrpc": "2.0", "id": 1, "method": "nope"}, {"jsonrpc": "2.0", "id": 2, "method": "rules.list"}]"#,
    );
    let by_id = |id: i64| {
        answer
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id(1)["error"]["code"], -32601, "{answer}");
    assert_eq!(by_id(2)["result"]["generation"], 0, "{answer}");
}

#[test]
fn bad_json_is_answered_with_its_position() {
    let s = Served::new();
    let answer = s.post_raw("{\"jsonrpc\": \"2.0\", \"id\": 1,\n  \"method\": \"status\",,}");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    assert_eq!(answer["error"]["data"], json!({"line": 2, "column": 22}));
    assert_eq!(
        answer["error"]["message"],
        "parse error: key must be a string at line 2 column 22"
    );
}

#[test]
fn status_takes_only_a_mount() {
    let s = Served::new();
    let status = s.call("status", json!({}));
    assert_eq!(status["mounted"], false);
    assert_eq!(status["ops"], json!({}));
    assert_eq!(status["mounts"].as_array().map(Vec::len), Some(1));
    let (code, _, _) = s.refused("status", json!({"verbose": true}));
    assert_eq!(code, -32602);
}

/// Three mounts: calls name one by volume name or by where the app mounts it; without a name,
/// a change is refused with the list of mounts, and listing and status cover all.
#[test]
fn calls_name_their_mount() {
    let s = Served::with_mounts(&[
        (Some("data"), &["/var/lib/db"]),
        (Some("logs"), &["/var/log/app", "/srv/logs:archive"]),
        (Some("cache"), &[]),
    ]);
    let latency = json!({"type": "latency", "latency": "1ms"});
    let (code, message, data) = s.refused("rules.add", json!({ "rule": latency }));
    assert_eq!(code, -32602);
    assert_eq!(
        message,
        "invalid params: mount: is required: this sidecar serves 3 mounts: data (at /var/lib/db), \
         logs (at /var/log/app, /srv/logs), cache; name one by its volume name or by the path \
         where the app mounts it"
    );
    assert_eq!(data["violations"][0]["rule"], "required");
    let (_, message, data) = s.refused("rules.set", json!({"rules": [], "mount": "/var/lib"}));
    assert_eq!(
        message,
        "invalid params: mount: no mount is named `/var/lib` (mounts: data (at /var/lib/db), \
         logs (at /var/log/app, /srv/logs), cache)"
    );
    assert_eq!(data["field"], "mount");
    assert_eq!(data["violations"][0]["rule"], "not-found");

    let a = s.call(
        "rules.add",
        json!({"rule": latency, "mount": "/var/lib/db/"}),
    );
    assert_eq!(a, json!({"id": "r1", "generation": 1, "mount": "data"}));
    let b = s.call("rules.add", json!({"rule": latency, "mount": "logs"}));
    assert_eq!(
        b,
        json!({"id": "r2", "generation": 2, "mount": "logs"}),
        "ids unique across mounts"
    );
    // An id one mount uses cannot be used on another.
    let (_, message, _) = s.refused(
        "rules.set",
        json!({"rules": [{"id": "r1", "type": "latency", "latency": "2ms"}], "mount": "cache"}),
    );
    assert_eq!(
        message,
        "invalid params: rules[0].id: duplicate rule id `r1` (already used by a rule of mount data)"
    );
    // A subPath mount: the rule lands under the sub-directory.
    let c = s.call(
        "rules.add",
        json!({"rule": {"id": "old", "type": "fault", "path": "*.gz", "faults": [{"errno": 5}]}, "mount": "/srv/logs"}),
    );
    assert_eq!(c["mount"], "logs");

    let list = s.call("rules.list", json!({}));
    let seen: Vec<(String, String)> = list["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").into(),
                r["mount"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("r1".into(), "data".into()),
            ("r2".into(), "logs".into()),
            ("old".into(), "logs".into())
        ]
    );
    assert_eq!(list["generation"], 3);
    let logs = s.call("rules.list", json!({"mount": "/var/log/app"}));
    assert_eq!(logs["rules"].as_array().map(Vec::len), Some(2));
    assert_eq!(logs["rules"][1]["rule"]["path"], "archive/*.gz");

    let status = s.call("status", json!({"mount": "data"}));
    assert_eq!(status["mounts"].as_array().map(Vec::len), Some(1));
    assert_eq!(status["mounts"][0]["name"], "data");
    assert_eq!(
        status["mounts"][0]["appPaths"],
        json!([{"path": "/var/lib/db"}])
    );
    assert_eq!(status["rules"], 1);
    let status = s.call("status", json!({}));
    assert_eq!(status["rules"], 3);
    assert_eq!(
        status["mounts"]
            .as_array()
            .map(|m| m.iter().map(|m| m["rules"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(1), json!(2), json!(0)])
    );

    // Removal by id alone finds the mount; a mount given must be the right one.
    let (_, message, _) = s.refused("rules.remove", json!({"id": "r1", "mount": "logs"}));
    assert_eq!(
        message,
        "invalid params: id: no rule has id `r1` (ids: r2, old)"
    );
    assert_eq!(
        s.call("rules.remove", json!({"id": "r1"})),
        json!({"generation": 4})
    );
    assert_eq!(
        s.call("rules.clear", json!({"mount": "logs"})),
        json!({"generation": 5})
    );
    // Clear without a mount clears every mount.
    s.call("rules.add", json!({"rule": latency, "mount": "cache"}));
    s.call("rules.clear", json!({}));
    assert_eq!(s.call("rules.list", json!({}))["rules"], json!([]));
}

/// A path where two app containers mount different volumes names neither.
#[test]
fn an_ambiguous_path_asks_for_the_volume() {
    let s = Served::with_mounts(&[(Some("a"), &["/data"]), (Some("b"), &["/data"])]);
    let (_, message, data) = s.refused(
        "rules.add",
        json!({"rule": {"type": "latency", "latency": "1ms"}, "mount": "/data"}),
    );
    assert_eq!(
        message,
        "invalid params: mount: `/data` is where apps mount several volumes (a, b): name the volume instead"
    );
    assert_eq!(data["violations"][0]["rule"], "ambiguous");
    s.call(
        "rules.add",
        json!({"rule": {"type": "latency", "latency": "1ms"}, "mount": "b"}),
    );
}
