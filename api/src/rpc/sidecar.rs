//! `faultline-sidecar`'s methods (DESIGN.md §4): params and results, and the strict params
//! reader the sidecar serves them with.
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `rules.set` | [`RulesSetParams`] | [`GenerationResult`] (atomic replace) |
//! | `rules.add` | [`RulesAddParams`] | [`RulesAddResult`] |
//! | `rules.remove` | [`RulesRemoveParams`] | [`GenerationResult`] |
//! | `rules.clear` | – | [`GenerationResult`] |
//! | `rules.list` | – | [`RulesList`] |
//! | `status` | – | [`Status`] |
//!
//! Params are by name. Deserializing any params type refuses unknown fields; a server reads
//! params with [`RulesSetParams::read`] and friends instead, which report *every* problem (each
//! unknown field, each bad rule field) with its JSON path rather than serde's first one.
//! No Kubernetes dependency: the sidecar links this without the `crd` feature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::iorule::{FieldError, IoRule, Problem, Reader, read_rule, read_rules};
use crate::validate::Rule;

/// The methods the sidecar serves, in documentation order.
pub const METHODS: &[&str] = &[
    "rules.set",
    "rules.add",
    "rules.remove",
    "rules.clear",
    "rules.list",
    "status",
];

/// `rules.set {"rules": [..]}`: the whole new rule list (`[]` removes all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesSetParams {
    pub rules: Vec<IoRule>,
}

/// `rules.add {"rule": {..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesAddParams {
    pub rule: IoRule,
}

/// `rules.remove {"id": ".."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesRemoveParams {
    /// A rule id as `rules.list` shows it.
    pub id: String,
}

/// `{"generation": N}`: what every rule change returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationResult {
    /// The rule generation after the change.
    pub generation: u64,
}

/// `rules.add` → `{"id": "...", "generation": N}` (the id given, or `rN` when none was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesAddResult {
    pub id: String,
    pub generation: u64,
}

/// One loaded rule as `rules.list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEntry {
    pub id: String,
    /// The rule as given, with its id filled in.
    pub rule: IoRule,
    /// Operations the rule hit so far.
    pub hits: u64,
    /// Time left until a rule with a `ttl` removes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// `rules.list` → `{"generation": N, "rules": [..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesList {
    pub generation: u64,
    pub rules: Vec<RuleEntry>,
}

/// One FUSE operation's counters in [`Status::ops`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpCounts {
    /// Operations answered.
    pub count: u64,
    /// Errors the source filesystem returned (ENOENT for an absent name: normal traffic).
    pub errors: u64,
    /// Operations a fault rule failed.
    pub injected: u64,
}

/// `status` → mount state, rules and per-operation counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub mounted: bool,
    /// Mounted and not shutting down.
    pub ready: bool,
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    pub generation: u64,
    /// Number of loaded rules.
    pub rules: usize,
    /// Counters of every operation seen at least once, by FUSE op name (`read`, `lookup`, …).
    pub ops: BTreeMap<String, OpCounts>,
    /// Inodes the kernel knows.
    pub inodes: usize,
    pub open_handles: usize,
    /// Operations a latency rule delayed that are not answered yet.
    pub delayed_ops: u64,
    pub uptime_seconds: u64,
}

const NAMED: &str = "an object of named params";

