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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::sync::{lock, read, write};

use fuser::Errno;

pub(crate) const ROOT: u64 = 1;
const SYNTHETIC_BIT: u64 = 1 << 63;

/// Where an inode was last seen: parent node id and name (used for rule path matching).
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub parent: u64,
    pub name: OsString,
}

#[derive(Debug)]
pub(crate) struct Inode {
    pub id: u64,
    pub fd: OwnedFd,
    pub key: (u64, u64),
    /// `S_IFMT` bits of the source inode (never changes).
    pub fmt: u32,
    location: Mutex<Option<Location>>,
    /// Bumped whenever `location` changes: a cached path of an older count is stale.
    moves: AtomicU64,
    /// The path last computed (see [`InodeTable::path_arc`]).
    path_cache: Mutex<Option<CachedPath>>,
}

/// A computed path and what it was computed from: this inode's location (its `moves` count)
/// and its parent's path (the very `Arc`, compared by pointer). It stays valid while both are
/// unchanged, so a rename or forget elsewhere in the tree invalidates nothing here; a rename of
/// an ancestor gives that ancestor a new path `Arc`, which every descendant notices.
#[derive(Debug)]
struct CachedPath {
    moves: u64,
    parent: u64,
    parent_path: Arc<str>,
    path: Arc<str>,
}

impl Inode {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn is_symlink(&self) -> bool {
        self.fmt == libc::S_IFLNK
    }

    pub(crate) fn location(&self) -> Option<Location> {
        lock(&self.location).clone()
    }

