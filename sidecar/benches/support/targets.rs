//! The idle-cost table (issue 21): every target measured in one run, side by side.
//!
//! Targets: the raw directory; the sidecar in `--io-mode exact` and `--io-mode fast`, each idle
//! (no rules) and with one rule that matches no file of the workload; libfuse's
//! `passthrough_hp` with its userspace data path (`--nopassthrough`: writeback cache, splice,
//! keep_cache), with kernel passthrough, and with its userspace path without the writeback cache
//! (`--nocache`), when `FAULTLINE_BENCH_PASSTHROUGH_HP` names its binary (`cargo xtask bench
//! sidecar` builds one) or `passthrough_hp` is on PATH. Each target has its own source
//! directory and data file on the same ext4. Every round measures every target, in an order
//! that rotates and reverses from round to round; each figure is the median (min–max) of the
//! per-round ratios to raw (or to a `passthrough_hp` reference, same round).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    BIN, FILE_SIZE, JOBS, Job, Sidecar, ab, cell, env_num, fio, median, metadata, round_trip, rpc,
    skip, spread,
};

/// One rule that matches no file of the workload: a read/write fault under another directory,
/// so it is a rule kernel passthrough has to check at open (and finds not matching).
fn non_matching_rule() -> Value {
    json!([{"id": "elsewhere", "type": "fault", "path": "not-here/**", "methods": ["read", "write"], "faults": [{"errno": "EIO"}]}])
}

/// The `passthrough_hp` targets the exact path's random writes are compared with, per round.
const HP_WRITEBACK: &str = "passthrough_hp, userspace";
const HP_NO_WRITEBACK: &str = "passthrough_hp, userspace, no writeback cache";

/// libfuse's passthrough_hp, mounted in the foreground.
struct PassthroughHp {
    child: Child,
    mnt: PathBuf,
}

impl PassthroughHp {
    fn start(bin: &Path, src: &Path, mnt: &Path, flags: &[&str]) -> Self {
        let child = Command::new(bin)
            .arg("--foreground")
            .args(flags)
            .arg(src)
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn passthrough_hp");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mounted(mnt) {
            assert!(Instant::now() < deadline, "passthrough_hp did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            mnt: mnt.into(),
        }
    }
}

/// `mnt` is a mount point: its device differs from its parent's.
fn mounted(mnt: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    dev(mnt).is_some() && dev(mnt) != mnt.parent().and_then(dev)
}

impl Drop for PassthroughHp {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Server {
    None,
    Sidecar(Sidecar),
    /// Held for its `Drop`: unmounts and stops passthrough_hp when the run ends.
    #[allow(dead_code)]
    Hp(PassthroughHp),
}

struct Target {
    name: &'static str,
    dir: PathBuf,
    server: Server,
}

fn passthrough_hp_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FAULTLINE_BENCH_PASSTHROUGH_HP") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FAULTLINE_BENCH_PASSTHROUGH_HP: no file {}",
            p.display()
        );
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("passthrough_hp"))
            .find(|p| p.is_file())
    })
}

