//! The crash-safe journal in `--state-dir`: one file per fault, `journal/<faultId>.json`.
//!
//! A fault's entry is written and fsync'd (file and directory) *before* the fault is applied,
//! so a daemon killed at any moment leaves an entry for everything it may have applied; the
//! entry is removed only after the fault is recovered. Writes go to a temporary file that is
//! renamed over the entry (atomic replace): a crash mid-write leaves the old entry or the new
//! one, never half of one. One daemon writes a state dir at a time (`daemon.lock`, flock).
//!
//! An entry that cannot be read (corrupt, from a future version) is reported and set aside as
//! `<name>.corrupt`, never a reason to stop: the other faults are still recovered.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use faultline_api::rpc::daemon::FaultId;
use nix::fcntl::{Flock, FlockArg};

use crate::record::Entry;

/// Numbers the temporary files of this process's writes.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state dir {}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state dir {}: another faultline-daemon holds {} (one daemon per state dir: two would \
         recover each other's faults)",
        dir.display(),
        lock.display()
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("journal entry {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// An entry that could not be read, reported at start.
#[derive(Debug)]
pub struct Unreadable {
    /// Where it was (now renamed to `<path>.corrupt`).
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The journal of one state dir, held by this process.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    _lock: Flock<File>,
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// fsync of a directory: makes a create, rename or unlink in it durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync the journal directory"))
}

impl Journal {
    /// Opens (creating) `state_dir` and takes its lock; fails when another daemon holds it.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join("journal");
        fs::create_dir_all(&dir).map_err(io(&dir, "create"))?;
        let lock_path = state_dir.join("daemon.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "open the lock file"))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            JournalError::Locked {
                dir: state_dir.to_path_buf(),
                lock: lock_path.clone(),
            }
        })?;
        Ok(Self { dir, _lock: lock })
    }

    fn path_of(&self, id: &FaultId) -> PathBuf {
        self.dir.join(format!("{}.json", id.0))
    }

    /// Writes `entry` durably (atomic replace of an earlier version of it).
    pub fn write(&self, entry: &Entry) -> Result<(), JournalError> {
        let path = self.path_of(&entry.fault_id);
        let bytes = serde_json::to_vec_pretty(entry).map_err(|source| JournalError::Encode {
            path: path.clone(),
            source,
        })?;
        // A name of its own per write: two writes of one entry at once (which the id locks of
        // the registry already rule out) must never share, and truncate, one file.
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            entry.fault_id.0,
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = File::create(&tmp).map_err(io(&tmp, "create"))?;
        file.write_all(&bytes).map_err(io(&tmp, "write"))?;
        file.sync_all().map_err(io(&tmp, "fsync"))?;
        fs::rename(&tmp, &path).map_err(io(&path, "rename into place"))?;
        sync_dir(&self.dir)
    }

    /// Removes the entry of a recovered fault (absent is fine: removal is idempotent).
    pub fn remove(&self, id: &FaultId) -> Result<(), JournalError> {
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(&path, "remove")(err)),
        }
    }

    /// Every readable entry, and the unreadable ones (set aside as `.corrupt`).
    pub fn load(&self) -> Result<(Vec<Entry>, Vec<Unreadable>), JournalError> {
        let mut entries = Vec::new();
        let mut unreadable = Vec::new();
        let listing = fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))?;
        for item in listing {
            let item = item.map_err(io(&self.dir, "list"))?;
            let path = item.path();
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that never reached its rename: the fault it described was never
                // applied (entries are written before applying).
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let read = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string())
                });
            match read {
                Ok(entry) if self.path_of(&entry.fault_id) == path => entries.push(entry),
                Ok(entry) => unreadable.push(Unreadable {
                    path: path.clone(),
                    reason: format!("names fault {} but is not its file", entry.fault_id),
                }),
                Err(reason) => unreadable.push(Unreadable {
                    path: path.clone(),
                    reason,
                }),
            }
        }
        for bad in &unreadable {
            let mut aside = bad.path.clone().into_os_string();
            aside.push(".corrupt");
            let _ = fs::rename(&bad.path, aside);
        }
        if !unreadable.is_empty() {
            sync_dir(&self.dir)?;
        }
        entries.sort_by(|a, b| a.fault_id.cmp(&b.fault_id));
        Ok((entries, unreadable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entry, Record};
    use faultline_api::rpc::daemon::Target;

    fn entry(id: &str) -> Entry {
        Entry::new(
            FaultId(id.into()),
            Some(Target::Pid { pid: 1 }),
            None,
            Record::PodFailure {
                namespace: "shop".into(),
                pod: "cart-0".into(),
            },
        )
    }

    #[test]
    fn write_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.write(&entry("pf-b")).unwrap();
        journal.write(&entry("pf-a")).unwrap();
        // Rewriting an entry replaces it.
        journal.write(&entry("pf-a")).unwrap();
        let (entries, bad) = journal.load().unwrap();
        assert!(bad.is_empty());
        let ids: Vec<_> = entries.iter().map(|e| e.fault_id.0.as_str()).collect();
        assert_eq!(ids, ["pf-a", "pf-b"]);
        journal.remove(&FaultId("pf-a".into())).unwrap();
        journal.remove(&FaultId("pf-a".into())).unwrap();
        let (entries, _) = journal.load().unwrap();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn corrupt_entries_are_reported_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        journal.write(&entry("pf-good")).unwrap();
        let jdir = dir.path().join("journal");
        fs::write(jdir.join("pf-bad.json"), b"{\"faultId\": ").unwrap();
        fs::write(jdir.join(".pf-half.tmp"), b"{").unwrap();
        // An entry whose file name does not match its id is not trusted either.
        fs::copy(jdir.join("pf-good.json"), jdir.join("pf-other.json")).unwrap();
        let (entries, bad) = journal.load().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(jdir.join("pf-bad.json.corrupt").exists());
        assert!(!jdir.join(".pf-half.tmp").exists());
        // Set aside once: the next start does not report them again.
        let (_, bad) = journal.load().unwrap();
        assert!(bad.is_empty());
    }

    #[test]
    fn concurrent_writes_of_one_entry_never_corrupt_it() {
        let dir = tempfile::tempdir().unwrap();
        let journal = std::sync::Arc::new(Journal::open(dir.path()).unwrap());
        let writers: Vec<_> = (0..4)
            .map(|n| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    // Entries of different lengths: a shared, truncated temporary file would
                    // end up holding one with the tail of another.
                    let mut e = entry("pf-same");
                    e.expires_at = Some("x".repeat(1 + 500 * n));
                    for _ in 0..100 {
                        journal.write(&e).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let (entries, bad) = journal.load().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn one_daemon_per_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Journal::open(dir.path()).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("another faultline-daemon"),
            "{err}"
        );
    }
}
