//! Before/after of the sidecar's I/O path under a latency rule (issue 14, point 4): this
//! build's binary against a baseline binary (`FAULTLINE_BENCH_BASELINE`), in alternating rounds
//! of one run, on the same source directory.
//!
//! Per round and binary: a fresh mount; fio, 8 jobs of random 4 KiB reads (psync) of one file a
//! MATCHING latency rule (1 ms, `read`) delays, while the sidecar's threads (`/proc/PID/task`)
//! are sampled; then the rule is cleared and the metadata job (create + stat + unlink) runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::{Sidecar, cell, fio_json, metadata, rpc, spread};

const DELAY: &str = "1ms";
const JOBS: u32 = 8;

/// One binary's figures in one round.
#[derive(Debug, Clone, Copy)]
struct Figures {
    iops: f64,
    /// fio's mean completion latency, ms.
    lat_ms: f64,
    idle_threads: usize,
    peak_threads: usize,
    meta: f64,
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// 8-job random 4 KiB reads of `dir/data`: (IOPS, mean latency in ms).
fn fio_delayed(dir: &Path, secs: u64) -> (f64, f64) {
    let v = fio_json(
        &[
            "--name=delayed",
            &format!("--filename={}", dir.join("data").display()),
            "--rw=randread",
            "--bs=4k",
            "--size=64M",
            &format!("--numjobs={JOBS}"),
            "--group_reporting",
        ],
        secs,
    );
    let read = &v["jobs"][0]["read"];
    let iops = read["iops"].as_f64().unwrap_or(0.0);
    let lat_ms = read["clat_ns"]["mean"].as_f64().unwrap_or(0.0) / 1e6;
    (iops, lat_ms)
}

fn one(bin: &Path, src: &Path, mnt: &Path, secs: u64, files: u64, tag: &str) -> Figures {
    let sc = Sidecar::start_bin(bin, src, mnt);
    let pid = sc.child.id();
    let r = rpc(
        sc.addr,
        "rules.set",
        json!({"rules": [{"type": "latency", "path": "data", "methods": ["read"], "latency": DELAY}]}),
    );
    assert!(r.get("result").is_some(), "{r}");
    let idle_threads = threads(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(idle_threads));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(threads(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let (iops, lat_ms) = fio_delayed(mnt, secs);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    rpc(sc.addr, "rules.clear", json!({}));
    // A fresh directory each time: an ext4 directory that once held thousands of entries stays
    // large, and the first run in a new one would be measured faster than the rest.
    let meta = metadata(&mnt.join(tag), files);
    Figures {
        iops,
        lat_ms,
        idle_threads,
        peak_threads: peak.load(Ordering::Relaxed),
        meta,
    }
}

fn fmt_spread(v: &[f64], digits: usize) -> String {
    let (m, lo, hi) = spread(v);
    format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
}

/// Runs the comparison; returns its markdown.
pub(super) fn run(baseline: &Path, work: &Path, rounds: usize, secs: u64, files: u64) -> String {
    let src = work.join("ab-src");
    let mnt = work.join("ab-mnt");
    for d in [&src, &mnt] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(src.join("data"), vec![0x33u8; 64 << 20]).expect("data file");
    let current = Path::new(super::BIN);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [(&Path, bool); 2] = if round % 2 == 0 {
            [(baseline, false), (current, true)]
        } else {
            [(current, true), (baseline, false)]
        };
        for (bin, is_after) in order {
            let tag = format!("meta-{round}-{is_after}");
            let f = one(bin, &src, &mnt, secs, files, &tag);
            eprintln!(
                "latency A/B round {round} {:<6}: {:>7.0} IOPS, mean {:.2} ms, threads idle {} peak {}, metadata {:>6.0} op/s",
                if is_after { "after" } else { "before" },
                f.iops,
                f.lat_ms,
                f.idle_threads,
                f.peak_threads,
                f.meta
            );
            if is_after {
                after.push(f);
            } else {
                before.push(f);
            }
        }
    }
    let col = |v: &[Figures], f: fn(&Figures) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    let ratio = |f: fn(&Figures) -> f64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| f(a) / f(b))
            .collect()
    };
    let iops = |f: &Figures| f.iops;
    let lat = |f: &Figures| f.lat_ms;
    let meta = |f: &Figures| f.meta;
    let idle = |f: &Figures| f.idle_threads as f64;
    let peak = |f: &Figures| f.peak_threads as f64;
    let mut md = format!(
        "\n### Before/after: the I/O path under a latency rule (issue 14, point 4)\n\n\
         `FAULTLINE_BENCH_BASELINE=<old binary> cargo bench -p faultline-sidecar`: both binaries in one run, \
         {rounds} rounds, order alternating, a fresh mount of the same source per round and binary. \
         Delayed reads: fio, {JOBS} jobs of random 4 KiB reads (psync, {secs} s) of a 64 MiB file that a \
         latency rule (`{DELAY}`, `read`) matches; threads = the sidecar's `/proc/PID/task`, sampled every \
         10 ms. Metadata: create + stat + unlink of {files} 4 KiB files, no rules. Median (min–max) over rounds; \
         ratio = after / before per round.\n\n\
         | figure | before | after | after / before |\n|---|---:|---:|---:|\n"
    );
    md.push_str(&format!(
        "| delayed rand read 4K, {JOBS} jobs: IOPS | {} | {} | {} |\n",
        fmt_spread(&col(&before, iops), 0),
        fmt_spread(&col(&after, iops), 0),
        cell(spread(&ratio(iops)))
    ));
    md.push_str(&format!(
        "| delayed rand read 4K: mean latency, ms | {} | {} | {} |\n",
        fmt_spread(&col(&before, lat), 3),
        fmt_spread(&col(&after, lat), 3),
        cell(spread(&ratio(lat)))
    ));
    md.push_str(&format!(
        "| sidecar threads, idle (rule set) | {} | {} | |\n",
        fmt_spread(&col(&before, idle), 0),
        fmt_spread(&col(&after, idle), 0),
    ));
    md.push_str(&format!(
        "| sidecar threads, peak during the delayed reads | {} | {} | |\n",
        fmt_spread(&col(&before, peak), 0),
        fmt_spread(&col(&after, peak), 0),
    ));
    md.push_str(&format!(
        "| metadata create+stat+unlink, op/s | {} | {} | {} |\n",
        fmt_spread(&col(&before, meta), 0),
        fmt_spread(&col(&after, meta), 0),
        cell(spread(&ratio(meta)))
    ));
    md
}
