//! `cargo bench -p faultline-daemon --bench network`: `network.apply` (call → our tbf is the
//! device's root qdisc) and `network.recover` (call → it is gone) on a real veth inside a network
//! namespace, next to `tc qdisc add`/`tc qdisc del` for the same qdisc in the same run,
//! alternating (issue 17; method of MEASURE.md; `## Daemon network` of docs/benchmarks.md).
//!
//! The daemon answers after the kernel acknowledged the change, so "visible" is checked right
//! after each answer (untimed) with `tc qdisc show`. Env: `FAULTLINE_BENCH_ROUNDS` (100),
//! `FAULTLINE_BENCH_DOCS`. Needs root, `ip` and `tc`; without them it says why and exits 0.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;

// Shared with the ops bench; this one uses only the launcher and `call`.
#[allow(dead_code)]
#[path = "support/daemon.rs"]
mod daemon;

use daemon::Daemon;

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Namespaces `<a>` (veth `va`, 10.78.0.1/24) and `<b>` (`vb`), and a process living in `<a>`.
struct Namespaces {
    a: String,
    b: String,
    sleeper: Child,
}

impl Namespaces {
    fn new() -> Result<Namespaces, String> {
        let tag = std::process::id();
        let (a, b) = (format!("flbench{tag}a"), format!("flbench{tag}b"));
        for ns in [&a, &b] {
            run(&["ip", "netns", "add", ns])?;
        }
        let sleeper = Command::new("ip")
            .args(["netns", "exec", &a, "sleep", "100000"])
            .spawn()
            .map_err(|e| format!("sleep in {a}: {e}"))?;
        let ns = Namespaces { a, b, sleeper };
        run(&[
            "ip", "-n", &ns.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &ns.b,
        ])?;
        run(&[
            "ip",
            "-n",
            &ns.a,
            "addr",
            "add",
            "10.78.0.1/24",
            "dev",
            "va",
        ])?;
        run(&["ip", "-n", &ns.a, "link", "set", "va", "up"])?;
        run(&[
            "ip",
            "-n",
            &ns.b,
            "addr",
            "add",
            "10.78.0.2/24",
            "dev",
            "vb",
        ])?;
        run(&["ip", "-n", &ns.b, "link", "set", "vb", "up"])?;
        // The daemon picks the device of the default route, as it does in a pod.
        run(&[
            "ip",
            "-n",
            &ns.a,
            "route",
            "add",
            "default",
            "via",
            "10.78.0.2",
        ])?;
        Ok(ns)
    }

