//! Violations: what is wrong with an object, where, and why.
//!
//! Every validator in this crate returns *all* its findings as [`Violation`]s, each carrying the
//! JSON path of the offending field (`spec.delay.latency`, `spec.containerNames[1]`) and a typed
//! [`Rule`], so callers match variants and users read one sentence per problem.
//! The syntax checks shared by several kinds (DNS names, label keys, percentages, errnos,
//! interface names) live here as pure functions.

use crate::duration::DurationError;
use std::fmt;

/// One problem found in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the field, e.g. `spec.delay.latency`.
    pub path: String,
    pub rule: Rule,
}

impl Violation {
    pub fn new(path: impl Into<String>, rule: Rule) -> Self {
        Violation {
            path: path.into(),
            rule,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

impl std::error::Error for Violation {}

/// Joins violations into one message, one per line, for admission denials and CLI errors.
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rule a field broke. One variant per rule; `docs/validation.md` lists them all and a test
/// keeps that list complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("is required {because}")]
    Required { because: String },
    #[error("must not be set {because}")]
    Forbidden { because: String },
    #[error("must be empty when mode is `{mode}`")]
    ValueNotAllowed { mode: String },
    #[error("is required when mode is `{mode}`")]
    ValueRequired { mode: String },
    #[error("`{value}` must be a whole number of pods, at least 1")]
    ValueNotPodCount { value: String },
    #[error("`{value}` must be a whole percentage from 1 to 100")]
    ValueNotPercent { value: String },
    #[error("`{value}` is not a valid {what}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("operator `{operator}` is not one of In, NotIn, Exists, DoesNotExist")]
    UnknownOperator { operator: String },
    #[error("{0}")]
    ExpressionValues(String),
    #[error("`{value}` is not a pod phase (Pending, Running, Succeeded, Failed, Unknown)")]
    UnknownPodPhase { value: String },
    #[error("{0}")]
    InvalidDuration(DurationError),
    #[error("must be longer than zero")]
    ZeroDuration,
    #[error("`{value}` must be a percentage from 0 to 100")]
    PercentOutOfRange { value: String },
    #[error("{value} is out of range: must be from {min} to {max}")]
    OutOfRange { value: i128, min: i128, max: i128 },
    #[error("`{value}` is not a rate: {reason}")]
    InvalidRate { value: String, reason: String },
    #[error("`{value}` is not a memory size like `256MB`, `1GiB` or `50%`: {reason}")]
    InvalidSize { value: String, reason: String },
    #[error("`{value}` is not a network interface name: {reason}")]
    InvalidDevice { value: String, reason: String },
    #[error("`{value}` is not an IP address, CIDR or host name")]
    InvalidExternalTarget { value: String },
    #[error("direction `{direction}` needs `target` {because}")]
    DirectionNeedsTarget { direction: String, because: String },
    #[error("external targets work only with direction `to` for action `{action}`")]
    ExternalTargetsNeedDirectionTo { action: String },
    #[error("partition needs `target` or `externalTargets`: whom should the pods be cut off from?")]
    PartitionWithoutPeer,
    #[error("action `netem` needs at least one of delay, loss, duplicate, corrupt, rate")]
    NetemWithoutEffect,
    #[error(
        "reorder needs `delay.latency` greater than zero: netem reorders by sending some packets without the delay"
    )]
    ReorderWithoutLatency,
    #[error(
        "needs at least one stressor: `stressors.cpu`, `stressors.memory` or `stressngStressors`"
    )]
    NoStressor,
    #[error("set either `stressors` or `stressngStressors`, not both")]
    StressorsConflict,
    #[error("`{option}` is not a stress-ng option: {reason}")]
    InvalidStressOption { option: String, reason: String },
    #[error("`{option}` is not allowed: it reads or writes files on the node")]
    ForbiddenStressOption { option: String },
    #[error("`{value}` must be an absolute path")]
    NotAbsolute { value: String },
    #[error("`{path}` is not under the volume path `{volume}`")]
    PathOutsideVolume { path: String, volume: String },
    #[error("`{value}` is not a valid glob: {reason}")]
    InvalidGlob { value: String, reason: String },
    #[error("errno {value} is not a Linux error number (1..=133, e.g. 5 = EIO, 28 = ENOSPC)")]
    UnknownErrno { value: i64 },
    #[error("`{value}` is not a FUSE operation (known: {known})")]
    UnknownMethod { value: String, known: String },
    #[error(
        "sets no attribute: give at least one of ino, size, blocks, atime, mtime, ctime, kind, perm, nlink, uid, gid, rdev"
    )]
    EmptyAttrOverride,
    #[error("weights add up to zero: at least one fault needs a weight above 0")]
    ZeroWeights,
}

