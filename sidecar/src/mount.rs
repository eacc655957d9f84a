//! Mount lifecycle: checks before mounting (device, stale or busy mountpoint), the multi-threaded
//! FUSE session, and an unmount that cannot hang on in-flight delays or open files.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::fs::PassthroughFs;
use crate::sys;

/// Why the filesystem could not be mounted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MountError {
    #[error(
        "/dev/fuse is missing: the FUSE device must be available (load the `fuse` module, or give the container the device / run it privileged)"
    )]
    DevFuseMissing,
    #[error("mountpoint {path}: {source}")]
    Mountpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "mountpoint {0} is busy: a live FUSE filesystem is already mounted there (another sidecar running?)"
    )]
    Busy(PathBuf),
    #[error("detaching the stale mount at {path} (umount2 MNT_DETACH): {source}")]
    Stale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount({path}): {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`prepare_mountpoint`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    Clean,
    /// A dead FUSE mount (ENOTCONN) of a crashed instance was detached.
    StaleDetached,
}

fn umount2(path: &Path, flags: i32) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: plain syscall on a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), flags) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `path` is a live FUSE mount point (its own mount, FUSE filesystem type).
pub(crate) fn is_live_fuse_mount(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let parent_dev = path
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.dev());
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    sys::statfs_type(&c).is_ok_and(|t| t == sys::FUSE_SUPER_MAGIC) && parent_dev != Some(meta.dev())
}

/// Checks the FUSE device and the mountpoint; detaches a stale mount left by a crashed instance.
pub(crate) fn prepare_mountpoint(mountpoint: &Path) -> Result<Prepared, MountError> {
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::DevFuseMissing);
    }
    let mut prepared = Prepared::Clean;
    let c =
        CString::new(mountpoint.as_os_str().as_bytes()).map_err(|e| MountError::Mountpoint {
            path: mountpoint.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
    // statfs always reaches the FUSE server (stat may be answered from cached attributes), so
    // it is what reveals a dead connection. Stacked stale mounts are peeled one by one.
    for _ in 0..8 {
        let dead = match sys::statfs_type(&c) {
            Err(e) => e.code() == libc::ENOTCONN,
            Ok(_) => std::fs::metadata(mountpoint)
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN)),
        };
        if !dead {
            break;
        }
        tracing::warn!(mountpoint = %mountpoint.display(), "stale FUSE mount (ENOTCONN): detaching it");
        umount2(mountpoint, libc::MNT_DETACH).map_err(|source| MountError::Stale {
            path: mountpoint.into(),
            source,
        })?;
        prepared = Prepared::StaleDetached;
    }
    let meta = std::fs::metadata(mountpoint).map_err(|source| MountError::Mountpoint {
        path: mountpoint.into(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(MountError::Mountpoint {
            path: mountpoint.into(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    if is_live_fuse_mount(mountpoint) {
        return Err(MountError::Busy(mountpoint.into()));
    }
    Ok(prepared)
}

/// A mounted filesystem with its session threads.
pub(crate) struct Mounted {
    session: Option<JoinHandle<std::io::Result<()>>>,
    unmounter: SessionUnmounter,
    fs: PassthroughFs,
    mountpoint: PathBuf,
    /// FUSE connection number (minor of st_dev), for `/sys/fs/fuse/connections/N/abort`.
    conn: Option<u64>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

/// Mounts `fs` (the mount `name`) at `mountpoint` with `threads` `/dev/fuse` readers of its
/// own: each mount is a separate FUSE session, so a slow operation on one never waits for a
/// reader of another.
pub(crate) fn mount(
    fs: PassthroughFs,
    name: &str,
    source: &Path,
    mountpoint: &Path,
    threads: usize,
) -> Result<Mounted, MountError> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("faultline:{}", source.display())),
        MountOption::Subtype("faultline".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(threads.max(1));
    config.clone_fd = true;
    let mut session = Session::new(fs.clone(), mountpoint, &config).map_err(|source| {
        if source.raw_os_error() == Some(libc::EBUSY) {
            MountError::Busy(mountpoint.into())
        } else if source.kind() == std::io::ErrorKind::NotFound && !Path::new("/dev/fuse").exists()
        {
            MountError::DevFuseMissing
        } else {
            MountError::Mount {
                path: mountpoint.into(),
                source,
            }
        }
    })?;
    fs.set_notifier(session.notifier());
    let unmounter = session.unmount_callable();
    let handle = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || session.run())
        .map_err(|source| MountError::Mount {
            path: mountpoint.into(),
            source,
        })?;
    // Only now: a stat of the mountpoint is served by the session threads just started.
    let conn = std::fs::metadata(mountpoint)
        .ok()
        .map(|m| u64::from(libc::minor(m.dev())));
    tracing::info!(mount = %name, source = %source.display(), mountpoint = %mountpoint.display(), threads, "mounted");
    Ok(Mounted {
        session: Some(handle),
        unmounter,
        fs,
        mountpoint: mountpoint.into(),
        conn,
    })
}

impl Mounted {
    /// The session ended on its own (e.g. someone unmounted the filesystem).
    pub(crate) fn session_ended(&self) -> bool {
        self.session.as_ref().is_none_or(|h| h.is_finished())
    }

    fn abort_connection(&self) {
        if let Some(conn) = self.conn {
            let path = format!("/sys/fs/fuse/connections/{conn}/abort");
            match std::fs::write(&path, b"1") {
                Ok(()) => {}
                // fusectl is not mounted (common in containers): the session then ends when
                // the last open file is closed, nothing to warn about.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(%path, "no fusectl: the connection cannot be aborted")
                }
                Err(err) => tracing::warn!(%path, %err, "aborting the FUSE connection failed"),
            }
        }
    }

    /// Unmounts within `timeout`: wakes injected delays, unmounts (lazily if files are still
    /// open, aborting the connection so the session ends), and joins the session threads.
    pub(crate) fn unmount(mut self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        self.fs.inner().shutdown.trigger();
        // Woken delayed ops answer within milliseconds. Unmounting first would make their
        // replies meet a closed connection (fuser logs each as an ERROR on a clean stop).
        let settle = Instant::now() + timeout / 2;
        while self.fs.inner().delayed.load(Ordering::Relaxed) > 0 && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut result = Ok(());
        if !self.session_ended() {
            // fuser's unmounter: umount(2) as root, fusermount3 -u otherwise.
            match self.unmounter.unmount() {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    tracing::warn!(mountpoint = %self.mountpoint.display(), "mount busy: detaching lazily and aborting the connection");
                    if let Err(err) = umount2(&self.mountpoint, libc::MNT_DETACH) {
                        result = Err(err);
                    }
                    self.abort_connection();
                }
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {} // already unmounted
                Err(err) => {
                    tracing::warn!(%err, "unmount failed");
                    result = Err(err);
                }
            }
        }
        while !self.session_ended() {
            if Instant::now() >= deadline {
                self.abort_connection();
                tracing::warn!("session threads still running at the unmount deadline");
                return result;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(h) = self.session.take() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(?err, "session ended with an error"),
                Err(_) => tracing::error!("session thread panicked"),
            }
        }
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
        result
    }
}
