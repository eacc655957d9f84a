//! The passthrough filesystem: FUSE ops as thin shells over `Inner` helpers that return
//! `Result<T, Errno>`, with the fault plan applied around them.
//!
//! Every op: decide a [`Plan`] from the current rule snapshot (no lock held), then either run at
//! once, or — when a latency rule hit — hand the op to the delay scheduler (`delay.rs`: timers,
//! woken by shutdown, and a bounded pool that runs the op when its delay ends), so a delayed op
//! never occupies one of the `/dev/fuse` reader threads, no thread is spawned per op, and I/O on
//! paths no rule matches keeps flowing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::sync::{lock, read, write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::delay::{Delays, Shutdown};
use crate::inject::{CompiledRule, Op, Plan};
use crate::inode::{Inode, InodeTable};
use crate::metrics::{MountMetrics, Outcome};
use crate::passthrough::{IoMode, Passthrough, Route};
use crate::rules::RuleStore;
use crate::sys::{self, CallerCreds, cname};

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

#[derive(Debug)]
struct Handle {
    fd: OwnedFd,
    ino: u64,
    /// Opened without FOPEN_DIRECT_IO: the kernel may serve reads from its page cache.
    cached: bool,
    /// The app asked for O_DIRECT: backing I/O needs aligned buffers.
    odirect: bool,
    /// Counted by [`Passthrough::route`]: `Some(true)` served by kernel passthrough,
    /// `Some(false)` by the daemon; `None` not counted (directories, `--io-mode exact`).
    route: Option<bool>,
    /// Serialises seek + getdents on directory handles.
    dir: Mutex<()>,
}

/// Open file handles, sharded by handle number so that opens, closes and reads on different
/// handles do not meet on one lock. Handle numbers come from a counter and are never reused.
#[derive(Debug, Default)]
struct Handles {
    shards: [RwLock<HashMap<u64, Arc<Handle>>>; HANDLE_SHARDS],
}

const HANDLE_SHARDS: usize = 16;

impl Handles {
    fn shard(&self, fh: u64) -> &RwLock<HashMap<u64, Arc<Handle>>> {
        &self.shards[(fh % HANDLE_SHARDS as u64) as usize]
    }

    fn get(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        read(self.shard(fh)).get(&fh).cloned().ok_or(Errno::EBADF)
    }

    fn insert(&self, fh: u64, h: Arc<Handle>) -> Result<(), Errno> {
        write(self.shard(fh)).insert(fh, h);
        Ok(())
    }

    fn remove(&self, fh: u64) {
        write(self.shard(fh)).remove(&fh);
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
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

fn systime(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, nsec)
    }
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn dtype_kind(d: u8) -> Option<FileType> {
    Some(match d {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_REG => FileType::RegularFile,
        _ => return None,
    })
}

fn to_timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => libc::timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nsec = -i64::from(d.subsec_nanos());
                if nsec < 0 {
                    sec -= 1;
                    nsec += 1_000_000_000;
                }
                libc::timespec {
                    tv_sec: sec,
                    tv_nsec: nsec,
                }
            }
        },
    }
}

