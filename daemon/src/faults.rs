//! The fault registry: every applied fault, its journal entry and its `ttl` timer.
//!
//! Order of work for an apply: entry written to the journal (fsync'd) → fault applied →
//! entry rewritten with what recovery needs that only the apply learned (e.g. stress-ng's
//! pid) → `ttl` timer armed. If the apply fails, whatever it did is undone and the entry
//! removed, so the journal never holds a half-applied fault. Recovery takes the fault out of
//! the registry first (two concurrent recoveries never both act), recovers it, then removes
//! the entry; a failed recovery puts the fault back and is retried with backoff when a timer
//! or the start-up pass asked for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use faultline_api::rpc::daemon::{FaultEntry, FaultId, Target};

use crate::Daemon;
use crate::error::DaemonError;
use crate::journal::Journal;
use crate::metrics::Reason;
use crate::record::Entry;

/// Retry delays of a recovery the daemon started by itself (ttl, start-up): 1 s doubling to
/// one minute, for as long as the daemon runs.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

struct Active {
    entry: Entry,
    timer: Option<tokio::task::JoinHandle<()>>,
}

/// The applied faults of this node.
pub(crate) struct Registry {
    journal: Journal,
    active: Mutex<BTreeMap<FaultId, Active>>,
}

impl Registry {
    pub(crate) fn new(journal: Journal) -> Self {
        Self {
            journal,
            active: Mutex::new(BTreeMap::new()),
        }
    }

    /// A poisoned lock means a panic elsewhere mid-update of a map of plain values; the map
    /// itself is still whole, and refusing to recover faults would be worse.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<FaultId, Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Journals `entry` and registers it (no timer yet): step one of every apply.
    pub(crate) fn begin(&self, entry: Entry) -> Result<(), DaemonError> {
        self.journal.write(&entry)?;
        self.lock()
            .insert(entry.fault_id.clone(), Active { entry, timer: None });
        Ok(())
    }

    /// Rewrites the entry of a fault being applied (what the apply learned).
    pub(crate) fn update(&self, entry: Entry) -> Result<(), DaemonError> {
        self.journal.write(&entry)?;
        if let Some(active) = self.lock().get_mut(&entry.fault_id) {
            active.entry = entry;
        }
        Ok(())
    }

    /// Sets a new expiry time of an active fault (journaled).
    pub(crate) fn renew(&self, id: &FaultId, expires_at: String) -> Result<(), DaemonError> {
        let updated = {
            let mut active = self.lock();
            let Some(a) = active.get_mut(id) else {
                return Err(DaemonError::UnknownFault(id.clone()));
            };
            a.entry.expires_at = Some(expires_at);
            a.entry.clone()
        };
        self.journal.write(&updated)?;
        Ok(())
    }

    /// Drops a fault whose apply failed and was undone.
    pub(crate) fn abandon(&self, id: &FaultId) {
        if let Some(t) = self.lock().remove(id).and_then(|a| a.timer) {
            t.abort();
        }
        if let Err(err) = self.journal.remove(id) {
            tracing::error!(fault_id = %id, error = %err, "journal: removing an abandoned fault");
        }
    }

    /// Takes a fault out for recovery.
    pub(crate) fn take(&self, id: &FaultId) -> Option<Entry> {
        // The fault's timer is left to run (its handle dropped, not aborted): the timer may be
        // the caller, and aborting it would cancel this very recovery at its next await. A
        // timer that wakes for a fault already recovered finds nothing and ends.
        let active = self.lock().remove(id)?;
        Some(active.entry)
    }

    /// Puts back a fault whose recovery failed.
    pub(crate) fn put_back(&self, entry: Entry) {
        self.lock()
            .insert(entry.fault_id.clone(), Active { entry, timer: None });
    }

    /// Arms `timer` for the fault (replacing any earlier one).
    pub(crate) fn set_timer(&self, id: &FaultId, timer: tokio::task::JoinHandle<()>) {
        match self.lock().get_mut(id) {
            Some(active) => {
                if let Some(old) = active.timer.replace(timer) {
                    old.abort();
                }
            }
            None => timer.abort(),
        }
    }

    pub(crate) fn list(&self) -> Vec<FaultEntry> {
        self.lock().values().map(|a| a.entry.listed()).collect()
    }

    pub(crate) fn kind_of(&self, id: &FaultId) -> Option<faultline_api::rpc::daemon::FaultKind> {
        self.lock().get(id).map(|a| a.entry.record.kind())
    }

    /// Ids of the pod-failure holds on `namespace/pod`.
    pub(crate) fn pod_failures_on(&self, namespace: &str, pod: &str) -> Vec<FaultId> {
        self.lock()
            .values()
            .filter(|a| {
                matches!(&a.entry.record, crate::record::Record::PodFailure { namespace: n, pod: p } if n == namespace && p == pod)
            })
            .map(|a| a.entry.fault_id.clone())
            .collect()
    }

