//! Kernel FUSE passthrough (`--io-mode fast`): which opens the kernel serves itself, and the
//! per-inode bookkeeping the kernel demands.
//!
//! A handle opened in passthrough (`FOPEN_PASSTHROUGH` with a backing id, kernel ≥ 6.9) has
//! its reads, writes and mmap served by the kernel from the backing file: they never reach the
//! daemon, so no rule can touch them, and the kernel cannot switch an open handle back. What
//! still reaches the daemon on such a handle: getattr, setattr (truncate), flush, fsync,
//! fallocate, lseek, copy_file_range, release.
//!
//! The kernel's rules (fs/fuse/iomode.c), which this module keeps:
//! - while an inode has a passthrough handle open, *every* open of it must be passthrough, with
//!   the same backing id (otherwise the app's `open` fails with EIO/EBUSY);
//! - a passthrough open fails while the inode is in caching io mode (a `KEEP_CACHE` handle, or a
//!   `direct_io` handle that was mmapped), so an inode with any daemon-path handle open gets
//!   daemon-path opens only.
//!
//! So an open goes to passthrough when the mode is `fast`, the file is regular and not
//! set-uid/set-gid (below), no loaded rule can touch its reads or writes, and no daemon-path
//! handle of the inode is open; it must go to
//! passthrough when another passthrough handle of the inode is open — even if a rule now
//! matches. Those handles *bypass* the rule: [`Passthrough::rules_changed`] counts them
//! (`faultline_sidecar_bypassed_handles{mount}`) and logs a warning naming the rule and the
//! file, so a fault that cannot be applied is never lost silently.
//!
//! Set-uid files: with FUSE_HANDLE_KILLPRIV_V2 the kernel leaves dropping set-uid/set-gid on a
//! write by another user to the server, which a passthrough write never reaches. So files with
//! those bits are opened on the daemon path (which drops them), and `chmod` adding them to a
//! file open in passthrough is refused with EBUSY (see [`Passthrough::is_open`]).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::BackingId;
use prometheus_client::metrics::gauge::Gauge;

use crate::sync::lock;

/// How opens of regular files are served (`--io-mode`).
pub use faultline_api::iomode::IoMode;

/// Where one open is served.
pub(crate) enum Route {
    /// Kernel passthrough with this backing id (shared by every passthrough handle of the inode).
    Kernel(Arc<BackingId>),
    /// The daemon path (page cache or `direct_io`, as the rules say).
    Daemon,
}

#[derive(Default)]
struct InodeIo {
    backing: Option<Arc<BackingId>>,
    passthrough: usize,
    daemon: usize,
    /// Some loaded rule touches reads or writes of this inode while passthrough handles are open.
    bypassed: bool,
}

