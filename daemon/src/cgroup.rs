//! cgroups as the kernel shows them: the layout from `/proc/self/mountinfo` (v1 controllers,
//! a v2 hierarchy, or both — hybrid), a process's cgroups from `/proc/<pid>/cgroup`, and
//! joining them (writing a pid to each `cgroup.procs`).
//!
//! Stressors join *every* cgroup of the target — on v1 each controller's path, on v2 the one
//! unified path — so their load counts against the target's limits on any layout (Chaos Mesh
//! #4038: stress did nothing under cgroup v2). The daemon needs the host's cgroup namespace and
//! PID namespace for these paths to mean the same thing to it and to the kernel.

use std::fs;
use std::path::{Path, PathBuf};

use faultline_api::rpc::daemon::CgroupLayout;

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Where it is mounted.
    pub(crate) mountpoint: PathBuf,
    /// The cgroup path the mount shows as its root (`/` on the host).
    pub(crate) root: String,
    /// v1: its controllers (`cpu`, `memory`, `name=systemd`, …); v2: empty.
    pub(crate) controllers: Vec<String>,
    pub(crate) v2: bool,
}

/// The mounted hierarchies, from mountinfo text.
pub(crate) fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (root, mountpoint) = (*pre.get(3)?, *pre.get(4)?);
            let (fstype, superopts) = (*post.first()?, *post.get(2).unwrap_or(&""));
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let controllers = if v2 {
                Vec::new()
            } else {
                superopts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("xattr"))
                    .filter(|o| {
                        o.starts_with("name=")
                            || !o.contains('=') && !matches!(*o, "noprefix" | "clone_children")
                    })
                    .map(str::to_owned)
                    .collect()
            };
            Some(Hierarchy {
                mountpoint: PathBuf::from(unescape(mountpoint)),
                root: unescape(root),
                controllers,
                v2,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// v1, v2 or hybrid, from the mounted hierarchies.
pub(crate) fn layout(hierarchies: &[Hierarchy]) -> CgroupLayout {
    let v1 = hierarchies
        .iter()
        .any(|h| !h.v2 && !h.controllers.is_empty());
    let v2 = hierarchies.iter().any(|h| h.v2);
    match (v1, v2) {
        (true, true) => CgroupLayout::Hybrid,
        (false, true) => CgroupLayout::V2,
        _ => CgroupLayout::V1,
    }
}

/// The layout of this host.
pub(crate) fn host_layout() -> std::io::Result<(CgroupLayout, Vec<Hierarchy>)> {
    let h = hierarchies(&fs::read_to_string("/proc/self/mountinfo")?);
    Ok((layout(&h), h))
}

/// The directories of the cgroups named by `/proc/<pid>/cgroup` text: one per v1 hierarchy the
/// process is in, plus its v2 cgroup when a v2 hierarchy is mounted.
pub(crate) fn cgroup_dirs(proc_cgroup: &str, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let hierarchy = if controllers.is_empty() {
            hierarchies.iter().find(|h| h.v2)
        } else {
            let wanted: Vec<&str> = controllers.split(',').collect();
            hierarchies.iter().find(|h| {
                !h.v2
                    && h.controllers.len() == wanted.len()
                    && wanted.iter().all(|c| h.controllers.iter().any(|m| m == c))
            })
        };
        let Some(h) = hierarchy else { continue };
        // A mount of a subtree shows paths below its root.
        let rel = path
            .strip_prefix(h.root.trim_end_matches('/'))
            .unwrap_or(path);
        let dir = h.mountpoint.join(rel.trim_start_matches('/'));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Why a process could not join a cgroup.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "process {pid} is in no cgroup this daemon can see (is it in the host's cgroup namespace?)"
    )]
    NoCgroup { pid: u32 },
}

/// The cgroup directories of process `pid`.
pub(crate) fn dirs_of(pid: u32, hierarchies: &[Hierarchy]) -> Result<Vec<PathBuf>, CgroupError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = fs::read_to_string(&path).map_err(|source| CgroupError::Io { path, source })?;
    let dirs: Vec<PathBuf> = cgroup_dirs(&text, hierarchies)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    if dirs.is_empty() {
        return Err(CgroupError::NoCgroup { pid });
    }
    Ok(dirs)
}

/// The memory limit of the cgroups in `dirs` (v1 `memory.limit_in_bytes`, v2 `memory.max`),
/// `None` when there is none (v1 reports "no limit" as a huge number).
pub(crate) fn memory_limit(dirs: &[PathBuf]) -> Option<u64> {
    dirs.iter().find_map(|d| {
        let read = |name: &str| fs::read_to_string(d.join(name)).ok();
        let value = read("memory.max").or_else(|| read("memory.limit_in_bytes"))?;
        let bytes: u64 = value.trim().parse().ok()?;
        (bytes < (1 << 62)).then_some(bytes)
    })
}

/// The host's memory (`MemTotal` of /proc/meminfo), in bytes.
pub(crate) fn host_memory(meminfo: &Path) -> Option<u64> {
    let text = fs::read_to_string(meminfo).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's layout: every v1 controller on its own, an empty v2 beside them.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn layouts() {
        let h = hierarchies(HYBRID);
        assert_eq!(layout(&h), CgroupLayout::Hybrid);
        assert_eq!(h[0].controllers, ["cpu"]);
        assert_eq!(h[3].controllers, ["name=systemd"]);
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(layout(&hierarchies(v2)), CgroupLayout::V2);
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h1 = hierarchies(v1);
        assert_eq!(layout(&h1), CgroupLayout::V1);
        assert_eq!(h1[0].controllers, ["cpu", "cpuacct"]);
    }

    #[test]
    fn every_hierarchy_of_the_process() {
        let h = hierarchies(HYBRID);
        let proc_cgroup = "\
9:name=systemd:/
4:memory:/default/c1
2:cpuacct:/default/c1
1:cpu:/default/c1
0::/
";
        let dirs = cgroup_dirs(proc_cgroup, &h);
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/memory/default/c1",
                "/sys/fs/cgroup/cpuacct/default/c1",
                "/sys/fs/cgroup/cpu/default/c1",
                "/sys/fs/cgroup/unified",
            ]
            .map(PathBuf::from)
        );
        // v2 only.
        let v2 = hierarchies("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            cgroup_dirs("0::/kubepods/pod1/c1\n", &v2),
            [PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c1")]
        );
        // A combined cpu,cpuacct hierarchy matches a line naming both, in any order.
        let v1 = hierarchies("32 31 0:29 / /cg/cpu rw - cgroup cgroup rw,cpu,cpuacct\n");
        assert_eq!(
            cgroup_dirs("3:cpuacct,cpu:/x\n", &v1),
            [PathBuf::from("/cg/cpu/x")]
        );
    }

    #[test]
    fn this_host() {
        let (_, h) = host_layout().unwrap();
        let dirs = dirs_of(std::process::id(), &h).unwrap();
        assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
        assert!(host_memory(Path::new("/proc/meminfo")).unwrap() > 1 << 20);
    }
}
