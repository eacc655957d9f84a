//! The sidecar's fault rules: the wire shape of DESIGN.md §4 and its validation.
//!
//! A rule is the shape of one IOChaos action, with the path made relative to the FUSE mount root:
//! `{"type": "latency", "path": "logs/**", "methods": ["read"], "percent": 50, "latency": "10ms"}`.
//! This module has no Kubernetes dependency, so the sidecar links it without kube.

use crate::duration::parse_duration;
use crate::validate::{self, Findings, Rule, Violation, child, index};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a matching operation suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum IoFaultType {
    /// Delay the operation.
    Latency,
    /// Fail the operation with an errno.
    Fault,
    /// Report different attributes from getattr/lookup.
    AttrOverride,
    /// Corrupt the data of reads and writes.
    Mistake,
}

impl IoFaultType {
    pub fn as_str(self) -> &'static str {
        match self {
            IoFaultType::Latency => "latency",
            IoFaultType::Fault => "fault",
            IoFaultType::AttrOverride => "attrOverride",
            IoFaultType::Mistake => "mistake",
        }
    }
}

/// One errno among several, picked in proportion to `weight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedErrno {
    pub errno: i64,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A point in time for attribute overrides (seconds and nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct Timespec {
    pub sec: i64,
    #[serde(default)]
    pub nsec: i64,
}

/// File type names as Chaos Mesh writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum FileKind {
    NamedPipe,
    CharDevice,
    BlockDevice,
    Directory,
    RegularFile,
    Symlink,
    Socket,
}

/// Attributes reported instead of the real ones; unset fields stay real.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttrOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime: Option<Timespec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<Timespec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime: Option<Timespec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FileKind>,
    /// Permission bits, 0..=0o7777.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perm: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlink: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u32>,
}

impl AttrOverride {
    pub fn is_empty(&self) -> bool {
        self == &AttrOverride::default()
    }
}

/// How corrupted bytes are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum Filling {
    Zero,
    Random,
}

/// Data corruption: up to `max_occurrences` ranges of up to `max_length` bytes per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Mistake {
    pub filling: Filling,
    pub max_occurrences: i64,
    pub max_length: i64,
}

/// Upper bound of `mistake.maxOccurrences`: ranges corrupted in one operation.
pub const MAX_MISTAKE_OCCURRENCES: i64 = 1024;
/// Upper bound of `mistake.maxLength`: one FUSE request carries at most 1 MiB.
pub const MAX_MISTAKE_LENGTH: i64 = 1 << 20;

impl Mistake {
    pub fn validate_at(&self, path: &str, findings: &mut Findings) {
        findings.check(
            child(path, "maxOccurrences"),
            validate::in_range(
                self.max_occurrences.into(),
                1,
                MAX_MISTAKE_OCCURRENCES.into(),
            ),
        );
        findings.check(
            child(path, "maxLength"),
            validate::in_range(self.max_length.into(), 1, MAX_MISTAKE_LENGTH.into()),
        );
    }
}

impl AttrOverride {
    pub fn validate_at(&self, path: &str, findings: &mut Findings) {
        if self.is_empty() {
            findings.push(path, Rule::EmptyAttrOverride);
        }
        if let Some(perm) = self.perm {
            findings.check(
                child(path, "perm"),
                validate::in_range(perm.into(), 0, 0o7777),
            );
        }
        for (name, ts) in [
            ("atime", self.atime),
            ("mtime", self.mtime),
            ("ctime", self.ctime),
        ] {
            if let Some(ts) = ts {
                findings.check(
                    child(&child(path, name), "nsec"),
                    validate::in_range(ts.nsec.into(), 0, 999_999_999),
                );
            }
        }
    }
}

/// FUSE operation names a rule may filter on (lower case; matched case-insensitively, and
/// `copyFileRange` matches `copy_file_range`).
pub const FUSE_METHODS: &[&str] = &[
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "getlk",
    "setlk",
    "bmap",
    "fallocate",
    "lseek",
    "copy_file_range",
];

/// The canonical name of a FUSE method (`"READ"` → `"read"`, `"copyFileRange"` →
/// `"copy_file_range"`), or `None` when it names no FUSE operation.
pub fn canonical_method(name: &str) -> Option<&'static str> {
    let wanted: String = name
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    FUSE_METHODS
        .iter()
        .copied()
        .find(|m| m.replace('_', "") == wanted)
}