impl Rule {
    /// A stable kebab-case id, for metrics labels (`denials_total{rule=…}`) and docs anchors.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Required { .. } => "required",
            Rule::Forbidden { .. } => "forbidden",
            Rule::ValueNotAllowed { .. } => "value-not-allowed",
            Rule::ValueRequired { .. } => "value-required",
            Rule::ValueNotPodCount { .. } => "value-not-pod-count",
            Rule::ValueNotPercent { .. } => "value-not-percent",
            Rule::InvalidName { .. } => "invalid-name",
            Rule::UnknownOperator { .. } => "unknown-operator",
            Rule::ExpressionValues(_) => "expression-values",
            Rule::UnknownPodPhase { .. } => "unknown-pod-phase",
            Rule::InvalidDuration(_) => "invalid-duration",
            Rule::ZeroDuration => "zero-duration",
            Rule::PercentOutOfRange { .. } => "percent-out-of-range",
            Rule::OutOfRange { .. } => "out-of-range",
            Rule::InvalidRate { .. } => "invalid-rate",
            Rule::InvalidSize { .. } => "invalid-size",
            Rule::InvalidDevice { .. } => "invalid-device",
            Rule::InvalidExternalTarget { .. } => "invalid-external-target",
            Rule::DirectionNeedsTarget { .. } => "direction-needs-target",
            Rule::ExternalTargetsNeedDirectionTo { .. } => "external-targets-need-direction-to",
            Rule::PartitionWithoutPeer => "partition-without-peer",
            Rule::NetemWithoutEffect => "netem-without-effect",
            Rule::ReorderWithoutLatency => "reorder-without-latency",
            Rule::NoStressor => "no-stressor",
            Rule::StressorsConflict => "stressors-conflict",
            Rule::InvalidStressOption { .. } => "invalid-stress-option",
            Rule::ForbiddenStressOption { .. } => "forbidden-stress-option",
            Rule::NotAbsolute { .. } => "not-absolute",
            Rule::PathOutsideVolume { .. } => "path-outside-volume",
            Rule::InvalidGlob { .. } => "invalid-glob",
            Rule::UnknownErrno { .. } => "unknown-errno",
            Rule::UnknownMethod { .. } => "unknown-method",
            Rule::EmptyAttrOverride => "empty-attr-override",
            Rule::ZeroWeights => "zero-weights",
        }
    }

    /// Every rule id, in documentation order. `docs/validation.md` must describe each.
    pub const ALL_NAMES: &'static [&'static str] = &[
        "required",
        "forbidden",
        "value-not-allowed",
        "value-required",
        "value-not-pod-count",
        "value-not-percent",
        "invalid-name",
        "unknown-operator",
        "expression-values",
        "unknown-pod-phase",
        "invalid-duration",
        "zero-duration",
        "percent-out-of-range",
        "out-of-range",
        "invalid-rate",
        "invalid-size",
        "invalid-device",
        "invalid-external-target",
        "direction-needs-target",
        "external-targets-need-direction-to",
        "partition-without-peer",
        "netem-without-effect",
        "reorder-without-latency",
        "no-stressor",
        "stressors-conflict",
        "invalid-stress-option",
        "forbidden-stress-option",
        "not-absolute",
        "path-outside-volume",
        "invalid-glob",
        "unknown-errno",
        "unknown-method",
        "empty-attr-override",
        "zero-weights",
    ];
}

