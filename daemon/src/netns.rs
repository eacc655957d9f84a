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

#[cfg(test)]
mod tests {
    use super::*;

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
