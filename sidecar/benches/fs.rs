//! `cargo bench -p faultline-sidecar`: fio through a faultline-sidecar mount vs the raw source
//! directory, in the same run (docs/benchmarks.md `## Sidecar`, method of MEASURE.md).
//!
//! Workloads: sequential read/write 1 MiB, random read/write 4 KiB (psync, warm reads with
//! `--invalidate=0` after one full read through the target), and create+stat+unlink of many
//! 4 KiB files; with 0 rules and with 100 rules that match nothing. Targets alternate order;
//! each figure is the median (min–max) of the per-round ratios. Also the `rules.set` → next-op round trip.
//!
//! With `FAULTLINE_BENCH_BASELINE=<binary>`: a before/after of that binary and this build under
//! a matching latency rule (8 jobs of random 4 KiB reads, the sidecar's thread count) and the
//! metadata job, in alternating rounds (`support/ab.rs`); `FAULTLINE_BENCH_ONLY=ab` runs only that.
//!
//! Env: `FAULTLINE_BENCH_SECS` (fio job length, default 5), `FAULTLINE_BENCH_ROUNDS` (3),
//! `FAULTLINE_BENCH_FILES` (metadata files, 10000), `FAULTLINE_BENCH_DOCS` (a markdown file whose
//! `## Sidecar` section is replaced with the results).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/ab.rs"]
mod ab;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn skip(reason: &str) -> ! {
    println!("sidecar bench SKIPPED: {reason}");
    std::process::exit(0)
}

fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(addr).expect("connect rpc");
    s.set_nodelay(true).ok();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write rpc");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read rpc");
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str(body).expect("rpc json")
}

struct Sidecar {
    child: Child,
    addr: SocketAddr,
    mnt: PathBuf,
}

const BIN: &str = env!("CARGO_BIN_EXE_faultline-sidecar");

impl Sidecar {
    fn start(src: &Path, mnt: &Path) -> Self {
        Self::start_bin(Path::new(BIN), src, mnt)
    }