/// Collects violations under a path prefix, so nested validators stay short.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<Violation>);

impl Findings {
    pub fn push(&mut self, path: impl Into<String>, rule: Rule) {
        self.0.push(Violation::new(path, rule));
    }

    /// Records `result`'s error, if any, at `path`.
    pub fn check(&mut self, path: impl Into<String>, result: Result<(), Rule>) {
        if let Err(rule) = result {
            self.push(path, rule);
        }
    }

    pub fn into_vec(self) -> Vec<Violation> {
        self.0
    }
}

/// A field path helper: `child("spec", "delay")` → `spec.delay`.
pub fn child(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// `index("spec.containerNames", 1)` → `spec.containerNames[1]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `key("spec.selector.labelSelectors", "app")` → `spec.selector.labelSelectors["app"]`.
pub fn key(parent: &str, k: &str) -> String {
    format!("{parent}[{k:?}]")
}

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Rule {
    Rule::InvalidName {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// RFC 1123 label: namespaces, container names, volume names.
pub fn dns_label(what: &'static str, value: &str) -> Result<(), Rule> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(invalid(what, value, "must be at most 63 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            what,
            value,
            "may contain only lowercase letters, digits and '-'",
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(invalid(
            what,
            value,
            "must start and end with a letter or digit",
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: pod and node names.
pub fn dns_subdomain(what: &'static str, value: &str) -> Result<(), Rule> {
    if value.is_empty() {
        return Err(invalid(what, value, "must not be empty"));
    }
    if value.len() > 253 {
        return Err(invalid(what, value, "must be at most 253 characters"));
    }
    for part in value.split('.') {
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || part.starts_with('-')
            || part.ends_with('-')
        {
            return Err(invalid(
                what,
                value,
                "must be lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit",
            ));
        }
    }
    Ok(())
}

fn qualified_name_part(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric()
}

/// Kubernetes label or annotation key: optional DNS-subdomain prefix, `/`, a qualified name.
pub fn label_key(value: &str) -> Result<(), Rule> {
    let (prefix, name) = match value.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    if let Some(prefix) = prefix {
        dns_subdomain("label key prefix", prefix).map_err(|_| {
            invalid(
                "label key",
                value,
                "the prefix before '/' must be a DNS subdomain",
            )
        })?;
    }
    if !qualified_name_part(name) {
        return Err(invalid(
            "label key",
            value,
            "the name must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// Kubernetes label value: empty, or a qualified-name part.
pub fn label_value(value: &str) -> Result<(), Rule> {
    if value.is_empty() || qualified_name_part(value) {
        Ok(())
    } else {
        Err(invalid(
            "label value",
            value,
            "must be empty or 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        ))
    }
}

/// Parses a percentage written as a decimal string (`"25"`, `"0.5"`, `"100"`) into
/// millionths of a percent (0..=100_000_000), exactly.
pub fn parse_percent(value: &str) -> Result<u64, Rule> {
    let bad = || Rule::PercentOutOfRange {
        value: value.to_string(),
    };
    let s = value.trim().trim_end_matches('%').trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 3
    {
        return Err(bad());
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut micro = int * 1_000_000;
    let mut place = 100_000;
    for digit in frac.bytes() {
        micro += u64::from(digit - b'0') * place;
        place /= 10;
        if place == 0 {
            break;
        }
    }
    if micro > 100_000_000 {
        return Err(bad());
    }
    Ok(micro)
}

/// `true` for a Linux network interface name the kernel accepts (`dev_valid_name`):
/// 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace. A veth peer suffix such as `eth0@if12`,
/// as `ip link` prints it, is accepted here and stripped by [`normalize_device`].
pub fn device_name(value: &str) -> Result<(), Rule> {
    let name = normalize_device(value);
    let bad = |reason: &str| Rule::InvalidDevice {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("must not be empty"));
    }
    if name.len() > 15 {
        return Err(bad("must be at most 15 bytes (IFNAMSIZ)"));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are not interface names"));
    }
    if name.bytes().any(|b| {
        b == b'/' || b == b':' || b == b'@' || b.is_ascii_whitespace() || b.is_ascii_control()
    }) {
        return Err(bad(
            "must not contain '/', ':', '@', whitespace or control characters",
        ));
    }
    if !name.is_ascii() {
        return Err(bad("must be ASCII"));
    }
    Ok(())
}

/// Strips the `@ifN` / `@peer` suffix that `ip link` prints for veth devices.
pub fn normalize_device(value: &str) -> &str {
    let value = value.trim();
    match value.split_once('@') {
        Some((name, peer)) if !peer.is_empty() && !peer.contains('@') => name,
        _ => value,
    }
}

/// Linux errno names, by number (asm-generic/errno-base.h and errno.h).
pub const ERRNO_NAMES: &[&str] = &[
    "",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

/// The name of a Linux errno (`5` → `EIO`), or `None` for a number Linux does not define.
pub fn errno_name(errno: i64) -> Option<&'static str> {
    usize::try_from(errno)
        .ok()
        .and_then(|i| ERRNO_NAMES.get(i))
        .copied()
        .filter(|name| !name.is_empty())
}

/// A known, non-zero Linux errno.
pub fn errno(value: i64) -> Result<(), Rule> {
    errno_name(value)
        .map(|_| ())
        .ok_or(Rule::UnknownErrno { value })
}

/// An integer inside `min..=max`.
pub fn in_range(value: i128, min: i128, max: i128) -> Result<(), Rule> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Rule::OutOfRange { value, min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns_label("namespace", "team-a").is_ok());
        assert!(dns_label("namespace", "Team").is_err());
        assert!(dns_label("namespace", "-a").is_err());
        assert!(dns_label("namespace", &"a".repeat(64)).is_err());
        assert!(dns_subdomain("pod name", "web-0.x").is_ok());
        assert!(dns_subdomain("pod name", "web..x").is_err());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("/app").is_err());
        assert!(label_key("Bad_Prefix/app").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x").is_ok());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn percents_are_exact() {
        assert_eq!(parse_percent("25"), Ok(25_000_000));
        assert_eq!(parse_percent("0.5"), Ok(500_000));
        assert_eq!(parse_percent("100"), Ok(100_000_000));
        assert_eq!(parse_percent("33.333333"), Ok(33_333_333));
        assert_eq!(parse_percent("50%"), Ok(50_000_000));
        assert!(parse_percent("100.1").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("abc").is_err());
        assert!(parse_percent("").is_err());
        assert!(parse_percent("1e3").is_err());
    }

    #[test]
    fn devices() {
        assert!(device_name("eth0").is_ok());
        assert!(device_name("eth0@if12").is_ok());
        assert_eq!(normalize_device("eth0@if12"), "eth0");
        assert_eq!(normalize_device("eth0"), "eth0");
        assert!(device_name("a/b").is_err());
        assert!(device_name("abcdefghijklmnop").is_err());
        assert!(device_name("..").is_err());
        assert!(device_name("eth 0").is_err());
        assert!(device_name("").is_err());
        assert!(device_name("@if3").is_err());
    }

    #[test]
    fn errnos() {
        assert_eq!(errno_name(5), Some("EIO"));
        assert_eq!(errno_name(28), Some("ENOSPC"));
        assert_eq!(errno_name(133), Some("EHWPOISON"));
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(41), None);
        assert_eq!(errno_name(134), None);
        assert_eq!(errno_name(-5), None);
    }

    #[test]
    fn rule_names_are_listed_once() {
        let mut names = Rule::ALL_NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL_NAMES.len());
    }
}