/// Builds a rule path glob relative to the mount root. `**` crosses directories, `*` and `?`
/// do not; a leading `/` is the mount root itself. Returns the unmatched [`globset::Glob`] so
/// callers can join many rules into one `GlobSet`.
pub fn build_glob(pattern: &str) -> Result<globset::Glob, Rule> {
    let relative = pattern.trim_start_matches('/');
    globset::GlobBuilder::new(relative)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|err| Rule::InvalidGlob {
            value: pattern.to_string(),
            reason: err.kind().to_string(),
        })
}

/// [`build_glob`], compiled to a matcher for one pattern.
pub fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, Rule> {
    build_glob(pattern).map(|glob| glob.compile_matcher())
}

/// One fault rule of the sidecar (DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IoRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: IoFaultType,
    /// Glob relative to the mount root; absent = every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// FUSE operations the rule applies to; empty = every operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Chance in percent that a matching operation is hit; absent = 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<WeightedErrno>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attr: Option<AttrOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mistake: Option<Mistake>,
    /// The rule removes itself this long after it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl IoRule {
    /// Every violation, with paths under `rule`.
    pub fn validate(&self) -> Vec<Violation> {
        let mut findings = Findings::default();
        self.validate_at("rule", &mut findings);
        findings.into_vec()
    }

    /// Every violation, with paths under `path` (e.g. `rules[3]`).
    pub fn validate_at(&self, path: &str, findings: &mut Findings) {
        let because =
            |field: &str| format!("for a rule of type `{}` ({field})", self.kind.as_str());
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            findings.push(
                child(path, "id"),
                Rule::InvalidName {
                    what: "rule id",
                    value: id.clone(),
                    reason: "must be 1-128 printable characters".into(),
                },
            );
        }
        if let Some(glob) = &self.path {
            findings.check(child(path, "path"), compile_glob(glob).map(|_| ()));
        }
        for (i, method) in self.methods.iter().enumerate() {
            if canonical_method(method).is_none() {
                findings.push(
                    index(&child(path, "methods"), i),
                    Rule::UnknownMethod {
                        value: method.clone(),
                        known: FUSE_METHODS.join(", "),
                    },
                );
            }
        }
        if let Some(percent) = self.percent {
            findings.check(
                child(path, "percent"),
                validate::in_range(percent.into(), 0, 100),
            );
        }
        if let Some(ttl) = &self.ttl {
            check_positive_duration(findings, &child(path, "ttl"), ttl);
        }
        match self.kind {
            IoFaultType::Latency => match &self.latency {
                Some(latency) => {
                    check_positive_duration(findings, &child(path, "latency"), latency)
                }
                None => findings.push(
                    child(path, "latency"),
                    Rule::Required {
                        because: because("the delay"),
                    },
                ),
            },
            IoFaultType::Fault => {
                if self.faults.is_empty() {
                    findings.push(
                        child(path, "faults"),
                        Rule::Required {
                            because: because("the errnos"),
                        },
                    );
                }
                for (i, fault) in self.faults.iter().enumerate() {
                    findings.check(
                        child(&index(&child(path, "faults"), i), "errno"),
                        validate::errno(fault.errno),
                    );
                }
                if !self.faults.is_empty() && self.faults.iter().all(|f| f.weight == 0) {
                    findings.push(child(path, "faults"), Rule::ZeroWeights);
                }
            }
            IoFaultType::AttrOverride => match &self.attr {
                Some(attr) => attr.validate_at(&child(path, "attr"), findings),
                None => findings.push(
                    child(path, "attr"),
                    Rule::Required {
                        because: because("the attributes"),
                    },
                ),
            },
            IoFaultType::Mistake => match &self.mistake {
                Some(mistake) => mistake.validate_at(&child(path, "mistake"), findings),
                None => findings.push(
                    child(path, "mistake"),
                    Rule::Required {
                        because: because("the corruption"),
                    },
                ),
            },
        }
    }

    /// The rule's delay, if it is a valid latency rule.
    pub fn latency_duration(&self) -> Option<Duration> {
        self.latency.as_deref().and_then(|s| parse_duration(s).ok())
    }

    /// The rule's time to live, if set and valid.
    pub fn ttl_duration(&self) -> Option<Duration> {
        self.ttl.as_deref().and_then(|s| parse_duration(s).ok())
    }
}

