//! The passthrough filesystem: FUSE ops as thin shells over `Inner` helpers that return
//! `Result<T, Errno>`, with the fault plan applied around them.
//!
//! Every op: decide a [`Plan`] from the current rule snapshot (no lock held), then either run at
//! once, or — when a latency rule hit — hand the op to the delay scheduler (`delay.rs`: timers,
//! woken by shutdown, and a bounded pool that runs the op when its delay ends), so a delayed op
//! never occupies one of the `/dev/fuse` reader threads, no thread is spawned per op, and I/O on
//! paths no rule matches keeps flowing.
//!
//! - `mod.rs` (here): the filesystem's state ([`Inner`], [`PassthroughFs`]), the plan/serve
//!   shell every op goes through, and the delayed-op bookkeeping;
//! - `ops.rs`: the `fuser::Filesystem` ops, each a thin shell;
//! - `inner.rs`: what the ops do, as `Inner` methods returning `Result<T, Errno>`;
//! - `handle.rs`: open handles, aligned buffers for `O_DIRECT`, stat/time conversions.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fuser::{Errno, FopenFlags, InitFlags, KernelConfig, Notifier, Request};

use crate::delay::{Delays, Shutdown};
use crate::inject::{Op, Plan};
use crate::inode::InodeTable;
use crate::metrics::MountMetrics;
use crate::passthrough::{IoMode, Passthrough};
use crate::rules::RuleStore;
use crate::sys;

use handle::Handles;

mod handle;
mod inner;

/// Filesystem tuning.
#[derive(Debug, Clone)]
pub(crate) struct FsOptions {
    /// Entry and attribute TTL for inodes no cache-relevant rule matches.
    pub ttl: Duration,
    /// Whether files no rule matches at open are served by kernel passthrough.
    pub io_mode: IoMode,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            io_mode: IoMode::Exact,
        }
    }
}

/// Shared state of the filesystem (owned by the session threads and the delay pool).
pub(crate) struct Inner {
    pub(crate) inodes: InodeTable,
    handles: Handles,
    next_fh: AtomicU64,
    pub rules: Arc<RuleStore>,
    pub metrics: Arc<MountMetrics>,
    pub shutdown: Arc<Shutdown>,
    notifier: OnceLock<Notifier>,
    opts: FsOptions,
    delays: Delays,
    /// Ops delayed by a latency rule and not yet answered.
    pub delayed: AtomicU64,
    /// Kernel passthrough bookkeeping (`--io-mode fast`).
    pub(crate) passthrough: Passthrough,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("inodes", &self.inodes.len())
            .finish_non_exhaustive()
    }
}

/// The FUSE filesystem handed to fuser.
#[derive(Debug, Clone)]
pub(crate) struct PassthroughFs {
    inner: Arc<Inner>,
}

/// Turns a helper result into a reply; `Err` is returned for the metrics.
macro_rules! answer {
    ($r:expr, $reply:ident, |$v:pat_param| $ok:expr) => {
        match $r {
            Ok($v) => {
                $ok;
                Ok(())
            }
            Err(e) => {
                $reply.error(e);
                Err(e)
            }
        }
    };
}

// After `answer!`, which the ops use.
mod ops;

impl PassthroughFs {
    /// INIT: the capabilities and limits the sidecar asks the kernel for.
    fn negotiate(&self, config: &mut KernelConfig) {
        // Not FUSE_ATOMIC_O_TRUNC: with it the kernel sends O_TRUNC inside FUSE_OPEN, so the
        // source file is truncated *before* the kernel's own deny-write check (ETXTBSY for a
        // file being executed). `open(O_RDONLY|O_TRUNC)` of a running program then returned
        // ETXTBSY yet emptied the program under it (SIGBUS), and when the program died in
        // that window the open even succeeded (pjdfstest `open::etxtbsy`). Without the flag the
        // kernel checks first and truncates with a SETATTR after.
        let wanted = [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_ASYNC_DIO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            InitFlags::FUSE_MAX_PAGES,
            // The daemon clears set-uid/set-gid itself (FUSE_WRITE_KILL_SUIDGID on writes, a
            // truncate by a non-root caller). In exchange the kernel marks the superblock
            // SB_NOSEC and stops asking GETXATTR(security.capability) before every write(2):
            // one round trip less per write on the daemon path, and the only one left on a
            // passthrough write.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ];
        for flag in wanted {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "kernel lacks FUSE capability");
            }
        }
        let pt = &self.inner.passthrough;
        if pt.wanted() {
            // Depth 2: the source may itself be on a stacked filesystem (overlayfs).
            match (
                config.add_capabilities(InitFlags::FUSE_PASSTHROUGH),
                config.set_max_stack_depth(2),
            ) {
                (Ok(()), Ok(_)) => pt.enable(),
                _ => tracing::warn!(
                    abi = ?config.kernel_abi(),
                    "--io-mode fast: the kernel does not offer FUSE passthrough (needs Linux >= 6.9): every file is served by the daemon"
                ),
            }
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        tracing::info!(abi = ?config.kernel_abi(), "FUSE session initialised");
    }