/// A buffer aligned for O_DIRECT I/O.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Result<Self, Errno> {
        let len = len.max(1).next_multiple_of(4096);
        let layout = std::alloc::Layout::from_size_align(len, 4096).map_err(|_| Errno::EINVAL)?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Errno::ENOMEM);
        }
        Ok(Self { ptr, layout })
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Inner {
    fn attr(&self, id: u64, st: &libc::stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(id),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: systime(st.st_atime, st.st_atime_nsec),
            mtime: systime(st.st_mtime, st.st_mtime_nsec),
            ctime: systime(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: kind_of(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
            flags: 0,
        }
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        self.handles.get(fh)
    }

    fn add_handle(&self, h: Handle) -> Result<u64, Errno> {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.insert(fh, Arc::new(h))?;
        Ok(fh)
    }

    fn drop_handle(&self, fh: u64) {
        self.handles.remove(fh);
    }

    pub(crate) fn open_handles(&self) -> usize {
        self.handles.len()
    }

    fn ttl<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> Duration {
        if self.rules.volatile(path) {
            Duration::ZERO
        } else {
            self.opts.ttl
        }
    }

    fn ino_ttl(&self, id: u64) -> Duration {
        self.ttl(|| self.inodes.path_arc(id))
    }

    /// Looks `name` up in `parent` and records one kernel reference.
    fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let p = self.inodes.get(parent)?;
        let c = cname(name)?;
        let fd = sys::open_path(p.fd(), &c)?;
        let st = sys::fstat(fd.as_fd())?;
        let inode = self.inodes.remember(&st, fd, parent, name)?;
        Ok(self.attr(inode.id, &st))
    }

    fn getattr(&self, id: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        let st = match fh.and_then(|fh| self.handle(fh).ok()) {
            Some(h) => sys::fstat(h.fd.as_fd())?,
            None => sys::fstat(self.inodes.get(id)?.fd())?,
        };
        Ok(self.attr(id, &st))
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        id: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> Result<FileAttr, Errno> {
        let inode = self.inodes.get(id)?;
        let handle = fh.and_then(|fh| self.handle(fh).ok());
        if let Some(mode) = mode {
            // A passthrough write never reaches us, so we could not drop these bits when
            // another user writes through a handle already open (module passthrough).
            if setid(mode) && self.passthrough.is_open(id) {
                return Err(Errno::EBUSY);
            }
            match &handle {
                Some(h) => sys::fchmod(h.fd.as_fd(), mode & 0o7777)?,
                None => sys::chmod_path(inode.fd(), mode & 0o7777)?,
            }
        }
        if uid.is_some() || gid.is_some() {
            sys::fchownat(inode.fd(), uid, gid)?;
        }
        if let Some(size) = size {
            match &handle {
                Some(h) => sys::ftruncate(h.fd.as_fd(), size)?,
                None => sys::truncate_path(inode.fd(), size)?,
            }
        }
        if atime.is_some() || mtime.is_some() {
            let times = [to_timespec(atime), to_timespec(mtime)];
            sys::utimens(inode.fd(), &times, inode.is_symlink())?;
        }
        self.getattr(id, fh)
    }

    /// Creates a node as the caller (so ownership follows the caller and the source's rules for
    /// set-gid directories), then looks it up.
    fn make(
        &self,
        req: (u32, u32),
        parent: u64,
        name: &OsStr,
        create: impl FnOnce(&Inode, &std::ffi::CStr) -> Result<(), Errno>,
    ) -> Result<FileAttr, Errno> {
        let p = self.inodes.get(parent)?;
        let c = cname(name)?;
        {
            let _creds = CallerCreds::switch(req.0, req.1);
            create(&p, &c)?;
        }
        self.lookup(parent, name)
    }

    fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let p = self.inodes.get(parent)?;
        let np = self.inodes.get(newparent)?;
        let (c, nc) = (cname(name)?, cname(newname)?);
        sys::renameat2(p.fd(), &c, np.fd(), &nc, flags)?;
        // Keep rule paths right: the moved inode now lives at newparent/newname (and, for an
        // exchange, the other one at parent/name).
        if let Ok(st) = sys::fstatat(np.fd(), &nc)
            && let Some(id) = self.inodes.id_of((st.st_dev, st.st_ino))
            && let Ok(inode) = self.inodes.get(id)
        {
            self.inodes.relocate(&inode, newparent, newname);
        }
        if flags & libc::RENAME_EXCHANGE != 0
            && let Ok(st) = sys::fstatat(p.fd(), &c)
            && let Some(id) = self.inodes.id_of((st.st_dev, st.st_ino))
            && let Ok(inode) = self.inodes.get(id)
        {
            self.inodes.relocate(&inode, parent, name);
        }
        Ok(())
    }

    fn open(&self, id: u64, flags: i32, cached: bool) -> Result<u64, Errno> {
        let inode = self.inodes.get(id)?;
        let fd = sys::reopen(inode.fd(), flags)?;
        self.add_handle(Handle {
            fd,
            ino: id,
            cached,
            odirect: flags & libc::O_DIRECT != 0,
            route: None,
            dir: Mutex::new(()),
        })
    }

    /// Opens regular file `id`: kernel passthrough when [`Passthrough::route`] says so, else the
    /// daemon path (`cached`: page cache allowed). `register` turns an fd into a backing id.
    fn open_file(
        &self,
        id: u64,
        flags: i32,
        register: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> std::io::Result<fuser::BackingId>,
    ) -> Result<(u64, Option<Arc<fuser::BackingId>>, bool), Errno> {
        let inode = self.inodes.get(id)?;
        let fd = sys::reopen(inode.fd(), flags)?;
        self.file_handle(id, fd, flags, register)
    }

    /// Registers an open file of inode `id`: (handle, backing id if passthrough, cached).
    fn file_handle(
        &self,
        id: u64,
        fd: OwnedFd,
        flags: i32,
        register: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> std::io::Result<fuser::BackingId>,
    ) -> Result<(u64, Option<Arc<fuser::BackingId>>, bool), Errno> {
        let path = || self.inodes.path_arc(id);
        let cached = !self.rules.reads_touched(path);
        let (backing, route) = if self.passthrough.enabled() {
            let touched = self.rules.data_touched(path);
            let setid = sys::fstat(fd.as_fd()).map_or(true, |st| setid(st.st_mode));
            match self.passthrough.route(id, touched, setid, &fd, register) {
                Route::Kernel(b) => (Some(b), Some(true)),
                Route::Daemon => (None, Some(false)),
            }
        } else {
            (None, None)
        };
        let handle = Handle {
            fd,
            ino: id,
            cached,
            odirect: flags & libc::O_DIRECT != 0,
            route,
            dir: Mutex::new(()),
        };
        let fh = self.add_handle(handle)?;
        Ok((fh, backing, cached))
    }

    /// Releases handle `fh` (and its passthrough count).
    fn release_handle(&self, fh: u64) {
        if let Ok(h) = self.handle(fh)
            && let Some(kernel) = h.route
        {
            self.passthrough.release(h.ino, kernel);
        }
        self.drop_handle(fh);
    }

    #[allow(clippy::type_complexity)]
    fn create(
        &self,
        req: (u32, u32),
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        register: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> std::io::Result<fuser::BackingId>,
    ) -> Result<(FileAttr, u64, Option<Arc<fuser::BackingId>>, bool), Errno> {
        let p = self.inodes.get(parent)?;
        let c = cname(name)?;
        let fd = {
            let _creds = CallerCreds::switch(req.0, req.1);
            sys::openat(
                p.fd(),
                &c,
                (flags | libc::O_CREAT) & !libc::O_NOFOLLOW,
                mode,
            )?
        };
        let st = sys::fstat(fd.as_fd())?;
        // An O_PATH handle for the inode table: by name (one component, cheaper than
        // /proc/self/fd), falling back to /proc if the name already points elsewhere.
        let path_fd = match sys::open_path(p.fd(), &c) {
            Ok(pf)
                if sys::fstat(pf.as_fd())
                    .is_ok_and(|s2| (s2.st_dev, s2.st_ino) == (st.st_dev, st.st_ino)) =>
            {
                pf
            }
            _ => sys::reopen(fd.as_fd(), libc::O_PATH)?,
        };
        let inode = self.inodes.remember(&st, path_fd, parent, name)?;
        let (fh, backing, cached) = self.file_handle(inode.id, fd, flags, register)?;
        Ok((self.attr(inode.id, &st), fh, backing, cached))
    }

    fn read_into(
        &self,
        h: &Handle,
        offset: u64,
        size: u32,
        plan: &Plan,
        reply: ReplyData,
    ) -> Result<(), Errno> {
        if h.odirect {
            let mut buf = Aligned::new(size as usize)?;
            let slice = buf.as_mut();
            let n = sys::pread(h.fd.as_fd(), &mut slice[..size as usize], offset)?;
            plan.data(&mut slice[..n]);
            reply.data(&slice[..n]);
            return Ok(());
        }
        READ_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let n = sys::pread(h.fd.as_fd(), &mut buf[..size as usize], offset)?;
            plan.data(&mut buf[..n]);
            reply.data(&buf[..n]);
            Ok(())
        })
    }

    fn write(&self, h: &Handle, offset: u64, data: &[u8], plan: &Plan) -> Result<usize, Errno> {
        if h.odirect || plan.touches_data() {
            let mut buf = Aligned::new(data.len())?;
            let slice = &mut buf.as_mut()[..data.len()];
            slice.copy_from_slice(data);
            plan.data(slice);
            return sys::pwrite(h.fd.as_fd(), slice, offset);
        }
        sys::pwrite(h.fd.as_fd(), data, offset)
    }

    /// Reads one batch of directory entries; `plus` also looks each one up.
    fn readdir_batch(
        &self,
        fh: u64,
        offset: u64,
    ) -> Result<(Arc<Handle>, Vec<sys::DirEntry>), Errno> {
        let h = self.handle(fh)?;
        let entries = {
            let _g = lock(&h.dir);
            let mut buf = vec![0u8; 32 * 1024];
            sys::getdents(h.fd.as_fd(), offset as i64, &mut buf)?
        };
        Ok((h, entries))
    }

    /// The node id a directory entry will have: known inodes report theirs; unknown ones on
    /// the root device use st_ino, which is what their node id will be. `dev` is the
    /// directory's device.
    fn node_of_dirent(&self, e: &sys::DirEntry, dev: Option<u64>) -> u64 {
        dev.and_then(|dev| self.inodes.id_of((dev, e.ino)))
            .unwrap_or(e.ino)
    }

    fn notifier(&self) -> Option<&Notifier> {
        self.notifier.get()
    }

    /// Drops the kernel's cached data and attributes for `id` (best effort).
    pub(crate) fn invalidate_data(&self, id: u64, offset: i64, len: i64) {
        if let Some(n) = self.notifier()
            && let Err(err) = n.inval_inode(INodeNo(id), offset, len)
            && err.raw_os_error() != Some(libc::ENOENT)
        {
            tracing::debug!(ino = id, ?err, "inval_inode failed");
        }
    }

    /// After a rule change: count the files open in kernel passthrough that a loaded rule now
    /// touches, and name each newly bypassed one in a warning (the rule cannot reach their
    /// reads and writes until they are closed; `--io-mode exact` has no such handles).
    pub(crate) fn warn_bypassed(&self) {
        let fresh = self
            .passthrough
            .rules_changed(|ino| self.rules.data_touched(|| self.inodes.path_arc(ino)));
        for (ino, handles) in fresh {
            let path = self.inodes.path_arc(ino);
            tracing::warn!(
                path = %path.as_deref().unwrap_or("(unknown)"),
                handles,
                "a new rule matches a file open in kernel passthrough (--io-mode fast): its reads and writes bypass the rule until the file is closed and opened again"
            );
        }
    }

    /// After a rule change: drop cached data, attributes and entries of every inode the kernel
    /// knows that a new cache-relevant rule matches.
    pub(crate) fn invalidate_for(&self, fresh: &[Arc<CompiledRule>]) {
        let relevant: Vec<&Arc<CompiledRule>> =
            fresh.iter().filter(|r| r.cache_relevant()).collect();
        if relevant.is_empty() || self.notifier().is_none() {
            return;
        }
        let mut count = 0usize;
        for inode in self.inodes.snapshot() {
            let path = self.inodes.path_arc(inode.id);
            if !relevant.iter().any(|r| r.matches_path(path.as_deref())) {
                continue;
            }
            count += 1;
            self.invalidate_data(inode.id, 0, 0);
            if let (Some(loc), Some(n)) = (inode.location(), self.notifier())
                && let Err(err) = n.inval_entry(INodeNo(loc.parent), &loc.name)
                && err.raw_os_error() != Some(libc::ENOENT)
            {
                tracing::debug!(ino = inode.id, ?err, "inval_entry failed");
            }
        }
        tracing::debug!(inodes = count, "kernel caches invalidated for new rules");
    }
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