    /// Records where the inode was seen; returns whether that changed.
    pub(crate) fn set_location(&self, parent: u64, name: &OsStr) -> bool {
        let mut l = lock(&self.location);
        match l.as_mut() {
            Some(loc) if loc.parent == parent && loc.name == name => false,
            _ => {
                *l = Some(Location {
                    parent,
                    name: name.to_os_string(),
                });
                self.moves.fetch_add(1, Ordering::Release);
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
pub(crate) struct InodeTable {
    maps: RwLock<Maps>,
    root_dev: u64,
    next_synthetic: AtomicU64,
    /// The root's path (""), one `Arc` so that children can compare it by pointer.
    root_path: Arc<str>,
}

impl InodeTable {
    pub(crate) fn new(root_fd: OwnedFd, root_st: &libc::stat) -> Self {
        let key = (root_st.st_dev, root_st.st_ino);
        let inode = Arc::new(Inode {
            id: ROOT,
            fd: root_fd,
            key,
            fmt: root_st.st_mode & libc::S_IFMT,
            location: Mutex::new(None),
            moves: AtomicU64::new(0),
            path_cache: Mutex::new(None),
        });
        let mut maps = Maps::default();
        maps.by_id.insert(ROOT, Entry { inode, nlookup: 1 });
        maps.by_key.insert(key, ROOT);
        Self {
            maps: RwLock::new(maps),
            root_dev: root_st.st_dev,
            next_synthetic: AtomicU64::new(1),
            root_path: Arc::from(""),
        }
    }

    pub(crate) fn get(&self, id: u64) -> Result<Arc<Inode>, Errno> {
        read(&self.maps)
            .by_id
            .get(&id)
            .map(|e| e.inode.clone())
            .ok_or(Errno::ESTALE)
    }

    /// The node id already assigned to a source inode, if the kernel knows it.
    pub(crate) fn id_of(&self, key: (u64, u64)) -> Option<u64> {
        read(&self.maps).by_key.get(&key).copied()
    }

    /// Records one kernel lookup of the source inode `st` (reached as `parent`/`name`), reusing
    /// its node id if known, else adopting `fd` (an `O_PATH` descriptor of it). Returns the node id.
    pub(crate) fn remember(
        &self,
        st: &libc::stat,
        fd: OwnedFd,
        parent: u64,
        name: &OsStr,
    ) -> Result<Arc<Inode>, Errno> {
        let key = (st.st_dev, st.st_ino);
        let mut maps = write(&self.maps);
        if let Some(id) = maps.by_key.get(&key).copied()
            && let Some(entry) = maps.by_id.get_mut(&id)
        {
            entry.nlookup += 1;
            entry.inode.set_location(parent, name);
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
            moves: AtomicU64::new(0),
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
    pub(crate) fn forget(&self, id: u64, n: u64) {
        if id == ROOT {
            return;
        }
        let mut maps = write(&self.maps);
        let remove = match maps.by_id.get_mut(&id) {
            Some(entry) => {
                entry.nlookup = entry.nlookup.saturating_sub(n);
                entry.nlookup == 0
            }
            None => false,
        };
        // Nothing else to invalidate: a cached path below this inode fails its parent lookup.
        if remove && let Some(entry) = maps.by_id.remove(&id) {
            maps.by_key.remove(&entry.inode.key);
        }
    }

    /// Lookup count of a node.
    #[cfg(test)]
    fn nlookup(&self, id: u64) -> Option<u64> {
        read(&self.maps).by_id.get(&id).map(|e| e.nlookup)
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.maps).by_id.len()
    }

    /// All live inodes (for cache invalidation when rules change).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Inode>> {
        read(&self.maps)
            .by_id
            .values()
            .map(|e| e.inode.clone())
            .collect()
    }

    /// Moves an inode (rename): updates its location (its cached path and its descendants'
    /// become stale).
    pub(crate) fn relocate(&self, inode: &Inode, parent: u64, name: &OsStr) {
        inode.set_location(parent, name);
    }

    /// The path of a node relative to the mount root ("" for the root), built from the last
    /// known parent/name of each ancestor. `None` when an ancestor is no longer known (e.g. an
    /// open file whose directory was removed).
    pub(crate) fn path_of(&self, id: u64) -> Option<String> {
        self.path_arc(id).map(|p| p.to_string())
    }

    /// [`InodeTable::path_of`] without the copy. Each inode caches its path; checking the cache
    /// walks up the ancestors' caches (no string is built, no lock but each inode's own), so
    /// only a change on the way to the root makes a path be built again.
    pub(crate) fn path_arc(&self, id: u64) -> Option<Arc<str>> {
        let maps = read(&self.maps);
        self.path_in(&maps, id, 0)
    }

    fn path_in(&self, maps: &Maps, id: u64, depth: usize) -> Option<Arc<str>> {
        if id == ROOT {
            return Some(self.root_path.clone());
        }
        if depth > 4096 {
            return None;
        }
        let inode = &maps.by_id.get(&id)?.inode;
        let moves = inode.moves.load(Ordering::Acquire);
        let cached_parent = lock(&inode.path_cache)
            .as_ref()
            .filter(|c| c.moves == moves)
            .map(|c| (c.parent, c.parent_path.clone(), c.path.clone()));
        if let Some((parent, parent_path, path)) = cached_parent {
            let now = self.path_in(maps, parent, depth + 1)?;
            if Arc::ptr_eq(&now, &parent_path) {
                return Some(path);
            }
        }
        let loc = inode.location()?;
        let parent_path = self.path_in(maps, loc.parent, depth + 1)?;
        let name = loc.name.to_string_lossy();
        let path: Arc<str> = if parent_path.is_empty() {
            Arc::from(name.as_ref())
        } else {
            Arc::from(format!("{parent_path}/{name}"))
        };
        *lock(&inode.path_cache) = Some(CachedPath {
            moves,
            parent: loc.parent,
            parent_path,
            path: path.clone(),
        });
        Some(path)
    }

    /// Path of `name` inside directory `parent`.
    pub(crate) fn child_path(&self, parent: u64, name: &OsStr) -> Option<String> {
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

        // Cached paths stay valid (the same Arc) across changes elsewhere in the tree, and
        // follow a rename of an ancestor.
        let f_path = t.path_arc(f.id).unwrap();
        let gname = sys::cname(OsStr::new("g")).unwrap();
        std::fs::write(dir.path().join("d/g"), b"y").unwrap();
        let g_fd = sys::open_path(d.fd(), &gname).unwrap();
        let gst = sys::fstat(g_fd.as_fd()).unwrap();
        let g = t.remember(&gst, g_fd, d.id, OsStr::new("g")).unwrap();
        assert_eq!(t.path_of(g.id).as_deref(), Some("d/g"));
        t.relocate(&g, d.id, OsStr::new("h"));
        t.forget(g.id, 1);
        assert!(
            Arc::ptr_eq(&t.path_arc(f.id).unwrap(), &f_path),
            "a sibling's rename and forget keep f's cached path"
        );
        t.relocate(&d, ROOT, OsStr::new("e"));
        assert_eq!(t.path_of(f.id).as_deref(), Some("e/f"), "an ancestor moved");
        t.relocate(&d, ROOT, OsStr::new("d"));
        assert_eq!(t.path_of(f.id).as_deref(), Some("d/f"));

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
