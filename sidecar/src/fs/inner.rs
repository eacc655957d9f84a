//! What the FUSE ops do, as methods of [`Inner`] that return `Result<T, Errno>`: the ops in
//! `ops.rs` wrap them in the fault plan and turn the result into a reply.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{Errno, FileAttr, INodeNo, Notifier, ReplyData, TimeOrNow};

use crate::inject::{CompiledRule, Plan};
use crate::inode::Inode;
use crate::passthrough::Route;
use crate::sync::lock;
use crate::sys::{self, CallerCreds, cname};

use super::Inner;
use super::handle::{Aligned, Handle, READ_BUF, kind_of, setid, systime, to_timespec};

impl Inner {
    pub(super) fn attr(&self, id: u64, st: &libc::stat) -> FileAttr {
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

    pub(super) fn handle(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        self.handles.get(fh)
    }

    pub(super) fn add_handle(&self, h: Handle) -> Result<u64, Errno> {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.insert(fh, Arc::new(h))?;
        Ok(fh)
    }

    pub(super) fn drop_handle(&self, fh: u64) {
        self.handles.remove(fh);
    }

    pub(crate) fn open_handles(&self) -> usize {
        self.handles.len()
    }

    pub(super) fn ttl<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> Duration {
        if self.rules.volatile(path) {
            Duration::ZERO
        } else {
            self.opts.ttl
        }
    }

    pub(super) fn ino_ttl(&self, id: u64) -> Duration {
        self.ttl(|| self.inodes.path_arc(id))
    }

    /// Looks `name` up in `parent` and records one kernel reference.
    pub(super) fn lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let p = self.inodes.get(parent)?;
        let c = cname(name)?;
        let fd = sys::open_path(p.fd(), &c)?;
        let st = sys::fstat(fd.as_fd())?;
        let inode = self.inodes.remember(&st, fd, parent, name)?;
        Ok(self.attr(inode.id, &st))
    }

    pub(super) fn getattr(&self, id: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        let st = match fh.and_then(|fh| self.handle(fh).ok()) {
            Some(h) => sys::fstat(h.fd.as_fd())?,
            None => sys::fstat(self.inodes.get(id)?.fd())?,
        };
        Ok(self.attr(id, &st))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn setattr(
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
    pub(super) fn make(
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

    pub(super) fn rename(
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

    pub(super) fn open(&self, id: u64, flags: i32, cached: bool) -> Result<u64, Errno> {
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
    pub(super) fn open_file(
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
    pub(super) fn file_handle(
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
    pub(super) fn release_handle(&self, fh: u64) {
        if let Ok(h) = self.handle(fh)
            && let Some(kernel) = h.route
        {
            self.passthrough.release(h.ino, kernel);
        }
        self.drop_handle(fh);
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn create(
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

    pub(super) fn read_into(
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

    pub(super) fn write(
        &self,
        h: &Handle,
        offset: u64,
        data: &[u8],
        plan: &Plan,
    ) -> Result<usize, Errno> {
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
    pub(super) fn readdir_batch(
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
    pub(super) fn node_of_dirent(&self, e: &sys::DirEntry, dev: Option<u64>) -> u64 {
        dev.and_then(|dev| self.inodes.id_of((dev, e.ino)))
            .unwrap_or(e.ino)
    }

    pub(super) fn notifier(&self) -> Option<&Notifier> {
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
