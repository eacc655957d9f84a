//! Work inside another process's network namespace, on a dedicated thread.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling *thread* only. Doing it on a
//! Tokio worker would move every task later scheduled there into the pod's network; so the
//! work runs on a fresh OS thread that enters the namespace, does its work and ends — it never
//! returns to a pool, so nothing can leak into the wrong namespace. A socket keeps the
//! namespace it was created in, so a thread may open a connection there and hand it back.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

use crate::process::ProcessRef;

/// Why the namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace of process {pid}: the process is gone")]
    Gone { pid: u32 },
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("setns into {}: {source}", path.display())]
    Setns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("the network-namespace thread died")]
    ThreadDied,
}

/// Runs `work` on a new thread inside the network namespace of `process`.
pub async fn run_in<T, F>(process: &ProcessRef, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = process.proc_path("ns/net");
    // Opened here, then checked: the fd pins the namespace, and the check proves it is the
    // namespace of the process we mean (not a later process that got its pid).
    let ns = File::open(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => NetnsError::Gone { pid: process.pid },
        _ => NetnsError::Open {
            path: path.clone(),
            source,
        },
    })?;
    if !process.is_alive() {
        return Err(NetnsError::Gone { pid: process.pid });
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("faultline-netns".into())
        .spawn(move || {
            let result = setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|source| NetnsError::Setns { path, source })
                .map(|()| work());
            let _ = tx.send(result);
            // The thread ends here, still in the pod's namespace: it is never reused.
        })
        .map_err(|_| NetnsError::ThreadDied)?;
    rx.await.map_err(|_| NetnsError::ThreadDied)?
}

/// The process to enter the network namespace with inode `inode` through: `recorded` while it
/// lives, else any live process still in that namespace. A namespace outlives the process a
/// fault recorded when others share it (a `{"pid": N}` target in the host's namespace, a
/// container sharing its pod's), and what was applied there must still be recovered; `None`
/// when no process is left in it (the namespace is gone, and the fault with it).
pub fn holder(recorded: &ProcessRef, inode: u64) -> Option<ProcessRef> {
    use std::os::unix::fs::MetadataExt as _;
    if recorded.is_alive() {
        return Some(recorded.clone());
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == inode)
        })
        .find_map(|pid| ProcessRef::of(pid).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gone process's namespace is found through another process in it, and only then.
    #[test]
    fn a_namespace_outlives_its_recorded_process_while_others_hold_it() {
        use std::os::unix::fs::MetadataExt as _;
        let me = ProcessRef::of(std::process::id()).unwrap();
        let inode = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let gone = ProcessRef {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        let found = holder(&gone, inode).expect("this process is in that namespace");
        assert!(found.is_alive());
        let found_inode = std::fs::metadata(found.proc_path("ns/net")).unwrap().ino();
        assert_eq!(found_inode, inode);
        assert_eq!(
            holder(&me, inode),
            Some(me.clone()),
            "the recorded one first"
        );
        assert_eq!(
            holder(&gone, u64::MAX),
            None,
            "no process in that namespace"
        );
    }

    /// The work runs in the target's namespace; the caller's threads stay where they were.
    #[tokio::test]
    async fn the_callers_namespace_is_untouched() {
        let me = ProcessRef::of(std::process::id()).unwrap();
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inside = run_in(&me, || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .await
        .unwrap();
        assert_eq!(inside, before, "same namespace: our own");
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            before
        );
        let gone = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(matches!(
            run_in(&gone, || ()).await,
            Err(NetnsError::Gone { .. })
        ));
    }
}
