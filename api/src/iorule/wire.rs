//! Rules as they arrive on the wire (JSON-RPC params, rules files): a strict parser.
//!
//! serde's derive stops at the first problem and words it for programmers (`expected u32`), and
//! without `deny_unknown_fields` a misspelled field is silently dropped — `"pth": "logs/**"`
//! would give a rule without a path, which matches *every* file. So rules are read by hand from a
//! [`Value`]: every unknown field, wrong type and out-of-range number is reported at once, with
//! its path and a reason in words; errnos may be names (`"EIO"`), permission bits octal strings
//! (`"0444"`). [`parse_rule`] then runs [`IoRule::validate_at`] too, so one call reports
//! everything that is wrong with a rule.
//!
//! The derived types of `attr` and `mistake` stay as they are: they are also part of the IOChaos
//! CRD schema, which this module must not change.

use serde_json::Value;

use super::problem::{FieldError, Problem, errno_by_name, parse_mode};
use super::reader::{Reader, get, narrow, range};
use super::{
    AttrOverride, FileKind, Filling, IoFaultType, IoRule, Mistake, Timespec, WeightedErrno,
};
use crate::validate::{Findings, Rule, child, index};

/// Fields of a rule, in documentation order.
pub(crate) const RULE_FIELDS: &[&str] = &[
    "id", "type", "path", "methods", "percent", "latency", "faults", "attr", "mistake", "ttl",
];
const FAULT_FIELDS: &[&str] = &["errno", "weight"];
const ATTR_FIELDS: &[&str] = &[
    "ino", "size", "blocks", "atime", "mtime", "ctime", "kind", "perm", "nlink", "uid", "gid",
    "rdev",
];
const TIME_FIELDS: &[&str] = &["sec", "nsec"];
const MISTAKE_FIELDS: &[&str] = &["filling", "maxOccurrences", "maxLength"];

const TYPES: &str = "latency, fault, attrOverride, mistake";
const KINDS: &str = "namedPipe, charDevice, blockDevice, directory, regularFile, symlink, socket";
const FILLINGS: &str = "zero, random";