    fn root_qdisc(&self) -> Result<String, String> {
        let shown = run(&[
            "ip", "netns", "exec", &self.a, "tc", "qdisc", "show", "dev", "va", "root",
        ])?;
        Ok(shown.lines().next().unwrap_or("").to_owned())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Nearest-rank p50 and p99.
fn stats(samples: &[Duration]) -> (Duration, Duration) {
    let mut v = samples.to_vec();
    v.sort();
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.50), rank(0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Samples {
    apply: Vec<Duration>,
    recover: Vec<Duration>,
    tc_add: Vec<Duration>,
    tc_del: Vec<Duration>,
}

fn measure(ns: &Namespaces, d: &Daemon, rounds: usize) -> Result<Samples, String> {
    let before = ns.root_qdisc()?;
    let mut s = Samples {
        apply: Vec::new(),
        recover: Vec::new(),
        tc_add: Vec::new(),
        tc_del: Vec::new(),
    };
    let params = json!({"target": {"pid": ns.sleeper.id()}, "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}});
    let tc = |verb: &str| -> Vec<String> {
        let mut v: Vec<String> = [
            "ip", "netns", "exec", &ns.a, "tc", "qdisc", verb, "dev", "va", "root",
        ]
        .iter()
        .map(|x| (*x).to_owned())
        .collect();
        if verb == "add" {
            v.extend(
                [
                    "handle", "fa17:", "tbf", "rate", "1mbit", "burst", "10000", "limit", "20000",
                ]
                .map(String::from),
            );
        }
        v
    };
    for round in 0..rounds + 3 {
        let timed = round >= 3;
        let daemon_first = round % 2 == 0;
        for which in [daemon_first, !daemon_first] {
            if which {
                let t = Instant::now();
                let answer = d.call("network.apply", params.clone())?;
                let applied = t.elapsed();
                if !ns.root_qdisc()?.contains("tbf fa17:") {
                    return Err("network.apply answered but no tbf fa17: is the root qdisc".into());
                }
                let t = Instant::now();
                d.call("network.recover", json!({"faultId": answer["faultId"]}))?;
                let recovered = t.elapsed();
                if ns.root_qdisc()? != before {
                    return Err(
                        "network.recover answered but the root qdisc is not the one from before"
                            .into(),
                    );
                }
                if timed {
                    s.apply.push(applied);
                    s.recover.push(recovered);
                }
            } else {
                let add = tc("add");
                let add: Vec<&str> = add.iter().map(String::as_str).collect();
                let t = Instant::now();
                run(&add)?;
                let added = t.elapsed();
                let del = tc("del");
                let del: Vec<&str> = del.iter().map(String::as_str).collect();
                let t = Instant::now();
                run(&del)?;
                if timed {
                    s.tc_add.push(added);
                    s.tc_del.push(t.elapsed());
                }
            }
        }
    }
    Ok(s)
}

fn section(s: &Samples, rounds: usize) -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let row = |what: &str, ours: &[Duration], reference_name: &str, reference: &[Duration]| {
        let (p50, p99) = stats(ours);
        let (r50, r99) = stats(reference);
        format!(
            "| {what} | {} | {} | {reference_name} | {} | {} | {:.2} |\n",
            ms(p50),
            ms(p99),
            ms(r50),
            ms(r99),
            p50.as_secs_f64() / r50.as_secs_f64().max(1e-9)
        )
    };
    let mut md = format!(
        "## Daemon network\n\n`cargo bench -p faultline-daemon --bench network` ({}, {profile} build), {rounds} rounds, order alternating, a tbf (1mbit, burst 10000, limit 20000) on a veth inside a network namespace; the daemon's call returns after the kernel acknowledged the change (checked after every answer, untimed, with `tc qdisc show`). Reference: iproute2's `tc` run as a process for the same qdisc in the same rounds (`ip netns exec … tc qdisc add|del`, process start included). Target: < 20 ms p50.\n\n| operation | daemon p50 | daemon p99 | reference | ref p50 | ref p99 | p50 ratio |\n|---|---:|---:|---|---:|---:|---:|\n",
        faultline_e2e::bench::today()
    );
    md.push_str(&row(
        "`network.apply` → our tbf is the root qdisc",
        &s.apply,
        "`tc qdisc add`",
        &s.tc_add,
    ));
    md.push_str(&row(
        "`network.recover` → the device's own root qdisc again",
        &s.recover,
        "`tc qdisc del`",
        &s.tc_del,
    ));
    md.push_str("\nReading: a daemon call enters the pod's network namespace on a fresh thread, reads the device's root qdisc, journals the fault (fsync'd) and sends the netlink request; `tc` pays a process start and its own netlink round trips instead. The journal's fsyncs are the bulk of the daemon's time on a busy disk (see `## Daemon`).\n");
    md
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !nix::unistd::geteuid().is_root() || run(&["tc", "-V"]).is_err() {
        println!("daemon network bench SKIPPED: needs root, `ip` and `tc` (iproute2)");
        return;
    }
    let rounds = std::env::var("FAULTLINE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100);
    let ns = Namespaces::new().unwrap_or_else(|e| panic!("namespaces: {e}"));
    let d =
        Daemon::start(Path::new("/nonexistent/containerd.sock")).unwrap_or_else(|e| panic!("{e}"));
    let samples = measure(&ns, &d, rounds).unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let md = section(&samples, rounds);
    println!("\n{md}");
    if let Ok(path) = std::env::var("FAULTLINE_BENCH_DOCS") {
        faultline_e2e::bench::write_section(Path::new(&path), &md)
            .unwrap_or_else(|e| panic!("{e}"));
        println!("wrote the ## Daemon network section of {path}");
    }
}