/// The call's params (`None`: absent) as named params with only `accepted` names. A one-element
/// positional array stands for the first name; anything else wrong is recorded in `reader`.
fn named(params: Option<&Value>, accepted: &[&str], reader: &mut Reader) -> Map<String, Value> {
    match params {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Array(items)) if items.is_empty() => Map::new(),
        Some(Value::Array(items)) if items.len() == 1 && !accepted.is_empty() => {
            Map::from_iter([(accepted[0].to_string(), items[0].clone())])
        }
        Some(value @ Value::Object(m)) => {
            reader.object(value, "", NAMED, accepted);
            m.clone()
        }
        Some(other) => {
            let expected = if accepted.is_empty() {
                "absent: this method takes no params"
            } else {
                NAMED
            };
            reader.wrong("params", expected, other);
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

/// `value` when the params had no problem; else every problem.
fn finish<T>(reader: Reader, value: Option<T>) -> Result<T, Vec<FieldError>> {
    match value {
        Some(value) if reader.errors().is_empty() => Ok(value),
        _ => Err(reader.into_errors()),
    }
}

impl RulesSetParams {
    /// Reads `rules.set` params strictly: every problem of every rule, with its path
    /// (`rules[1].latency`), unknown names and ids used twice.
    pub fn read(params: Option<&Value>) -> Result<Self, Vec<FieldError>> {
        let mut reader = Reader::new();
        let p = named(params, &["rules"], &mut reader);
        let rules = required(
            &p,
            "rules",
            "(the whole new rule list; [] removes all)",
            &mut reader,
        )
        .and_then(|v| read_rules(&mut reader, v, "rules"));
        finish(reader, rules.map(|rules| Self { rules }))
    }
}

impl RulesAddParams {
    /// Reads `rules.add` params strictly (paths under `rule`).
    pub fn read(params: Option<&Value>) -> Result<Self, Vec<FieldError>> {
        let mut reader = Reader::new();
        let p = named(params, &["rule"], &mut reader);
        let rule = required(&p, "rule", "(the rule to add)", &mut reader)
            .and_then(|v| read_rule(&mut reader, v, "rule"));
        finish(reader, rule.map(|rule| Self { rule }))
    }
}

impl RulesRemoveParams {
    /// Reads `rules.remove` params strictly.
    pub fn read(params: Option<&Value>) -> Result<Self, Vec<FieldError>> {
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
        finish(reader, id.map(|id| Self { id }))
    }
}

/// Params of a method that takes none (`rules.clear`, `rules.list`, `status`): absent, `null`,
/// `[]` or `{}`; anything else is a problem.
pub fn read_no_params(params: Option<&Value>) -> Result<(), Vec<FieldError>> {
    let mut reader = Reader::new();
    named(params, &[], &mut reader);
    finish(reader, Some(()))
}

/// A problem of params that are not valid JSON at all (for servers that parse them late).
pub fn unreadable_params(err: &serde_json::Error) -> Vec<FieldError> {
    vec![FieldError::new(
        "params",
        Problem::WrongType {
            expected: NAMED,
            found: err.to_string(),
        },
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    /// Deserializes `value`, serializes it back and checks nothing was lost or added.
    fn round_trip<T: Serialize + DeserializeOwned>(value: Value) -> T {
        let typed: T = serde_json::from_value(value.clone()).expect("deserialize");
        assert_eq!(serde_json::to_value(&typed).expect("serialize"), value);
        typed
    }

    /// DESIGN.md §4: the rule example and the params of every method.
    #[test]
    fn design_examples_round_trip() {
        let rule = json!({"type": "latency", "path": "logs/**", "methods": ["read"], "percent": 50, "latency": "10ms"});
        let set: RulesSetParams = round_trip(json!({"rules": [rule.clone()]}));
        assert_eq!(set.rules[0].latency.as_deref(), Some("10ms"));
        assert_eq!(
            RulesSetParams::read(Some(&json!({"rules": [rule]}))),
            Ok(set)
        );
        let add: RulesAddParams = round_trip(json!({"rule": {
            "id": "eio", "type": "fault", "path": "f", "methods": ["open"],
            "faults": [{"errno": 5, "weight": 1}], "ttl": "5m"
        }}));
        assert_eq!(add.rule.id.as_deref(), Some("eio"));
        let remove: RulesRemoveParams = round_trip(json!({"id": "eio"}));
        assert_eq!(RulesRemoveParams::read(Some(&json!(["eio"]))), Ok(remove));
        let _: RulesAddParams = round_trip(json!({"rule": {
            "type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 4}
        }}));
        let _: RulesAddParams =
            round_trip(json!({"rule": {"type": "attrOverride", "attr": {"perm": 292}}}));

        let g: GenerationResult = round_trip(json!({"generation": 3}));
        assert_eq!(g.generation, 3);
        let a: RulesAddResult = round_trip(json!({"id": "r1", "generation": 4}));
        assert_eq!(a.id, "r1");
        let list: RulesList = round_trip(json!({"generation": 4, "rules": [
            {"id": "slow", "rule": {"id": "slow", "type": "latency", "latency": "300ms", "methods": ["read"]}, "hits": 12},
            {"id": "eio", "rule": {"id": "eio", "type": "fault", "faults": [{"errno": 5, "weight": 1}], "ttl": "5m"}, "hits": 0, "expiresInMs": 299000}
        ]}));
        assert_eq!(list.rules[1].expires_in_ms, Some(299_000));
        let status: Status = round_trip(json!({
            "mounted": true, "ready": true, "source": "/data-src", "mountpoint": "/data",
            "generation": 2, "rules": 1,
            "ops": {"lookup": {"count": 9, "errors": 3, "injected": 0}, "read": {"count": 4, "errors": 0, "injected": 1}},
            "inodes": 4, "openHandles": 0, "delayedOps": 0, "uptimeSeconds": 75
        }));
        assert_eq!(status.ops["read"].injected, 1);
    }

    /// A misspelled name is an error naming it, never a param left at its default.
    #[test]
    fn unknown_fields_are_refused() {
        for value in [
            json!({"rules": [], "dryRun": true}),
            json!({"rules": [{"type": "fault", "pth": "x", "faults": [{"errno": 5}]}]}),
        ] {
            let err = serde_json::from_value::<RulesSetParams>(value).expect_err("refused");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
        assert!(serde_json::from_value::<RulesAddParams>(json!({"rules": {}})).is_err());
        assert!(serde_json::from_value::<RulesRemoveParams>(json!({"ids": "x"})).is_err());
    }

    /// The strict readers report every problem with its path, unknown names first.
    #[test]
    fn readers_report_every_problem_with_its_path() {
        let paths = |e: Vec<FieldError>| -> Vec<(String, &'static str)> {
            e.into_iter().map(|e| (e.path, e.problem.name())).collect()
        };
        let err = RulesSetParams::read(Some(&json!({"dryRun": true, "rules": [
            {"type": "fault", "pth": "x", "percent": -5, "faults": [{"errno": "EIOO"}]},
            {"type": "latency"}
        ]})))
        .unwrap_err();
        assert_eq!(
            paths(err),
            vec![
                ("dryRun".into(), "unknown-field"),
                ("rules[0].pth".into(), "unknown-field"),
                ("rules[0].percent".into(), "out-of-range"),
                ("rules[0].faults[0].errno".into(), "unknown-errno-name"),
                ("rules[1].latency".into(), "required"),
            ]
        );
        let err = RulesAddParams::read(None).unwrap_err();
        assert_eq!(paths(err), vec![("rule".into(), "required")]);
        let err = RulesRemoveParams::read(Some(&json!({"id": 7}))).unwrap_err();
        assert_eq!(paths(err), vec![("id".into(), "wrong-type")]);
        let err = read_no_params(Some(&json!({"all": true}))).unwrap_err();
        assert_eq!(paths(err), vec![("all".into(), "unknown-field")]);
        let err = read_no_params(Some(&json!("x"))).unwrap_err();
        assert_eq!(paths(err), vec![("params".into(), "wrong-type")]);
        assert_eq!(read_no_params(Some(&json!([]))), Ok(()));
        assert_eq!(read_no_params(None), Ok(()));
    }
}