impl Reader {
    /// A rule, as far as it could be read, and its type if that was valid. Fields that could
    /// not be read are left out (list entries get a placeholder, so later indices stay right).
    fn rule(&mut self, value: &Value, path: &str) -> Option<(IoRule, Option<IoFaultType>)> {
        let m = self.object(
            value,
            path,
            "a rule object like {\"type\": \"fault\", ...}",
            RULE_FIELDS,
        )?;
        let kind = match get(m, "type") {
            None => {
                self.push(
                    child(path, "type"),
                    Rule::Required {
                        because: format!("(one of {TYPES})"),
                    },
                );
                None
            }
            Some(Value::String(s)) => {
                let kind = fault_type(s);
                if kind.is_none() {
                    self.push(
                        child(path, "type"),
                        Problem::UnknownValue {
                            value: s.clone(),
                            accepted: TYPES,
                        },
                    );
                }
                kind
            }
            Some(other) => {
                self.wrong(&child(path, "type"), "a string", other);
                None
            }
        };
        let methods = match get(m, "methods") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => s.clone(),
                    other => {
                        self.wrong(
                            &index(&child(path, "methods"), i),
                            "a FUSE operation name",
                            other,
                        );
                        String::new()
                    }
                })
                .collect(),
            Some(other) => {
                self.wrong(
                    &child(path, "methods"),
                    "an array of FUSE operation names",
                    other,
                );
                Vec::new()
            }
        };
        let faults = match get(m, "faults") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.fault(item, &index(&child(path, "faults"), i)))
                .collect(),
            Some(other) => {
                self.wrong(
                    &child(path, "faults"),
                    "an array of {\"errno\", \"weight\"} objects",
                    other,
                );
                Vec::new()
            }
        };
        let rule = IoRule {
            id: self.string(m, path, "id"),
            // A placeholder when the type is bad: callers get the real one (or None) beside it.
            kind: kind.unwrap_or(IoFaultType::Fault),
            path: self.string(m, path, "path"),
            methods,
            percent: narrow(self.int(m, path, "percent", range(0, 100))),
            latency: self.string(m, path, "latency"),
            faults,
            attr: get(m, "attr").and_then(|v| self.attr(v, &child(path, "attr"))),
            mistake: get(m, "mistake").and_then(|v| self.mistake(v, &child(path, "mistake"))),
            ttl: self.string(m, path, "ttl"),
        };
        Some((rule, kind))
    }

    /// One `faults` entry; errno 0 (never valid) stands in for one that could not be read.
    fn fault(&mut self, value: &Value, path: &str) -> WeightedErrno {
        let mut fault = WeightedErrno {
            errno: 0,
            weight: 1,
        };
        let Some(m) = self.object(
            value,
            path,
            "an object like {\"errno\": \"EIO\", \"weight\": 1}",
            FAULT_FIELDS,
        ) else {
            return fault;
        };
        match get(m, "errno") {
            None => self.push(
                child(path, "errno"),
                Rule::Required {
                    because: "(an errno name like \"EIO\" or a number like 5)".into(),
                },
            ),
            Some(Value::String(s)) => match errno_by_name(s) {
                Some(n) => fault.errno = n,
                None => self.push(
                    child(path, "errno"),
                    Problem::UnknownErrnoName { value: s.clone() },
                ),
            },
            Some(_) => {
                let errno = self.int_or(
                    m,
                    path,
                    "errno",
                    range(i64::MIN, i64::MAX),
                    "an errno name like \"EIO\" or a number like 5",
                );
                fault.errno = narrow(errno).unwrap_or(0);
            }
        }
        if let Some(w) = narrow(self.int(m, path, "weight", range(0, u32::MAX))) {
            fault.weight = w;
        }
        fault
    }

    fn attr(&mut self, value: &Value, path: &str) -> Option<AttrOverride> {
        let m = self.object(
            value,
            path,
            "an object of attributes like {\"perm\": \"0444\"}",
            ATTR_FIELDS,
        )?;
        let u64s = range(0, u64::MAX);
        let u32s = range(0, u32::MAX);
        let perm = match get(m, "perm") {
            Some(Value::String(s)) => match parse_mode(s) {
                Ok(mode) => u16::try_from(mode).ok(),
                Err(reason) => {
                    self.push(
                        child(path, "perm"),
                        Problem::InvalidMode {
                            value: s.clone(),
                            reason,
                        },
                    );
                    None
                }
            },
            _ => narrow(self.int_or(
                m,
                path,
                "perm",
                range(0, 0o7777),
                "permission bits: a number or an octal string like \"0444\"",
            )),
        };
        Some(AttrOverride {
            ino: narrow(self.int(m, path, "ino", u64s)),
            size: narrow(self.int(m, path, "size", u64s)),
            blocks: narrow(self.int(m, path, "blocks", u64s)),
            atime: get(m, "atime").and_then(|v| self.time(v, &child(path, "atime"))),
            mtime: get(m, "mtime").and_then(|v| self.time(v, &child(path, "mtime"))),
            ctime: get(m, "ctime").and_then(|v| self.time(v, &child(path, "ctime"))),
            kind: match get(m, "kind") {
                None => None,
                Some(Value::String(s)) => {
                    let kind = file_kind(s);
                    if kind.is_none() {
                        self.push(
                            child(path, "kind"),
                            Problem::UnknownValue {
                                value: s.clone(),
                                accepted: KINDS,
                            },
                        );
                    }
                    kind
                }
                Some(other) => {
                    self.wrong(&child(path, "kind"), "a string", other);
                    None
                }
            },
            perm,
            nlink: narrow(self.int(m, path, "nlink", u32s)),
            uid: narrow(self.int(m, path, "uid", u32s)),
            gid: narrow(self.int(m, path, "gid", u32s)),
            rdev: narrow(self.int(m, path, "rdev", u32s)),
        })
    }

    fn time(&mut self, value: &Value, path: &str) -> Option<Timespec> {
        let m = self.object(
            value,
            path,
            "an object like {\"sec\": 0, \"nsec\": 0}",
            TIME_FIELDS,
        )?;
        let sec = narrow(self.int(m, path, "sec", range(i64::MIN, i64::MAX)));
        let nsec = narrow(self.int(m, path, "nsec", range(0, 999_999_999)));
        let sec = self.required(sec, m, path, "sec", "(seconds since the epoch)")?;
        Some(Timespec {
            sec,
            nsec: nsec.unwrap_or(0),
        })
    }

    fn mistake(&mut self, value: &Value, path: &str) -> Option<Mistake> {
        let m = self.object(
            value,
            path,
            "an object like {\"filling\": \"zero\", \"maxOccurrences\": 1, \"maxLength\": 10}",
            MISTAKE_FIELDS,
        )?;
        let filling = match get(m, "filling") {
            None => None,
            Some(Value::String(s)) => {
                let filling = match s.as_str() {
                    "zero" => Some(Filling::Zero),
                    "random" => Some(Filling::Random),
                    _ => None,
                };
                if filling.is_none() {
                    self.push(
                        child(path, "filling"),
                        Problem::UnknownValue {
                            value: s.clone(),
                            accepted: FILLINGS,
                        },
                    );
                }
                filling
            }
            Some(other) => {
                self.wrong(&child(path, "filling"), "a string", other);
                None
            }
        };
        let filling = self.required(filling, m, path, "filling", "(zero or random)");
        let occurrences = range(1, super::MAX_MISTAKE_OCCURRENCES);
        let max_occurrences = self.int(m, path, "maxOccurrences", occurrences);
        let max_occurrences = self.required(
            max_occurrences,
            m,
            path,
            "maxOccurrences",
            "(ranges corrupted per operation)",
        );
        let max_length = self.int(m, path, "maxLength", range(1, super::MAX_MISTAKE_LENGTH));
        let max_length = self.required(
            max_length,
            m,
            path,
            "maxLength",
            "(bytes per corrupted range)",
        );
        Some(Mistake {
            filling: filling?,
            max_occurrences: narrow(max_occurrences)?,
            max_length: narrow(max_length)?,
        })
    }
}

