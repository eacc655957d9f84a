//! An I/O storm under a latency rule: 2,000 concurrent delayed reads through a real mount must
//! not make the sidecar start a thread per delayed operation. Its thread count
//! (`/proc/PID/task`) is sampled during the storm and must stay within a small constant of the
//! idle count (the delay scheduler's bounded pool); all reads are answered, also when a SIGTERM
//! cuts their delay short.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Sidecar;
use serde_json::json;

const READS: usize = 2000;
/// The delay pool's workers (`delay::WORKERS`) plus slack for the runtimes' own threads.
const SLACK: usize = 8 + 8;

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_storm_of_delayed_reads_keeps_the_thread_count_flat() {
    require_fuse!(exclusive);
    let mut sc = Sidecar::start(21);
    std::fs::write(sc.s("storm"), vec![7u8; 4096]).unwrap();
    // Long enough that every read is still sleeping when the last one arrives; SIGTERM ends it.
    sc.set_rules(
        json!([{"type": "latency", "path": "storm", "methods": ["read"], "latency": "60s"}]),
    );
    let pid = sc.pid();
    let idle = threads(pid);
    assert!(idle > 0, "no /proc/{pid}/task");

    // Opened after the rule: direct_io, so every read reaches the daemon.
    let file = Arc::new(File::open(sc.m("storm")).unwrap());
    let readers: Vec<_> = (0..READS)
        .map(|_| {
            let f = file.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    f.read_at(&mut buf, 0).map(|n| (n, buf[0]))
                })
                .expect("spawn reader")
        })
        .collect();

    let mut peak = idle;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        peak = peak.max(threads(pid));
        let delayed = sc.call("status", json!({}))["delayedOps"]
            .as_u64()
            .unwrap_or(0);
        if delayed as usize == READS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {delayed} of {READS} reads delayed after 40 s; threads: idle {idle}, peak {peak}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        peak = peak.max(threads(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{READS} delayed reads in flight: sidecar threads idle {idle}, peak {peak}");
    assert!(
        peak <= idle + SLACK,
        "{READS} delayed reads took the sidecar from {idle} to {peak} threads"
    );

    // Shutdown wakes every delay; each read is answered with its data before the unmount.
    sc.signal(libc::SIGTERM);
    sc.wait_exit(Duration::from_secs(30));
    for r in readers {
        assert_eq!(r.join().unwrap().unwrap(), (4096, 7));
    }
    let logs = sc.logs();
    assert!(!logs.contains("ERROR"), "{logs}");
}
