//! FUSE operations as rules name them (`faultline_api::iorule::FUSE_METHODS`).

/// One FUSE operation. The discriminant is the bit in a method mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Getlk,
    Setlk,
    Bmap,
    Fallocate,
    Lseek,
    CopyFileRange,
}

impl Op {
    pub(crate) const ALL: [Op; 36] = [
        Op::Lookup,
        Op::Forget,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Mknod,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Symlink,
        Op::Rename,
        Op::Link,
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Release,
        Op::Fsync,
        Op::Opendir,
        Op::Readdir,
        Op::Readdirplus,
        Op::Releasedir,
        Op::Fsyncdir,
        Op::Statfs,
        Op::Setxattr,
        Op::Getxattr,
        Op::Listxattr,
        Op::Removexattr,
        Op::Access,
        Op::Create,
        Op::Getlk,
        Op::Setlk,
        Op::Bmap,
        Op::Fallocate,
        Op::Lseek,
        Op::CopyFileRange,
    ];

    pub(crate) const COUNT: usize = Self::ALL.len();

    /// The canonical (lower-case) method name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Forget => "forget",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readlink => "readlink",
            Op::Mknod => "mknod",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Symlink => "symlink",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Opendir => "opendir",
            Op::Readdir => "readdir",
            Op::Readdirplus => "readdirplus",
            Op::Releasedir => "releasedir",
            Op::Fsyncdir => "fsyncdir",
            Op::Statfs => "statfs",
            Op::Setxattr => "setxattr",
            Op::Getxattr => "getxattr",
            Op::Listxattr => "listxattr",
            Op::Removexattr => "removexattr",
            Op::Access => "access",
            Op::Create => "create",
            Op::Getlk => "getlk",
            Op::Setlk => "setlk",
            Op::Bmap => "bmap",
            Op::Fallocate => "fallocate",
            Op::Lseek => "lseek",
            Op::CopyFileRange => "copy_file_range",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn bit(self) -> u64 {
        1 << (self as u64)
    }

    /// The op for a rule's method name (case-insensitive, `copyFileRange` accepted).
    pub(crate) fn from_method(method: &str) -> Option<Op> {
        let canonical = faultline_api::iorule::canonical_method(method)?;
        Op::ALL.iter().copied().find(|op| op.name() == canonical)
    }
}

/// Ops whose results the kernel caches (attributes, entries, page cache, symlink targets): a
/// rule touching them needs cache invalidation and uncached replies for matching inodes.
pub(crate) const CACHED_OPS: u64 = (1 << Op::Lookup as u64)
    | (1 << Op::Getattr as u64)
    | (1 << Op::Read as u64)
    | (1 << Op::Readlink as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_method_has_an_op_and_back() {
        for m in faultline_api::iorule::FUSE_METHODS {
            let op = Op::from_method(m).unwrap_or_else(|| panic!("no op for {m}"));
            assert_eq!(op.name(), *m);
        }
        assert_eq!(Op::ALL.len(), faultline_api::iorule::FUSE_METHODS.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
        assert_eq!(Op::from_method("READ"), Some(Op::Read));
        assert_eq!(Op::from_method("copyFileRange"), Some(Op::CopyFileRange));
        assert_eq!(Op::from_method("nope"), None);
    }
}
