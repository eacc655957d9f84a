//! Test harness: runs the real `faultline-sidecar` binary on a temporary source and mountpoint
//! and talks JSON-RPC to it over plain HTTP/1.1.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Why FUSE tests cannot run here, if they cannot. In CI (`CI=true`) a missing prerequisite is
/// a failure, not a skip: a test that could not run must not count as passed.
pub(crate) fn skip_reason() -> Option<String> {
    let reason = missing_prerequisite()?;
    // The same rule as xtask and faultline-e2e: CI is `true` or `1`.
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "CI is set and FUSE tests cannot run: {reason} (they need root and /dev/fuse)"
    );
    Some(reason)
}

fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse missing".into());
    }
    None
}

/// Timing-sensitive tests run alone: they take this lock exclusively, every other test shares it.
pub(crate) static SERIAL: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Returns early from a test (with a printed reason) when FUSE is unavailable; otherwise holds
/// the shared (or, with `exclusive`, the exclusive) test lock for the rest of the test.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Some(reason) = common::skip_reason() {
            eprintln!("SKIPPED: {reason}: FUSE tests need root and /dev/fuse");
            return;
        }
        let _serial = common::SERIAL.read().unwrap_or_else(|e| e.into_inner());
    };
    (exclusive) => {
        if let Some(reason) = common::skip_reason() {
            eprintln!("SKIPPED: {reason}: FUSE tests need root and /dev/fuse");
            return;
        }
        let _serial = common::SERIAL.write().unwrap_or_else(|e| e.into_inner());
    };
}

pub(crate) fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    l.local_addr().expect("local addr")
}

/// One mount of a test sidecar.
pub(crate) struct TestMount {
    pub name: String,
    pub source: PathBuf,
    pub mnt: PathBuf,
}

pub(crate) struct Sidecar {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// The first mount's source and mountpoint.
    pub source: PathBuf,
    pub mnt: PathBuf,
    /// Named mounts (`--mount SRC:MNT:NAME`); empty: one unnamed mount (`--source/--mountpoint`).
    pub mounts: Vec<TestMount>,
    pub addr: SocketAddr,
    /// What `--rpc-listen` is given (`addr`, or a name for it such as `localhost:PORT`).
    pub listen: String,
    pub log: PathBuf,
}

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline-sidecar")
}

impl Sidecar {
    pub(crate) fn start(seed: u64) -> Self {
        Self::start_with(seed, &[])
    }

    pub(crate) fn start_with(seed: u64, extra: &[&str]) -> Self {
        Self::start_on(seed, None, extra)
    }

    /// Starts with `--rpc-listen HOST:PORT` (PORT free on 127.0.0.1; HOST by default
    /// 127.0.0.1) and `extra` flags.
    pub(crate) fn start_on(seed: u64, host: Option<&str>, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("faultline-sidecar-test")
            .tempdir()
            .expect("tempdir");
        let source = dir.path().join("src");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&source).expect("mkdir src");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        let addr = free_port();
        let mut s = Sidecar {
            child: None,
            mounts: Vec::new(),
            addr,
            listen: host.map_or_else(|| addr.to_string(), |h| format!("{h}:{}", addr.port())),
            log: dir.path().join("sidecar.log"),
            dir,
            source,
            mnt,
        };
        s.spawn(seed, extra);
        s
    }

    /// Starts with one named mount per name (`src-<name>` served at `mnt-<name>`) and `extra`
    /// flags.
    pub(crate) fn start_mounts(seed: u64, names: &[&str], extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("faultline-sidecar-test")
            .tempdir()
            .expect("tempdir");
        let mounts: Vec<TestMount> = names
            .iter()
            .map(|name| {
                let m = TestMount {
                    name: (*name).to_owned(),
                    source: dir.path().join(format!("src-{name}")),
                    mnt: dir.path().join(format!("mnt-{name}")),
                };
                std::fs::create_dir(&m.source).expect("mkdir src");
                std::fs::create_dir(&m.mnt).expect("mkdir mnt");
                m
            })
            .collect();
        let addr = free_port();
        let mut s = Sidecar {
            child: None,
            source: mounts[0].source.clone(),
            mnt: mounts[0].mnt.clone(),
            mounts,
            addr,
            listen: addr.to_string(),
            log: dir.path().join("sidecar.log"),
            dir,
        };
        s.spawn(seed, extra);
        s
    }

    /// The mount named `name`.
    pub(crate) fn mount(&self, name: &str) -> &TestMount {
        self.mounts
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no test mount {name}"))
    }

    /// The `--mount`/`--source` flags of this sidecar.
    pub(crate) fn mount_args(&self) -> Vec<std::ffi::OsString> {
        if self.mounts.is_empty() {
            return vec![
                "--source".into(),
                self.source.clone().into(),
                "--mountpoint".into(),
                self.mnt.clone().into(),
            ];
        }
        self.mounts
            .iter()
            .flat_map(|m| {
                let spec = format!("{}:{}:{}", m.source.display(), m.mnt.display(), m.name);
                ["--mount".into(), spec.into()]
            })
            .collect()
    }

    /// Starts (again) on the same sources and mountpoints.
    pub(crate) fn spawn(&mut self, seed: u64, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let child = Command::new(bin())
            .args(self.mount_args())
            .arg("--rpc-listen")
            .arg(&self.listen)
            .arg("--seed")
            .arg(seed.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sidecar");
        self.child = Some(child);
        self.wait_ready();
    }

    pub(crate) fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("sidecar exited early with {status}: {}", self.logs());
            }
            if http_get(self.addr, "/ready").is_ok_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not ready in 10 s: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for exit; returns the elapsed time.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "sidecar did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn rpc(&self, method: &str, params: Value) -> Value {
        rpc(self.addr, method, params)
    }

    /// The `result`, panicking on an error reply.
    pub(crate) fn call(&self, method: &str, params: Value) -> Value {
        let v = self.rpc(method, params);
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("{method} failed: {v}"),
        }
    }

    pub(crate) fn set_rules(&self, rules: Value) -> u64 {
        self.call("rules.set", json!({ "rules": rules }))["generation"]
            .as_u64()
            .expect("generation")
    }

    pub(crate) fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub(crate) fn s(&self, rel: &str) -> PathBuf {
        self.source.join(rel)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            faultline_e2e::stop_child(&mut c, Duration::from_secs(5));
        }
        // Never leave a mount behind, whatever happened.
        let points = std::iter::once(&self.mnt).chain(self.mounts.iter().map(|m| &m.mnt));
        for point in points {
            if let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) {
                // SAFETY: plain syscall.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

pub(crate) fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    parse_response(&out)
}

fn parse_response(out: &str) -> std::io::Result<(u16, String)> {
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {out}")))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((code, body))
}

pub(crate) fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect rpc");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write rpc");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read rpc");
    let (code, body) = parse_response(&out).expect("http response");
    assert_eq!(code, 200, "{out}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("rpc body {body:?}: {e}"))
}

/// errno of an I/O result.
pub(crate) fn errno<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

pub(crate) fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Whether `path` is a mount point in this process's mount table.
pub(crate) fn is_mounted(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let want = path.to_string_lossy();
    table
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_ref()))
}