fn prep(dir: &Path) {
    let st = Command::new("fio")
        .args([
            "--name=prep",
            &format!("--filename={}", dir.join("data").display()),
            "--rw=write",
            "--bs=1M",
            &format!("--size={FILE_SIZE}"),
            "--ioengine=psync",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("prep fio");
    assert!(st.success(), "fio prep of {}", dir.display());
}

fn targets(work: &Path, hp: Option<&Path>) -> Vec<Target> {
    let mut out = Vec::new();
    let raw = work.join("raw");
    std::fs::create_dir(&raw).expect("mkdir raw");
    prep(&raw);
    out.push(Target {
        name: "raw",
        dir: raw,
        server: Server::None,
    });
    // (column, --io-mode, one non-matching rule, --threads)
    let sidecars: [(&str, &str, bool, &str); 5] = [
        ("exact, idle", "exact", false, "4"),
        ("exact, one non-matching rule", "exact", true, "4"),
        ("exact, idle, 1 reader thread", "exact", false, "1"),
        ("fast, idle", "fast", false, "4"),
        ("fast, one non-matching rule", "fast", true, "4"),
    ];
    for (i, (name, mode, rule, threads)) in sidecars.into_iter().enumerate() {
        let (src, mnt) = (work.join(format!("src{i}")), work.join(format!("mnt{i}")));
        std::fs::create_dir(&src).expect("mkdir src");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        prep(&src);
        let flags = ["--io-mode", mode, "--threads", threads];
        let sc = Sidecar::start_with(Path::new(BIN), &src, &mnt, &flags);
        if rule {
            let r = rpc(sc.addr, "rules.set", json!({"rules": non_matching_rule()}));
            assert!(r.get("result").is_some(), "{r}");
        }
        out.push(Target {
            name,
            dir: mnt,
            server: Server::Sidecar(sc),
        });
    }
    if let Some(hp) = hp {
        // `--nocache`: no writeback cache (nor attribute caching), so every write is a round
        // trip as on the sidecar's exact path — plus a GETXATTR(security.capability) per write,
        // since libfuse does not negotiate FUSE_HANDLE_KILLPRIV_V2: a lower bound.
        let variants: [(&str, &[&str]); 3] = [
            (HP_WRITEBACK, &["--nopassthrough"]),
            ("passthrough_hp, kernel passthrough", &[]),
            (HP_NO_WRITEBACK, &["--nopassthrough", "--nocache"]),
        ];
        for (i, (name, flags)) in variants.into_iter().enumerate() {
            let (src, mnt) = (
                work.join(format!("hpsrc{i}")),
                work.join(format!("hpmnt{i}")),
            );
            std::fs::create_dir(&src).expect("mkdir src");
            std::fs::create_dir(&mnt).expect("mkdir mnt");
            prep(&src);
            let server = PassthroughHp::start(hp, &src, &mnt, flags);
            out.push(Target {
                name,
                dir: mnt,
                server: Server::Hp(server),
            });
        }
    }
    out
}

/// The order of round `round`: rotated by the round, reversed every other round.
fn order(n: usize, round: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// One workload in `rounds` rounds over every target: per target, the ratio to raw of each
/// round, and raw's absolute figures.
fn measure(
    ts: &[Target],
    rounds: usize,
    label: &str,
    unit: &str,
    mut run: impl FnMut(&Path) -> f64,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut ratios = vec![Vec::new(); ts.len()];
    let mut raws = Vec::new();
    for round in 0..rounds {
        let mut got = vec![0.0; ts.len()];
        for i in order(ts.len(), round) {
            // Dirty data of the previous target's writes is flushed first, so its writeback
            // does not run under this target's figure.
            // SAFETY: sync has no preconditions.
            unsafe { libc::sync() };
            got[i] = run(&ts[i].dir);
        }
        raws.push(got[0]);
        for (i, g) in got.iter().enumerate() {
            ratios[i].push(g / got[0]);
            eprintln!(
                "{label:<24} round {round} {:<36} {:>10.1} {unit} ratio {:.3}",
                ts[i].name,
                g,
                g / got[0]
            );
        }
    }
    (ratios, raws)
}

pub(super) fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("needs root for FUSE mounts");
    }
    if !Path::new("/dev/fuse").exists() {
        skip("/dev/fuse missing");
    }
    if Command::new("fio").arg("--version").output().is_err() {
        skip("fio not installed (apt-get install fio)");
    }
    let secs = env_num("FAULTLINE_BENCH_SECS", 5);
    let rounds = env_num("FAULTLINE_BENCH_ROUNDS", 3) as usize;
    let files = env_num("FAULTLINE_BENCH_FILES", 10_000);
    let work = tempfile::Builder::new()
        .prefix("faultline-bench")
        .tempdir_in("/var/tmp")
        .expect("workdir");
    let only = std::env::var("FAULTLINE_BENCH_ONLY").unwrap_or_default();
    let ab = std::env::var_os("FAULTLINE_BENCH_BASELINE").map(|bin| {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "FAULTLINE_BENCH_BASELINE: no file {}",
            bin.display()
        );
        let md = ab::run(&bin, work.path(), rounds, secs, files);
        println!("{md}");
        md
    });
    if only == "ab" {
        return;
    }
    let hp = passthrough_hp_binary();
    let ts = targets(work.path(), hp.as_deref());
    // The references of the exact path's random writes: passthrough_hp's userspace path with and
    // without its writeback cache.
    let hp_refs: Vec<usize> = [HP_WRITEBACK, HP_NO_WRITEBACK]
        .iter()
        .filter_map(|name| ts.iter().position(|t| t.name == *name))
        .collect();
    // (workload, raw's absolute figure, per target: median, min, max of the ratios)
    type Row = (String, String, Vec<(f64, f64, f64)>);
    let mut rows: Vec<Row> = Vec::new();
    // Per exact target and reference: its random 4 KiB writes over the reference's.
    let mut rand_write_vs_hp: Vec<(&str, &str, (f64, f64, f64))> = Vec::new();
    let all: Vec<(&str, Option<Job>)> = JOBS
        .iter()
        .map(|j| (j.name, Some(*j)))
        .chain([("metadata create+stat+unlink", None)])
        .collect();
    for (name, job) in all {
        if !name.contains(only.as_str()) {
            continue;
        }
        let (ratios, raws) = match job {
            Some(job) => measure(&ts, rounds, name, "MiB/s", |d| {
                fio(d, job, secs) / 1048576.0
            }),
            None => measure(&ts, rounds, name, "op/s", |d| {
                let m = metadata(d, files);
                let _ = std::fs::remove_dir(d.join("meta"));
                m
            }),
        };
        if name.starts_with("rand write") {
            for (hp, (t, target)) in hp_refs.iter().flat_map(|&hp| {
                ts.iter()
                    .enumerate()
                    .filter(|(_, t)| t.name.starts_with("exact"))
                    .map(move |t| (hp, t))
            }) {
                let per_round: Vec<f64> = ratios[t]
                    .iter()
                    .zip(&ratios[hp])
                    .map(|(a, b)| a / b)
                    .collect();
                rand_write_vs_hp.push((target.name, ts[hp].name, spread(&per_round)));
            }
        }
        let unit = if job.is_some() { "MiB/s" } else { "op/s" };
        rows.push((
            name.to_string(),
            format!("{:.0} {unit}", median(raws)),
            ratios[1..].iter().map(|r| spread(r)).collect(),
        ));
    }
    let rt = match &ts[1].server {
        Server::Sidecar(sc) => round_trip(sc, 200),
        _ => unreachable!("target 1 is the exact sidecar"),
    };
    let names: Vec<&str> = ts[1..].iter().map(|t| t.name).collect();
    drop(ts);

    let mut md = String::new();
    md.push_str("## Sidecar\n\n");
    md.push_str(&format!(
        "`cargo xtask bench sidecar` ({}), fio {FILE_SIZE} file, psync, {secs} s jobs, warm reads (`--invalidate=0` after one full read through the target), metadata = create + stat + unlink of {files} 4 KiB files. Every target in one run, each with its own source directory on the same ext4; ratio to the raw directory in the same round, median (min–max) of {rounds} rounds whose order rotates and reverses; raw column: median absolute raw figure. \"one non-matching rule\": a read/write EIO rule on `not-here/**`. {}\n\n",
        faultline_e2e::bench::today(),
        match &hp {
            Some(bin) => format!(
                "`passthrough_hp`: {}, same run (`--nopassthrough` = its userspace data path with writeback cache; \"kernel passthrough\" = its default; \"no writeback cache\" = `--nopassthrough --nocache`: every write a round trip as on the sidecar's exact path, plus a GETXATTR per write since libfuse does not negotiate `FUSE_HANDLE_KILLPRIV_V2`, and no attribute cache).",
                match std::env::var("FAULTLINE_BENCH_PASSTHROUGH_HP_VERSION") {
                    Ok(v) => format!("libfuse {v}'s example"),
                    Err(_) => format!("libfuse's example (`{}`)", bin.display()),
                }
            ),
            None => "`passthrough_hp` was not measured in this run (`cargo xtask bench sidecar` builds it; or set `FAULTLINE_BENCH_PASSTHROUGH_HP` to its binary).".to_string(),
        }
    ));
    md.push_str("| workload | raw (abs.) |");
    for n in &names {
        md.push_str(&format!(" {n} |"));
    }
    md.push_str("\n|---|---:|");
    for _ in &names {
        md.push_str("---:|");
    }
    md.push('\n');
    for (name, raw, cells) in &rows {
        md.push_str(&format!("| {name} | {raw} |"));
        for c in cells {
            md.push_str(&format!(" {} |", cell(*c)));
        }
        md.push('\n');
    }
    if !rand_write_vs_hp.is_empty() {
        md.push_str("\nRandom 4 KiB writes of the exact path over `passthrough_hp`'s, ratio per round:\n\n| exact target | over |\n|---|---|\n");
        for (name, reference, r) in &rand_write_vs_hp {
            md.push_str(&format!("| {name} | {reference}: {} |\n", cell(*r)));
        }
    }
    md.push_str(&format!(
        "\nRule update round trip (`rules.set` over HTTP → the next `open` sees the new rule), 200 updates: p50 {:.2} ms, p99 {:.2} ms (target p99 < 5 ms).\n",
        rt.0, rt.1
    ));
    md.push_str(README);
    if let Some(ab) = ab {
        md.push_str(&ab);
    }
    println!("\n{md}");
    if let Ok(path) = std::env::var("FAULTLINE_BENCH_DOCS") {
        if let Err(why) = faultline_e2e::bench::write_section(Path::new(&path), &md) {
            panic!("FAULTLINE_BENCH_DOCS: {why}");
        }
        println!("wrote the ## Sidecar section of {path}");
    }
}

const README: &str = "
Reading the table: `exact` (the default) serves every read and write through the daemon — warm reads from the page cache (`KEEP_CACHE`, invalidated when a rule arrives), writes written through so write faults, delays and mistakes apply to the very `write(2)` — so writes cost what one FUSE round trip costs. The \"1 reader thread\" column is `--threads 1`: one app thread's round trips gained from it in some runs and not in others (the kernel wakes a mount's waiting readers first come, first woken), and every operation of the mount would wait behind one slow source call, so the default stays at 4. `passthrough_hp`'s userspace path buffers writes in its writeback cache, which the sidecar does not use (a write rule could not reach files already open); the \"no writeback cache\" column is the same program writing through (docs/benchmarks.md's hand-written section after this one explains both). `fast` hands files no rule matches at open to kernel FUSE passthrough: their reads and writes never reach the daemon (near raw), and a rule arriving later cannot reach handles opened before it (counted in `faultline_sidecar_bypassed_handles` and logged; see docs/sidecar.md, I/O modes). Metadata (create, stat, unlink) is a round trip per operation in every FUSE server. The machine is shared and noisy (2 cores): ratios move by ±0.1 between runs.
";
