//! The delay scheduler: operations a latency rule delays wait in a timer heap, not on threads.
//!
//! One timer thread keeps the delayed operations in a binary heap ordered by deadline and sleeps
//! on a condition variable until the earliest one (a futex timeout: tens of microseconds late,
//! like the thread-per-op sleep it replaces); when a deadline passes, the operation goes to a
//! queue served by at most [`WORKERS`] threads (started when work waits and none is idle, then
//! kept), which run it — blocking syscalls and the FUSE reply. So an I/O storm under a latency
//! rule holds thousands of heap entries, never thousands of threads, and the `/dev/fuse` readers
//! never sleep in a delay.
//!
//! Tried and dropped: tokio's timers on a small runtime of their own with its blocking pool.
//! Same structure, but tokio's timer wheel has 1 ms resolution and rounds a deadline up to the
//! next tick: a `1ms` latency rule delayed reads by about 2 ms (mean read latency 2.3 ms against
//! 1.3 ms for the thread-per-op baseline, IOPS 0.56 of it; docs/benchmarks.md). An injected
//! latency must be the latency asked for.
//!
//! Shutdown wakes every sleeping delay at once (the op then runs and is answered before the
//! unmount, see `mount.rs`); a delay scheduled after shutdown does not wait.

use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use crate::sync::lock;
use std::time::{Duration, Instant};

/// Threads that run delayed operations once their delay ends.
pub(crate) const WORKERS: usize = 8;

/// Starts shutdown: readiness drops and sleeping delays are woken.
#[derive(Default)]
pub(crate) struct Shutdown {
    stopping: AtomicBool,
    /// Called once by [`Shutdown::trigger`] (the delay schedulers' wake-ups).
    wakers: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("stopping", &self.is_set())
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.stopping.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for wake in wakers {
            wake();
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Runs `wake` at [`Shutdown::trigger`] (at once if that already happened).
    fn on_trigger(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let mut wakers = lock(&self.wakers);
        if self.is_set() {
            drop(wakers);
            wake();
        } else {
            wakers.push(wake);
        }
    }
}

type Job = Box<dyn FnOnce(bool) + Send>;

/// A delayed job in the heap, earliest deadline first (ties in arrival order).
struct Timed {
    at: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: reverse, so the earliest deadline is on top.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Timed>,
    seq: u64,
    /// Jobs whose delay ended (`true`: cut short by shutdown), waiting for a worker.
    ready: VecDeque<(Job, bool)>,
    workers: usize,
    idle: usize,
    /// Shutdown started: delays end at once.
    stopping: bool,
    /// The scheduler was dropped: threads exit once the queue is empty.
    exit: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the timer thread (earlier deadline, shutdown, exit).
    timer: Condvar,
    /// Wakes a worker (a job is ready, exit).
    work: Condvar,
}

impl Shared {
    /// Queues a ready job and makes sure a worker will take it. Returns the job back when no
    /// worker exists and none could be started (the caller then runs it itself).
    fn dispatch(self: &Arc<Self>, st: &mut State, job: Job, cut: bool) -> Option<(Job, bool)> {
        st.ready.push_back((job, cut));
        // `idle` only drops when a woken worker takes the lock again, and the timer may queue a
        // burst while holding it: compare with the queue, so a burst of N expired delays gets
        // up to N workers instead of running one after another on the few that were idle.
        if st.ready.len() > st.idle && st.workers < WORKERS {
            let shared = self.clone();
            match std::thread::Builder::new()
                .name("delay-worker".into())
                .spawn(move || shared.work_loop())
            {
                Ok(_) => st.workers += 1,
                Err(err) if st.workers == 0 => {
                    tracing::error!(%err, "cannot start a delay worker; running the op in place");
                    return st.ready.pop_back();
                }
                Err(err) => tracing::warn!(%err, "cannot start another delay worker"),
            }
        }
        self.work.notify_one();
        None
    }

