//! The JSON-RPC methods: params read strictly by `faultline_api::rpc::sidecar` (unknown names are
//! errors, every problem reported at once), then one call into the rule store; results are the
//! typed wire types of that module.
//!
//! The rule-changing methods are blocking methods: a change walks the known inodes and sends the
//! kernel cache invalidations before it returns, which must not stall the async workers that
//! serve other connections (and `/ready`).

use std::sync::Arc;

use faultline_api::iorule::FieldError;
use faultline_api::rpc::sidecar::{
    GenerationResult, OpCounts, RulesAddParams, RulesAddResult, RulesList, RulesRemoveParams,
    RulesSetParams, read_no_params, unreadable_params,
};
use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::Value;

use super::errors::{invalid_params, rule_error};
use crate::App;

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
        let RulesSetParams { rules } = params(&p, RulesSetParams::read)?;
        let generation = app.rules.set(rules).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(GenerationResult { generation })
    })?;
    m.register_blocking_method("rules.add", |p, app, _| {
        let RulesAddParams { rule } = params(&p, RulesAddParams::read)?;
        let (id, generation) = app.rules.add(rule).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(RulesAddResult { id, generation })
    })?;
    m.register_blocking_method("rules.remove", |p, app, _| {
        let RulesRemoveParams { id } = params(&p, RulesRemoveParams::read)?;
        let generation = app.rules.remove(&id).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(GenerationResult { generation })
    })?;
    m.register_blocking_method("rules.clear", |p, app, _| {
        params(&p, read_no_params)?;
        let generation = app.rules.clear();
        Ok::<_, ErrorObjectOwned>(GenerationResult { generation })
    })?;
    m.register_method("rules.list", |p, app, _| {
        params(&p, read_no_params)?;
        let (generation, rules) = app.rules.list();
        Ok::<_, ErrorObjectOwned>(RulesList { generation, rules })
    })?;
    m.register_method("status", |p, app, _| {
        params(&p, read_no_params)?;
        Ok::<_, ErrorObjectOwned>(app.status())
    })?;
    Ok(m)
}

/// Per-op counters as `status` shows them: `{"read": {"count", "errors", "injected"}, ...}`;
/// `errors` are the source's own (ENOENT, ENODATA, …), `injected` the ops a fault rule failed.
pub(crate) fn op_counts(app: &App) -> std::collections::BTreeMap<String, OpCounts> {
    app.metrics
        .op_counts()
        .into_iter()
        .map(|c| {
            let counts = OpCounts {
                count: c.count,
                errors: c.errors,
                injected: c.injected,
            };
            (c.op.to_string(), counts)
        })
        .collect()
}