    /// The shaping of every network fault on namespace `inode`'s `device`, in the order they
    /// were applied, leaving out `except`.
    pub(crate) fn shapings_on(
        &self,
        inode: u64,
        device: &str,
        except: Option<&FaultId>,
    ) -> Vec<crate::network::compose::Shaping> {
        let mut found: Vec<(&str, String, crate::network::compose::Shaping)> = Vec::new();
        let active = self.lock();
        for a in active.values() {
            if let crate::record::Record::Network {
                netns_inode,
                device: d,
                netem,
                bandwidth,
                ..
            } = &a.entry.record
                && *netns_inode == inode
                && d == device
                && Some(&a.entry.fault_id) != except
            {
                found.push((
                    a.entry.applied_at.as_str(),
                    a.entry.fault_id.0.clone(),
                    crate::network::shaping_of(*netem, *bandwidth),
                ));
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        found.into_iter().map(|(_, _, s)| s).collect()
    }

    pub(crate) fn ids(&self) -> Vec<FaultId> {
        self.lock().keys().cloned().collect()
    }

    /// Ids of the faults of `kind` on `target`, as the client named it.
    pub(crate) fn ids_on(
        &self,
        target: &Target,
        kind: faultline_api::rpc::daemon::FaultKind,
    ) -> Vec<FaultId> {
        self.lock()
            .values()
            .filter(|a| a.entry.target.as_ref() == Some(target) && a.entry.record.kind() == kind)
            .map(|a| a.entry.fault_id.clone())
            .collect()
    }
}

/// Recovers fault `id` now; on failure it stays registered (and journaled).
pub(crate) async fn recover(
    daemon: &Arc<Daemon>,
    id: &FaultId,
    reason: Reason,
) -> Result<Entry, DaemonError> {
    let entry = daemon
        .faults
        .take(id)
        .ok_or_else(|| DaemonError::UnknownFault(id.clone()))?;
    let kind = entry.record.kind();
    match daemon.undo(&entry).await {
        Ok(()) => {
            daemon.faults.journal().remove(id)?;
            daemon.metrics.recovered(kind, reason);
            tracing::info!(fault_id = %id, kind = crate::metrics::kind_name(kind), reason = reason.as_str(), "fault recovered");
            Ok(entry)
        }
        Err(err) => {
            daemon.metrics.recovery_failed(kind);
            tracing::warn!(fault_id = %id, error = %faultline_api::report::error_text(&err), "recovery failed; the fault stays journaled");
            daemon.faults.put_back(entry);
            Err(err)
        }
    }
}

/// Recovers `id` after `delay`, retrying with backoff until it succeeds (or the fault is
/// recovered some other way).
pub(crate) fn recover_later(daemon: &Arc<Daemon>, id: FaultId, delay: Duration, reason: Reason) {
    let task_daemon = daemon.clone();
    let task_id = id.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut backoff = RETRY_FIRST;
        loop {
            match recover(&task_daemon, &task_id, reason).await {
                Ok(_) | Err(DaemonError::UnknownFault(_)) => return,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    });
    daemon.faults.set_timer(&id, timer);
}

/// Start-up: every fault an earlier run journaled is recovered (retried in the background
/// until it is). Returns how many entries were found and how many were unreadable.
pub(crate) async fn recover_journal(daemon: &Arc<Daemon>) -> Result<(usize, usize), DaemonError> {
    let (entries, unreadable) = daemon.faults.journal().load()?;
    for bad in &unreadable {
        tracing::error!(path = %bad.path.display(), reason = %bad.reason, "journal entry unreadable; set aside as .corrupt, not recovered");
    }
    daemon.metrics.unreadable(unreadable.len() as u64);
    let found = entries.len();
    let mut pending = Vec::new();
    for entry in entries {
        tracing::info!(fault_id = %entry.fault_id, kind = crate::metrics::kind_name(entry.record.kind()), "journaled by an earlier run; recovering");
        daemon.metrics.adopted(entry.record.kind());
        let id = entry.fault_id.clone();
        daemon.faults.put_back(entry);
        pending.push(id);
    }
    // All at once: one slow target must not hold up the others.
    let attempts = pending
        .iter()
        .map(|id| recover(daemon, id, Reason::Startup));
    let results = futures::future::join_all(attempts).await;
    for (id, result) in pending.into_iter().zip(results) {
        if result.is_err() {
            recover_later(daemon, id, RETRY_FIRST, Reason::Startup);
        }
    }
    Ok((found, unreadable.len()))
}
