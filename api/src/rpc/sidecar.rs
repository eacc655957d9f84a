//! `faultline-sidecar`'s methods (DESIGN.md §4): params and results, and the strict params
//! reader the sidecar serves them with.
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `rules.set` | [`RulesSetParams`] | [`GenerationResult`] (atomic replace of one mount's rules) |
//! | `rules.add` | [`RulesAddParams`] | [`RulesAddResult`] |
//! | `rules.remove` | [`RulesRemoveParams`] | [`GenerationResult`] |
//! | `rules.clear` | [`MountParams`] | [`GenerationResult`] |
//! | `rules.list` | [`MountParams`] | [`RulesList`] |
//! | `status` | [`MountParams`] | [`Status`] |
//!
//! One sidecar serves every injected volume of a pod, each its own FUSE mount. `mount` names the
//! mount a call is about: the volume name (`--mount SOURCE:MOUNTPOINT:NAME`), or an absolute
//! path — where an app container mounts the volume (an IOChaos `volumePath`) or the sidecar's
//! own mountpoint. With exactly one mount it may be omitted. Rule ids are unique across the
//! mounts, so `rules.remove` finds a rule by id alone; `rules.clear`, `rules.list` and `status`
//! without `mount` cover every mount.
//!
//! Params are by name. Deserializing any params type refuses unknown fields; a server reads
//! params with [`RulesSetParams::read`] and friends instead, which report *every* problem (each
//! unknown field, each bad rule field) with its JSON path rather than serde's first one.
//! No Kubernetes dependency: the sidecar links this without the `crd` feature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::iomode::IoMode;
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

/// `rules.set {"rules": [..], "mount"?}`: the whole new rule list of one mount (`[]` removes
/// all of its rules; the other mounts' rules stay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesSetParams {
    pub rules: Vec<IoRule>,
    /// The mount (volume name or app mount path); optional when the sidecar has one mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// `rules.add {"rule": {..}, "mount"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesAddParams {
    pub rule: IoRule,
    /// The mount (volume name or app mount path); optional when the sidecar has one mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// `rules.remove {"id": "..", "mount"?}`: ids are unique across mounts, so `mount` is only a
/// check (the rule must be on that mount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesRemoveParams {
    /// A rule id as `rules.list` shows it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// `rules.clear`, `rules.list`, `status`: `{"mount"?}`; absent = every mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// `{"generation": N}`: what every rule change returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationResult {
    /// The rule generation after the change.
    pub generation: u64,
}

/// `rules.add` → `{"id": "...", "generation": N, "mount": "data"}` (the id given, or `rN`
/// when none was; the name of the mount the rule went to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesAddResult {
    pub id: String,
    pub generation: u64,
    /// The mount's name ([`MountStatus::name`]).
    #[serde(default)]
    pub mount: String,
}

/// One loaded rule as `rules.list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEntry {
    pub id: String,
    /// The mount's name ([`MountStatus::name`]).
    #[serde(default)]
    pub mount: String,
    /// The rule as given, with its id filled in.
    pub rule: IoRule,
    /// Operations the rule hit so far.
    pub hits: u64,
    /// Time left until a rule with a `ttl` removes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// `rules.list` → `{"generation": N, "rules": [..]}`: the sidecar's generation, and the rules
/// of the mount asked for (or of every mount, in mount order).
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

/// `status` → the state of the mounts asked for (all, or the one `mount` names): totals over
/// them, and each mount's own state, rules and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Every mount shown is mounted.
    pub mounted: bool,
    /// Every mount shown is mounted, and the sidecar is not shutting down.
    pub ready: bool,
    /// The sidecar's rule generation (every change on any mount raises it).
    pub generation: u64,
    /// Rules loaded, over the mounts shown.
    pub rules: usize,
    /// Counters summed over the mounts shown, by FUSE op name (`read`, `lookup`, …).
    pub ops: BTreeMap<String, OpCounts>,
    /// Inodes the kernel knows, over the mounts shown.
    pub inodes: usize,
    pub open_handles: usize,
    /// Operations a latency rule delayed that are not answered yet, over the mounts shown.
    pub delayed_ops: u64,
    pub uptime_seconds: u64,
    /// Each mount, in command-line order.
    pub mounts: Vec<MountStatus>,
}

