//! One sidecar, several mounts (DESIGN.md §4, §7): real FUSE mounts of the real binary, each
//! volume its own FUSE session and threads behind one RPC endpoint. Faults and delays on one
//! volume never reach another, `mount` names a volume by name or by the app's path, SIGTERM
//! unmounts them all, and a restart after `kill -9` recovers every stale mount.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Sidecar, errno, is_mounted};
use serde_json::{Value, json};

/// Faults and counters are per mount: an EIO rule on `data` fails every op there, and `logs`
/// and `cache` (same process, same RPC endpoint) keep working and count nothing injected.
#[test]
fn faults_on_one_volume_never_touch_another() {
    require_fuse!();
    let sc = Sidecar::start_mounts(
        31,
        &["data", "logs", "cache"],
        &[
            "--app-mount",
            "data=/var/lib/db",
            "--app-mount",
            "logs/app=/var/log/app",
        ],
    );
    for m in &sc.mounts {
        std::fs::create_dir(m.source.join("app")).unwrap();
        std::fs::write(m.source.join("app/f"), m.name.as_bytes()).unwrap();
    }
    // By the app's path (an IOChaos volumePath) and by volume name.
    let added = sc.call(
        "rules.add",
        json!({"rule": {"id": "eio", "type": "fault", "faults": [{"errno": "EIO"}]}, "mount": "/var/lib/db"}),
    );
    assert_eq!(added["mount"], "data");
    // `logs` is mounted by the app with subPath `app`: "f" is the app's `/var/log/app/f`.
    sc.call(
        "rules.add",
        json!({"rule": {"id": "enospc", "type": "fault", "path": "f", "methods": ["write"], "faults": [{"errno": "ENOSPC"}]}, "mount": "/var/log/app"}),
    );
    let data = sc.mount("data");
    let (logs, cache) = (sc.mount("logs"), sc.mount("cache"));
    assert_eq!(
        errno(std::fs::read(data.mnt.join("app/f"))),
        Some(libc::EIO)
    );
    assert_eq!(std::fs::read(logs.mnt.join("app/f")).unwrap(), b"logs");
    assert_eq!(std::fs::read(cache.mnt.join("app/f")).unwrap(), b"cache");
    assert_eq!(
        errno(std::fs::write(logs.mnt.join("app/f"), b"x")),
        Some(libc::ENOSPC)
    );
    std::fs::write(cache.mnt.join("app/f"), b"written").unwrap();
    std::fs::write(logs.mnt.join("f"), b"not under the sub-path").unwrap();

    let status = sc.call("status", json!({}));
    let mounts = status["mounts"].as_array().unwrap();
    let injected = |m: &Value| -> u64 {
        m["ops"]
            .as_object()
            .map(|ops| ops.values().map(|c| c["injected"].as_u64().unwrap()).sum())
            .unwrap_or(0)
    };
    assert_eq!(
        mounts.iter().map(|m| m["name"].clone()).collect::<Vec<_>>(),
        [json!("data"), json!("logs"), json!("cache")]
    );
    assert!(injected(&mounts[0]) >= 1, "{status}");
    assert_eq!(
        injected(&mounts[1]),
        1,
        "only the write under the sub-path: {status}"
    );
    assert_eq!(injected(&mounts[2]), 0, "{status}");
    assert_eq!(mounts[0]["appPaths"], json!([{"path": "/var/lib/db"}]));
    assert_eq!(mounts[0]["rules"], 1);
    let list = sc.call("rules.list", json!({"mount": "logs"}));
    assert_eq!(list["rules"][0]["rule"]["path"], "app/f");
    let metrics = common::http_get(sc.addr, "/metrics").unwrap().1;
    assert!(
        metrics
            .contains("faultline_sidecar_op_injected_errors_total{mount=\"data\",op=\"lookup\"}"),
        "{metrics}"
    );

    // Clearing one mount leaves the other's rules.
    sc.call("rules.clear", json!({"mount": "data"}));
    assert_eq!(std::fs::read(data.mnt.join("app/f")).unwrap(), b"data");
    assert_eq!(
        errno(std::fs::write(logs.mnt.join("app/f"), b"x")),
        Some(libc::ENOSPC)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// 4 KiB reads of `f` that reach the FUSE daemon (the file is opened `direct_io` because a read
/// rule that never fires matches it), one every millisecond for `span`: their times.
fn timed_reads(f: &File, span: Duration) -> Vec<Duration> {
    let end = Instant::now() + span;
    let mut times = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        f.read_exact_at(&mut [0u8; 4096], 0).unwrap();
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(1));
    }
    times
}

