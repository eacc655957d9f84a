//! Warnings: what Chaos Mesh accepts and Faultline admits, but reads in a way the author should
//! know about (an ignored field, a tool default). The webhook returns them as admission
//! warnings; each names its field. Kept short: the API server may cut a warning at 120
//! characters.

use std::fmt;

/// What Faultline does with a field it admits but interprets. One variant per case;
/// `docs/validation.md` lists them all (a test keeps the list complete).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Note {
    /// `value` with mode `one` or `all`, which take none.
    #[error("ignored: mode `{mode}` takes no value")]
    ValueIgnored { mode: String },
    /// A stress-ng option that is the empty string.
    #[error("empty option, dropped")]
    EmptyOption,
    /// The memory stressor without `size`.
    #[error("not set: stress-ng's default applies, 256MB per worker")]
    MemorySizeDefault,
    /// `stressors` beside `stressngStressors`.
    #[error("ignored: stressngStressors is set and takes precedence, as in Chaos Mesh")]
    StressorsIgnored,
    /// A partition with neither `target` nor `externalTargets`.
    #[error("no target or externalTargets: the pods are cut off from every address")]
    PartitionEverything,
    /// A block or field that only other actions use (`loss` with action `delay`, `errno` with
    /// IOChaos `latency`).
    #[error("ignored: action `{action}` does not use it (only {owners})")]
    FieldIgnored { action: String, owners: String },
}

impl Note {
    /// A stable kebab-case id, for docs and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Note::ValueIgnored { .. } => "value-ignored",
            Note::EmptyOption => "empty-option",
            Note::MemorySizeDefault => "memory-size-default",
            Note::StressorsIgnored => "stressors-ignored",
            Note::PartitionEverything => "partition-everything",
            Note::FieldIgnored { .. } => "field-ignored",
        }
    }

    /// Every note id, in documentation order. `docs/validation.md` must describe each.
    pub const ALL_NAMES: &'static [&'static str] = &[
        "value-ignored",
        "empty-option",
        "memory-size-default",
        "stressors-ignored",
        "partition-everything",
        "field-ignored",
    ];
}

/// A field admitted but interpreted: where, and what Faultline does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// JSON path of the field, e.g. `spec.value`.
    pub path: String,
    pub note: Note,
}

impl Warning {
    pub fn new(path: impl Into<String>, note: Note) -> Self {
        Warning {
            path: path.into(),
            note,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.note)
    }
}