/// Where an app container mounts a volume (`--app-mount NAME[/SUBPATH]=PATH`): `mount` may name
/// the volume by `path`; rule paths are then relative to `subPath` inside the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPath {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// One mount in [`Status::mounts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountStatus {
    /// The volume name given with `--mount SOURCE:MOUNTPOINT:NAME`, else the mountpoint.
    pub name: String,
    pub mounted: bool,
    /// Mounted and not shutting down.
    pub ready: bool,
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// Where app containers mount it (other names for `mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_paths: Vec<AppPath>,
    /// The generation of this mount's latest rule change (0: never changed).
    pub generation: u64,
    /// Number of loaded rules.
    pub rules: usize,
    /// Counters of every operation seen at least once, by FUSE op name.
    pub ops: BTreeMap<String, OpCounts>,
    pub inodes: usize,
    pub open_handles: usize,
    pub delayed_ops: u64,
    /// `--io-mode`; absent from a sidecar older than this field (its mode is then unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_mode: Option<IoMode>,
    /// Under `fast`: the kernel granted FUSE passthrough (false: every file is served as under
    /// `exact`, and the sidecar logged why).
    #[serde(default)]
    pub passthrough: bool,
    /// Open handles served by kernel passthrough.
    #[serde(default)]
    pub passthrough_handles: u64,
    /// Passthrough handles a loaded rule matches but cannot reach until the app closes them
    /// (docs/sidecar.md, "I/O modes").
    #[serde(default)]
    pub bypassed_handles: u64,
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

/// The optional `mount` param: a volume name or an absolute path.
fn mount(params: &Map<String, Value>, reader: &mut Reader) -> Option<String> {
    match params.get("mount") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(other) => {
            reader.wrong("mount", MOUNT, other);
            None
        }
    }
}

const MOUNT: &str = "a volume name, or the absolute path where an app container mounts the volume";

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
        let p = named(params, &["rules", "mount"], &mut reader);
        let rules = required(
            &p,
            "rules",
            "(the whole new rule list of the mount; [] removes all)",
            &mut reader,
        )
        .and_then(|v| read_rules(&mut reader, v, "rules"));
        let mount = mount(&p, &mut reader);
        finish(reader, rules.map(|rules| Self { rules, mount }))
    }
}

impl RulesAddParams {
    /// Reads `rules.add` params strictly (paths under `rule`).
    pub fn read(params: Option<&Value>) -> Result<Self, Vec<FieldError>> {
        let mut reader = Reader::new();
        let p = named(params, &["rule", "mount"], &mut reader);
        let rule = required(&p, "rule", "(the rule to add)", &mut reader)
            .and_then(|v| read_rule(&mut reader, v, "rule"));
        let mount = mount(&p, &mut reader);
        finish(reader, rule.map(|rule| Self { rule, mount }))
    }
}

impl RulesRemoveParams {
    /// Reads `rules.remove` params strictly.
    pub fn read(params: Option<&Value>) -> Result<Self, Vec<FieldError>> {
        let mut reader = Reader::new();
        let p = named(params, &["id", "mount"], &mut reader);
        let id = match required(&p, "id", "(a rule id as rules.list shows it)", &mut reader) {
            Some(Value::String(id)) => Some(id.clone()),
            Some(other) => {
                reader.wrong("id", "a rule id (a string)", other);
                None
            }
            None => None,
        };
        let mount = mount(&p, &mut reader);
        finish(reader, id.map(|id| Self { id, mount }))
    }
}

impl MountParams {
    /// Reads `rules.clear`, `rules.list` or `status` params strictly: absent, `null`, `[]`, `{}`,
    /// `{"mount": ".."}` or `["<mount>"]`.
    pub fn read(params: Option<&Value>) -> Result<Self, Vec<FieldError>> {
        let mut reader = Reader::new();
        let p = named(params, &["mount"], &mut reader);
        let mount = mount(&p, &mut reader);
        finish(reader, Some(Self { mount }))
    }
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
        // Several mounts: `mount` names one, by volume name or by where the app mounts it.
        let set: RulesSetParams = round_trip(json!({"rules": [], "mount": "/var/lib/db"}));
        assert_eq!(set.mount.as_deref(), Some("/var/lib/db"));
        let add: RulesAddParams =
            round_trip(json!({"rule": {"type": "latency", "latency": "5ms"}, "mount": "data"}));
        assert_eq!(
            RulesAddParams::read(Some(
                &json!({"rule": {"type": "latency", "latency": "5ms"}, "mount": "data"})
            )),
            Ok(add)
        );
        let m: MountParams = round_trip(json!({"mount": "logs"}));
        assert_eq!(MountParams::read(Some(&json!(["logs"]))), Ok(m));
        assert_eq!(MountParams::read(None), Ok(MountParams::default()));
        let _: RulesAddParams = round_trip(json!({"rule": {
            "type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 4}
        }}));
        let _: RulesAddParams =
            round_trip(json!({"rule": {"type": "attrOverride", "attr": {"perm": 292}}}));