/// A plain one-mount sidecar serving `source` at `mountpoint` (to be stopped with SIGSTOP: a
/// FUSE server that does not answer, like a hung NFS server).
fn helper_sidecar(source: &Path, mountpoint: &Path) -> std::process::Child {
    let addr = common::free_port();
    let child = std::process::Command::new(common::bin())
        .arg("--source")
        .arg(source)
        .arg("--mountpoint")
        .arg(mountpoint)
        .args(["--rpc-listen", &addr.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::http_get(addr, "/ready").is_ok_and(|(code, _)| code == 200) {
        assert!(Instant::now() < deadline, "helper sidecar not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The measured isolation: reads through `fast` timed while `slow` is idle, while 32 threads
/// read it under a 50 ms latency rule on every operation, and while every one of `slow`'s
/// `/dev/fuse` reader threads is stuck in a source syscall (its source holds a FUSE mount whose
/// server is stopped: a hung volume). One process, separate FUSE sessions: neither load may slow
/// `fast` down by more than the machine's noise, let alone by the 50 ms delay.
#[test]
fn a_delay_or_a_hang_on_one_volume_does_not_slow_another() {
    require_fuse!(exclusive);
    let sc = Sidecar::start_mounts(32, &["fast", "slow"], &["--threads", "4"]);
    let (fast, slow) = (sc.mount("fast"), sc.mount("slow"));
    std::fs::write(fast.source.join("f"), vec![1u8; 4096]).unwrap();
    std::fs::write(slow.source.join("f"), vec![2u8; 4096]).unwrap();
    sc.call(
        "rules.set",
        json!({"mount": "fast", "rules": [{"type": "fault", "path": "f", "methods": ["read"], "percent": 0, "faults": [{"errno": 5}]}]}),
    );
    let f = File::open(fast.mnt.join("f")).unwrap();
    let phase = Duration::from_millis(1500);
    timed_reads(&f, Duration::from_millis(100));
    let idle = timed_reads(&f, phase);

    // Phase 2: a latency storm on `slow`.
    sc.call(
        "rules.set",
        json!({"mount": "slow", "rules": [{"type": "latency", "latency": "50ms"}]}),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let storm: Vec<_> = (0..32)
        .map(|_| {
            let (p, stop) = (slow.mnt.join("f"), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::read(&p);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sc.call("status", json!({"mount": "slow"}))["delayedOps"].as_u64() < Some(16) {
        assert!(Instant::now() < deadline, "the storm never got delayed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stormy = timed_reads(&f, phase);
    let delayed = sc.call("status", json!({"mount": "slow"}))["delayedOps"].clone();
    stop.store(true, Ordering::Relaxed);
    let slow_reads: u64 = storm.into_iter().map(|t| t.join().unwrap()).sum();
    sc.call("rules.clear", json!({"mount": "slow"}));

    // Phase 3: every reader thread of `slow` stuck in the source: `slow`'s source holds a
    // mount served by a stopped process, and 8 lookups under it (twice the readers) hang.
    let hung_src = sc.dir.path().join("hung-src");
    let hung_at = slow.source.join("nfs");
    std::fs::create_dir(&hung_src).unwrap();
    std::fs::create_dir(&hung_at).unwrap();
    let mut helper = helper_sidecar(&hung_src, &hung_at);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(helper.id() as i32, libc::SIGSTOP) };
    let hung: Vec<_> = (0..8)
        .map(|i| {
            let p = slow.mnt.join(format!("nfs/x{i}"));
            std::thread::spawn(move || {
                let _ = std::fs::metadata(p);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The slow mount is stuck: a stat of another name through it does not come back.
    let probe = {
        let p = slow.mnt.join("g");
        std::thread::spawn(move || {
            let t = Instant::now();
            let _ = std::fs::metadata(p);
            t.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let was_stuck = !probe.is_finished();
    let stuck = timed_reads(&f, phase);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(helper.id() as i32, libc::SIGCONT) };
    for t in hung {
        t.join().unwrap();
    }
    let probe_took = probe.join().unwrap();
    drop(f);
    drop(sc);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(helper.id() as i32, libc::SIGTERM) };
    let _ = helper.wait();
    let c = std::ffi::CString::new(hung_at.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain syscall; the helper is gone, its mount may be left.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    assert!(
        was_stuck,
        "the slow mount was not stuck (a stat there took {probe_took:?})"
    );

    let (i50, s50, h50) = (
        median(idle.clone()),
        median(stormy.clone()),
        median(stuck.clone()),
    );
    let n = (idle.len(), stormy.len(), stuck.len());
    let (i99, s99, h99) = (p99(idle), p99(stormy), p99(stuck));
    println!(
        "ISOLATION fast-mount 4KiB direct read (samples {n:?}): idle p50 {i50:?} p99 {i99:?}; \
         other mount under 50ms latency ({delayed} delayed ops in flight, {slow_reads} slow reads done) \
         p50 {s50:?} p99 {s99:?}; other mount hung (all its readers stuck in the source, a stat there took {probe_took:?}) \
         p50 {h50:?} p99 {h99:?}"
    );
    let delay = Duration::from_millis(50);
    for (name, p50, p99) in [("latency storm", s50, s99), ("hung mount", h50, h99)] {
        assert!(
            p50 < i50 * 3 + Duration::from_millis(1),
            "{name}: p50 {p50:?} against {i50:?} idle"
        );
        assert!(
            p99 < delay,
            "{name}: p99 {p99:?} reaches the injected delay"
        );
    }
    assert!(
        probe_took > phase,
        "the hung mount's own stat waited for the release: {probe_took:?}"
    );
}

/// SIGTERM with a delayed read in flight on one mount: every mount is unmounted, fast, and the
/// exit is clean.
#[test]
fn sigterm_unmounts_every_mount() {
    require_fuse!(exclusive);
    let mut sc = Sidecar::start_mounts(33, &["a", "b", "c"], &[]);
    std::fs::write(sc.mount("b").source.join("hang"), b"zzz").unwrap();
    sc.call(
        "rules.set",
        json!({"mount": "b", "rules": [{"type": "latency", "path": "hang", "methods": ["read"], "latency": "10s"}]}),
    );
    let p = sc.mount("b").mnt.join("hang");
    let reader = std::thread::spawn(move || std::fs::read(p).map(|v| v.len()));
    let deadline = Instant::now() + Duration::from_secs(3);
    while sc.call("status", json!({}))["delayedOps"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "read never got delayed");
        std::thread::sleep(Duration::from_millis(10));
    }
    for m in &sc.mounts {
        assert!(is_mounted(&m.mnt), "{} mounted", m.name);
    }
    sc.signal(libc::SIGTERM);
    let took = sc.wait_exit(Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let _ = reader.join().unwrap();
    for m in &sc.mounts {
        assert!(!is_mounted(&m.mnt), "{} still mounted", m.name);
    }
    let logs = sc.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
    assert_eq!(logs.matches("unmounted").count(), 3, "{logs}");
}

/// `kill -9` leaves three dead FUSE mounts; the next start detaches each and serves them all.
#[test]
fn kill_9_then_restart_recovers_every_stale_mount() {
    require_fuse!();
    let mut sc = Sidecar::start_mounts(34, &["a", "b", "c"], &[]);
    for m in &sc.mounts {
        std::fs::write(m.source.join("keep"), m.name.as_bytes()).unwrap();
        assert_eq!(
            std::fs::read(m.mnt.join("keep")).unwrap(),
            m.name.as_bytes()
        );
    }
    sc.signal(libc::SIGKILL);
    sc.wait_exit(Duration::from_secs(5));
    for m in &sc.mounts {
        assert_eq!(
            errno(std::fs::metadata(m.mnt.join("keep"))),
            Some(libc::ENOTCONN),
            "{}: stale mount after kill -9",
            m.name
        );
    }
    sc.spawn(34, &[]);
    for m in &sc.mounts {
        assert_eq!(
            std::fs::read(m.mnt.join("keep")).unwrap(),
            m.name.as_bytes()
        );
    }
    let logs = sc.logs();
    assert_eq!(logs.matches("replaced a stale mount").count(), 3, "{logs}");
    assert_eq!(common::http_get(sc.addr, "/ready").unwrap().0, 200);
}

/// A mount taken away from outside ends the sidecar with an error naming it, and the other
/// mounts are unmounted with it (an app must not keep writing to half a sidecar).
#[test]
fn a_mount_lost_from_outside_stops_the_sidecar() {
    require_fuse!();
    let mut sc = Sidecar::start_mounts(35, &["a", "b"], &[]);
    let b = sc.mount("b").mnt.clone();
    let c = std::ffi::CString::new(b.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain syscall on a valid C string.
    assert_eq!(unsafe { libc::umount2(c.as_ptr(), 0) }, 0);
    sc.wait_exit(Duration::from_secs(5));
    let logs = sc.logs();
    assert!(
        logs.contains(&format!(
            "the FUSE session of mount b ({}) ended",
            b.display()
        )),
        "{logs}"
    );
    assert!(!is_mounted(&sc.mount("a").mnt));
}

/// A busy mountpoint among several refuses the start before anything is mounted.
#[test]
fn a_busy_mountpoint_refuses_the_start_with_nothing_mounted() {
    require_fuse!();
    let first = Sidecar::start_mounts(36, &["a"], &[]);
    let free = first.dir.path().join("free");
    let src = first.dir.path().join("free-src");
    std::fs::create_dir(&free).unwrap();
    std::fs::create_dir(&src).unwrap();
    let a = first.mount("a");
    let out = std::process::Command::new(common::bin())
        .arg("--mount")
        .arg(format!("{}:{}:x", src.display(), free.display()))
        .arg("--mount")
        .arg(format!("{}:{}:y", a.source.display(), a.mnt.display()))
        .arg("--rpc-listen")
        .arg(common::free_port().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("mountpoint {} is busy", a.mnt.display())),
        "{err}"
    );
    assert!(!is_mounted(&free), "nothing mounted");
}

/// Initial rules per mount (`--rules` per file, each naming its mount), and the command line's
/// `--mount`.
#[test]
fn rules_files_and_the_command_line_name_mounts() {
    require_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.json"), dir.path().join("two.json"));
    std::fs::write(
        &one,
        r#"{"mount": "/srv/a", "rules": [{"id": "s", "type": "latency", "latency": "1ms"}]}"#,
    )
    .unwrap();
    std::fs::write(
        &two,
        r#"{"mount": "b", "rules": [{"id": "t", "type": "latency", "latency": "2ms"}]}"#,
    )
    .unwrap();
    let sc = Sidecar::start_mounts(
        37,
        &["a", "b"],
        &[
            "--app-mount",
            "a=/srv/a",
            "--rules",
            one.to_str().unwrap(),
            "--rules",
            two.to_str().unwrap(),
        ],
    );
    let list = sc.call("rules.list", json!({}));
    assert_eq!(list["rules"][0]["mount"], "a");
    assert_eq!(list["rules"][1]["mount"], "b");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .args(["--rpc-listen", &sc.addr.to_string()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["rules", "add", r#"{"type": "latency", "latency": "3ms"}"#]);
    assert!(!ok);
    assert!(
        out.contains("mount: is required: this sidecar serves 2 mounts: a (at /srv/a), b"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "rules",
        "add",
        "--mount",
        "/srv/a",
        r#"{"id": "u", "type": "latency", "latency": "3ms"}"#,
    ]);
    assert!(ok, "{out}");
    assert_eq!(out, "added rule u to mount a (generation 3)\n");
    let (ok, out) = cli(&["rules", "list", "--mount", "a"]);
    let ids: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(ok && ids == ["s", "u"], "{out}");
    let (ok, out) = cli(&["status", "--mount", "b"]);
    assert!(
        ok && out.contains("\nmount b\n") && !out.contains("\nmount a\n"),
        "{out}"
    );
    let (ok, out) = cli(&["rules", "clear", "--mount", "nope"]);
    assert!(!ok);
    assert!(
        out.contains("mount: no mount is named `nope` (mounts: a (at /srv/a), b)"),
        "{out}"
    );
}

/// Bad mount flags are refused before anything is bound or mounted, naming the flag.
#[test]
fn bad_mount_flags_are_refused_with_the_flag() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--mount", "/a:/b:c:d"]);
    assert!(
        err.contains("invalid value '/a:/b:c:d' for '--mount <SOURCE:MOUNTPOINT[:NAME]>'"),
        "{err}"
    );
    let err = run(&["--mount", "/a:/m1:x", "--mount", "/b:/m2:x"]);
    assert!(
        err.contains("--mount: the name `x` is given to two mounts"),
        "{err}"
    );
    let err = run(&["--mount", "/a:/m1:x", "--app-mount", "y=/data"]);
    assert!(
        err.contains("--app-mount y=…: no mount is named `y` (names: x)"),
        "{err}"
    );
    let err = run(&["--mount", "/a:/m1:x", "--app-mount", "x=data"]);
    assert!(err.contains("`data` is not an absolute path"), "{err}");
    let err = run(&[
        "--mount",
        "/a:/m1:x",
        "--source",
        "/s",
        "--mountpoint",
        "/m",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}

/// Readiness says whether the mounts are alive, not what faults they serve: an EIO on every op
/// of one mount and a 10 s delay on every op of another leave `/ready` at 200 (a pod must not
/// turn unready because of the chaos it asked for), while apps see both faults.
#[test]
fn faults_do_not_make_the_sidecar_unready() {
    require_fuse!();
    let sc = Sidecar::start_mounts(38, &["eio", "slow", "fine"], &[]);
    sc.call(
        "rules.set",
        json!({"mount": "eio", "rules": [{"type": "fault", "faults": [{"errno": "EIO"}]}]}),
    );
    sc.call(
        "rules.set",
        json!({"mount": "slow", "rules": [{"type": "latency", "methods": ["statfs"], "latency": "10s"}]}),
    );
    assert_eq!(
        errno(std::fs::read_dir(&sc.mount("eio").mnt)),
        Some(libc::EIO)
    );
    let t = Instant::now();
    let (code, body) = common::http_get(sc.addr, "/ready").unwrap();
    assert_eq!((code, body.trim()), (200, "ready"));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let probe = std::process::Command::new(common::bin())
        .args(["probe", "--rpc-listen", &sc.addr.to_string()])
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    // An app's statfs on the slow mount is delayed.
    let slow = sc.mount("slow").mnt.clone();
    let app = std::thread::spawn(move || {
        std::process::Command::new("stat")
            .args(["-f", slow.to_str().unwrap()])
            .output()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!app.is_finished(), "the app's statfs was not delayed");
    sc.call("rules.clear", json!({}));
}
