//! Writing an experiment's status, conflict-safe. The status subresource is patched with the
//! `resourceVersion` the pass read, so the API server refuses (409) a status decided from an
//! object that changed since. On a 409 the object is read again: if its status is still the
//! one the pass started from, only the metadata changed (a pause annotation, a label) and the
//! pass's records — faults that were really sent — are written onto the fresh version (the
//! change itself wakes another reconcile). If the status changed too (another writer, e.g. a
//! replica that led before), the pass gives way: [`ReconcileError::Conflict`] makes the engine
//! decide again from the fresh object. Records are never dropped for a conflict.

use faultline_api::status::ChaosStatus;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{Ctx, ReconcileError, kube_err};
use crate::kinds::Chaos;

enum Written {
    Done,
    Conflict,
}

async fn patch<K: Chaos>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<String>,
    status: &ChaosStatus,
    what: &str,
) -> Result<Written, ReconcileError> {
    let body = json!({
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(Written::Done),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Conflict),
        Err(e) => Err(kube_err(format!("write the status of {what}"))(e)),
    }
}

pub(super) async fn write_status<K: Chaos>(
    ctx: &Ctx,
    obj: &K,
    status: &ChaosStatus,
) -> Result<(), ReconcileError> {
    if obj.status() == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let name = obj.name_any();
    let what = format!("{}/{name}", K::KIND);
    let mut written = patch(&api, &name, obj.resource_version(), status, &what).await?;
    if let Written::Conflict = written {
        ctx.stale
            .refused(&obj.uid().unwrap_or_default(), obj.resource_version());
        let fresh = api
            .get(&name)
            .await
            .map_err(kube_err(format!("read {what} again after a conflict")))?;
        if fresh.meta().deletion_timestamp.is_none() == obj.meta().deletion_timestamp.is_none()
            && fresh.status() == obj.status()
        {
            tracing::debug!(%what, "status conflict on metadata only; writing onto the fresh version");
            written = patch(&api, &name, fresh.resource_version(), status, &what).await?;
        }
    }
    if let Written::Conflict = written {
        return Err(ReconcileError::Conflict(what));
    }
    ctx.metrics.phase(
        K::KIND,
        obj.status()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref(),
        status.phase.map(|p| format!("{p:?}")).as_deref(),
    );
    Ok(())
}