    /// `bin` is this build's binary or a baseline's (`FAULTLINE_BENCH_BASELINE`).
    fn start_bin(bin: &Path, src: &Path, mnt: &Path) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let child = Command::new(bin)
            .arg("--source")
            .arg(src)
            .arg("--mountpoint")
            .arg(mnt)
            .arg("--rpc-listen")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sidecar");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new(BIN)
            .args(["probe", "--rpc-listen", &addr.to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "sidecar not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sidecar {
            child,
            addr,
            mnt: mnt.into(),
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }
}

#[derive(Clone, Copy)]
struct Job {
    name: &'static str,
    rw: &'static str,
    bs: &'static str,
}

const JOBS: [Job; 4] = [
    Job {
        name: "seq read 1M (warm)",
        rw: "read",
        bs: "1M",
    },
    Job {
        name: "rand read 4K (warm)",
        rw: "randread",
        bs: "4k",
    },
    Job {
        name: "seq write 1M",
        rw: "write",
        bs: "1M",
    },
    Job {
        name: "rand write 4K",
        rw: "randwrite",
        bs: "4k",
    },
];

const FILE_SIZE: &str = "256M";

/// Runs one time-based fio job (psync, warm: `--invalidate=0`) with the job's own `args`;
/// fio's JSON report.
fn fio_json(args: &[&str], secs: u64) -> Value {
    let out = Command::new("fio")
        .args(args)
        .args([
            "--ioengine=psync",
            "--invalidate=0",
            "--time_based",
            &format!("--runtime={secs}"),
            "--output-format=json",
        ])
        .output()
        .expect("run fio");
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fio json")
}

/// fio throughput in bytes/s for one job on `dir/data`.
fn fio(dir: &Path, job: Job, secs: u64) -> f64 {
    let file = dir.join("data");
    if job.rw.contains("read") {
        // Warm: read the whole file once through this target.
        let mut f = std::fs::File::open(&file).expect("open data");
        let mut buf = vec![0u8; 1 << 20];
        while f.read(&mut buf).expect("warm read") > 0 {}
    }
    let v = fio_json(
        &[
            "--name=bench",
            &format!("--filename={}", file.display()),
            &format!("--rw={}", job.rw),
            &format!("--bs={}", job.bs),
            &format!("--size={FILE_SIZE}"),
        ],
        secs,
    );
    let j = &v["jobs"][0];
    let side = if job.rw.contains("read") {
        "read"
    } else {
        "write"
    };
    j[side]["bw_bytes"].as_f64().unwrap_or(0.0)
}

/// create + stat + unlink of `n` 4 KiB files: operations per second (3 ops per file).
fn metadata(dir: &Path, n: u64) -> f64 {
    let d = dir.join("meta");
    std::fs::create_dir_all(&d).expect("meta dir");
    let data = vec![0x5au8; 4096];
    let t = Instant::now();
    for i in 0..n {
        std::fs::write(d.join(format!("f{i}")), &data).expect("create");
    }
    for i in 0..n {
        std::fs::metadata(d.join(format!("f{i}"))).expect("stat");
    }
    for i in 0..n {
        std::fs::remove_file(d.join(format!("f{i}"))).expect("unlink");
    }
    (3 * n) as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn non_matching_rules() -> Value {
    let rules: Vec<Value> = (0..100)
        .map(|i| match i % 4 {
            0 => json!({"type": "latency", "path": format!("nomatch-{i}/**"), "latency": "10ms"}),
            1 => json!({"type": "fault", "path": format!("nomatch-{i}/*.db"), "methods": ["read", "write"], "faults": [{"errno": 5}]}),
            2 => json!({"type": "attrOverride", "path": format!("nomatch-{i}/**"), "attr": {"size": 1}}),
            _ => json!({"type": "mistake", "path": format!("**/nomatch-{i}.bin"), "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1}}),
        })
        .collect();
    Value::Array(rules)
}

/// `rules.set` → the next open sees the new rule: p50/p99 in ms.
fn round_trip(sc: &Sidecar, n: usize) -> (f64, f64) {
    let probe = sc.mnt.join("rt-probe");
    std::fs::write(&probe, b"x").expect("probe file");
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let errno = if i % 2 == 0 { 5 } else { 28 };
        let t = Instant::now();
        let r = rpc(
            sc.addr,
            "rules.set",
            json!({"rules": [{"type": "fault", "path": "rt-probe", "methods": ["open"], "faults": [{"errno": errno}]}]}),
        );
        assert!(r.get("result").is_some(), "{r}");
        let got = std::fs::File::open(&probe)
            .err()
            .and_then(|e| e.raw_os_error());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(got, Some(errno), "the next op sees the new rule");
    }
    rpc(sc.addr, "rules.clear", json!({}));
    times.sort_by(|a, b| a.total_cmp(b));
    (times[n / 2], times[(n * 99 / 100).min(n - 1)])
}

struct Row {
    name: &'static str,
    /// (median, min, max) of the per-round ratios, per rule configuration.
    ratios: [(f64, f64, f64); 2],
    anchor: &'static str,
}

fn spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v.to_vec()), min, max)
}

fn cell(r: (f64, f64, f64)) -> String {
    format!("{:.2} ({:.2}–{:.2})", r.0, r.1, r.2)
}

