//! What the containerd harness takes from the host: its static busybox, processes from
//! `/proc`, cgroup directories, mounts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Only `PATH`: containerd, ctr and the shim (which runs runc) are found through it.
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The host's busybox, if it is statically linked (a container has no libc to load).
pub fn static_busybox() -> Result<PathBuf, String> {
    let busybox = find_on_path("busybox")
        .ok_or("a static busybox (Debian package busybox-static): no `busybox` on PATH")?;
    let bytes = std::fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    match elf_interpreter(&bytes) {
        Some(false) => Ok(busybox),
        Some(true) => Err(format!(
            "a static busybox: {} is dynamically linked (Debian package busybox); install \
             busybox-static",
            busybox.display()
        )),
        None => Err(format!(
            "a static busybox: {} is not an ELF file",
            busybox.display()
        )),
    }
}

/// Whether an ELF file asks for a program interpreter (`PT_INTERP`, i.e. is dynamically
/// linked); `None` when it is not ELF.
fn elf_interpreter(bytes: &[u8]) -> Option<bool> {
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let (wide, little) = (*bytes.get(4)? == 2, *bytes.get(5)? == 1);
    let int = |at: usize, len: usize| -> Option<u64> {
        let raw = bytes.get(at..at + len)?;
        let mut buf = [0u8; 8];
        if little {
            buf[..len].copy_from_slice(raw);
            Some(u64::from_le_bytes(buf))
        } else {
            buf[8 - len..].copy_from_slice(raw);
            Some(u64::from_be_bytes(buf))
        }
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?)
    } else {
        (int(0x1c, 4)?, int(0x2a, 2)?, int(0x2c, 2)?)
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        if int(at, 4)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Builds a minimal rootfs in `dir` from the host's static busybox: `bin/busybox`, a symlink
/// in `bin/` for each of its applets (`sh`, `sleep`, `cat`, `yes`, …), the empty directories
/// runc mounts over (`proc`, `sys`, `dev`) and `tmp`, `etc` (with a root user), `run`, `root`.
/// Returns its absolute path.
pub fn busybox_rootfs(dir: &Path) -> Result<PathBuf, String> {
    let busybox = static_busybox()?;
    let err = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    let dir = std::path::absolute(dir).map_err(|e| err(dir, e))?;
    for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "run", "root"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| err(&dir.join(sub), e))?;
    }
    let tmp = dir.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| err(&tmp, e))?;
    let target = dir.join("bin/busybox");
    std::fs::copy(&busybox, &target).map_err(|e| err(&target, e))?;
    let out = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("{} --list: {e}", busybox.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} --list: {}: {stderr}",
            busybox.display(),
            out.status
        ));
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let link = dir.join("bin").join(applet);
        if applet.is_empty() || applet.contains('/') || link.symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink("busybox", &link).map_err(|e| err(&link, e))?;
    }
    for (file, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
    ] {
        std::fs::write(dir.join(file), text).map_err(|e| err(&dir.join(file), e))?;
    }
    Ok(dir)
}

/// The cgroup directories of process `pid`: (the hierarchy's controllers as
/// `/proc/<pid>/cgroup` names them, e.g. `cpuacct` or `cpu,cpuacct`, or `""` for cgroup v2;
/// its directory under the mount of that hierarchy).
pub fn cgroup_dirs(pid: u32) -> Result<Vec<(String, PathBuf)>, String> {
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    let cgroup = read(&format!("/proc/{pid}/cgroup"))?;
    Ok(resolve_cgroups(&cgroup, &read("/proc/self/mountinfo")?))
}

