//! The JSON-RPC methods: params read strictly (unknown names are errors, every problem reported
//! at once), then one call into the rule store.

use std::sync::Arc;

use faultline_api::iorule::{IoRule, Problem, Reader, read_rule, read_rules};
use faultline_api::validate::Rule;
use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Map, Value, json};

use super::errors::{invalid_params, rule_error};
use crate::App;

const NAMED: &str = "an object of named params";

/// The call's params as named params, with only `accepted` names. A one-element positional
/// array stands for the first name; anything else wrong is recorded in `reader`.
fn named(params: &Params<'_>, accepted: &[&str], reader: &mut Reader) -> Map<String, Value> {
    let Some(raw) = params.as_str() else {
        return Map::new();
    };
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(value) => value,
        // jsonrpsee has parsed the request already; only absurd nesting gets here.
        Err(err) => {
            reader.push(
                "params",
                Problem::WrongType {
                    expected: NAMED,
                    found: err.to_string(),
                },
            );
            return Map::new();
        }
    };
    match value {
        Value::Null => Map::new(),
        Value::Array(items) if items.is_empty() => Map::new(),
        Value::Array(mut items) if items.len() == 1 && !accepted.is_empty() => {
            Map::from_iter([(accepted[0].to_string(), items.remove(0))])
        }
        Value::Object(_) => {
            reader.object(&value, "", NAMED, accepted);
            match value {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        }
        other => {
            let expected = if accepted.is_empty() {
                "absent: this method takes no params"
            } else {
                NAMED
            };
            reader.wrong("params", expected, &other);
            Map::new()
        }
    }
}

/// A required param, or a `required` problem in `reader`.
fn required<'m>(
    params: &'m Map<String, Value>,
    name: &str,
    because: &str,
    reader: &mut Reader,
) -> Option<&'m Value> {
    let value = params.get(name).filter(|v| !v.is_null());
    if value.is_none() {
        reader.push(
            name,
            Rule::Required {
                because: because.into(),
            },
        );
    }
    value
}

/// `value` when the params had no problem; else -32602 listing every problem.
fn finish<T>(reader: Reader, value: Option<T>) -> Result<T, ErrorObjectOwned> {
    match value {
        Some(value) if reader.errors().is_empty() => Ok(value),
        _ => Err(invalid_params(reader.errors())),
    }
}

/// `rules.set {"rules": [..]}`.
fn set_params(params: &Params<'_>) -> Result<Vec<IoRule>, ErrorObjectOwned> {
    let mut reader = Reader::new();
    let p = named(params, &["rules"], &mut reader);
    let rules = required(
        &p,
        "rules",
        "(the whole new rule list; [] removes all)",
        &mut reader,
    )
    .and_then(|v| read_rules(&mut reader, v, "rules"));
    finish(reader, rules)
}

/// `rules.add {"rule": {..}}`.
fn add_params(params: &Params<'_>) -> Result<IoRule, ErrorObjectOwned> {
    let mut reader = Reader::new();
    let p = named(params, &["rule"], &mut reader);
    let rule = required(&p, "rule", "(the rule to add)", &mut reader)
        .and_then(|v| read_rule(&mut reader, v, "rule"));
    finish(reader, rule)
}

/// `rules.remove {"id": ".."}`.
fn remove_params(params: &Params<'_>) -> Result<String, ErrorObjectOwned> {
    let mut reader = Reader::new();
    let p = named(params, &["id"], &mut reader);
    let id = match required(&p, "id", "(a rule id as rules.list shows it)", &mut reader) {
        Some(Value::String(id)) => Some(id.clone()),
        Some(other) => {
            reader.wrong("id", "a rule id (a string)", other);
            None
        }
        None => None,
    };
    finish(reader, id)
}

/// Methods without params refuse any.
fn no_params(params: &Params<'_>) -> Result<(), ErrorObjectOwned> {
    let mut reader = Reader::new();
    named(params, &[], &mut reader);
    finish(reader, Some(()))
}

/// Builds the RPC methods.
pub fn module(app: Arc<App>) -> Result<RpcModule<Arc<App>>, RegisterMethodError> {
    let mut m = RpcModule::new(app);
    m.register_method("rules.set", |params, app, _| {
        let rules = set_params(&params)?;
        let generation = app.rules.set(rules).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation}))
    })?;
    m.register_method("rules.add", |params, app, _| {
        let rule = add_params(&params)?;
        let (id, generation) = app.rules.add(rule).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(json!({"id": id, "generation": generation}))
    })?;
    m.register_method("rules.remove", |params, app, _| {
        let id = remove_params(&params)?;
        let generation = app.rules.remove(&id).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation}))
    })?;
    m.register_method("rules.clear", |params, app, _| {
        no_params(&params)?;
        Ok::<_, ErrorObjectOwned>(json!({"generation": app.rules.clear()}))
    })?;
    m.register_method("rules.list", |params, app, _| {
        no_params(&params)?;
        let (generation, rules) = app.rules.list();
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation, "rules": rules}))
    })?;
    m.register_method("status", |params, app, _| {
        no_params(&params)?;
        Ok::<_, ErrorObjectOwned>(app.status())
    })?;
    Ok(m)
}

/// Per-op counters as `status` shows them: `{"read": {"count", "errors", "injected"}, ...}`;
/// `errors` are the source's own (ENOENT, ENODATA, …), `injected` the ops a fault rule failed.
pub(crate) fn op_counts(app: &App) -> Value {
    let ops: Map<String, Value> = app
        .metrics
        .op_counts()
        .into_iter()
        .map(|c| {
            let counts = json!({"count": c.count, "errors": c.errors, "injected": c.injected});
            (c.op.to_string(), counts)
        })
        .collect();
    Value::Object(ops)
}
