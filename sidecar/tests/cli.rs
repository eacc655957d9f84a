//! `faultline-sidecar rules …` and `status` against a real running sidecar.

mod common;

use std::process::{Command, Output};

use common::Sidecar;
use serde_json::{Value, json};

fn cli(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .output()
        .expect("run faultline-sidecar")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a subcommand against `sc` and expects success; its stdout.
fn ok(sc: &Sidecar, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--rpc-listen", &sc.listen]);
    let out = cli(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn rules_and_status_round_trip() {
    require_fuse!();
    let sc = Sidecar::start(41);
    std::fs::write(sc.s("f"), b"data").unwrap();
    assert_eq!(
        ok(
            &sc,
            &[
                "rules",
                "add",
                r#"{"id": "eio", "type": "fault", "path": "f", "methods": ["open"], "faults": [{"errno": "EIO"}]}"#
            ]
        ),
        format!(
            "added rule eio to mount {} (generation 1)\n",
            sc.mnt.display()
        )
    );
    let file = sc.dir.path().join("rule.json");
    std::fs::write(
        &file,
        r#"{"type": "latency", "path": "nothing/**", "latency": "300ms", "methods": ["read"]}"#,
    )
    .unwrap();
    assert_eq!(
        ok(&sc, &["rules", "add", "-f", file.to_str().unwrap()]),
        format!(
            "added rule r1 to mount {} (generation 2)\n",
            sc.mnt.display()
        )
    );
    assert_eq!(
        common::errno(std::fs::File::open(sc.m("f"))),
        Some(libc::EIO)
    );

    let table = ok(&sc, &["rules", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "generation 2", "{table}");
    let cells =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
    let mnt = sc.mnt.display().to_string();
    assert_eq!(
        cells(lines[1])[..4],
        ["ID", "MOUNT", "TYPE", "PATH"],
        "{table}"
    );
    assert_eq!(
        cells(lines[2])[..7],
        ["eio", &mnt, "fault", "f", "open", "100%", "EIO"],
        "{table}"
    );
    assert_eq!(
        cells(lines[3])[..7],
        ["r1", &mnt, "latency", "nothing/**", "read", "100%", "300ms"],
        "{table}"
    );
    let raw: Value = serde_json::from_str(&ok(&sc, &["rules", "list", "-o", "json"])).unwrap();
    assert_eq!(raw["rules"][0]["hits"], 1);
    assert_eq!(raw["rules"][0]["rule"]["faults"][0]["errno"], 5);

    let status = ok(&sc, &["status"]);
    assert!(status.contains("\n  mounted      yes\n"), "{status}");
    assert!(status.contains("generation   2\n"), "{status}");
    assert!(status.contains("OP "), "{status}");
    let raw: Value = serde_json::from_str(&ok(&sc, &["status", "-o", "json"])).unwrap();
    assert_eq!(raw["ops"]["open"]["injected"], 1, "{raw}");

    assert_eq!(
        ok(&sc, &["rules", "remove", "eio"]),
        "removed (generation 3)\n"
    );
    assert_eq!(
        ok(&sc, &["rules", "clear"]),
        "cleared all rules (generation 4)\n"
    );
    assert_eq!(ok(&sc, &["rules", "list"]), "no rules (generation 4)\n");
    assert_eq!(sc.call("rules.list", json!({}))["generation"], 4);
}

#[test]
fn refusals_are_printed_once_and_fail() {
    require_fuse!();
    let sc = Sidecar::start(42);
    let out = cli(&[
        "rules",
        "add",
        r#"{"type": "fault", "pth": "logs/**", "percent": -5, "faults": [{"errno": 5}]}"#,
        "--rpc-listen",
        &sc.listen,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "faultline-sidecar: rules.add refused, invalid params:\n  rule.pth: unknown field \
         (accepted: id, type, path, methods, percent, latency, faults, attr, mistake, ttl)\n  \
         rule.percent: -5 is out of range: must be from 0 to 100\n"
    );
    let out = cli(&["rules", "remove", "nope", "--rpc-listen", &sc.listen]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "faultline-sidecar: rules.remove refused, invalid params:\n  id: no rule has id `nope` \
         (ids: none, no rules are loaded)\n"
    );
    let out = cli(&["rules", "add", "{\"type\": }", "--rpc-listen", &sc.listen]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "faultline-sidecar: the rule argument is not valid JSON: expected value at line 1 column 10\n"
    );
    assert_eq!(sc.call("rules.list", json!({}))["generation"], 0);
}

#[test]
fn over_the_unix_socket() {
    require_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("rpc.sock");
    let _sc = Sidecar::start_with(43, &["--rpc-socket", sock.to_str().unwrap()]);
    let sock = sock.to_str().unwrap();
    let out = cli(&[
        "rules",
        "add",
        r#"{"type": "latency", "latency": "1ms"}"#,
        "--rpc-socket",
        sock,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["status", "-o", "json", "--rpc-socket", sock]);
    let raw: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(raw["generation"], 1);
}

/// No sidecar needed.
#[test]
fn help_and_an_unreachable_sidecar() {
    for args in [
        &["rules", "--help"][..],
        &["rules", "add", "--help"],
        &["rules", "list", "--help"],
        &["rules", "remove", "--help"],
        &["rules", "clear", "--help"],
        &["status", "--help"],
    ] {
        let out = cli(args);
        assert!(out.status.success(), "{args:?}");
        let help = stdout(&out);
        assert!(
            help.contains("Usage: faultline-sidecar"),
            "{args:?}: {help}"
        );
    }
    assert!(stdout(&cli(&["rules", "add", "--help"])).contains("-f, --file <FILE>"));
    let port = common::free_port();
    let out = cli(&["status", "--rpc-listen", &port.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "faultline-sidecar: cannot reach the sidecar at {port}: "
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A start-up error names what is wrong once, with the OS's reason once, and no backtrace.
#[test]
fn a_start_error_is_printed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(common::bin())
        .args(["--source", "/nonexistent/faultline-src", "--mountpoint"])
        .arg(dir.path())
        .args(["--rpc-listen", &common::free_port().to_string()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run faultline-sidecar");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(
        err.matches("/nonexistent/faultline-src").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
}