fn fault_type(s: &str) -> Option<IoFaultType> {
    [
        IoFaultType::Latency,
        IoFaultType::Fault,
        IoFaultType::AttrOverride,
        IoFaultType::Mistake,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

fn file_kind(s: &str) -> Option<FileKind> {
    let kind = match s {
        "namedPipe" => FileKind::NamedPipe,
        "charDevice" => FileKind::CharDevice,
        "blockDevice" => FileKind::BlockDevice,
        "directory" => FileKind::Directory,
        "regularFile" => FileKind::RegularFile,
        "symlink" => FileKind::Symlink,
        "socket" => FileKind::Socket,
        _ => return None,
    };
    Some(kind)
}

/// Whether `path` is `under` or a field inside it.
fn within(path: &str, under: &str) -> bool {
    path.strip_prefix(under)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Reads a rule at `path` into `reader`: the shape (unknown fields, types, ranges) and then the
/// validation rules, every problem at once. A field that could not be read is not judged again
/// by validation, nor is what contains it (no "required" after "must be a string", no "sets no
/// attribute" after "unknown field").
pub fn read_rule(reader: &mut Reader, value: &Value, path: &str) -> Option<IoRule> {
    let before = reader.errors.len();
    let (rule, kind) = reader.rule(value, path)?;
    let unreadable: Vec<String> = reader.errors[before..]
        .iter()
        .map(|e| e.path.clone())
        .collect();
    let mut findings = Findings::default();
    rule.validate_as(kind, path, &mut findings);
    for v in findings.into_vec() {
        if !unreadable
            .iter()
            .any(|bad| within(&v.path, bad) || within(bad, &v.path))
        {
            reader.errors.push(v.into());
        }
    }
    reader.errors[before..].sort_by_cached_key(|e| path_order(&e.path));
    (reader.errors.len() == before).then_some(rule)
}

/// Sort key of an error path: unknown fields first (likely the cause of what follows), then
/// fields in documentation order, list entries by index.
fn path_order(path: &str) -> Vec<(usize, u64)> {
    let known = [
        RULE_FIELDS,
        FAULT_FIELDS,
        ATTR_FIELDS,
        TIME_FIELDS,
        MISTAKE_FIELDS,
    ]
    .concat();
    path.split(['.', '['])
        .map(
            |segment| match segment.strip_suffix(']').map(str::parse::<u64>) {
                Some(Ok(i)) => (usize::MAX, i),
                _ => (
                    known
                        .iter()
                        .position(|k| *k == segment)
                        .map_or(0, |p| p + 1),
                    0,
                ),
            },
        )
        .collect()
}

/// One rule from JSON, checked completely; `path` prefixes every error path (`rule`).
pub fn parse_rule(value: &Value, path: &str) -> Result<IoRule, Vec<FieldError>> {
    let mut reader = Reader::new();
    match read_rule(&mut reader, value, path) {
        Some(rule) if reader.errors.is_empty() => Ok(rule),
        _ => Err(reader.into_errors()),
    }
}

/// Reads a list of rules at `path` (`rules`): every problem of every rule, and ids used twice.
pub fn read_rules(reader: &mut Reader, value: &Value, path: &str) -> Option<Vec<IoRule>> {
    let Value::Array(items) = value else {
        reader.wrong(path, "an array of rules", value);
        return None;
    };
    let before = reader.errors.len();
    let mut rules = Vec::with_capacity(items.len());
    let mut ids: Vec<(&str, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index(path, i);
        if let Some(Value::String(id)) = item.get("id") {
            match ids.iter().find(|(seen, _)| seen == id) {
                Some((_, first)) => reader.push(
                    child(&at, "id"),
                    Problem::DuplicateId {
                        id: id.clone(),
                        first: first.clone(),
                    },
                ),
                None => ids.push((id, at.clone())),
            }
        }
        if let Some(rule) = read_rule(reader, item, &at) {
            rules.push(rule);
        }
    }
    (reader.errors.len() == before).then_some(rules)
}

/// A list of rules from JSON, checked completely.
pub fn parse_rules(value: &Value, path: &str) -> Result<Vec<IoRule>, Vec<FieldError>> {
    let mut reader = Reader::new();
    match read_rules(&mut reader, value, path) {
        Some(rules) if reader.errors.is_empty() => Ok(rules),
        _ => Err(reader.into_errors()),
    }
}

/// Shape only (no validation rules), for serde: the strict counterpart of a derived
/// `Deserialize` with `deny_unknown_fields`.
pub(super) fn shape(value: &Value) -> Result<IoRule, Vec<FieldError>> {
    let mut reader = Reader::new();
    match reader.rule(value, "") {
        Some((rule, Some(_))) if reader.errors.is_empty() => Ok(rule),
        _ => Err(reader.into_errors()),
    }
}
