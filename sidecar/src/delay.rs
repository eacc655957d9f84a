//! The delay scheduler: operations a latency rule delays wait on timers, not on threads.
//!
//! One small tokio runtime of its own: a single worker thread drives the timers (tokio's timer
//! wheel: O(1) to arm, no thread per sleeping op), and when a delay ends the operation itself —
//! blocking syscalls and the FUSE reply — runs on the runtime's blocking pool, bounded by
//! [`WORKERS`] threads. So an I/O storm under a latency rule holds thousands of *timers*, never
//! thousands of threads, and the `/dev/fuse` readers never sleep in a delay.
//!
//! Why not a timer heap with a hand-made worker pool: it would be the same structure (a timer
//! thread, a queue, N workers) written again, with its own wake-up and shutdown races to get
//! right; tokio is already linked for the RPC side and its timers and blocking pool are tested.
//! The runtime is separate from the RPC runtime so that RPC load cannot delay a delayed op's
//! answer and a storm of delayed ops cannot starve the RPC workers.
//!
//! Shutdown wakes every sleeping delay at once (the op then runs and is answered before the
//! unmount, see `mount.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Threads that run delayed operations once their delay ends.
pub(crate) const WORKERS: usize = 8;

/// Wakes sleeping delays at shutdown.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    stopping: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.stopping.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Sleeps `d` unless shutdown starts first (or has started); returns `true` if cut short.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a trigger in between still wakes us.
        notified.as_mut().enable();
        if self.is_set() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            () = notified => true,
        }
    }
}

/// Runs jobs after a delay on a bounded pool.
#[derive(Debug)]
pub(crate) struct Delays {
    rt: Option<tokio::runtime::Runtime>,
    shutdown: Arc<Shutdown>,
}

impl Delays {
    pub(crate) fn new(shutdown: Arc<Shutdown>) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(WORKERS)
            .thread_name("delay")
            .enable_time()
            .build()?;
        Ok(Self {
            rt: Some(rt),
            shutdown,
        })
    }

    /// Runs `job` on the pool after `delay`, or at once when shutdown starts; its argument says
    /// whether shutdown cut the delay short.
    pub(crate) fn after<F>(&self, delay: Duration, job: F)
    where
        F: FnOnce(bool) + Send + 'static,
    {
        let Some(rt) = &self.rt else {
            job(true);
            return;
        };
        let shutdown = self.shutdown.clone();
        rt.spawn(async move {
            let cut = shutdown.sleep(delay).await;
            // A panic in `job` ends up in the JoinError, not in a dead thread.
            if let Err(err) = tokio::task::spawn_blocking(move || job(cut)).await {
                tracing::error!(%err, "delayed operation failed");
            }
        });
    }
}

impl Drop for Delays {
    fn drop(&mut self) {
        // The last reference to the filesystem may go away on an RPC worker; a runtime must not
        // be dropped (blocking) there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn jobs_run_after_their_delay_and_shutdown_cuts_delays_short() {
        let shutdown = Arc::new(Shutdown::default());
        let delays = Delays::new(shutdown.clone()).unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let t = tx.clone();
        delays.after(Duration::from_millis(30), move |_| t.send(0).unwrap());
        assert_eq!(rx.recv().unwrap(), 0);
        assert!(start.elapsed() >= Duration::from_millis(30), "waited");

        // 500 ops delayed by an hour: all answered once shutdown starts.
        for i in 1..=500 {
            let t = tx.clone();
            delays.after(Duration::from_secs(3600), move |cut| {
                t.send(if cut { i } else { -i }).unwrap()
            });
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "still sleeping"
        );
        shutdown.trigger();
        let mut got: Vec<i32> = (0..500)
            .map(|_| rx.recv_timeout(Duration::from_secs(20)).expect("woken"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (1..=500).collect::<Vec<_>>());

        // After shutdown a new delay does not wait.
        let t = tx.clone();
        delays.after(Duration::from_secs(3600), move |cut| {
            t.send(if cut { 1000 } else { -1 }).unwrap()
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), 1000);
    }
}
