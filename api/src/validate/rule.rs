//! The rules a field can break, one variant each, with the stable ids docs and metrics use.

use crate::duration::DurationError;

/// The rule a field broke. One variant per rule; `docs/validation.md` lists them all and a test
/// keeps that list complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// `because` is a parenthesised reason (`(the delay to add)`, `for action `delay` (...)`).
    #[error("is required{}", spaced(because))]
    Required { because: String },
    #[error("must not be set {because}")]
    Forbidden { because: String },
    /// A field the kind does not have; `hint` is a suggestion or the fields there are.
    #[error("unknown field{hint}")]
    UnknownField { hint: String },
    /// A value of the wrong JSON type (`"soon"` where a number goes).
    #[error("must be {expected}, not {found}")]
    WrongType { expected: String, found: String },
    /// A value outside an enumeration (`action`, `mode`, `direction`, ...).
    #[error("`{value}` is not one of {accepted}")]
    UnknownValue { value: String, accepted: String },
    /// A Chaos Mesh field Faultline does not implement and will not silently ignore.
    #[error("is not supported: {reason}")]
    Unsupported { reason: String },
    #[error(
        "selects no pods in particular, so it would hit every pod of the namespace: set at least one of labelSelectors, expressionSelectors, annotationSelectors, fieldSelectors, pods, nodes, nodeSelectors or namespaces"
    )]
    EmptySelector,
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
    #[error("`{value}` is not an IP, CIDR or host name with an optional port: {reason}")]
    InvalidExternalTarget { value: String, reason: String },
    #[error("direction `{direction}` needs `target` {because}")]
    DirectionNeedsTarget { direction: String, because: String },
    #[error("external targets work only with direction `to` for action `{action}`")]
    ExternalTargetsNeedDirectionTo { action: String },
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

/// `" text"`, or nothing for an empty text.
fn spaced(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" {text}")
    }
}

impl Rule {
    /// A stable kebab-case id, for metrics labels (`denials_total{rule=…}`) and docs anchors.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Required { .. } => "required",
            Rule::Forbidden { .. } => "forbidden",
            Rule::UnknownField { .. } => "unknown-field",
            Rule::WrongType { .. } => "wrong-type",
            Rule::UnknownValue { .. } => "unknown-value",
            Rule::Unsupported { .. } => "unsupported",
            Rule::EmptySelector => "empty-selector",
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
            Rule::NetemWithoutEffect => "netem-without-effect",
            Rule::ReorderWithoutLatency => "reorder-without-latency",
            Rule::NoStressor => "no-stressor",
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
        "unknown-field",
        "wrong-type",
        "unknown-value",
        "unsupported",
        "empty-selector",
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
        "netem-without-effect",
        "reorder-without-latency",
        "no-stressor",
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
