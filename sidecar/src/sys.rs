//! Thin, safe wrappers over the `*at` syscalls the passthrough needs.
//!
//! Everything works relative to `O_PATH` file descriptors of the source tree, so a rename in the
//! source never makes an inode point at the wrong file. Every helper returns `Result<T, Errno>`
//! (the FUSE reply wants an errno, nothing else); callers log context where it matters.

use std::ffi::{CStr, CString, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use fuser::Errno;

/// The last OS error as a FUSE errno (EIO if the OS gave none).
pub(crate) fn last_errno() -> Errno {
    Errno::from_i32(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    )
}

fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 { Err(last_errno()) } else { Ok(ret) }
}

fn check_size(ret: libc::ssize_t) -> Result<usize, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as usize)
    }
}

/// A file name as a C string. Names from the kernel never contain NUL; reject them if they do.
pub(crate) fn cname(name: &OsStr) -> Result<CString, Errno> {
    CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)
}

const EMPTY: &CStr = c"";

/// `/proc/self/fd/N`: re-opens an `O_PATH` descriptor with real access flags, and serves the
/// calls (xattrs, chmod, truncate) that refuse `O_PATH` descriptors.
pub(crate) fn proc_path(fd: RawFd) -> CString {
    // A decimal number never contains NUL.
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

pub(crate) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: i32,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall on valid pointers; the returned fd is owned by us.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` under `dir` as an `O_PATH` handle without following a final symlink.
pub(crate) fn open_path(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
}

/// Re-opens an `O_PATH` descriptor with `flags` through `/proc/self/fd`.
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd, Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: plain syscall on a valid C string.
    let new = check(unsafe {
        libc::open(
            path.as_ptr(),
            (flags & !libc::O_NOFOLLOW & !libc::O_CREAT & !libc::O_EXCL) | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd from open.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub(crate) fn fstatat(dir: BorrowedFd<'_>, name: &CStr) -> Result<libc::stat, Errno> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: st is a valid out pointer; on success the kernel filled it.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat, Errno> {
    fstatat(fd, EMPTY)
}

pub(crate) fn fstatvfs(fd: BorrowedFd<'_>) -> Result<libc::statvfs, Errno> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid out pointer.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub(crate) fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// Hard-links the file behind an `O_PATH` descriptor (through `/proc/self/fd`, which needs no
/// `CAP_DAC_READ_SEARCH`).
pub(crate) fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: plain syscall.
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            path.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub(crate) fn renameat2(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    new_dir: BorrowedFd<'_>,
    new: &CStr,
    flags: u32,
) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe {
        libc::renameat2(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

pub(crate) fn readlinkat(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is valid for buf.len() bytes.
    let n = check_size(unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

pub(crate) fn fchownat(
    fd: BorrowedFd<'_>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), Errno> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: plain syscall; -1 (u32::MAX) leaves an id unchanged.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub(crate) fn chmod_path(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: plain syscall.
    check(unsafe { libc::chmod(path.as_ptr(), mode) }).map(drop)
}

pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

pub(crate) fn truncate_path(fd: BorrowedFd<'_>, size: u64) -> Result<(), Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: plain syscall.
    check(unsafe { libc::truncate(path.as_ptr(), size as libc::off_t) }).map(drop)
}

pub(crate) fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) }).map(drop)
}

/// `utimensat` on an `O_PATH` descriptor (symlinks included) or an open file.
pub(crate) fn utimens(
    fd: BorrowedFd<'_>,
    times: &[libc::timespec; 2],
    is_symlink: bool,
) -> Result<(), Errno> {
    if is_symlink {
        // SAFETY: plain syscall on a valid times array.
        check(unsafe {
            libc::utimensat(
                fd.as_raw_fd(),
                EMPTY.as_ptr(),
                times.as_ptr(),
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(drop)
    } else {
        let path = proc_path(fd.as_raw_fd());
        // SAFETY: plain syscall on a valid times array.
        check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) })
            .map(drop)
    }
}

pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    // SAFETY: buf is valid for buf.len() bytes.
    check_size(unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as libc::off_t,
        )
    })
}

pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    // SAFETY: buf is valid for buf.len() bytes.
    check_size(unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            offset as libc::off_t,
        )
    })
}

pub(crate) fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> Result<(), Errno> {
    // SAFETY: plain syscalls.
    check(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })
    .map(drop)
}

pub(crate) fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    check(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    })
    .map(drop)
}

pub(crate) fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> Result<i64, Errno> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

pub(crate) fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
    flags: u32,
) -> Result<usize, Errno> {
    let mut off_in = off_in as libc::loff_t;
    let mut off_out = off_out as libc::loff_t;
    // SAFETY: offsets are valid in/out pointers.
    check_size(unsafe {
        libc::copy_file_range(
            fd_in.as_raw_fd(),
            &mut off_in,
            fd_out.as_raw_fd(),
            &mut off_out,
            len as usize,
            flags,
        )
    })
}

/// The xattr calls go through `/proc/self/fd/N` because they refuse `O_PATH` descriptors.
pub(crate) fn getxattr(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: buf valid for its length (a zero length asks for the size).
    check_size(unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

pub(crate) fn setxattr(
    fd: BorrowedFd<'_>,
    name: &CStr,
    value: &[u8],
    flags: i32,
) -> Result<(), Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: value valid for its length.
    check(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub(crate) fn listxattr(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: buf valid for its length.
    check_size(unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

pub(crate) fn removexattr(fd: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    let path = proc_path(fd.as_raw_fd());
    // SAFETY: plain syscall.
    check(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).map(drop)
}

/// One entry read by [`getdents`].
pub(crate) struct DirEntry {
    pub ino: u64,
    /// Offset to resume *after* this entry.
    pub next: i64,
    pub kind: u8,
    pub name: Vec<u8>,
}

/// Reads directory entries of an open directory starting at `offset` (a cookie from a previous
/// entry's `next`, or 0). Returns an empty vector at the end.
pub(crate) fn getdents(
    fd: BorrowedFd<'_>,
    offset: i64,
    buf: &mut [u8],
) -> Result<Vec<DirEntry>, Errno> {
    lseek(fd, offset, libc::SEEK_SET)?;
    // SAFETY: buf valid for its length; getdents64 writes at most that many bytes.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(last_errno());
    }
    let n = n as usize;
    let mut out = Vec::new();
    let mut pos = 0usize;
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    while pos + 19 <= n {
        let rec = &buf[pos..n];
        let ino = u64::from_ne_bytes(rec[0..8].try_into().map_err(|_| Errno::EIO)?);
        let next = i64::from_ne_bytes(rec[8..16].try_into().map_err(|_| Errno::EIO)?);
        let reclen = u16::from_ne_bytes(rec[16..18].try_into().map_err(|_| Errno::EIO)?) as usize;
        if reclen == 0 || reclen > rec.len() {
            return Err(Errno::EIO);
        }
        let kind = rec[18];
        let name_bytes = &rec[19..reclen];
        let end = name_bytes
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(name_bytes.len());
        out.push(DirEntry {
            ino,
            next,
            kind,
            name: name_bytes[..end].to_vec(),
        });
        pos += reclen;
    }
    Ok(out)
}

/// Switches this thread's filesystem uid/gid to the caller's for the lifetime of the guard, so
/// files are created owned by the caller and the source filesystem applies its own rules
/// (set-gid directories, quotas). Only effective when the daemon runs as root.
pub(crate) struct CallerCreds {
    active: bool,
}

impl CallerCreds {
    pub(crate) fn switch(uid: u32, gid: u32) -> Self {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || (uid == 0 && gid == 0) {
            return Self { active: false };
        }
        // SAFETY: setfsgid/setfsuid change only this thread's fs credentials.
        unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
        }
        Self { active: true }
    }
}

impl Drop for CallerCreds {
    fn drop(&mut self) {
        if self.active {
            // SAFETY: restore the daemon's (root) fs credentials on this thread.
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(0);
            }
        }
    }
}

/// Process umask 0: the kernel already applied the caller's umask to the modes it sends us.
pub(crate) fn clear_umask() {
    // SAFETY: umask cannot fail.
    unsafe {
        libc::umask(0);
    }
}

/// `statfs(2)` of a path; `f_type` tells a FUSE mount (0x65735546) from anything else.
pub(crate) fn statfs_type(path: &CStr) -> Result<i64, Errno> {
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: valid out pointer.
    check(unsafe { libc::statfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statfs succeeded.
    Ok(unsafe { st.assume_init() }.f_type)
}

pub(crate) const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
