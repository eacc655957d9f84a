//! The daemon under measurement and the probes the bench polls.
//!
//! [`Daemon`] runs this build's `faultline-daemon` (`CARGO_BIN_EXE_faultline-daemon`: under
//! `cargo bench` the bench profile, i.e. release) on a loopback port with its own state dir,
//! called with a small blocking HTTP/1.1 JSON-RPC client (one connection per call, as the
//! sidecar bench does: no async runtime in the timing loop). It reaches the test containerd
//! through a symlink to its socket: the harness's clean-up kills every process whose command
//! line names the containerd's directory (see `containerd_options` in `tests/common/mod.rs`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The environment variable that marks every process of a stress fault (the daemon's
/// `stress::FAULT_ENV`); the reference marks its stress-ng the same way.
const FAULT_ENV: &str = "FAULTLINE_FAULT_ID";

const BIN: &str = env!("CARGO_BIN_EXE_faultline-daemon");

/// A running daemon; SIGTERM (it recovers every fault) when dropped.
pub(crate) struct Daemon {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))
}

impl Daemon {
    /// Starts the daemon for the containerd listening on `socket` and waits until it answers.
    pub(crate) fn start(socket: &Path) -> Result<Daemon, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let link = dir.path().join("containerd.sock");
        std::os::unix::fs::symlink(socket, &link).map_err(|e| format!("symlink: {e}"))?;
        let log = std::fs::File::create(dir.path().join("daemon.log"))
            .map_err(|e| format!("daemon.log: {e}"))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let addr = free_addr()?;
        let child = Command::new(BIN)
            .arg("--insecure-listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(free_addr()?.to_string())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--containerd-socket")
            .arg(&link)
            // Never a cluster of the host: nothing measured here talks to Kubernetes.
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{BIN}: {e}"))?;
        let mut daemon = Daemon { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.call("faults.list", json!({})).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!(
                    "faultline-daemon exited: {status}\n{}",
                    daemon.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "faultline-daemon not ready in 30 s\n{}",
                    daemon.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// Its state dir (the journal is in `journal/` there).
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// A JSON-RPC call: the result, or the error object (or the transport error) as text.
    pub(crate) fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let body = body.to_string();
        let io = |e: std::io::Error| format!("{method}: {e}");
        let mut s = TcpStream::connect(self.addr).map_err(io)?;
        s.set_nodelay(true).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(io)?;
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(io)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(io)?;
        let text = String::from_utf8_lossy(&out);
        let (_, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{method}: no HTTP answer: {text}"))?;
        let answer: Value =
            serde_json::from_str(body).map_err(|e| format!("{method}: {e}: {body}"))?;
        match answer.get("error") {
            Some(err) => Err(format!("{method} {params}: {err}")),
            None => Ok(answer["result"].clone()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the child is not reaped yet, so it is ours.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The CPU usage counter of a process's cgroup, resolved once (the bench reads it every
/// millisecond): cgroup v1 `cpuacct.usage`, else v2 `cpu.stat` `usage_usec`.
pub(crate) struct CpuUsage {
    file: PathBuf,
    v2: bool,
}

impl CpuUsage {
    pub(crate) fn of(pid: u32) -> Result<CpuUsage, String> {
        let dirs = faultline_e2e::containerd::cgroup_dirs(pid)?;
        if let Some((_, dir)) = dirs
            .iter()
            .find(|(c, _)| c.split(',').any(|c| c == "cpuacct"))
        {
            return Ok(CpuUsage {
                file: dir.join("cpuacct.usage"),
                v2: false,
            });
        }
        match dirs.iter().find(|(c, _)| c.is_empty()) {
            Some((_, dir)) => Ok(CpuUsage {
                file: dir.join("cpu.stat"),
                v2: true,
            }),
            None => Err(format!("process {pid}: no cpuacct or cgroup v2 hierarchy")),
        }
    }

    /// Nanoseconds of CPU used so far (0 when unreadable: the poll then times out, named).
    pub(crate) fn ns(&self) -> u64 {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        if self.v2 {
            let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec "));
            usec.and_then(|u| u.trim().parse::<u64>().ok())
                .map_or(0, |u| u * 1000)
        } else {
            text.trim().parse().unwrap_or(0)
        }
    }
}

/// Processes that carry `FAULTLINE_FAULT_ID=<mark>` in their environment (a zombie has none).
pub(crate) fn marked(mark: &str) -> Vec<u32> {
    let wanted = format!("{FAULT_ENV}={mark}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .collect()
}

/// The reference for `stress.start`: `stress-ng <args>` spawned by the bench itself into
/// `cgroup_dirs` the way the daemon does it — its own process group, every `cgroup.procs`
/// written between fork and exec, marked with `mark` — with no RPC, no argument check and no
/// journal.
pub(crate) fn spawn_stress_ng(
    args: &[&str],
    cgroup_dirs: &[PathBuf],
    mark: &str,
) -> Result<Child, String> {
    let procs: Vec<std::ffi::CString> = cgroup_dirs
        .iter()
        .map(|d| std::ffi::CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("stress-ng");
    cmd.args(args)
        .env(FAULT_ENV, mark)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: between fork and exec the closure only makes raw syscalls (open, write, close) on
    // memory prepared before the fork; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            for path in &procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if written < 0 {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("stress-ng {}: {e}", args.join(" ")))
}

/// SIGKILL to every process carrying `mark`; whether none is left.
pub(crate) fn kill_marked(mark: &str) -> bool {
    let left = marked(mark);
    for pid in &left {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    left.is_empty()
}
