//! The JSON-RPC methods: params read strictly by `faultline_api::rpc::sidecar` (unknown names are
//! errors, every problem reported at once), then one call into [`App`], which finds the mount the
//! call names and changes that mount's rule store; results are the typed wire types of that
//! module.
//!
//! The rule-changing methods are blocking methods: a change walks the known inodes and sends the
//! kernel cache invalidations before it returns, which must not stall the async workers that
//! serve other connections (and `/ready`).

use std::sync::Arc;

use faultline_api::iorule::FieldError;
use faultline_api::rpc::sidecar::{
    GenerationResult, MountParams, RulesAddParams, RulesAddResult, RulesRemoveParams,
    RulesSetParams, unreadable_params,
};
use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::Value;

use super::errors::{change_error, invalid_params, mount_error};
use crate::app::App;

/// Reads the call's params with `read` (one of the api's strict readers).
fn params<T>(
    params: &Params<'_>,
    read: impl FnOnce(Option<&Value>) -> Result<T, Vec<FieldError>>,
) -> Result<T, ErrorObjectOwned> {
    let value = match params.as_str().map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(value)) => Some(value),
        // jsonrpsee has parsed the request already; only absurd nesting gets here.
        Some(Err(err)) => return Err(invalid_params(&unreadable_params(&err))),
    };
    read(value.as_ref()).map_err(|errors| invalid_params(&errors))
}

/// Builds the RPC methods.
pub(crate) fn module(app: Arc<App>) -> Result<RpcModule<Arc<App>>, RegisterMethodError> {
    let mut m = RpcModule::new(app);
    m.register_blocking_method("rules.set", |p, app, _| {
        let RulesSetParams { rules, mount } = params(&p, RulesSetParams::read)?;
        let generation = app
            .set_rules(mount.as_deref(), rules)
            .map_err(change_error)?;
        Ok::<_, ErrorObjectOwned>(GenerationResult { generation })
    })?;
    m.register_blocking_method("rules.add", |p, app, _| {
        let RulesAddParams { rule, mount } = params(&p, RulesAddParams::read)?;
        let (id, generation, mount) = app.add_rule(mount.as_deref(), rule).map_err(change_error)?;
        Ok::<_, ErrorObjectOwned>(RulesAddResult {
            id,
            generation,
            mount,
        })
    })?;
    m.register_blocking_method("rules.remove", |p, app, _| {
        let RulesRemoveParams { id, mount } = params(&p, RulesRemoveParams::read)?;
        let generation = app
            .remove_rule(mount.as_deref(), &id)
            .map_err(change_error)?;
        Ok::<_, ErrorObjectOwned>(GenerationResult { generation })
    })?;
    m.register_blocking_method("rules.clear", |p, app, _| {
        let MountParams { mount } = params(&p, MountParams::read)?;
        let generation = app.clear(mount.as_deref()).map_err(change_error)?;
        Ok::<_, ErrorObjectOwned>(GenerationResult { generation })
    })?;
    m.register_method("rules.list", |p, app, _| {
        let MountParams { mount } = params(&p, MountParams::read)?;
        app.list(mount.as_deref()).map_err(mount_error)
    })?;
    m.register_method("status", |p, app, _| {
        let MountParams { mount } = params(&p, MountParams::read)?;
        app.status(mount.as_deref()).map_err(mount_error)
    })?;
    Ok(m)
}