    fn work_loop(self: Arc<Self>) {
        let mut st = lock(&self.state);
        loop {
            if let Some((job, cut)) = st.ready.pop_front() {
                drop(st);
                run(job, cut);
                st = lock(&self.state);
                continue;
            }
            if st.exit {
                st.workers -= 1;
                return;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }

    fn timer_loop(self: Arc<Self>) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let mut inline = Vec::new();
            while st
                .heap
                .peek()
                .is_some_and(|top| st.stopping || top.at <= now)
            {
                if let Some(Timed { job, .. }) = st.heap.pop() {
                    let cut = st.stopping;
                    inline.extend(self.dispatch(&mut st, job, cut));
                }
            }
            if !inline.is_empty() {
                drop(st);
                for (job, cut) in inline {
                    run(job, cut);
                }
                st = lock(&self.state);
                continue;
            }
            if st.exit && st.heap.is_empty() {
                return;
            }
            st = match st.heap.peek().map(|top| top.at) {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.timer
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.timer.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Runs a job; a panic is logged, not spread to the scheduler's threads.
fn run(job: Job, cut: bool) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(cut))).is_err() {
        tracing::error!("a delayed operation panicked");
    }
}

/// Runs jobs after a delay on a bounded pool.
pub(crate) struct Delays {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Delays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delays").finish_non_exhaustive()
    }
}

impl Delays {
    /// Starts the timer thread; workers start when jobs need them.
    pub(crate) fn new(shutdown: &Shutdown) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            timer: Condvar::new(),
            work: Condvar::new(),
        });
        let timer = shared.clone();
        std::thread::Builder::new()
            .name("delay-timer".into())
            .spawn(move || timer.timer_loop())?;
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        shutdown.on_trigger(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                lock(&shared.state).stopping = true;
                shared.timer.notify_one();
            }
        }));
        Ok(Self { shared })
    }

    /// Runs `job` on the pool after `delay`, or at once when shutdown has started; its argument
    /// says whether shutdown cut the delay short.
    pub(crate) fn after<F>(&self, delay: Duration, job: F)
    where
        F: FnOnce(bool) + Send + 'static,
    {
        let job: Job = Box::new(job);
        let mut st = lock(&self.shared.state);
        if st.stopping {
            if let Some((job, cut)) = self.shared.dispatch(&mut st, job, true) {
                drop(st);
                run(job, cut);
            }
            return;
        }
        let seq = st.seq;
        st.seq += 1;
        let at = Instant::now() + delay;
        let earliest = st.heap.peek().is_none_or(|top| at < top.at);
        st.heap.push(Timed { at, seq, job });
        drop(st);
        if earliest {
            self.shared.timer.notify_one();
        }
    }
}

impl Drop for Delays {
    fn drop(&mut self) {
        // Pending jobs hold the filesystem alive, so by now the heap is empty in practice;
        // the timer thread still runs what is left, then both kinds of threads exit.
        lock(&self.shared.state).exit = true;
        self.shared.timer.notify_one();
        self.shared.work.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_after_their_delay_in_deadline_order() {
        let shutdown = Shutdown::default();
        let delays = Delays::new(&shutdown).unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for (i, ms) in [(2, 60u64), (1, 30), (0, 0)] {
            let t = tx.clone();
            delays.after(Duration::from_millis(ms), move |cut| {
                t.send((i, cut, start.elapsed())).unwrap()
            });
        }
        let got: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(
            got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(),
            [(0, false), (1, false), (2, false)]
        );
        assert!(got[1].2 >= Duration::from_millis(30), "{got:?}");
        assert!(got[2].2 >= Duration::from_millis(60), "{got:?}");
    }

    #[test]
    fn shutdown_cuts_every_delay_short_with_a_bounded_pool() {
        let shutdown = Shutdown::default();
        let delays = Delays::new(&shutdown).unwrap();
        let (tx, rx) = mpsc::channel();
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
        assert!(lock(&delays.shared.state).workers <= WORKERS);

        // After shutdown a new delay does not wait.
        let t = tx.clone();
        delays.after(Duration::from_secs(3600), move |cut| {
            t.send(if cut { 1000 } else { -1 }).unwrap()
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), 1000);
    }
}