fn main() {
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
    let raw = work.path().join("raw");
    let src = work.path().join("src");
    let mnt = work.path().join("mnt");
    for d in [&raw, &src, &mnt] {
        std::fs::create_dir(d).expect("mkdir");
    }
    // One data file per target, written once (same size, same filesystem).
    for d in [&raw, &src] {
        let st = Command::new("fio")
            .args([
                "--name=prep",
                &format!("--filename={}", d.join("data").display()),
                "--rw=write",
                "--bs=1M",
                &format!("--size={FILE_SIZE}"),
                "--ioengine=psync",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("prep fio");
        assert!(st.success());
    }
    let sc = Sidecar::start(&src, &mnt);

    let mut rows: Vec<Row> = Vec::new();
    let anchors = ["0.82–0.89", "0.88–0.92", "0.19–0.20", "0.07–0.08"];
    let mut raw_abs: Vec<String> = Vec::new();
    for (ji, job) in JOBS.iter().enumerate() {
        if !job.name.contains(only.as_str()) {
            continue;
        }
        let mut ratios = [(0.0, 0.0, 0.0); 2];
        for (ci, config) in ["0 rules", "100 non-matching rules"].iter().enumerate() {
            if ci == 0 {
                rpc(sc.addr, "rules.clear", json!({}));
            } else {
                rpc(sc.addr, "rules.set", json!({"rules": non_matching_rules()}));
            }
            let mut rs = Vec::new();
            let mut raws = Vec::new();
            for round in 0..rounds {
                let (r, m) = if round % 2 == 0 {
                    let r = fio(&raw, *job, secs);
                    (r, fio(&mnt, *job, secs))
                } else {
                    let m = fio(&mnt, *job, secs);
                    (fio(&raw, *job, secs), m)
                };
                rs.push(m / r);
                raws.push(r);
                eprintln!(
                    "{:<22} {:<24} round {round}: raw {:>8.1} MiB/s, mount {:>8.1} MiB/s, ratio {:.3}",
                    job.name,
                    config,
                    r / 1048576.0,
                    m / 1048576.0,
                    m / r
                );
            }
            ratios[ci] = spread(&rs);
            if ci == 0 {
                raw_abs.push(format!("{:.0} MiB/s", median(raws) / 1048576.0));
            }
        }
        rows.push(Row {
            name: job.name,
            ratios,
            anchor: anchors[ji],
        });
    }
    let mut meta = [(0.0, 0.0, 0.0); 2];
    let configs = if "metadata".contains(only.as_str()) {
        2
    } else {
        0
    };
    for (ci, config) in ["0 rules", "100 non-matching rules"]
        .iter()
        .enumerate()
        .take(configs)
    {
        if ci == 0 {
            rpc(sc.addr, "rules.clear", json!({}));
        } else {
            rpc(sc.addr, "rules.set", json!({"rules": non_matching_rules()}));
        }
        let mut rs = Vec::new();
        let mut raws = Vec::new();
        for round in 0..rounds {
            let (r, m) = if round % 2 == 0 {
                let r = metadata(&raw, files);
                (r, metadata(&mnt, files))
            } else {
                let m = metadata(&mnt, files);
                (metadata(&raw, files), m)
            };
            eprintln!(
                "{:<22} {:<24} round {round}: raw {:>8.0} op/s, mount {:>8.0} op/s, ratio {:.3}",
                "metadata",
                config,
                r,
                m,
                m / r
            );
            rs.push(m / r);
            raws.push(r);
        }
        meta[ci] = spread(&rs);
        if ci == 0 {
            raw_abs.push(format!("{:.0} op/s", median(raws)));
        }
    }
    if configs > 0 {
        rows.push(Row {
            name: "metadata create+stat+unlink",
            ratios: meta,
            anchor: "0.25–0.26",
        });
    }
    let (p50, p99) = round_trip(&sc, 200);
    drop(sc);

    let mut md = String::new();
    md.push_str("## Sidecar\n\n");
    md.push_str(&format!(
        "`cargo bench -p faultline-sidecar` ({}), fio {FILE_SIZE} file, psync, {secs} s jobs, warm reads (`--invalidate=0` after one full read through the target), metadata = create + stat + unlink of {files} 4 KiB files; ratio to the raw source directory on the same ext4 in the same run, median (min–max) of {rounds} alternating rounds; raw column: median absolute raw figure. Anchor: libfuse 3.19 `passthrough_hp` userspace data path, from MEASURE.md.\n\n",
        faultline_e2e::bench::today()
    ));
    md.push_str("| workload | raw (abs.) | sidecar, 0 rules | sidecar, 100 non-matching rules | passthrough_hp |\n|---|---:|---:|---:|---:|\n");
    for (i, r) in rows.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.name,
            raw_abs.get(i).map(String::as_str).unwrap_or(""),
            cell(r.ratios[0]),
            cell(r.ratios[1]),
            r.anchor
        ));
    }
    md.push_str(&format!(
        "\nRule update round trip (`rules.set` over HTTP → the next `open` sees the new rule), 200 updates: p50 {p50:.2} ms, p99 {p99:.2} ms (target p99 < 5 ms).\n"
    ));
    md.push_str(
        "\nReading the table: warm reads of files no rule matches are served from the kernel page cache (`KEEP_CACHE`, attribute TTL), so they track raw; files a read rule matches are opened `direct_io` instead (exact faults, daemon speed). Writes are write-through — every `write(2)` reaches the daemon so write faults, delays and mistakes stay exact — which is why sequential and random writes sit far below raw's page-cache writes, at or above `passthrough_hp` (which uses the writeback cache). Rules are matched with one `GlobSet` pass over a cached inode path, so 100 non-matching rules stay within noise. The machine is shared and noisy (2 cores): ratios move by ±0.1 between runs.\n",
    );
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
