//! `cargo bench -p faultline-sidecar`: fio through a faultline-sidecar mount vs the raw source
//! directory, in the same run (docs/benchmarks.md `## Sidecar`, method of MEASURE.md).
//!
//! Workloads: sequential read/write 1 MiB, random read/write 4 KiB (psync, warm reads with
//! `--invalidate=0` after one full read through the target), and create+stat+unlink of many
//! 4 KiB files. Targets (`support/targets.rs`): raw, the sidecar in `--io-mode exact` and
//! `fast`, each idle and with one non-matching rule, and libfuse's `passthrough_hp` (userspace
//! and kernel passthrough) when `FAULTLINE_BENCH_PASSTHROUGH_HP` names its binary (or it is on
//! PATH), all in one run; each figure is the median (min–max) of the per-round ratios. Also
//! the `rules.set` → next-op round trip.
//!
//! With `FAULTLINE_BENCH_BASELINE=<binary>`: a before/after of that binary and this build under
//! a matching latency rule (8 jobs of random 4 KiB reads, the sidecar's thread count) and the
//! metadata job, in alternating rounds (`support/ab.rs`); `FAULTLINE_BENCH_ONLY=ab` runs only that.
//!
//! Env: `FAULTLINE_BENCH_SECS` (fio job length, default 5), `FAULTLINE_BENCH_ROUNDS` (3),
//! `FAULTLINE_BENCH_FILES` (metadata files, 10000), `FAULTLINE_BENCH_DOCS` (a markdown file whose
//! `## Sidecar` section is replaced with the results), `FAULTLINE_BENCH_PASSTHROUGH_HP`
//! (libfuse's `example/passthrough_hp`, built from libfuse ≥ 3.17 for its kernel passthrough;
//! `FAULTLINE_BENCH_ONLY=<workload substring>` runs one workload).

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
    /// `bin` is this build's binary or a baseline's (`FAULTLINE_BENCH_BASELINE`).
    fn start_bin(bin: &Path, src: &Path, mnt: &Path) -> Self {
        Self::start_with(bin, src, mnt, &[])
    }

    /// This build with extra flags (`--io-mode fast`).
    fn start_with(bin: &Path, src: &Path, mnt: &Path, extra: &[&str]) -> Self {
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
            .args(extra)
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
        faultline_e2e::stop_child(&mut self.child, std::time::Duration::from_secs(10));
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

fn spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(v.to_vec()), min, max)
}

fn cell(r: (f64, f64, f64)) -> String {
    format!("{:.2} ({:.2}–{:.2})", r.0, r.1, r.2)
}

#[path = "support/targets.rs"]
mod targets;

fn main() {
    targets::main();
}
