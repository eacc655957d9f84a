//! Writing an experiment's status, conflict-safe. The status subresource is patched with the
//! `resourceVersion` the pass read, so the API server refuses (409) a status decided from an
//! object that changed since. On a 409 the object is read again: if its status is still the
//! one the pass started from, only the metadata changed (a pause annotation, a label) and the
//! pass's records — faults that were really sent — are written onto the fresh version (the
//! change itself wakes another reconcile). If the status changed too (another writer, e.g. a
//! replica that led before), the pass gives way: [`ReconcileError::Conflict`] makes the engine
//! decide again from the fresh object. Records are never dropped for a conflict. A write of
//! records ahead of any call ([`OnConflict::DecideAgain`]) is never carried over: nothing was
//! sent, and the change (a pause, an edit) must be decided on first.
//!
//! Every version a write went onto is remembered as superseded ([`Stale`](super::Stale)): the
//! watch cache can hand it to the next pass before the write's own echo arrives, and a pass on
//! it would send again what this one sent.

use faultline_api::status::ChaosStatus;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{Ctx, ReconcileError, kube_err};
use crate::kinds::Chaos;

enum Written<K> {
    Done(K),
    Conflict,
}

async fn patch<K: Chaos>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<String>,
    status: &ChaosStatus,
    what: &str,
) -> Result<Written<K>, ReconcileError> {
    let body = json!({
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(written) => Ok(Written::Done(written)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Conflict),
        Err(e) => Err(kube_err(format!("write the status of {what}"))(e)),
    }
}

/// Whether a 409 on metadata only may be written over (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnConflict {
    /// The pass sent calls: keep their records, onto the fresh version.
    KeepRecords,
    /// Nothing was sent yet (the records written ahead): decide again from the fresh object,
    /// which may be paused or edited.
    DecideAgain,
}

/// Writes `status` onto `obj`; returns the object as written (`None`: it had that status
/// already).
pub(super) async fn write_status<K: Chaos>(
    ctx: &Ctx,
    obj: &K,
    status: &ChaosStatus,
    on_conflict: OnConflict,
) -> Result<Option<K>, ReconcileError> {
    if obj.status() == Some(status) {
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let name = obj.name_any();
    let what = format!("{}/{name}", K::KIND);
    let uid = obj.uid().unwrap_or_default();
    let mut written = patch(&api, &name, obj.resource_version(), status, &what).await?;
    // Refused or written over, the version read is outdated now — unless the write changed
    // nothing on the server (a difference below what it stores, e.g. sub-second times), which
    // leaves the version as it was.
    let moved = match &written {
        Written::Done(w) => w.resource_version() != obj.resource_version(),
        Written::Conflict => true,
    };
    if moved {
        ctx.stale.superseded(&uid, obj.resource_version());
    }
    if let (Written::Conflict, OnConflict::KeepRecords) = (&written, on_conflict) {
        let fresh = api
            .get(&name)
            .await
            .map_err(kube_err(format!("read {what} again after a conflict")))?;
        if fresh.meta().deletion_timestamp.is_none() == obj.meta().deletion_timestamp.is_none()
            && fresh.status() == obj.status()
        {
            tracing::debug!(%what, "status conflict on metadata only; writing onto the fresh version");
            written = patch(&api, &name, fresh.resource_version(), status, &what).await?;
            if let Written::Done(w) = &written
                && w.resource_version() != fresh.resource_version()
            {
                ctx.stale.superseded(&uid, fresh.resource_version());
            }
        }
    }
    let Written::Done(written) = written else {
        return Err(ReconcileError::Conflict(what));
    };
    ctx.metrics.phase(
        K::KIND,
        obj.status()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref(),
        status.phase.map(|p| format!("{p:?}")).as_deref(),
    );
    Ok(Some(written))
}