impl PassthroughFs {
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

/// Set-uid, or set-gid and group-executable: what a write by another user must drop.
fn setid(mode: u32) -> bool {
    mode & libc::S_ISUID != 0
        || mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP
}

/// Drops set-uid, and set-gid when group-executable (what the kernel drops on a write or
/// truncate by a caller without CAP_FSETID), from the file behind `fd` (any fd, also `O_PATH`).
fn kill_suidgid(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), Errno> {
    let st = sys::fstat(fd)?;
    let mut mode = st.st_mode & 0o7777;
    mode &= !libc::S_ISUID;
    if st.st_mode & libc::S_IXGRP != 0 {
        mode &= !libc::S_ISGID;
    }
    if mode != st.st_mode & 0o7777 {
        sys::chmod_path(fd, mode)?;
    }
    Ok(())
}

/// Open flags of a daemon-path file handle.
fn fopen(cached: bool) -> FopenFlags {
    if cached {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::FOPEN_DIRECT_IO
    }
}

impl Filesystem for PassthroughFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
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
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let plan = self.plan_child(Op::Lookup, parent.0, name);
        let name = name.to_os_string();
        self.serve(Op::Lookup, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| fs.lookup(parent.0, &name));
            answer!(r, reply, |a| {
                let ttl = fs.ino_ttl(a.ino.0);
                reply.entry(&ttl, &plan.attr(a, true), Generation(0))
            })
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let start = Instant::now();
        self.inner.inodes.forget(ino.0, nlookup);
        let elapsed = start.elapsed();
        self.inner.metrics.record(Op::Forget, elapsed, Outcome::Ok);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let plan = self.plan_ino(Op::Getattr, ino.0);
        self.serve(Op::Getattr, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| fs.getattr(ino.0, fh.map(|f| f.0)));
            answer!(r, reply, |a| reply
                .attr(&fs.ino_ttl(ino.0), &plan.attr(a, false)))
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let plan = self.plan_ino(Op::Setattr, ino.0);
        // FUSE_HANDLE_KILLPRIV_V2: a truncate by a caller without CAP_FSETID must drop set-uid
        // and set-gid (the kernel leaves it to us; fuser does not pass FATTR_KILL_SUIDGID, so
        // "not root" stands for "without CAP_FSETID"). Our own truncate runs as root, which
        // the source filesystem would let keep them.
        let kill = size.is_some() && mode.is_none() && req.uid() != 0;
        self.serve(Op::Setattr, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let a = fs.setattr(ino.0, mode, uid, gid, size, atime, mtime, fh.map(|f| f.0))?;
                if kill && a.perm & 0o6000 != 0 {
                    kill_suidgid(fs.inodes.get(ino.0)?.fd())?;
                    return fs.getattr(ino.0, fh.map(|f| f.0));
                }
                Ok(a)
            });
            answer!(r, reply, |a| reply
                .attr(&fs.ino_ttl(ino.0), &plan.attr(a, false)))
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let plan = self.plan_ino(Op::Readlink, ino.0);
        self.serve(Op::Readlink, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::readlinkat(fs.inodes.get(ino.0)?.fd()));
            answer!(r, reply, |t| reply.data(&t))
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let plan = self.plan_child(Op::Mknod, parent.0, name);
        let (name, creds) = (name.to_os_string(), req_creds(req));
        self.serve(Op::Mknod, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                fs.make(creds, parent.0, &name, |p, c| {
                    sys::mknodat(p.fd(), c, mode, u64::from(rdev))
                })
            });
            answer!(r, reply, |a| reply.entry(
                &fs.ino_ttl(a.ino.0),
                &plan.attr(a, true),
                Generation(0)
            ))
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let plan = self.plan_child(Op::Mkdir, parent.0, name);
        let (name, creds) = (name.to_os_string(), req_creds(req));
        self.serve(Op::Mkdir, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                fs.make(creds, parent.0, &name, |p, c| sys::mkdirat(p.fd(), c, mode))
            });
            answer!(r, reply, |a| reply.entry(
                &fs.ino_ttl(a.ino.0),
                &plan.attr(a, true),
                Generation(0)
            ))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let plan = self.plan_child(Op::Unlink, parent.0, name);
        let name = name.to_os_string();
        self.serve(Op::Unlink, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::unlinkat(fs.inodes.get(parent.0)?.fd(), &cname(&name)?, 0));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let plan = self.plan_child(Op::Rmdir, parent.0, name);
        let name = name.to_os_string();
        self.serve(Op::Rmdir, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                sys::unlinkat(
                    fs.inodes.get(parent.0)?.fd(),
                    &cname(&name)?,
                    libc::AT_REMOVEDIR,
                )
            });
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let plan = self.plan_child(Op::Symlink, parent.0, link_name);
        let (name, creds) = (link_name.to_os_string(), req_creds(req));
        let target = target.as_os_str().to_os_string();
        self.serve(Op::Symlink, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let t = cname(&target)?;
                fs.make(creds, parent.0, &name, |p, c| sys::symlinkat(&t, p.fd(), c))
            });
            answer!(r, reply, |a| reply.entry(
                &fs.ino_ttl(a.ino.0),
                &plan.attr(a, true),
                Generation(0)
            ))
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_child(Op::Rename, parent.0, name);
        let (name, newname) = (name.to_os_string(), newname.to_os_string());
        self.serve(Op::Rename, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| fs.rename(parent.0, &name, newparent.0, &newname, flags.bits()));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let plan = self.plan_child(Op::Link, newparent.0, newname);
        let newname = newname.to_os_string();
        self.serve(Op::Link, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let inode = fs.inodes.get(ino.0)?;
                let np = fs.inodes.get(newparent.0)?;
                sys::link_fd(inode.fd(), np.fd(), &cname(&newname)?)?;
                fs.lookup(newparent.0, &newname)
            });
            answer!(r, reply, |a| reply.entry(
                &fs.ino_ttl(a.ino.0),
                &plan.attr(a, true),
                Generation(0)
            ))
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let plan = self.plan_ino(Op::Open, ino.0);
        self.serve(Op::Open, plan, move |fs, plan| {
            // Decided after any delay: the rules of that moment choose the route.
            let r = plan
                .check()
                .and_then(|()| fs.open_file(ino.0, flags.0, |fd| reply.open_backing(fd)));
            answer!(r, reply, |(fh, backing, cached)| match backing {
                Some(b) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &b),
                None => reply.opened(FileHandle(fh), fopen(cached)),
            })
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let plan = self.plan_ino(Op::Read, ino.0);
        self.serve(Op::Read, plan, move |fs, plan| {
            let h = match plan.check().and_then(|()| fs.handle(fh.0)) {
                Ok(h) => h,
                Err(e) => {
                    reply.error(e);
                    return Err(e);
                }
            };
            let r = fs.read_into(&h, offset, size, plan, reply);
            // A handle opened before a read rule arrived still uses the page cache: drop what
            // this read put there so the next read comes back to the rule.
            if h.cached && plan.volatile {
                fs.invalidate_data(h.ino, offset as i64, i64::from(size));
            }
            r
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let plan = self.plan_ino(Op::Write, ino.0);
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let work = move |fs: &Inner, plan: &Plan, data: &[u8], reply: ReplyWrite| {
            let r = plan.check().and_then(|()| {
                let h = fs.handle(fh.0)?;
                let n = fs.write(&h, offset, data, plan)?;
                if kill {
                    kill_suidgid(h.fd.as_fd())?;
                }
                Ok(n)
            });
            answer!(r, reply, |n| reply.written(n as u32))
        };
        if plan.delay.is_zero() {
            let start = Instant::now();
            let r = work(&self.inner, &plan, data, reply);
            self.inner.metrics.finish(Op::Write, start, &r, &plan);
        } else {
            let data = data.to_vec();
            self.serve(Op::Write, plan, move |fs, plan| {
                work(fs, plan, &data, reply)
            });
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Flush, ino.0);
        self.serve(Op::Flush, plan, move |fs, plan| {
            // Nothing to do: data is written through, locks are the kernel's. No fsync here.
            let r = plan.check().and_then(|()| fs.handle(fh.0).map(drop));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Release, ino.0);
        self.serve(Op::Release, plan, move |fs, plan| {
            // The handle is released even when a rule fails the call: the kernel forgets it.
            fs.release_handle(fh.0);
            answer!(plan.check(), reply, |()| reply.ok())
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Fsync, ino.0);
        self.serve(Op::Fsync, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::fsync(fs.handle(fh.0)?.fd.as_fd(), datasync));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let plan = self.plan_ino(Op::Opendir, ino.0);
        self.serve(Op::Opendir, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let f = (flags.0 & !libc::O_ACCMODE) | libc::O_RDONLY | libc::O_DIRECTORY;
                fs.open(ino.0, f, true)
            });
            answer!(r, reply, |fh| reply
                .opened(FileHandle(fh), FopenFlags::empty()))
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let plan = self.plan_ino(Op::Readdir, ino.0);
        self.serve(Op::Readdir, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| fs.readdir_batch(fh.0, offset));
            answer!(r, reply, |(h, entries)| {
                let dev = sys::fstat(h.fd.as_fd()).ok().map(|st| st.st_dev);
                for e in &entries {
                    let kind = dtype_kind(e.kind).unwrap_or(FileType::RegularFile);
                    let node = fs.node_of_dirent(e, dev);
                    if reply.add(
                        INodeNo(node),
                        e.next as u64,
                        kind,
                        OsStr::from_bytes(&e.name),
                    ) {
                        break;
                    }
                }
                reply.ok()
            })
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let plan = self.plan_ino(Op::Readdirplus, ino.0);
        self.serve(Op::Readdirplus, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| fs.readdir_batch(fh.0, offset));
            answer!(r, reply, |(h, entries)| {
                for e in &entries {
                    let name = OsStr::from_bytes(&e.name);
                    if name == "." || name == ".." {
                        // The kernel does not link these; any attributes do.
                        let Ok(st) = sys::fstat(h.fd.as_fd()) else {
                            continue;
                        };
                        let attr = fs.attr(fs.node_of_dirent(e, Some(st.st_dev)), &st);
                        if reply.add(
                            attr.ino,
                            e.next as u64,
                            name,
                            &Duration::ZERO,
                            &attr,
                            Generation(0),
                        ) {
                            break;
                        }
                        continue;
                    }
                    let Ok(attr) = fs.lookup(ino.0, name) else {
                        continue;
                    };
                    let attr = plan.attr(attr, true);
                    let ttl = fs.ino_ttl(attr.ino.0);
                    if reply.add(attr.ino, e.next as u64, name, &ttl, &attr, Generation(0)) {
                        // Not sent: undo the lookup reference.
                        fs.inodes.forget(attr.ino.0, 1);
                        break;
                    }
                }
                reply.ok()
            })
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Releasedir, ino.0);
        self.serve(Op::Releasedir, plan, move |fs, plan| {
            fs.drop_handle(fh.0);
            answer!(plan.check(), reply, |()| reply.ok())
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Fsyncdir, ino.0);
        self.serve(Op::Fsyncdir, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::fsync(fs.handle(fh.0)?.fd.as_fd(), datasync));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        // The sidecar's own readiness check (`GET /ready` stats each mount) must see whether
        // the mount is alive, not the faults it serves: a rule failing or delaying every op of
        // one volume must not make the pod unready.
        let plan = if own_thread(req.pid()) {
            Plan::none()
        } else {
            self.plan_ino(Op::Statfs, ino.0)
        };
        self.serve(Op::Statfs, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::fstatvfs(fs.inodes.get(ino.0)?.fd()));
            answer!(r, reply, |s| reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ))
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Setxattr, ino.0);
        let (name, value) = (name.to_os_string(), value.to_vec());
        self.serve(Op::Setxattr, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                sys::setxattr(fs.inodes.get(ino.0)?.fd(), &cname(&name)?, &value, flags)
            });
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let plan = self.plan_ino(Op::Getxattr, ino.0);
        let name = name.to_os_string();
        self.serve(Op::Getxattr, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let inode = fs.inodes.get(ino.0)?;
                let mut buf = vec![0u8; size as usize];
                let n = sys::getxattr(inode.fd(), &cname(&name)?, &mut buf)?;
                buf.truncate(n);
                Ok((n, buf))
            });
            answer!(r, reply, |(n, buf)| if size == 0 {
                reply.size(n as u32)
            } else {
                reply.data(&buf)
            })
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let plan = self.plan_ino(Op::Listxattr, ino.0);
        self.serve(Op::Listxattr, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let inode = fs.inodes.get(ino.0)?;
                let mut buf = vec![0u8; size as usize];
                let n = sys::listxattr(inode.fd(), &mut buf)?;
                buf.truncate(n);
                Ok((n, buf))
            });
            answer!(r, reply, |(n, buf)| if size == 0 {
                reply.size(n as u32)
            } else {
                reply.data(&buf)
            })
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let plan = self.plan_ino(Op::Removexattr, ino.0);
        let name = name.to_os_string();
        self.serve(Op::Removexattr, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::removexattr(fs.inodes.get(ino.0)?.fd(), &cname(&name)?));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions, so the kernel checks access itself and never asks;
        // answering keeps a kernel that asks anyway working.
        let plan = self.plan_ino(Op::Access, ino.0);
        self.serve(Op::Access, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| fs.inodes.get(ino.0).map(drop));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let plan = self.plan_child(Op::Create, parent.0, name);
        let (name, creds) = (name.to_os_string(), req_creds(req));
        self.serve(Op::Create, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                fs.create(creds, parent.0, &name, mode, flags, |fd| {
                    reply.open_backing(fd)
                })
            });
            answer!(r, reply, |(a, fh, backing, cached)| {
                let (ttl, attr) = (fs.ino_ttl(a.ino.0), plan.attr(a, true));
                match backing {
                    Some(b) => reply.created_passthrough(
                        &ttl,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                        &b,
                    ),
                    None => {
                        reply.created(&ttl, &attr, Generation(0), FileHandle(fh), fopen(cached))
                    }
                }
            })
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let plan = self.plan_ino(Op::Fallocate, ino.0);
        self.serve(Op::Fallocate, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::fallocate(fs.handle(fh.0)?.fd.as_fd(), mode, offset, length));
            answer!(r, reply, |()| reply.ok())
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let plan = self.plan_ino(Op::Lseek, ino.0);
        self.serve(Op::Lseek, plan, move |fs, plan| {
            let r = plan
                .check()
                .and_then(|()| sys::lseek(fs.handle(fh.0)?.fd.as_fd(), offset, whence));
            answer!(r, reply, |off| reply.offset(off))
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let plan = self.plan_ino(Op::CopyFileRange, ino_in.0);
        self.serve(Op::CopyFileRange, plan, move |fs, plan| {
            let r = plan.check().and_then(|()| {
                let (a, b) = (fs.handle(fh_in.0)?, fs.handle(fh_out.0)?);
                sys::copy_file_range(
                    a.fd.as_fd(),
                    offset_in,
                    b.fd.as_fd(),
                    offset_out,
                    len,
                    flags.bits() as u32,
                )
            });
            answer!(r, reply, |n| reply.written(n as u32))
        });
    }
}
