//! The harness leaves nothing behind: a test binary whose test panics, and one killed with
//! SIGKILL, each started its own control plane; afterwards no etcd or kube-apiserver process
//! runs, the API server's port is closed and the directories are gone.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline_e2e::{on_ci, root, setup};

const CHILD: &str = "FAULTLINE_E2E_TEARDOWN_CHILD";

/// Run only as a child of the tests below (it is ignored otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the teardown tests"]
async fn child_starts_a_control_plane_then_fails() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let env = setup("teardown_child").await.expect("a control plane");
    assert!(
        env.cluster.owned,
        "the child must start its own control plane"
    );
    let port = env.cluster.server.rsplit(':').next().expect("port");
    println!(
        "CLUSTER dir={} port={port} pids={}",
        env.cluster.dir.display(),
        env.cluster
            .pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    match mode.as_str() {
        "panic" => panic!("a test that fails on purpose"),
        _ => tokio::time::sleep(Duration::from_secs(600)).await,
    }
}

struct Started {
    dir: PathBuf,
    port: u16,
    pids: Vec<u32>,
}

fn parse(line: &str) -> Option<Started> {
    let rest = line.strip_prefix("CLUSTER ")?;
    let field = |key: &str| {
        rest.split(' ')
            .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    Some(Started {
        dir: field("dir")?.into(),
        port: field("port")?.parse().ok()?,
        pids: field("pids")?
            .split(',')
            .filter_map(|p| p.parse().ok())
            .collect(),
    })
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Whether this machine can start a control plane; prints why not (fails on CI).
fn can_run(test: &str) -> bool {
    match xtask::cluster::installed(&root()) {
        Ok(Some(_)) => true,
        other if on_ci() => panic!("{test}: the cluster binaries are not built: {other:?}"),
        other => {
            eprintln!(
                "SKIP {test}: the cluster binaries are not built ({other:?}): cargo xtask cluster build"
            );
            false
        }
    }
}

fn child(mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_starts_a_control_plane_then_fails",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, mode)
        .env_remove("FAULTLINE_CLUSTER")
        .env_remove("FAULTLINE_CLUSTER_UNAVAILABLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the child test")
}

fn started(child: &mut std::process::Child) -> Started {
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| parse(&line))
        .expect("the child printed its control plane")
}

/// Nothing of `s` is left, within `grace`.
fn assert_gone(s: &Started, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let procs: Vec<_> = s.pids.iter().filter(|p| alive(**p)).collect();
        let port_open = TcpStream::connect(("127.0.0.1", s.port)).is_ok();
        let dir = s.dir.exists();
        if procs.is_empty() && !port_open && !dir {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {procs:?}, port {} open: {port_open}, {} exists: {dir}",
            s.port,
            s.dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    if !can_run("a_panicking_test_leaves_nothing_behind") {
        return;
    }
    let mut child = child("panic");
    let s = started(&mut child);
    assert!(!s.pids.is_empty() && s.dir.exists());
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the child test was to fail");
    // The exit hook stopped everything before the process ended.
    assert_gone(&s, Duration::ZERO);
}

#[test]
fn a_killed_test_binary_leaves_nothing_behind() {
    if !can_run("a_killed_test_binary_leaves_nothing_behind") {
        return;
    }
    let mut child = child("kill");
    let s = started(&mut child);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("wait");
    // No exit hook runs on SIGKILL: the watchdog cleans up.
    assert_gone(&s, Duration::from_secs(20));
}
