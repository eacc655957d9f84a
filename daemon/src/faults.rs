//! The fault registry: every applied fault, its journal entry and its `ttl` timer.
//!
//! Order of work for an apply: entry written to the journal (fsync'd) → fault applied →
//! entry rewritten with what recovery needs that only the apply learned (e.g. stress-ng's
//! pid) → `ttl` timer armed. If the apply fails, whatever it did is undone and the entry
//! removed, so the journal never holds a half-applied fault (when the undo itself fails, the
//! entry stays and the fault is recovered in the background). Recovery takes the fault out of
//! the registry, recovers it, then removes the entry; a failed recovery puts the fault back
//! and is retried with backoff when a timer or the start-up pass asked for it. Applies and
//! recoveries of one id hold its lock ([`crate::id_lock`]) throughout and run in their own
//! task, so they never interleave and a caller that goes away never stops one half-way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use faultline_api::rpc::daemon::{FaultEntry, FaultId, Target};

use crate::Daemon;
use crate::error::DaemonError;
use crate::id_lock::{IdGuard, IdLocks};
use crate::journal::Journal;
use crate::metrics::Reason;
use crate::netns::run_in;
use crate::record::{Entry, Record};
use crate::{io_relay, network, pod_failure, stress};

/// Retry delays of a recovery the daemon started by itself (ttl, start-up): 1 s doubling to
/// one minute, for as long as the daemon runs.
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

struct Active {
    entry: Entry,
    timer: Option<tokio::task::JoinHandle<()>>,
    /// Its apply failed and could not undo all it did: it is registered only to be recovered.
    failed_apply: bool,
}

/// A fault taken out for recovery, with its ttl timer (given back if the recovery fails).
pub(crate) struct Taken {
    pub(crate) entry: Entry,
    timer: Option<tokio::task::JoinHandle<()>>,
    failed_apply: bool,
}

/// The applied faults of this node.
pub(crate) struct Registry {
    journal: Journal,
    active: Mutex<BTreeMap<FaultId, Active>>,
    locks: IdLocks,
}

impl Registry {
    pub(crate) fn new(journal: Journal) -> Self {
        Self {
            journal,
            active: Mutex::new(BTreeMap::new()),
            locks: IdLocks::default(),
        }
    }