pub(crate) fn check_positive_duration(findings: &mut Findings, path: &str, value: &str) {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => findings.push(path, Rule::ZeroDuration),
        Ok(_) => {}
        Err(err) => findings.push(path, Rule::InvalidDuration(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(value: serde_json::Value) -> IoRule {
        serde_json::from_value(value).expect("rule parses")
    }

    #[test]
    fn valid_rules_pass() {
        for value in [
            json!({"type": "latency", "latency": "10ms", "path": "logs/**", "methods": ["READ", "write"], "percent": 50}),
            json!({"type": "fault", "faults": [{"errno": 5, "weight": 1}, {"errno": 28, "weight": 3}], "ttl": "5m"}),
            json!({"type": "attrOverride", "attr": {"perm": 0o444, "size": 0}}),
            json!({"type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 10}}),
        ] {
            let r = rule(value.clone());
            assert_eq!(r.validate(), vec![], "{value}");
            assert_eq!(serde_json::to_value(&r).unwrap(), value);
        }
    }

    #[test]
    fn each_type_needs_its_payload() {
        let cases = [
            (json!({"type": "latency"}), "rule.latency"),
            (json!({"type": "fault"}), "rule.faults"),
            (json!({"type": "attrOverride"}), "rule.attr"),
            (json!({"type": "mistake"}), "rule.mistake"),
        ];
        for (value, path) in cases {
            let v = rule(value).validate();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].path, path);
            assert!(matches!(v[0].rule, Rule::Required { .. }));
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let r = rule(json!({
            "type": "fault",
            "path": "a/[",
            "methods": ["read", "frobnicate"],
            "percent": 101,
            "faults": [{"errno": 0, "weight": 0}],
            "ttl": "0s"
        }));
        let got: Vec<(String, &str)> = r
            .validate()
            .into_iter()
            .map(|v| (v.path, v.rule.name()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("rule.path".to_string(), "invalid-glob"),
                ("rule.methods[1]".to_string(), "unknown-method"),
                ("rule.percent".to_string(), "out-of-range"),
                ("rule.ttl".to_string(), "zero-duration"),
                ("rule.faults[0].errno".to_string(), "unknown-errno"),
                ("rule.faults".to_string(), "zero-weights"),
            ]
        );
    }

    #[test]
    fn mistake_and_attr_bounds() {
        let r = rule(
            json!({"type": "mistake", "mistake": {"filling": "random", "maxOccurrences": 0, "maxLength": 2_000_000}}),
        );
        let paths: Vec<String> = r.validate().into_iter().map(|v| v.path).collect();
        assert_eq!(
            paths,
            ["rule.mistake.maxOccurrences", "rule.mistake.maxLength"]
        );
        let r = rule(json!({"type": "attrOverride", "attr": {}}));
        assert_eq!(r.validate()[0].rule, Rule::EmptyAttrOverride);
        let r = rule(json!({"type": "attrOverride", "attr": {"perm": 0o10000}}));
        assert_eq!(r.validate()[0].path, "rule.attr.perm");
    }

    #[test]
    fn globs() {
        let g = compile_glob("logs/**").unwrap();
        assert!(g.is_match("logs/a/b/c.txt"));
        let g = compile_glob("/data/*.log").unwrap();
        assert!(g.is_match("data/x.log"));
        assert!(!g.is_match("data/sub/x.log"));
        let g = compile_glob("**/*.db").unwrap();
        assert!(g.is_match("a.db"));
        assert!(g.is_match("x/y/a.db"));
        assert!(compile_glob("a/{b").is_err());
    }

    #[test]
    fn methods_are_case_insensitive() {
        assert_eq!(canonical_method("READ"), Some("read"));
        assert_eq!(canonical_method("copyFileRange"), Some("copy_file_range"));
        assert_eq!(canonical_method("GetAttr"), Some("getattr"));
        assert_eq!(canonical_method("nope"), None);
    }
}
