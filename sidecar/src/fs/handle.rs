//! Open handles (sharded by handle number), aligned bounce buffers for `O_DIRECT`, and the
//! conversions between the source's `stat` and FUSE's attributes.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileType, TimeOrNow};

use crate::sync::{read, write};
use crate::sys;

#[derive(Debug)]
pub(super) struct Handle {
    pub(super) fd: OwnedFd,
    pub(super) ino: u64,
    /// Opened without FOPEN_DIRECT_IO: the kernel may serve reads from its page cache.
    pub(super) cached: bool,
    /// The app asked for O_DIRECT: backing I/O needs aligned buffers.
    pub(super) odirect: bool,
    /// Counted by [`Passthrough::route`]: `Some(true)` served by kernel passthrough,
    /// `Some(false)` by the daemon; `None` not counted (directories, `--io-mode exact`).
    pub(super) route: Option<bool>,
    /// Serialises seek + getdents on directory handles.
    pub(super) dir: Mutex<()>,
}

/// Open file handles, sharded by handle number so that opens, closes and reads on different
/// handles do not meet on one lock. Handle numbers come from a counter and are never reused.
#[derive(Debug, Default)]
pub(super) struct Handles {
    shards: [RwLock<HashMap<u64, Arc<Handle>>>; HANDLE_SHARDS],
}

const HANDLE_SHARDS: usize = 16;

impl Handles {
    pub(super) fn shard(&self, fh: u64) -> &RwLock<HashMap<u64, Arc<Handle>>> {
        &self.shards[(fh % HANDLE_SHARDS as u64) as usize]
    }

    pub(super) fn get(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        read(self.shard(fh)).get(&fh).cloned().ok_or(Errno::EBADF)
    }

    pub(super) fn insert(&self, fh: u64, h: Arc<Handle>) -> Result<(), Errno> {
        write(self.shard(fh)).insert(fh, h);
        Ok(())
    }

    pub(super) fn remove(&self, fh: u64) {
        write(self.shard(fh)).remove(&fh);
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }
}

pub(super) fn systime(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, nsec)
    }
}

pub(super) fn kind_of(mode: u32) -> FileType {
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

pub(super) fn dtype_kind(d: u8) -> Option<FileType> {
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

pub(super) fn to_timespec(t: Option<TimeOrNow>) -> libc::timespec {
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
pub(super) struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    pub(super) fn new(len: usize) -> Result<Self, Errno> {
        let len = len.max(1).next_multiple_of(4096);
        let layout = std::alloc::Layout::from_size_align(len, 4096).map_err(|_| Errno::EINVAL)?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Errno::ENOMEM);
        }
        Ok(Self { ptr, layout })
    }

    pub(super) fn as_mut(&mut self) -> &mut [u8] {
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
    pub(super) static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Set-uid, or set-gid and group-executable: what a write by another user must drop.
pub(super) fn setid(mode: u32) -> bool {
    mode & libc::S_ISUID != 0
        || mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP
}

/// Drops set-uid, and set-gid when group-executable (what the kernel drops on a write or
/// truncate by a caller without CAP_FSETID), from the file behind `fd` (any fd, also `O_PATH`).
pub(super) fn kill_suidgid(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), Errno> {
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
