//! The inode table: FUSE node ids ⇄ source inodes, with kernel lookup counts.
//!
//! A source inode is identified by `(st_dev, st_ino)`; hard links and renames therefore keep
//! one node id. Each entry holds an `O_PATH` descriptor of the source inode, which also pins the
//! source inode so its number cannot be reused while the kernel knows the node id. The node id is
//! the source `st_ino` when the inode lives on the source root's device (so `stat` through the
//! mount shows the same inode numbers as the source); inodes of other devices, or an `st_ino`
//! that collides with the FUSE root id, get ids from a counter with the top bit set.
//! Lookup counts go up by one per entry reply and down by `nlookup` on `forget`; an entry is
//! dropped (closing its descriptor) when its count reaches zero. The root is never dropped.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fuser::Errno;

pub const ROOT: u64 = 1;
const SYNTHETIC_BIT: u64 = 1 << 63;

/// Where an inode was last seen: parent node id and name (used for rule path matching).
#[derive(Debug, Clone)]
pub struct Location {
    pub parent: u64,
    pub name: OsString,
}

#[derive(Debug)]
pub struct Inode {
    pub id: u64,
    pub fd: OwnedFd,
    pub key: (u64, u64),
    /// `S_IFMT` bits of the source inode (never changes).
    pub fmt: u32,
    location: Mutex<Option<Location>>,
    /// Path computed at a location epoch (see [`InodeTable::path_of`]).
    path_cache: Mutex<Option<(u64, Arc<str>)>>,
}

impl Inode {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn is_symlink(&self) -> bool {
        self.fmt == libc::S_IFLNK
    }

    pub fn location(&self) -> Option<Location> {
        self.location.lock().ok().and_then(|l| l.clone())
    }

