//! `attrOverride`: report different attributes from getattr/lookup (and the attributes that come
//! with create/mkdir/… replies).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faultline_api::iorule::{AttrOverride, FileKind, Timespec};
use fuser::{FileAttr, FileType, INodeNo};

use super::Injector;

#[derive(Debug)]
pub(super) struct AttrOverrider {
    pub attr: AttrOverride,
}

fn time(ts: Timespec) -> SystemTime {
    let nsec = ts.nsec.clamp(0, 999_999_999) as u32;
    if ts.sec >= 0 {
        UNIX_EPOCH + Duration::new(ts.sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::new(ts.sec.unsigned_abs(), 0) + Duration::new(0, nsec)
    }
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::NamedPipe => FileType::NamedPipe,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Directory => FileType::Directory,
        FileKind::RegularFile => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Socket => FileType::Socket,
    }
}

impl Injector for AttrOverrider {
    fn attr(&self, attr: &mut FileAttr, entry: bool) {
        let o = &self.attr;
        // In an entry reply the inode number is the node id the kernel keys the inode by, so
        // an `ino` override only applies to getattr replies (what `stat` shows as st_ino).
        if let Some(ino) = o.ino
            && !entry
        {
            attr.ino = INodeNo(ino);
        }
        if let Some(v) = o.size {
            attr.size = v;
        }
        if let Some(v) = o.blocks {
            attr.blocks = v;
        }
        if let Some(v) = o.atime {
            attr.atime = time(v);
        }
        if let Some(v) = o.mtime {
            attr.mtime = time(v);
        }
        if let Some(v) = o.ctime {
            attr.ctime = time(v);
        }
        if let Some(v) = o.kind {
            attr.kind = kind(v);
        }
        if let Some(v) = o.perm {
            attr.perm = v & 0o7777;
        }
        if let Some(v) = o.nlink {
            attr.nlink = v;
        }
        if let Some(v) = o.uid {
            attr.uid = v;
        }
        if let Some(v) = o.gid {
            attr.gid = v;
        }
        if let Some(v) = o.rdev {
            attr.rdev = v;
        }
    }
}