    /// Opens the source root and builds the filesystem.
    pub(crate) fn new(
        source: &Path,
        rules: Arc<RuleStore>,
        metrics: Arc<MountMetrics>,
        shutdown: Arc<Shutdown>,
        opts: FsOptions,
    ) -> std::io::Result<Self> {
        let c = std::ffi::CString::new(source.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: plain open of a C string path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                err.kind(),
                format!("open({}) as the source directory: {err}", source.display()),
            ));
        }
        // SAFETY: fd was just returned by open.
        let root = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let st = sys::fstat(root.as_fd()).map_err(|e| {
            std::io::Error::other(format!("fstat({}): errno {}", source.display(), e.code()))
        })?;
        sys::clear_umask();
        let passthrough = Passthrough::new(
            opts.io_mode,
            metrics.passthrough.clone(),
            metrics.bypassed.clone(),
        );
        let inner = Arc::new(Inner {
            inodes: InodeTable::new(root, &st),
            handles: Handles::default(),
            next_fh: AtomicU64::new(1),
            rules,
            metrics,
            delays: Delays::new(&shutdown)?,
            shutdown,
            notifier: OnceLock::new(),
            passthrough,
            opts,
            delayed: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        inner.rules.set_hook(Box::new(move |_snap, fresh| {
            if let Some(inner) = weak.upgrade() {
                inner.invalidate_for(fresh);
                inner.warn_bypassed();
            }
        }));
        Ok(Self { inner })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Installs the session's notifier (cache invalidation needs it).
    pub(crate) fn set_notifier(&self, n: Notifier) {
        let _ = self.inner.notifier.set(n);
    }

    fn plan_ino(&self, op: Op, id: u64) -> Plan {
        self.inner
            .rules
            .decide(op, || self.inner.inodes.path_arc(id))
    }

    fn plan_child(&self, op: Op, parent: u64, name: &OsStr) -> Plan {
        self.inner
            .rules
            .decide(op, || self.inner.inodes.child_path(parent, name))
    }

    /// Runs `work` now, or after the plan's delay on the delay pool.
    fn serve<F>(&self, op: Op, plan: Plan, work: F)
    where
        F: FnOnce(&Inner, &Plan) -> Result<(), Errno> + Send + 'static,
    {
        let start = Instant::now();
        if plan.delay.is_zero() {
            let r = work(&self.inner, &plan);
            self.inner.metrics.finish(op, start, &r, &plan);
            return;
        }
        let inner = self.inner.clone();
        // Counted until replied: unmount waits for this, so no reply meets a closed device. The
        // guard uncounts it even if the op panics (the scheduler catches the panic), so a
        // panicking op cannot leave unmount waiting for a reply that never comes.
        let pending = DelayedOp::new(&inner);
        self.inner.delays.after(plan.delay, move |cut| {
            if cut {
                tracing::debug!(op = op.name(), "injected delay cut short by shutdown");
            }
            let r = work(&inner, &plan);
            drop(pending);
            inner.metrics.finish(op, start, &r, &plan);
        });
    }
}

/// One delayed op counted in `Inner::delayed` while it lives.
struct DelayedOp(Arc<Inner>);

impl DelayedOp {
    fn new(inner: &Arc<Inner>) -> Self {
        inner.delayed.fetch_add(1, Ordering::Relaxed);
        DelayedOp(inner.clone())
    }
}

impl Drop for DelayedOp {
    fn drop(&mut self) {
        self.0.delayed.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the thread `tid` (a FUSE request's pid) is one of this process's.
fn own_thread(tid: u32) -> bool {
    tid != 0 && Path::new("/proc/self/task").join(tid.to_string()).exists()
}

fn req_creds(req: &Request) -> (u32, u32) {
    (req.uid(), req.gid())
}

/// Open flags of a daemon-path file handle.
fn fopen(cached: bool) -> FopenFlags {
    if cached {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::FOPEN_DIRECT_IO
    }
}
