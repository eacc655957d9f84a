//! The sidecar's fault rules: the wire shape of DESIGN.md §4 and its validation.
//!
//! A rule is the shape of one IOChaos action, with the path made relative to the FUSE mount root:
//! `{"type": "latency", "path": "logs/**", "methods": ["read"], "percent": 50, "latency": "10ms"}`.
//! This module has no Kubernetes dependency, so the sidecar links it without kube.
//!
//! Rules from the wire are read by [`parse_rule`] / [`parse_rules`] (module `wire`): unknown
//! fields are errors, every problem is reported at once with its path, errnos may be names and
//! permission bits octal strings. `Deserialize` for [`IoRule`] uses the same strict reader.

mod problem;
mod reader;
mod wire;

use crate::duration::parse_duration;
use crate::validate::{self, Findings, Rule, Violation, child, index};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub use problem::{FieldError, Problem, describe, parse_mode};
pub use reader::Reader;
pub use wire::{parse_rule, parse_rules, read_rule, read_rules};

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
// The CRD requires both fields, as Chaos Mesh's does; sidecar rules may leave `nsec` out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "crd", schemars(transform = crate::schema::timespec_required))]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, 0..=999999999.
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
    /// Ranges corrupted per operation, 1..=1024.
    pub max_occurrences: i64,
    /// Bytes per corrupted range, 1..=1048576.
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

/// Each fault type's payload: the field in an IOChaos spec, the field in a sidecar rule, and
/// what it carries. A rule carries its own type's payload only ([`IoRule::validate`] refuses
/// another's); an IOChaos may carry others, which the conversion drops and validation warns
/// about, field by field (`spec.errno: ignored: action `latency` ...`).
pub(crate) const PAYLOADS: [(IoFaultType, &str, &str, &str); 4] = [
    (IoFaultType::Latency, "delay", "latency", "the delay"),
    (IoFaultType::Fault, "errno", "faults", "the errnos"),
    (IoFaultType::AttrOverride, "attr", "attr", "the attributes"),
    (IoFaultType::Mistake, "mistake", "mistake", "the corruption"),
];

/// One fault rule of the sidecar (DESIGN.md §4). Deserializing is strict (see [`parse_rule`]):
/// unknown fields, wrong types and out-of-range numbers are errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        self.validate_as(Some(self.kind), path, findings);
    }

    /// [`IoRule::validate_at`] for a rule of type `kind`; `None` when the type itself was
    /// invalid: then the payloads present are checked and none is required.
    pub(crate) fn validate_as(
        &self,
        kind: Option<IoFaultType>,
        path: &str,
        findings: &mut Findings,
    ) {
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
        check_methods(findings, &child(path, "methods"), &self.methods);
        check_percent(
            findings,
            &child(path, "percent"),
            self.percent.map(i64::from),
        );
        if let Some(ttl) = &self.ttl {
            check_positive_duration(findings, &child(path, "ttl"), ttl);
        }
        self.validate_payloads(kind, path, findings);
    }

    /// Each type's payload: required for its own type, refused on another (a `latency` on a
    /// fault rule would be ignored, and the rule would not do what its author meant).
    fn validate_payloads(&self, kind: Option<IoFaultType>, path: &str, findings: &mut Findings) {
        for (owner, _, field, what) in PAYLOADS {
            let present = match owner {
                IoFaultType::Latency => self.latency.is_some(),
                IoFaultType::Fault => !self.faults.is_empty(),
                IoFaultType::AttrOverride => self.attr.is_some(),
                IoFaultType::Mistake => self.mistake.is_some(),
            };
            let at = child(path, field);
            match kind {
                Some(kind) if kind != owner && present => findings.push(
                    at,
                    Rule::Forbidden {
                        because: format!(
                            "for a rule of type `{}` (only `{}` rules take it)",
                            kind.as_str(),
                            owner.as_str()
                        ),
                    },
                ),
                Some(kind) if kind == owner && !present => findings.push(
                    at,
                    Rule::Required {
                        because: format!("for a rule of type `{}` ({what})", kind.as_str()),
                    },
                ),
                _ if present => self.validate_payload(owner, &at, findings),
                _ => {}
            }
        }
    }

    fn validate_payload(&self, owner: IoFaultType, at: &str, findings: &mut Findings) {
        match owner {
            IoFaultType::Latency => {
                if let Some(latency) = &self.latency {
                    check_positive_duration(findings, at, latency);
                }
            }
            IoFaultType::Fault => {
                for (i, fault) in self.faults.iter().enumerate() {
                    findings.check(child(&index(at, i), "errno"), validate::errno(fault.errno));
                }
                if self.faults.iter().all(|f| f.weight == 0) {
                    findings.push(at, Rule::ZeroWeights);
                }
            }
            IoFaultType::AttrOverride => {
                if let Some(attr) = &self.attr {
                    attr.validate_at(at, findings);
                }
            }
            IoFaultType::Mistake => {
                if let Some(mistake) = &self.mistake {
                    mistake.validate_at(at, findings);
                }
            }
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

/// The canonical names of `methods` (the one method check of IoRule and IOChaos); each unknown
/// name is a violation at `path[i]`, and then there is no list.
pub(crate) fn check_methods(
    findings: &mut Findings,
    path: &str,
    methods: &[String],
) -> Option<Vec<&'static str>> {
    let mut known = Vec::with_capacity(methods.len());
    for (i, method) in methods.iter().enumerate() {
        match canonical_method(method) {
            Some(name) => known.push(name),
            None => findings.push(
                index(path, i),
                Rule::UnknownMethod {
                    value: method.clone(),
                    known: FUSE_METHODS.join(", "),
                },
            ),
        }
    }
    (known.len() == methods.len()).then_some(known)
}

/// A percentage of operations, 0..=100 (absent stays absent: every operation).
pub(crate) fn check_percent(
    findings: &mut Findings,
    path: &str,
    percent: Option<i64>,
) -> Option<Option<u32>> {
    let Some(percent) = percent else {
        return Some(None);
    };
    match validate::in_range(percent.into(), 0, 100) {
        Ok(()) => u32::try_from(percent).ok().map(Some),
        Err(rule) => {
            findings.push(path, rule);
            None
        }
    }
}

pub(crate) fn check_positive_duration(findings: &mut Findings, path: &str, value: &str) {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => findings.push(path, Rule::ZeroDuration),
        Ok(_) => {}
        Err(err) => findings.push(path, Rule::InvalidDuration(err)),
    }
}

impl<'de> Deserialize<'de> for IoRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        wire::shape(&value).map_err(|errors| serde::de::Error::custom(describe(&errors)))
    }
}