/// Pairs each line of a `/proc/<pid>/cgroup` with its hierarchy's mount in `mountinfo`.
fn resolve_cgroups(cgroup: &str, mountinfo: &str) -> Vec<(String, PathBuf)> {
    // (fstype, super options, mount root, mount point) of each cgroup mount.
    let mounts: Vec<(&str, Vec<&str>, &str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (fstype, _source, opts) = (right.next()?, right.next()?, right.next()?);
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some((
                fstype,
                opts.split(',').collect(),
                *left.get(3)?,
                *left.get(4)?,
            ))
        })
        .collect();
    cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let (_, _, root, point) = mounts.iter().find(|(fstype, opts, _, _)| {
                if controllers.is_empty() {
                    *fstype == "cgroup2"
                } else {
                    *fstype == "cgroup" && controllers.split(',').all(|c| opts.contains(&c))
                }
            })?;
            // In a cgroup namespace the mount's root is a prefix of the process's path.
            let rel = path
                .strip_prefix(root)
                .unwrap_or(path)
                .trim_start_matches('/');
            Some((controllers.to_owned(), Path::new(point).join(rel)))
        })
        .collect()
}

/// The cumulative CPU time of the CPU cgroup of process `pid`, in nanoseconds: cgroup v1's
/// `cpuacct.usage`, else cgroup v2's `cpu.stat` `usage_usec` × 1000.
pub fn cgroup_cpu_usage_ns(pid: u32) -> Result<u64, String> {
    let dirs = cgroup_dirs(pid)?;
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let parse = |what: &str, text: &str| {
        text.trim()
            .parse::<u64>()
            .map_err(|e| format!("{what} `{}`: {e}", text.trim()))
    };
    if let Some((_, dir)) = dirs
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "cpuacct"))
    {
        return parse("cpuacct.usage", &read(dir.join("cpuacct.usage"))?);
    }
    if let Some((_, dir)) = dirs.iter().find(|(c, _)| c.is_empty()) {
        let stat = read(dir.join("cpu.stat"))?;
        let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "));
        let usec = usec.ok_or_else(|| format!("{}: no usage_usec", dir.display()))?;
        return parse("usage_usec", usec).map(|us| us * 1000);
    }
    Err(format!("process {pid}: no cpuacct or cgroup v2 hierarchy"))
}

pub(super) struct ProcStat {
    state: char,
    ppid: u32,
    pub(super) start_time: u64,
}

pub(super) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` runs (a zombie does not: on this kind of machine nobody may reap it).
pub fn alive_pid(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes (not this one) whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| pid != std::process::id() && alive_pid(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

pub(super) fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, proc_stat(pid)?.ppid)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while let Some(&parent) = found.get(i) {
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.split_off(1)
}

/// The paths of the unix sockets process `pid` has open (bound ones carry a path): matched
/// through the socket inodes of its fds in `/proc/net/unix`.
pub(super) fn unix_socket_paths(pid: u32) -> Vec<PathBuf> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| {
                let link = std::fs::read_link(fd.ok()?.path()).ok()?;
                let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
                Some(inode.to_owned())
            })
            .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    // Num RefCount Protocol Flags Type St Inode Path
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let path = cols.get(7).filter(|p| p.starts_with('/'))?;
            inodes
                .contains(&(*cols.get(6)?).to_owned())
                .then(|| PathBuf::from(path))
        })
        .collect()
}

/// Detaches every mount at or under `dir`, deepest first, so removing `dir` cannot recurse into
/// a mounted filesystem.
pub(super) fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            eprintln!("faultline-e2e containerd: umount {}: {e}", point.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_resolve_per_hierarchy() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             31 25 0:27 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             32 25 0:28 /ns /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             33 25 0:29 / /proc rw - proc proc rw\n";
        let cgroup = "2:cpuacct:/k8s.io/c1\n1:cpu:/k8s.io/c1\n0::/ns/k8s.io/c1\n";
        assert_eq!(
            resolve_cgroups(cgroup, mountinfo),
            [
                ("cpuacct".into(), "/sys/fs/cgroup/cpuacct/k8s.io/c1".into()),
                ("cpu".into(), "/sys/fs/cgroup/cpu/k8s.io/c1".into()),
                (String::new(), "/sys/fs/cgroup/unified/k8s.io/c1".into()),
            ]
        );
    }

    #[test]
    fn elf_interpreter_is_found() {
        let this = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        // Test binaries link glibc dynamically.
        assert_eq!(elf_interpreter(&this), Some(true));
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
    }
}
