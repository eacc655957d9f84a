//! What the CRD schemas say beyond the Rust types: required fields that serde fills with a
//! default (so validation, not deserialization, reports them with a reason), patterns, and the
//! Chaos Mesh fields declared only to be refused.
//!
//! The API server checks these itself (`kubectl apply` of a spec without `selector` is refused
//! before any webhook runs); the webhook and [`crate::read()`] apply the same schema in process
//! and report every problem at once. Bounds (`minimum`/`maximum`) sit on the fields themselves
//! as `#[schemars(range(...))]`; a test checks that each one is also a validation rule.

use schemars::Schema;
use serde_json::{Value, json};

/// Go durations as [`crate::duration::parse_duration`] reads them (`300ms`, `1.5h`, `2m30s`,
/// `0`), loosely: a sign is left to validation, which explains it better than a pattern.
pub const DURATION: &str = r"^\s*[-+]?(0|([0-9]*\.?[0-9]*(ns|us|µs|μs|ms|s|m|h))+)\s*$";
/// A tc rate as Chaos Mesh takes it: a whole number and a unit (`100kbps`, `1 mbit`).
pub const RATE: &str = r"^\s*[0-9]+\s*[A-Za-z]+\s*$";
/// A percentage written as a decimal (`25`, `0.5`, `50%`); the 0..=100 bound is validation's.
pub const PERCENT: &str = r"^\s*[0-9]*\.?[0-9]*\s*%*\s*$";
/// An absolute path.
pub const ABSOLUTE: &str = "^/";

/// Marks `fields` required and removes the `default` that serde's `#[serde(default)]` wrote
/// into their schemas: after the API server applied such a default, a missing field would reach
/// the webhook as an empty value and the message would mislead.
pub(crate) fn require(schema: &mut Schema, fields: &[&str]) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for field in fields {
            if let Some(Value::Object(property)) = properties.get_mut(*field) {
                property.remove("default");
            }
        }
    }
    let required = object
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = required {
        for field in fields {
            if !list.iter().any(|v| v == *field) {
                list.push(Value::from(*field));
            }
        }
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

/// `transform` functions for `#[schemars(transform = ...)]`: one per type, naming its required
/// fields.
macro_rules! required {
    ($($name:ident => [$($field:literal),+ $(,)?];)+) => {
        $(
            pub(crate) fn $name(schema: &mut Schema) {
                require(schema, &[$($field),+]);
            }
        )+
    };
}

required! {
    selector_required => ["selector"];
    delay_required => ["latency"];
    reorder_required => ["reorder", "gap"];
    loss_required => ["loss"];
    duplicate_required => ["duplicate"];
    corrupt_required => ["corrupt"];
    rate_required => ["rate"];
    bandwidth_required => ["rate", "limit", "buffer"];
    workers_required => ["workers"];
    timespec_required => ["sec", "nsec"];
}

/// The field every Chaos Mesh spec has for its multi-cluster mode, which Faultline does not
/// implement. It is declared, not left to pruning, so that an experiment meant for another
/// cluster reaches the webhook and is refused instead of silently hitting pods in this one.
pub const REMOTE_CLUSTER: &str = "remoteCluster";

/// Declares [`REMOTE_CLUSTER`] on a chaos spec.
pub(crate) fn spec_extras(schema: &mut Schema) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert(
            REMOTE_CLUSTER.to_owned(),
            json!({
                "description": "Chaos Mesh's multi-cluster target. Not supported: Faultline acts on the cluster it runs in, and refuses any value here.",
                "type": "string"
            }),
        );
    }
}

/// IOChaos: [`spec_extras`] and `volumePath` required.
pub(crate) fn io_spec_extras(schema: &mut Schema) {
    spec_extras(schema);
    require(schema, &["volumePath"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_adds_and_strips_defaults() {
        let mut schema = Schema::try_from(json!({
            "type": "object",
            "properties": {"a": {"type": "string", "default": ""}, "b": {"type": "integer"}},
            "required": ["b"]
        }))
        .unwrap();
        require(&mut schema, &["a", "b"]);
        assert_eq!(schema.get("required"), Some(&json!(["a", "b"])));
        assert_eq!(
            schema.get("properties").unwrap()["a"],
            json!({"type": "string"})
        );
    }
}
