//! Processes as faults name them: a pid *and* its start time and boot, so a pid the kernel has
//! reused for another process is never hit (a stale journal entry, a target that exited).

use std::fs;
use std::path::PathBuf;
use std::str::FromStr;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// A process, identified beyond its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessRef {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot.
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

/// Why a process cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: u32 },
    #[error("{}: {reason}", path.display())]
    Proc { path: PathBuf, reason: String },
}

fn boot_id() -> Result<String, ProcessError> {
    let path = PathBuf::from("/proc/sys/kernel/random/boot_id");
    fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| ProcessError::Proc {
            path,
            reason: e.to_string(),
        })
}

/// The start time in `/proc/<pid>/stat`'s text: field 22, counted after the `(comm)` field,
/// which may itself hold spaces and parentheses (hence the last `)`).
pub(crate) fn start_time_of_stat(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22, the 20th of these.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessRef {
    /// The process `pid` as it is now.
    pub fn of(pid: u32) -> Result<Self, ProcessError> {
        let path = PathBuf::from(format!("/proc/{pid}/stat"));
        let stat = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProcessError::NoSuchProcess { pid });
            }
            Err(e) => {
                return Err(ProcessError::Proc {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let start_time = start_time_of_stat(&stat).ok_or_else(|| ProcessError::Proc {
            path,
            reason: "no start time in it".into(),
        })?;
        Ok(Self {
            pid,
            start_time,
            boot_id: boot_id()?,
        })
    }

    /// Whether this very process still runs (not a later process with its pid).
    pub fn is_alive(&self) -> bool {
        ProcessRef::of(self.pid).is_ok_and(|now| &now == self)
    }

    /// `/proc/<pid>/<entry>`.
    pub fn proc_path(&self, entry: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{entry}", self.pid))
    }
}

/// Pids of the processes whose environment holds `key=value` exactly.
pub fn pids_with_env(key: &str, value: &str) -> Vec<u32> {
    let wanted = format!("{key}={value}");
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .collect()
}

/// A signal by name (`SIGKILL`, `KILL`, `sigterm`) or number (`9`).
pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let trimmed = name.trim();
    if let Ok(n) = trimmed.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| {
        format!("`{name}` is not a signal name (e.g. SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGUSR1)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_process_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time_of_stat(stat), Some(987654));
        assert_eq!(start_time_of_stat("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessRef::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let reused = ProcessRef {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(!reused.is_alive());
        assert!(matches!(
            ProcessRef::of(u32::MAX),
            Err(ProcessError::NoSuchProcess { .. })
        ));
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGKILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("term"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("SIGKILLL").unwrap_err().contains("SIGKILLL"));
        assert!(parse_signal("99").is_err());
    }
}
