//! stress-ng inside the target's cgroups.
//!
//! The child joins every cgroup of the target between fork and exec (it writes `0` — "the
//! writing process" — to each `cgroup.procs`), so stress-ng never runs a cycle outside the
//! target's limits: the same guarantee as starting it stopped, moving it and continuing it,
//! without the window in which a stopped child is not yet anybody's. Its workers inherit the
//! cgroups. stress-ng runs in its own process group, and every process of it carries
//! `FAULTLINE_FAULT_ID=<faultId>` in its environment: stopping kills the group and then any
//! process with that variable, so a worker that changed its group, or a stress-ng started just
//! before a crash (pid never journaled), is still found.
//!
//! Arguments come from `faultline_api::convert::stress` (or the raw `stressngStressors` split
//! on whitespace) and are passed as an argument vector, never through a shell; they are
//! checked first with `stress-ng --dry-run`, so bad options are an error of the call, not a
//! stress-ng that silently exits.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use faultline_api::convert::stress::StressPlan;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::process::{ProcessRef, pids_with_env};

/// The environment variable that marks every process of a stress fault.
pub(crate) const FAULT_ENV: &str = "FAULTLINE_FAULT_ID";

/// Why stress could not start or stop.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StressError {
    #[error("stress-ng is not installed (looked for {})", path.display())]
    NotInstalled { path: PathBuf },
    #[error("stress-ng refused the arguments `{args}`: {stderr}")]
    BadArguments { args: String, stderr: String },
    #[error("start stress-ng in the cgroups of process {pid}: {source}")]
    Spawn {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("stress-ng processes of fault {fault_id} still run after SIGKILL: {pids:?}")]
    Survivors { fault_id: String, pids: Vec<u32> },
}

/// Where stress-ng is: `$PATH`, else the Debian location.
pub(crate) fn find_stress_ng() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("stress-ng"))
        .find(|p| p.is_file())
}

/// Checks the arguments with `stress-ng --dry-run` (parses them, runs nothing).
pub(crate) async fn check_args(stress_ng: &Path, plan: &StressPlan) -> Result<(), StressError> {
    let out = tokio::process::Command::new(stress_ng)
        .arg("--dry-run")
        .args(&plan.args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|_| StressError::NotInstalled {
            path: stress_ng.to_path_buf(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(StressError::BadArguments {
        args: plan.args.join(" "),
        stderr,
    })
}

/// Starts stress-ng as `plan` says, inside the cgroups `cgroup_dirs` (the target's), marked
/// with `fault_id`. Returns stress-ng's process; a task reaps it when it exits.
pub(crate) fn start(
    stress_ng: &Path,
    plan: &StressPlan,
    target_pid: u32,
    cgroup_dirs: &[PathBuf],
    fault_id: &str,
) -> Result<ProcessRef, StressError> {
    let spawn_err = |source| StressError::Spawn {
        pid: target_pid,
        source,
    };
    // Everything the child touches is prepared here: between fork and exec only
    // async-signal-safe calls are allowed (no allocation).
    let procs: Vec<CString> = cgroup_dirs
        .iter()
        .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| spawn_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let oom = plan
        .oom_score_adj
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_default();
    let mut cmd = tokio::process::Command::new(stress_ng);
    cmd.args(&plan.args)
        .env(FAULT_ENV, fault_id)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only makes raw syscalls (setpgid, open, write, close) on memory
    // prepared before the fork; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for path in &procs {
                write_file(path, b"0")?;
            }
            if !oom.is_empty() {
                write_file(c"/proc/self/oom_score_adj", &oom)?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let pid = child.id().unwrap_or_default();
    let process = ProcessRef::of(pid).map_err(|e| spawn_err(std::io::Error::other(e)))?;
    let fault_id = fault_id.to_owned();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) => tracing::info!(fault_id, %status, "stress-ng exited"),
            Err(err) => tracing::warn!(fault_id, %err, "waiting for stress-ng"),
        }
    });
    Ok(process)
}

/// `open(path, O_WRONLY)`, `write(bytes)`, `close` with raw syscalls (safe after fork).
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string; the fd is closed on every path.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if written < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Kills every process of the fault: stress-ng's group, then whatever still carries the mark;
/// waits (up to 2 s) until none is left.
pub(crate) async fn stop(
    fault_id: &str,
    stress_ng: Option<&ProcessRef>,
) -> Result<(), StressError> {
    if let Some(p) = stress_ng.filter(|p| p.is_alive()) {
        let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = pids_with_env(FAULT_ENV, fault_id);
        if left.is_empty() {
            return Ok(());
        }
        for pid in &left {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            return Err(StressError::Survivors {
                fault_id: fault_id.to_owned(),
                pids: left,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