    /// Waits for fault `id`'s lock: every apply and recovery of `id` holds it throughout.
    pub(crate) async fn hold(&self, id: &FaultId) -> IdGuard<'_> {
        self.locks.hold(id).await
    }

    /// Waits until no apply or recovery holds or waits for a lock, up to `limit`; whether it
    /// got there.
    pub(crate) async fn quiesce(&self, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while self.locks.in_use() > 0 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
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
        self.lock().insert(
            entry.fault_id.clone(),
            Active {
                entry,
                timer: None,
                failed_apply: false,
            },
        );
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

    /// Marks a fault whose apply failed without undoing all it did: it is not renewed (a
    /// retried apply is told to wait for its recovery) and its shaping is left out of the
    /// merges of other faults on its device.
    pub(crate) fn failed_apply(&self, id: &FaultId) {
        if let Some(a) = self.lock().get_mut(id) {
            a.failed_apply = true;
        }
    }

    /// Whether `id`'s apply failed (see [`Registry::failed_apply`]).
    pub(crate) fn is_failed_apply(&self, id: &FaultId) -> bool {
        self.lock().get(id).is_some_and(|a| a.failed_apply)
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
    pub(crate) fn take(&self, id: &FaultId) -> Option<Taken> {
        let active = self.lock().remove(id)?;
        Some(Taken {
            entry: active.entry,
            timer: active.timer,
            failed_apply: active.failed_apply,
        })
    }

    /// Puts back a fault whose recovery failed, with its timer: a ttl still due still fires.
    pub(crate) fn put_back(&self, taken: Taken) {
        self.lock().insert(
            taken.entry.fault_id.clone(),
            Active {
                entry: taken.entry,
                timer: taken.timer,
                failed_apply: taken.failed_apply,
            },
        );
    }

    /// Registers a fault an earlier run journaled (no timer yet).
    pub(crate) fn adopt(&self, entry: Entry) {
        self.put_back(Taken {
            entry,
            timer: None,
            failed_apply: false,
        });
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
                && !a.failed_apply
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

impl Daemon {
    /// Recovers a fault from its journal record alone.
    pub(crate) async fn undo(&self, entry: &Entry) -> Result<(), DaemonError> {
        match &entry.record {
            Record::Stress { stress_ng, .. } => {
                stress::stop(&entry.fault_id.0, stress_ng.as_ref()).await?;
            }
            Record::PodFailure { namespace, pod } => {
                let client = self.kube().await?;
                pod_failure::recover(&client, namespace, pod, &entry.fault_id).await?;
            }
            Record::Io {
                netns,
                port,
                rule_ids,
            } => {
                io_relay::recover(netns, *port, rule_ids).await?;
            }
            Record::Network {
                netns,
                netns_inode,
                device,
                partition,
                ..
            } => {
                let _one_at_a_time = self.network.lock().await;
                // The fault is out of the registry already: the merge is of the others.
                let after = network::compose::compose(&self.faults.shapings_on(
                    *netns_inode,
                    device,
                    Some(&entry.fault_id),
                ));
                let (device, had_partition, fault) = (
                    device.clone(),
                    partition.is_some(),
                    entry.fault_id.0.clone(),
                );
                // The namespace may outlive the recorded process (shared by others).
                let Some(holder) = crate::netns::holder(netns, *netns_inode) else {
                    // No process is left in it: it is gone, and everything of ours with it.
                    return Ok(());
                };
                match run_in(&holder, move || {
                    network::recover_blocking(&device, had_partition, &after, &fault)
                })
                .await
                {
                    Err(crate::netns::NetnsError::Gone { .. }) => {}
                    other => other??,
                }
            }
        }
        Ok(())
    }

    /// `faults.recoverAll`: every fault; the ones recovered are returned, the first failure
    /// is the error (the others were still attempted).
    pub(crate) async fn recover_all(
        self: &Arc<Self>,
    ) -> Result<Vec<faultline_api::rpc::daemon::FaultEntry>, DaemonError> {
        let mut recovered = Vec::new();
        let mut first_err = None;
        for id in self.faults.ids() {
            match recover(self, &id, Reason::RecoverAll).await {
                Ok(entry) => recovered.push(entry.listed()),
                Err(DaemonError::UnknownFault(_)) => {}
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(recovered),
        }
    }
}

/// Recovers fault `id` now; on failure it stays registered (and journaled).
pub(crate) async fn recover(
    daemon: &Arc<Daemon>,
    id: &FaultId,
    reason: Reason,
) -> Result<Entry, DaemonError> {
    let (daemon, id) = (daemon.clone(), id.clone());
    // Its own task: a call dropped by a client that went away must not stop a recovery
    // between taking the fault out and removing its entry (the fault would be unmanaged).
    finish(tokio::spawn(async move {
        recover_exclusive(&daemon, &id, reason, false).await
    }))
    .await
}

/// The recovery of [`recover`], under `id`'s lock; `by_timer` when the caller is the fault's
/// ttl timer.
async fn recover_exclusive(
    daemon: &Arc<Daemon>,
    id: &FaultId,
    reason: Reason,
    by_timer: bool,
) -> Result<Entry, DaemonError> {
    let _one_at_a_time = daemon.faults.hold(id).await;
    let mut taken = daemon
        .faults
        .take(id)
        .ok_or_else(|| DaemonError::UnknownFault(id.clone()))?;
    let kind = taken.entry.record.kind();
    match daemon.undo(&taken.entry).await {
        Ok(()) => {
            // The fault's ttl timer would otherwise wake later and recover a new fault that
            // re-uses this id (controllers do) — unless it is the caller, which ends anyway.
            if let Some(timer) = taken.timer.take()
                && !by_timer
            {
                timer.abort();
            }
            // Under the id's lock nothing else wrote the entry since it was taken: this removes
            // the entry of the fault just recovered, never that of a newer apply.
            daemon.faults.journal().remove(id)?;
            daemon.metrics.recovered(kind, reason);
            tracing::info!(fault_id = %id, kind = crate::metrics::kind_name(kind), reason = reason.as_str(), "fault recovered");
            Ok(taken.entry)
        }
        Err(err) => {
            daemon.metrics.recovery_failed(kind);
            tracing::warn!(fault_id = %id, error = %faultline_api::report::error_text(&err), "recovery failed; the fault stays journaled");
            daemon.faults.put_back(taken);
            Err(err)
        }
    }
}

/// Awaits a task that must run to its end even if the caller goes away. Its panic is resumed
/// in the caller, as if the work had run there.
pub(crate) async fn finish<T>(
    task: tokio::task::JoinHandle<Result<T, DaemonError>>,
) -> Result<T, DaemonError> {
    match task.await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(DaemonError::Failed {
            what: "run the operation".into(),
            reason: err.to_string(),
        }),
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
            // Not through `recover`'s task of its own: this timer is a task already, which no
            // client can drop, and a renewal that replaces it (under the id's lock) must also
            // cancel the recovery it is waiting to run.
            match recover_exclusive(&task_daemon, &task_id, reason, true).await {
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
        daemon.faults.adopt(entry);
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