    /// Records where the inode was seen; returns whether that changed.
    pub fn set_location(&self, parent: u64, name: &OsStr) -> bool {
        let Ok(mut l) = self.location.lock() else {
            return false;
        };
        match l.as_mut() {
            Some(loc) if loc.parent == parent && loc.name == name => false,
            _ => {
                *l = Some(Location {
                    parent,
                    name: name.to_os_string(),
                });
                true
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    inode: Arc<Inode>,
    nlookup: u64,
}

#[derive(Debug, Default)]
struct Maps {
    by_id: HashMap<u64, Entry>,
    by_key: HashMap<(u64, u64), u64>,
}

#[derive(Debug)]
pub struct InodeTable {
    maps: RwLock<Maps>,
    root_dev: u64,
    next_synthetic: AtomicU64,
    /// Bumped whenever any inode's location changes or an inode is dropped: cached paths from
    /// an older epoch are recomputed.
    epoch: AtomicU64,
}

impl InodeTable {
    pub fn new(root_fd: OwnedFd, root_st: &libc::stat) -> Self {
        let key = (root_st.st_dev, root_st.st_ino);
        let inode = Arc::new(Inode {
            id: ROOT,
            fd: root_fd,
            key,
            fmt: root_st.st_mode & libc::S_IFMT,
            location: Mutex::new(None),
            path_cache: Mutex::new(None),
        });
        let mut maps = Maps::default();
        maps.by_id.insert(ROOT, Entry { inode, nlookup: 1 });
        maps.by_key.insert(key, ROOT);
        Self {
            maps: RwLock::new(maps),
            root_dev: root_st.st_dev,
            next_synthetic: AtomicU64::new(1),
            epoch: AtomicU64::new(1),
        }
    }

    pub fn get(&self, id: u64) -> Result<Arc<Inode>, Errno> {
        let maps = self.maps.read().map_err(|_| Errno::EIO)?;
        maps.by_id
            .get(&id)
            .map(|e| e.inode.clone())
            .ok_or(Errno::ESTALE)
    }

    /// The node id already assigned to a source inode, if the kernel knows it.
    pub fn id_of(&self, key: (u64, u64)) -> Option<u64> {
        self.maps.read().ok()?.by_key.get(&key).copied()
    }

    /// Records one kernel lookup of the source inode `st` (reached as `parent`/`name`), reusing
    /// its node id if known, else adopting `fd` (an `O_PATH` descriptor of it). Returns the node id.
    pub fn remember(
        &self,
        st: &libc::stat,
        fd: OwnedFd,
        parent: u64,
        name: &OsStr,
    ) -> Result<Arc<Inode>, Errno> {
        let key = (st.st_dev, st.st_ino);
        let mut maps = self.maps.write().map_err(|_| Errno::EIO)?;
        if let Some(id) = maps.by_key.get(&key).copied()
            && let Some(entry) = maps.by_id.get_mut(&id)
        {
            entry.nlookup += 1;
            if entry.inode.set_location(parent, name) {
                self.epoch.fetch_add(1, Ordering::Release);
            }
            return Ok(entry.inode.clone());
        }
        let id = self.pick_id(&maps, key);
        let inode = Arc::new(Inode {
            id,
            fd,
            key,
            fmt: st.st_mode & libc::S_IFMT,
            location: Mutex::new(Some(Location {
                parent,
                name: name.to_os_string(),
            })),
            path_cache: Mutex::new(None),
        });
        maps.by_id.insert(
            id,
            Entry {
                inode: inode.clone(),
                nlookup: 1,
            },
        );
        maps.by_key.insert(key, id);
        Ok(inode)
    }

    fn pick_id(&self, maps: &Maps, key: (u64, u64)) -> u64 {
        let (dev, ino) = key;
        if dev == self.root_dev
            && ino != ROOT
            && ino & SYNTHETIC_BIT == 0
            && !maps.by_id.contains_key(&ino)
        {
            return ino;
        }
        loop {
            let n = self.next_synthetic.fetch_add(1, Ordering::Relaxed) | SYNTHETIC_BIT;
            if !maps.by_id.contains_key(&n) {
                return n;
            }
        }
    }

    /// Drops `n` kernel references; removes the entry at zero. Forgetting the root is ignored.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT {
            return;
        }
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        let remove = match maps.by_id.get_mut(&id) {
            Some(entry) => {
                entry.nlookup = entry.nlookup.saturating_sub(n);
                entry.nlookup == 0
            }
            None => false,
        };
        if remove && let Some(entry) = maps.by_id.remove(&id) {
            maps.by_key.remove(&entry.inode.key);
            self.epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// Lookup count of a node (tests and status).
    pub fn nlookup(&self, id: u64) -> Option<u64> {
        self.maps.read().ok()?.by_id.get(&id).map(|e| e.nlookup)
    }

    pub fn len(&self) -> usize {
        self.maps.read().map(|m| m.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All live inodes (for cache invalidation when rules change).
    pub fn snapshot(&self) -> Vec<Arc<Inode>> {
        self.maps
            .read()
            .map(|m| m.by_id.values().map(|e| e.inode.clone()).collect())
            .unwrap_or_default()
    }

    /// Moves an inode (rename): updates its location and invalidates cached paths.
    pub fn relocate(&self, inode: &Inode, parent: u64, name: &OsStr) {
        if inode.set_location(parent, name) {
            self.epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// The path of a node relative to the mount root ("" for the root), built from the last
    /// known parent/name of each ancestor and cached until any location changes. `None` when
    /// an ancestor is no longer known (e.g. an open file whose directory was removed).
    pub fn path_of(&self, id: u64) -> Option<String> {
        self.path_arc(id).map(|p| p.to_string())
    }

    /// [`InodeTable::path_of`] without the copy.
    pub fn path_arc(&self, id: u64) -> Option<Arc<str>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let maps = self.maps.read().ok()?;
        let inode = &maps.by_id.get(&id)?.inode;
        if let Ok(cache) = inode.path_cache.lock()
            && let Some((e, p)) = cache.as_ref()
            && *e == epoch
        {
            return Some(p.clone());
        }
        let mut parts: Vec<OsString> = Vec::new();
        let mut cur = id;
        let mut depth = 0;
        while cur != ROOT {
            let loc = maps.by_id.get(&cur)?.inode.location()?;
            parts.push(loc.name);
            cur = loc.parent;
            depth += 1;
            if depth > 4096 {
                return None;
            }
        }
        let mut out = Vec::new();
        for (i, p) in parts.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(p.as_bytes());
        }
        let path: Arc<str> = String::from_utf8_lossy(&out).into();
        if let Ok(mut cache) = inode.path_cache.lock() {
            *cache = Some((epoch, path.clone()));
        }
        Some(path)
    }

    /// Path of `name` inside directory `parent`.
    pub fn child_path(&self, parent: u64, name: &OsStr) -> Option<String> {
        let base = self.path_of(parent)?;
        let name = name.to_string_lossy();
        Some(if base.is_empty() {
            name.into_owned()
        } else {
            format!("{base}/{name}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    fn table(dir: &std::path::Path) -> InodeTable {
        let c = sys::cname(dir.as_os_str()).unwrap();
        let root = sys::openat(
            std::fs::File::open("/").unwrap().as_fd(),
            &c,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .unwrap();
        let st = sys::fstat(root.as_fd()).unwrap();
        InodeTable::new(root, &st)
    }

    #[test]
    fn lookup_counts_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"x").unwrap();
        let t = table(dir.path());
        let root = t.get(ROOT).unwrap();
        let name = sys::cname(OsStr::new("d")).unwrap();
        let d_fd = sys::open_path(root.fd(), &name).unwrap();
        let st = sys::fstat(d_fd.as_fd()).unwrap();
        let d = t.remember(&st, d_fd, ROOT, OsStr::new("d")).unwrap();
        assert_eq!(d.id, st.st_ino, "node id is the source inode number");
        let d_fd2 = sys::open_path(root.fd(), &name).unwrap();
        let again = t.remember(&st, d_fd2, ROOT, OsStr::new("d")).unwrap();
        assert_eq!(again.id, d.id);
        assert_eq!(t.nlookup(d.id), Some(2));

        let fname = sys::cname(OsStr::new("f")).unwrap();
        let f_fd = sys::open_path(d.fd(), &fname).unwrap();
        let fst = sys::fstat(f_fd.as_fd()).unwrap();
        let f = t.remember(&fst, f_fd, d.id, OsStr::new("f")).unwrap();
        assert_eq!(t.path_of(f.id).as_deref(), Some("d/f"));
        assert_eq!(t.child_path(d.id, OsStr::new("g")).as_deref(), Some("d/g"));
        assert_eq!(t.path_of(ROOT).as_deref(), Some(""));

        t.forget(d.id, 1);
        assert_eq!(t.nlookup(d.id), Some(1));
        t.forget(d.id, 1);
        assert_eq!(t.nlookup(d.id), None, "entry dropped at zero");
        assert!(t.get(d.id).is_err());
        assert_eq!(t.path_of(f.id), None, "orphaned path is unknown");
        t.forget(ROOT, 10);
        assert!(t.get(ROOT).is_ok(), "root is never forgotten");
    }
}
