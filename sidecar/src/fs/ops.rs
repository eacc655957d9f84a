//! The `fuser::Filesystem` ops: each decides its fault [`Plan`] and hands the work to
//! `PassthroughFs::serve` (or, for an undelayed write, runs it at once). One trait impl, a thin
//! method per FUSE op, so this file stays over the ~500-line guideline: a trait impl cannot be
//! split across files, and the work itself lives in `inner.rs`.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::inject::{Op, Plan};
use crate::metrics::Outcome;
use crate::sys::{self, cname};

use super::handle::{dtype_kind, kill_suidgid};
use super::{Inner, PassthroughFs, fopen, own_thread, req_creds};

impl Filesystem for PassthroughFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.negotiate(config);
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
