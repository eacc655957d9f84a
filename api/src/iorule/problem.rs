//! What can be wrong with a field of a rule or of RPC params, with its path.

use crate::validate::{ERRNO_NAMES, Rule, Violation};

/// What is wrong with one field of a rule (or of RPC params).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("unknown field (accepted: {accepted})")]
    UnknownField { accepted: String },
    #[error("must be {expected}, not {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("`{value}` is not one of {accepted}")]
    UnknownValue {
        value: String,
        accepted: &'static str,
    },
    #[error("`{value}` is not a Linux errno name or number (e.g. EIO, ENOSPC, EACCES, or 5)")]
    UnknownErrnoName { value: String },
    #[error("`{value}` is not a file mode: {reason}")]
    InvalidMode { value: String, reason: &'static str },
    #[error("duplicate rule id `{id}` (already used by {first})")]
    DuplicateId { id: String, first: String },
    /// A validation rule shared with the CRDs (ranges, required fields, globs, …).
    #[error("{0}")]
    Rule(#[from] Rule),
}

impl Problem {
    /// A stable kebab-case id (the validation rule's id for [`Problem::Rule`]).
    pub fn name(&self) -> &'static str {
        match self {
            Problem::UnknownField { .. } => "unknown-field",
            Problem::WrongType { .. } => "wrong-type",
            Problem::UnknownValue { .. } => "unknown-value",
            Problem::UnknownErrnoName { .. } => "unknown-errno-name",
            Problem::InvalidMode { .. } => "invalid-mode",
            Problem::DuplicateId { .. } => "duplicate-id",
            Problem::Rule(rule) => rule.name(),
        }
    }
}

/// One problem and the JSON path of its field (`rules[1].faults[0].errno`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FieldError {
    pub path: String,
    pub problem: Problem,
}

impl FieldError {
    pub fn new(path: impl Into<String>, problem: impl Into<Problem>) -> Self {
        FieldError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl From<Violation> for FieldError {
    fn from(v: Violation) -> Self {
        FieldError::new(v.path, v.rule)
    }
}

/// Joins errors into one line: `a: reason; b: reason`.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses permission bits: a JSON number, or a string of octal digits (`"0644"`, `"644"`,
/// `"0o644"`), at most `0o7777`. Also used for the sidecar's `--rpc-socket-mode`.
pub fn parse_mode(text: &str) -> Result<u32, &'static str> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("must be octal digits like \"0644\"");
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err("must be at most 7777 (octal)"),
    }
}

/// The errno a name (`"EIO"`, case-insensitive) or a number written as a string stands for.
pub(crate) fn errno_by_name(name: &str) -> Option<i64> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i64>() {
        return Some(n);
    }
    let upper = name.to_ascii_uppercase();
    ERRNO_NAMES
        .iter()
        .position(|known| !known.is_empty() && *known == upper)
        .and_then(|i| i64::try_from(i).ok())
}