/// Per-mount passthrough state.
pub(crate) struct Passthrough {
    /// `fast` mode and the kernel granted FUSE_PASSTHROUGH (set at INIT).
    enabled: AtomicBool,
    mode: IoMode,
    /// The first failed backing-file registration was logged as a warning.
    warned: AtomicBool,
    inodes: Mutex<HashMap<u64, InodeIo>>,
    /// `faultline_sidecar_passthrough_handles{mount}`.
    pub(crate) handles: Gauge,
    /// `faultline_sidecar_bypassed_handles{mount}`.
    pub(crate) bypassed: Gauge,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("enabled", &self.enabled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Passthrough {
    pub(crate) fn new(mode: IoMode, handles: Gauge, bypassed: Gauge) -> Self {
        Self {
            enabled: AtomicBool::new(false),
            mode,
            warned: AtomicBool::new(false),
            inodes: Mutex::new(HashMap::new()),
            handles,
            bypassed,
        }
    }

    /// Whether INIT should ask the kernel for FUSE_PASSTHROUGH.
    pub(crate) fn wanted(&self) -> bool {
        self.mode == IoMode::Fast
    }

    /// `--io-mode`.
    pub(crate) fn mode(&self) -> IoMode {
        self.mode
    }

    /// The kernel granted FUSE_PASSTHROUGH.
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Decides where an open of regular file `ino` goes and counts it. `touched`: some loaded
    /// rule can touch reads or writes of the file; `register`: turns the handle's fd into a
    /// backing id (the `FUSE_DEV_IOC_BACKING_OPEN` ioctl, which needs CAP_SYS_ADMIN). Each
    /// counted open must be given back with [`Passthrough::release`].
    pub(crate) fn route(
        &self,
        ino: u64,
        touched: bool,
        setid: bool,
        fd: impl AsFd,
        register: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Route {
        if !self.enabled() {
            return Route::Daemon;
        }
        let mut inodes = lock(&self.inodes);
        let io = inodes.entry(ino).or_default();
        if io.passthrough > 0
            && let Some(backing) = &io.backing
        {
            // The kernel demands passthrough for every open while one is open.
            io.passthrough += 1;
            self.handles.inc();
            if touched {
                if !io.bypassed {
                    // Normally marked by `rules_changed` already (with the path in its
                    // warning); this is an open racing the rule change. Later opens of an
                    // inode already marked are counted, not logged again: an app reopening
                    // its file in a loop would flood the log.
                    io.bypassed = true;
                    self.bypassed.inc_by(io.passthrough as i64 - 1);
                    tracing::warn!(
                        ino,
                        "file opened in passthrough although a rule matches it: other handles of it are open in passthrough, so its reads and writes bypass the rule until all are closed"
                    );
                }
                self.bypassed.inc();
            }
            return Route::Kernel(backing.clone());
        }
        if touched || setid || io.daemon > 0 {
            io.daemon += 1;
            return Route::Daemon;
        }
        match register(fd.as_fd()) {
            Ok(backing) => {
                let backing = Arc::new(backing);
                io.backing = Some(backing.clone());
                io.passthrough = 1;
                io.bypassed = false;
                self.handles.inc();
                Route::Kernel(backing)
            }
            Err(err) => {
                // E.g. a source on a stacked filesystem deeper than max_stack_depth, or no
                // CAP_SYS_ADMIN in the initial user namespace: this file is served by the
                // daemon, faults stay exact. Said once as a warning (it is likely to repeat
                // for every file), then at debug.
                if self.warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(ino, %err, "FUSE_DEV_IOC_BACKING_OPEN failed: daemon path");
                } else {
                    tracing::warn!(ino, %err, "--io-mode fast: registering a backing file (ioctl FUSE_DEV_IOC_BACKING_OPEN, needs CAP_SYS_ADMIN) failed: such files are served by the daemon");
                }
                io.daemon += 1;
                Route::Daemon
            }
        }
    }

    /// Whether inode `ino` has a handle open in passthrough.
    pub(crate) fn is_open(&self, ino: u64) -> bool {
        self.enabled()
            && lock(&self.inodes)
                .get(&ino)
                .is_some_and(|io| io.passthrough > 0)
    }

    /// A handle counted by [`Passthrough::route`] was released.
    pub(crate) fn release(&self, ino: u64, kernel: bool) {
        if !self.enabled() {
            return;
        }
        let mut inodes = lock(&self.inodes);
        let Some(io) = inodes.get_mut(&ino) else {
            return;
        };
        if kernel {
            io.passthrough = io.passthrough.saturating_sub(1);
            self.handles.dec();
            if io.bypassed {
                self.bypassed.dec();
            }
            if io.passthrough == 0 {
                // Closes the backing id: the kernel dropped the inode's backing file when its
                // last passthrough file was released, before this RELEASE was sent.
                io.backing = None;
                io.bypassed = false;
            }
        } else {
            io.daemon = io.daemon.saturating_sub(1);
        }
        if io.passthrough == 0 && io.daemon == 0 {
            inodes.remove(&ino);
        }
    }

    /// After a rule change: marks the inodes open in passthrough that a loaded rule now touches
    /// (`touched(ino)`), and warns once per newly bypassed inode. Returns the inodes newly
    /// bypassed, for the caller's log.
    pub(crate) fn rules_changed(&self, touched: impl Fn(u64) -> bool) -> Vec<(u64, usize)> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut inodes = lock(&self.inodes);
        let mut fresh = Vec::new();
        let mut total = 0i64;
        for (ino, io) in inodes.iter_mut() {
            if io.passthrough == 0 {
                continue;
            }
            let now = touched(*ino);
            if now && !io.bypassed {
                fresh.push((*ino, io.passthrough));
            }
            io.bypassed = now;
            if now {
                total += io.passthrough as i64;
            }
        }
        self.bypassed.set(total);
        fresh
    }
}
