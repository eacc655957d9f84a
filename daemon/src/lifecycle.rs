//! What every apply goes through, whatever its kind: the fault id (the client's or a new one),
//! the id's lock held from the renewal check to the armed ttl, its own task, and the journal
//! order of [`crate::faults`] — entry first, act, entry rewritten, ttl armed; on a failure,
//! whatever was applied is undone or left journaled for recovery.

use std::sync::Arc;
use std::time::Duration;

use faultline_api::duration::parse_duration;
use faultline_api::rpc::daemon::{FaultId, FaultKind};

use crate::Daemon;
use crate::error::{ApplyError, DaemonError};
use crate::faults::{RETRY_FIRST, finish, recover_later};
use crate::metrics::Reason;
use crate::record::{Entry, new_fault_id};

/// How long shutdown waits for the applies and recoveries in flight (a daemon call's own limit
/// is 10 s).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A `ttl` as a duration and the RFC 3339 time it ends.
pub(crate) type Ttl = (Duration, String);

/// Parses the `ttl` param `field`.
pub(crate) fn ttl(field: &str, ttl: Option<&str>) -> Result<Option<Ttl>, DaemonError> {
    let Some(text) = ttl else { return Ok(None) };
    let d = parse_duration(text)
        .map_err(|e| DaemonError::invalid(field, e.to_string(), "invalid-duration"))?;
    if d.is_zero() {
        return Err(DaemonError::invalid(
            field,
            "must be longer than 0",
            "invalid-duration",
        ));
    }
    Ok(Some((
        d,
        crate::clock::rfc3339(std::time::SystemTime::now() + d),
    )))
}

/// A client-chosen fault id: `[a-z0-9-]`, 1–63 characters (a file name, an environment value
/// and part of an iptables chain name).
fn checked_id(id: &FaultId) -> Result<(), DaemonError> {
    let ok = !id.0.is_empty()
        && id.0.len() <= 63
        && id
            .0
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DaemonError::invalid(
            "faultId",
            format!("`{}` is not 1-63 characters of a-z, 0-9 and -", id.0),
            "invalid-fault-id",
        ))
    }
}

impl Daemon {
    /// Runs an apply of fault `requested` (or of a new id) to its end, in its own task and
    /// under the id's lock: when the id names an active fault of `kind`, its ttl is renewed
    /// and that is all; otherwise `body` applies it (through [`Daemon::applied`]).
    ///
    /// Its own task, because a client that goes away makes the server drop the call: dropped
    /// mid-apply, a fault would be applied with no ttl armed, or journaled and never acted on.
    pub(crate) async fn apply_exclusive<F, Fut>(
        self: &Arc<Self>,
        requested: Option<&FaultId>,
        kind: FaultKind,
        ttl: Option<Ttl>,
        body: F,
    ) -> Result<FaultId, DaemonError>
    where
        F: FnOnce(Arc<Self>, FaultId, Option<Ttl>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<FaultId, DaemonError>> + Send + 'static,
    {
        let id = match requested {
            None => new_fault_id(kind),
            Some(id) => {
                checked_id(id)?;
                id.clone()
            }
        };
        let daemon = self.clone();
        finish(tokio::spawn(async move {
            let _one_at_a_time = daemon.faults.hold(&id).await;
            // Checked under the lock: [`Daemon::close`] waits for every lock to be free, so an
            // apply either is done before the last recovery pass or never starts.
            if daemon.closing.load(std::sync::atomic::Ordering::Acquire) {
                return Err(DaemonError::ShuttingDown);
            }
            if daemon.renewed(&id, kind, ttl.as_ref())? {
                return Ok(id);
            }
            body(daemon.clone(), id, ttl).await
        }))
        .await
    }

    /// Refuses applies from now on and waits (up to [`CLOSE_WAIT`]) for the applies and
    /// recoveries in flight to end, so that a recovery of every fault after it leaves none.
    pub(crate) async fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        if !self.faults.quiesce(CLOSE_WAIT).await {
            tracing::warn!(
                wait = ?CLOSE_WAIT,
                "operations still in flight at shutdown; recovering what is registered"
            );
        }
    }

    /// When `id` is an active fault of `kind`: renews its ttl (if the call has one) and says
    /// so. An active fault of another kind is an error.
    fn renewed(
        self: &Arc<Self>,
        id: &FaultId,
        kind: FaultKind,
        ttl: Option<&Ttl>,
    ) -> Result<bool, DaemonError> {
        match self.faults.kind_of(id) {
            None => Ok(false),
            // Registered only to be recovered: a renewal would report a half-applied fault as
            // applied (and put off its recovery by the new ttl).
            Some(_) if self.faults.is_failed_apply(id) => Err(DaemonError::Recovering(id.clone())),
            Some(k) if k != kind => Err(DaemonError::invalid(
                "faultId",
                format!("{id} is an active fault of another kind"),
                "wrong-kind",
            )),
            Some(_) => {
                if let Some((delay, expires_at)) = ttl {
                    self.faults.renew(id, expires_at.clone())?;
                    recover_later(self, id.clone(), *delay, Reason::Ttl);
                    tracing::debug!(fault_id = %id, %expires_at, "ttl renewed");
                }
                Ok(true)
            }
        }
    }

    /// Journals a new fault, runs `act`, and on success arms its ttl. On failure the entry is
    /// removed when `act` undid its own partial work; when it could not, the entry stays and
    /// the fault is recovered in the background.
    pub(crate) async fn applied(
        self: &Arc<Self>,
        entry: Entry,
        ttl: Option<Duration>,
        act: impl Future<Output = Result<Option<Entry>, ApplyError>>,
    ) -> Result<FaultId, DaemonError> {
        let id = entry.fault_id.clone();
        let kind = entry.record.kind();
        self.faults.begin(entry.clone())?;
        let failure = match act.await {
            Ok(updated) => match updated.map(|u| self.faults.update(u)).transpose() {
                Ok(_) => {
                    self.metrics.applied(kind);
                    if let Some(d) = ttl {
                        recover_later(self, id.clone(), d, Reason::Ttl);
                    }
                    tracing::info!(fault_id = %id, kind = crate::metrics::kind_name(kind), "fault applied");
                    return Ok(id);
                }
                // Applied, but the journal lacks what was learned (e.g. stress-ng's pid) and
                // the client is told it failed: undo it rather than leave it running with no
                // ttl. The entry first written is enough to recover from.
                Err(err) => match self.undo(&entry).await {
                    Ok(()) => ApplyError::undone(err),
                    Err(undo) => {
                        tracing::error!(fault_id = %id, error = %crate::error_chain(&undo), "undoing an apply whose journal update failed");
                        ApplyError::left_behind(err)
                    }
                },
            },
            Err(failed) => failed,
        };
        if failure.undone {
            self.faults.abandon(&id);
        } else {
            tracing::error!(fault_id = %id, error = %crate::error_chain(&failure.error), "apply failed and could not undo all it did; the fault stays journaled and is recovered in the background");
            self.faults.failed_apply(&id);
            recover_later(self, id.clone(), RETRY_FIRST, Reason::FailedApply);
        }
        Err(failure.error)
    }
}

#[cfg(test)]
#[path = "lifecycle/tests.rs"]
mod tests;