        let g: GenerationResult = round_trip(json!({"generation": 3}));
        assert_eq!(g.generation, 3);
        let a: RulesAddResult = round_trip(json!({"id": "r1", "generation": 4, "mount": "data"}));
        assert_eq!(a.id, "r1");
        let list: RulesList = round_trip(json!({"generation": 4, "rules": [
            {"id": "slow", "mount": "data", "rule": {"id": "slow", "type": "latency", "latency": "300ms", "methods": ["read"]}, "hits": 12},
            {"id": "eio", "mount": "logs", "rule": {"id": "eio", "type": "fault", "faults": [{"errno": 5, "weight": 1}], "ttl": "5m"}, "hits": 0, "expiresInMs": 299000}
        ]}));
        assert_eq!(list.rules[1].expires_in_ms, Some(299_000));
        let ops = json!({"lookup": {"count": 9, "errors": 3, "injected": 0}, "read": {"count": 4, "errors": 0, "injected": 1}});
        let status: Status = round_trip(json!({
            "mounted": true, "ready": true, "generation": 2, "rules": 1, "ops": ops,
            "inodes": 4, "openHandles": 0, "delayedOps": 0, "uptimeSeconds": 75,
            "mounts": [{
                "name": "data", "mounted": true, "ready": true,
                "source": "/faultline/source/data", "mountpoint": "/faultline/mnt/data",
                "appPaths": [{"path": "/var/lib/db"}, {"path": "/srv", "subPath": "www"}],
                "generation": 2, "rules": 1, "ops": ops,
                "inodes": 4, "openHandles": 3, "delayedOps": 0,
                "ioMode": "fast", "passthrough": true, "passthroughHandles": 2, "bypassedHandles": 1
            }]
        }));
        assert_eq!(status.ops["read"].injected, 1);
        assert_eq!(
            (status.mounts[0].io_mode, status.mounts[0].bypassed_handles),
            (Some(IoMode::Fast), 1)
        );
        // A sidecar from before the I/O mode fields: mode unknown, no passthrough counted.
        let old: MountStatus = serde_json::from_value(json!({
            "name": "old", "mounted": true, "ready": true, "source": "/s", "mountpoint": "/m",
            "generation": 0, "rules": 0, "ops": {}, "inodes": 1, "openHandles": 0, "delayedOps": 0
        }))
        .expect("a status without the I/O mode fields");
        assert_eq!(
            (old.io_mode, old.passthrough, old.bypassed_handles),
            (None, false, 0)
        );
        assert_eq!(
            status.mounts[0].app_paths[1].sub_path.as_deref(),
            Some("www")
        );
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
        assert!(serde_json::from_value::<MountParams>(json!({"mnt": "x"})).is_err());
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
        let err = MountParams::read(Some(&json!({"all": true}))).unwrap_err();
        assert_eq!(paths(err), vec![("all".into(), "unknown-field")]);
        let err = MountParams::read(Some(&json!("x"))).unwrap_err();
        assert_eq!(paths(err), vec![("params".into(), "wrong-type")]);
        assert_eq!(
            MountParams::read(Some(&json!([]))),
            Ok(MountParams::default())
        );
        for bad in [json!(7), json!(""), json!(["data"])] {
            let err = MountParams::read(Some(&json!({ "mount": bad }))).unwrap_err();
            assert_eq!(paths(err), vec![("mount".into(), "wrong-type")]);
        }
        let err = RulesAddParams::read(Some(&json!({"rule": {"type": "latency"}, "mount": 1})))
            .unwrap_err();
        assert_eq!(
            paths(err),
            vec![
                ("rule.latency".into(), "required"),
                ("mount".into(), "wrong-type")
            ]
        );
    }
}
