//! Network faults on a real kernel: two network namespaces joined by a veth pair (made by the
//! test, always deleted), the daemon applying tbf and iptables partitions inside one of them.
//! This kernel has tbf and iptables but no sch_netem: netem must fail clearly and leave nothing.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{Value, json};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces `<name>-a` (10.77.N.1 on `va`, default route through it) and `<name>-b`
/// (10.77.N.2 on `vb`), and a process living in `a` to name as the target.
struct Pair {
    a: String,
    b: String,
    subnet: u8,
    sleeper: Child,
}

impl Pair {
    fn new(tag: &str, subnet: u8) -> Pair {
        let name = format!("fl{}{tag}", std::process::id() % 100_000);
        let (a, b) = (format!("{name}a"), format!("{name}b"));
        for ns in [&a, &b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
        }
        let pair = Pair {
            sleeper: Command::new("ip")
                .args(["netns", "exec", &a, "sleep", "1000"])
                .spawn()
                .expect("sleep in the namespace"),
            a,
            b,
            subnet,
        };
        ip(&[
            "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &pair.b,
        ]);
        ip(&[
            "-n",
            &pair.a,
            "addr",
            "add",
            &format!("10.77.{subnet}.1/24"),
            "dev",
            "va",
        ]);
        ip(&[
            "-n",
            &pair.b,
            "addr",
            "add",
            &format!("10.77.{subnet}.2/24"),
            "dev",
            "vb",
        ]);
        for (ns, dev) in [(&pair.a, "va"), (&pair.b, "vb")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &pair.a,
            "route",
            "add",
            "default",
            "via",
            &format!("10.77.{subnet}.2"),
        ]);
        pair
    }

    fn target(&self) -> Value {
        json!({"pid": self.sleeper.id()})
    }

    fn peer(&self) -> SocketAddr {
        format!("10.77.{}.2:5201", self.subnet).parse().unwrap()
    }

    fn qdiscs(&self) -> String {
        ip_netns_exec(&self.a, "tc", &["qdisc", "show", "dev", "va"])
    }

    fn rules(&self) -> String {
        ip_netns_exec(&self.a, "iptables-save", &[])
    }

    /// Runs `work` on a thread inside namespace `ns`.
    fn in_ns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
        std::thread::spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            work()
        })
        .join()
        .expect("namespace thread")
    }

    fn throughput(&self) -> f64 {
        throughput(&self.a, &self.b, self.peer())
    }

    /// Whether a TCP connection from `a` to `b` gets through within 1 s.
    fn connects(&self) -> bool {
        let peer = SocketAddr::new(self.peer().ip(), 5202);
        let listener = Self::in_ns(&self.b, move || TcpListener::bind(peer).expect("bind"));
        listener.set_nonblocking(true).unwrap();
        let ok = Self::in_ns(&self.a, move || {
            TcpStream::connect_timeout(&peer, Duration::from_secs(1)).is_ok()
        });
        drop(listener);
        ok
    }
}

/// Bytes per second from `a` to `b` over TCP, measured by the receiver after a 1 s warm-up.
fn throughput(a: &str, b: &str, peer: SocketAddr) -> f64 {
    let listener = Pair::in_ns(b, move || TcpListener::bind(peer).expect("bind"));
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        let start = Instant::now();
        let (mut counted, mut from) = (0usize, None);
        while start.elapsed() < Duration::from_secs(4) {
            let n = conn.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            if start.elapsed() >= Duration::from_secs(1) {
                from.get_or_insert_with(Instant::now);
                counted += n;
            }
        }
        counted as f64 / from.map_or(1.0, |f| f.elapsed().as_secs_f64())
    });
    let sender = Pair::in_ns(a, move || {
        TcpStream::connect_timeout(&peer, Duration::from_secs(3)).expect("connect")
    });
    let writer = std::thread::spawn(move || {
        let mut sender = sender;
        let chunk = vec![7u8; 16 * 1024];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) && sender.write_all(&chunk).is_ok() {}
    });
    let rate = receiver.join().unwrap();
    let _ = writer.join();
    rate
}

fn ip_netns_exec(ns: &str, program: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .expect(program);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn prerequisites(test: &str) -> bool {
    if !common::root_or_skip(test) {
        return false;
    }
    for tool in ["ip", "tc", "iptables", "iptables-save"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                !faultline_e2e::on_ci(),
                "{test}: `{tool}` is missing (CI=true)"
            );
            eprintln!("SKIP {test}: `{tool}` is missing");
            return false;
        }
    }
    true
}

const MBIT: f64 = 125_000.0;

#[tokio::test]
async fn bandwidth_is_capped_within_15_percent_and_restored_exactly() {
    if !prerequisites("bandwidth_is_capped") {
        return;
    }
    let pair = Pair::new("bw", 71);
    let d = Daemon::start(Default::default()).await;
    let before = pair.qdiscs();
    let free = pair.throughput();
    assert!(free > 20.0 * MBIT, "unshaped veth: {free} B/s");

    let fault = d
        .ok(
            "network.apply",
            json!({"target": pair.target(), "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}}),
        )
        .await;
    let shown = pair.qdiscs();
    assert!(
        shown.contains("qdisc tbf fa17: root") && shown.contains("rate 1Mbit"),
        "{shown}"
    );
    let capped = pair.throughput();
    eprintln!(
        "1mbit cap: {:.3} Mbit/s (unshaped {:.1} Mbit/s)",
        capped / MBIT,
        free / MBIT
    );
    assert!(
        (capped - MBIT).abs() <= 0.15 * MBIT,
        "throughput {capped} B/s is not within 15 % of 125000 B/s"
    );

    d.ok("network.recover", json!({"faultId": fault["faultId"]}))
        .await;
    assert_eq!(pair.qdiscs(), before, "only what was there before");
    let again = pair.throughput();
    assert!(again > 20.0 * MBIT, "after recovery: {again} B/s");
    assert!(d.journal().is_empty());
}

#[tokio::test]
async fn partition_cuts_the_peer_and_leaves_no_rule_behind() {
    if !prerequisites("partition_cuts_the_peer") {
        return;
    }
    let pair = Pair::new("pt", 72);
    let d = Daemon::start(Default::default()).await;
    let rules_before = pair.rules();
    assert!(pair.connects(), "the veth works before the fault");
    let fault = d
        .ok(
            "network.apply",
            json!({"target": pair.target(), "partition": {"direction": "both", "targets": [format!("10.77.{}.2/32", pair.subnet)]}}),
        )
        .await;
    assert!(!pair.connects(), "partitioned");
    assert!(pair.rules().contains("faultline net-"), "{}", pair.rules());
    d.ok("network.recover", json!({"faultId": fault["faultId"]}))
        .await;
    assert!(pair.connects(), "connects again after recovery");
    let after = pair.rules();
    assert!(
        !after.contains("FL-") && !after.contains("faultline"),
        "{after}"
    );
    assert_eq!(strip_counters(&after), strip_counters(&rules_before));

    // A port narrows the partition to that port (TCP and UDP).
    let fault = d
        .ok(
            "network.apply",
            json!({"target": pair.target(), "partition": {"direction": "to", "targets": [format!("10.77.{}.2/32:5202", pair.subnet)]}}),
        )
        .await;
    assert!(!pair.connects(), "port 5202 is cut");
    let rules = pair.rules();
    assert!(
        rules.contains("--dport 5202") && rules.contains("-p udp"),
        "{rules}"
    );
    d.ok("network.recover", json!({"faultId": fault["faultId"]}))
        .await;
    assert!(pair.connects());

    // direction `to` only cuts what the target sends.
    let fault = d
        .ok(
            "network.apply",
            json!({"target": pair.target(), "partition": {"direction": "to", "targets": ["10.77.0.0/16"]}}),
        )
        .await;
    assert!(!pair.connects());
    d.ok("network.recover", json!({"faultId": fault["faultId"]}))
        .await;
    assert!(pair.connects());
}

/// What of `iptables-save` is a rule or a chain of someone's: `-A` lines and non-built-in
/// chains. (The first iptables-nft command in a namespace creates the `filter` table with its
/// built-in ACCEPT chains; that empty table is not a rule, and it stays.)
fn strip_counters(rules: &str) -> String {
    const BUILT_IN: [&str; 5] = [
        ":INPUT ",
        ":FORWARD ",
        ":OUTPUT ",
        ":PREROUTING ",
        ":POSTROUTING ",
    ];
    rules
        .lines()
        .filter(|l| {
            l.starts_with("-A")
                || (l.starts_with(':') && !BUILT_IN.iter().any(|b| l.starts_with(b)))
        })
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn netem_is_a_clear_error_on_this_kernel_and_leaves_nothing() {
    if !prerequisites("netem_is_a_clear_error") {
        return;
    }
    let netem_module = std::path::Path::new("/sys/module/sch_netem").exists();
    let pair = Pair::new("ne", 73);
    let d = Daemon::start(Default::default()).await;
    let caps = d.ok("capabilities", json!({})).await;
    if caps["qdiscs"]["netem"] == true || netem_module {
        eprintln!("SKIP netem_is_a_clear_error: this kernel has netem");
        return;
    }
    let before = pair.qdiscs();
    for params in [
        json!({"target": pair.target(), "netem": {"delay": {"latency": "100ms"}}}),
        // With a cap in the same call: the tbf that went in first must go again.
        json!({"target": pair.target(), "netem": {"loss": {"loss": "5"}}, "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}}),
    ] {
        let err = d.call("network.apply", params).await.unwrap_err();
        assert_eq!(err["code"], -32005, "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("netem qdisc is not available in this kernel (CONFIG_NET_SCH_NETEM)"),
            "{message}"
        );
        assert_eq!(pair.qdiscs(), before);
        assert!(d.journal().is_empty(), "nothing half-applied is journaled");
    }
}

#[tokio::test]
async fn two_caps_compose_and_recover_in_any_order() {
    if !prerequisites("two_caps_compose") {
        return;
    }
    let pair = Pair::new("cp", 74);
    let d = Daemon::start(Default::default()).await;
    let before = pair.qdiscs();
    let cap = |rate: &str| json!({"target": pair.target(), "device": "va@if9", "bandwidth": {"rate": rate, "limit": 20000, "buffer": 10000}});
    let slow = d.ok("network.apply", cap("1mbit")).await;
    let fast = d.ok("network.apply", cap("4mbit")).await;
    assert!(
        pair.qdiscs().contains("rate 1Mbit"),
        "the smaller cap wins: {}",
        pair.qdiscs()
    );
    d.ok("network.recover", json!({"faultId": slow["faultId"]}))
        .await;
    assert!(
        pair.qdiscs().contains("rate 4Mbit"),
        "the other's cap comes back: {}",
        pair.qdiscs()
    );
    d.ok("network.recover", json!({"faultId": fast["faultId"]}))
        .await;
    assert_eq!(pair.qdiscs(), before);

    // A device that does not exist: an error naming it and what exists.
    let err = d
        .call("network.apply", json!({"target": pair.target(), "device": "eth9", "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("eth9") && message.contains("va"),
        "{message}"
    );

    // Someone else's root qdisc is never replaced.
    ip(&[
        "netns", "exec", &pair.a, "tc", "qdisc", "add", "dev", "va", "root", "handle", "1:", "tbf",
        "rate", "9mbit", "burst", "10kb", "limit", "20kb",
    ]);
    let theirs = pair.qdiscs();
    let err = d.call("network.apply", cap("1mbit")).await.unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("not Faultline's"),
        "{err}"
    );
    assert_eq!(pair.qdiscs(), theirs);
    assert!(d.journal().is_empty());
}

#[tokio::test]
async fn kill_9_with_tbf_and_partition_then_restart_removes_both() {
    if !prerequisites("kill_9_with_tbf_and_partition") {
        return;
    }
    let pair = Pair::new("cr", 75);
    let mut d = Daemon::start(Default::default()).await;
    let (qdiscs_before, rules_before) = (pair.qdiscs(), strip_counters(&pair.rules()));
    d.ok(
        "network.apply",
        json!({"target": pair.target(), "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}, "ttl": "10m"}),
    )
    .await;
    d.ok(
        "network.apply",
        json!({"target": pair.target(), "partition": {"direction": "to", "targets": ["10.77.75.2"]}}),
    )
    .await;
    assert!(pair.qdiscs().contains("tbf fa17:"));
    assert!(!pair.connects());
    d.kill9();
    assert!(
        pair.qdiscs().contains("tbf fa17:"),
        "a crash leaves the faults"
    );
    let restarted = Instant::now();
    d.restart().await;
    let state = d.state_dir.clone();
    d.eventually(
        "tbf and partition gone after the restart",
        Duration::from_secs(2),
        || common::journal_files(&state).is_empty(),
    )
    .await;
    eprintln!("recovered within {:?} of the restart", restarted.elapsed());
    assert_eq!(pair.qdiscs(), qdiscs_before);
    assert_eq!(strip_counters(&pair.rules()), rules_before);
    assert!(pair.connects());
}

#[tokio::test]
async fn a_cap_outlives_its_target_process_in_a_shared_namespace_and_is_still_recovered() {
    if !prerequisites("a_cap_outlives_its_target_process") {
        return;
    }
    let mut pair = Pair::new("sh", 76);
    // Another process in the same namespace, as the host's or a pod's shared one has.
    let mut other = Command::new("ip")
        .args(["netns", "exec", &pair.a, "sleep", "1000"])
        .spawn()
        .expect("a second process in the namespace");
    let d = Daemon::start(Default::default()).await;
    let before = pair.qdiscs();
    let fault = d
        .ok(
            "network.apply",
            json!({"target": pair.target(), "bandwidth": {"rate": "1mbit", "limit": 20000, "buffer": 10000}}),
        )
        .await;
    assert!(pair.qdiscs().contains("qdisc tbf fa17: root"));
    // The process the fault was applied through ends; the namespace lives on.
    pair.sleeper.kill().unwrap();
    pair.sleeper.wait().unwrap();
    d.ok("network.recover", json!({"faultId": fault["faultId"]}))
        .await;
    let after = pair.qdiscs();
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(
        after, before,
        "the cap must not stay behind its target process"
    );
    assert!(d.journal().is_empty());
}
