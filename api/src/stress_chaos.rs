//! StressChaos: CPU and memory stress (stress-ng) inside the target containers' cgroups.

use crate::quantity::{MemorySize, parse_memory_size};
use crate::selector::{PodSelector, validate_container_names};
use crate::status::ChaosStatus;
use crate::validate::{Findings, Note, Rule, Violation, Warning, child, in_range, index};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "chaos.faultline.dev",
    version = "v1alpha1",
    kind = "StressChaos",
    plural = "stresschaos",
    namespaced,
    status = "ChaosStatus",
    category = "chaos",
    doc = "Burn CPU or occupy memory inside the selected containers' cgroups.",
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".spec.duration"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::spec_extras)]
/// Burn CPU or occupy memory inside the selected containers' cgroups.
pub struct StressChaosSpec {
    #[serde(flatten)]
    pub scope: PodSelector,
    /// Containers whose cgroups get the stress; empty = the pod's first container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stressors: Option<Stressors>,
    /// Raw stress-ng arguments, e.g. `--cpu 2 --cpu-load 50`; when set, `stressors` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stressng_stressors: Option<String>,
    /// How long the stress lasts (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::DURATION))]
    pub duration: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stressors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStressor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStressor>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::workers_required)]
pub struct CpuStressor {
    /// stress-ng workers, 1..=8192.
    #[serde(default)]
    #[schemars(range(min = 1, max = 8192))]
    pub workers: i64,
    /// Percent load of each worker, 0..=100 (absent = 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub load: Option<i64>,
    /// Extra stress-ng options, e.g. `--cpu-method matrixprod`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::workers_required)]
pub struct MemoryStressor {
    /// stress-ng vm workers, 1..=8192.
    #[serde(default)]
    #[schemars(range(min = 1, max = 8192))]
    pub workers: i64,
    /// Total memory to occupy: `256MB`, `1GiB` or `50%` of the container's memory; absent =
    /// stress-ng's default, 256MB per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// oom_score_adj of the stress processes, -1000..=1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

pub const MAX_WORKERS: i64 = 8192;

/// stress-ng options that read or write files chosen by the user: the stressors run on the node
/// with the daemon's privileges, so these could reach anything.
const FILE_OPTIONS: &[&str] = &[
    "--temp-path",
    "--log-file",
    "--yaml",
    "--job",
    "--config",
    "--taskset",
    "--sched",
    "--sched-prio",
    "--oom-pipe",
    "--stdout",
];

/// Checks one stress-ng option token: a long option (`--name` or `--name=value`), a short flag,
/// or a plain value, and none of the [`FILE_OPTIONS`].
fn check_option_token(token: &str) -> Result<(), Rule> {
    if token.chars().any(char::is_control) {
        return Err(Rule::InvalidStressOption {
            option: token.into(),
            reason: "contains control characters".into(),
        });
    }
    if let Some(name) = token.strip_prefix("--") {
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Rule::InvalidStressOption {
                option: token.into(),
                reason: "option names are letters, digits and '-'".into(),
            });
        }
        if FILE_OPTIONS.contains(&format!("--{name}").as_str()) {
            return Err(Rule::ForbiddenStressOption {
                option: token.into(),
            });
        }
    }
    Ok(())
}

/// Checks a list of option strings (each may hold `--flag value`). An empty one is dropped
/// with a warning, as Chaos Mesh ignores it.
fn check_options(path: &str, options: &[String], f: &mut Findings) {
    for (i, option) in options.iter().enumerate() {
        let at = index(path, i);
        let mut tokens = option.split_whitespace();
        match tokens.next() {
            None => f.warn(at, Note::EmptyOption),
            Some(first) if first.starts_with('-') => {
                for token in std::iter::once(first).chain(tokens) {
                    f.check(at.clone(), check_option_token(token));
                }
            }
            Some(_) => f.push(
                at,
                Rule::InvalidStressOption {
                    option: option.clone(),
                    reason: "must start with `-`, e.g. `--cpu-method matrixprod`".into(),
                },
            ),
        }
    }
}

/// The memory stressor's values, parsed while validating (see [`StressChaosSpec::checked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryValues {
    pub workers: u32,
    /// `None`: stress-ng's default (256MB per worker).
    pub size: Option<MemorySize>,
    pub oom_score_adj: Option<i32>,
}

fn int_in<T: TryFrom<i64>>(
    f: &mut Findings,
    path: &str,
    value: i64,
    min: i64,
    max: i64,
) -> Option<T> {
    match in_range(value.into(), min.into(), max.into()) {
        Ok(()) => T::try_from(value).ok(),
        Err(rule) => {
            f.push(path, rule);
            None
        }
    }
}

impl StressChaosSpec {
    /// Every violation of the spec, with its field path.
    pub fn validate(&self) -> Vec<Violation> {
        self.checked().1.into_vec()
    }

    /// What is admitted but read in Faultline's way, with its field path.
    pub fn warnings(&self) -> Vec<Warning> {
        self.checked().1.into_parts().1
    }

    /// The memory stressor's values parsed while validating (when it is present and valid), and
    /// the findings. The stress-ng conversion uses these values instead of parsing again.
    pub(crate) fn checked(&self) -> (Option<MemoryValues>, Findings) {
        let mut memory = None;
        let mut f = Findings::default();
        self.scope.validate_at("spec", &mut f);
        validate_container_names("spec.containerNames", &self.container_names, &mut f);
        let raw = self
            .stressng_stressors
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let stressors = self
            .stressors
            .as_ref()
            .filter(|s| s.cpu.is_some() || s.memory.is_some());
        match (stressors, raw) {
            (None, None) => f.push("spec.stressors", Rule::NoStressor),
            // Chaos Mesh runs the raw line then; so does the conversion.
            (Some(_), Some(_)) => f.warn("spec.stressors", Note::StressorsIgnored),
            _ => {}
        }
        if let Some(raw) = raw {
            let tokens: Vec<&str> = raw.split_whitespace().collect();
            if let Some(first) = tokens.first().filter(|t| !t.starts_with('-')) {
                f.push(
                    "spec.stressngStressors",
                    Rule::InvalidStressOption {
                        option: (*first).to_owned(),
                        reason: "must start with a stressor like `--cpu 2`".into(),
                    },
                );
            }
            for token in tokens {
                f.check("spec.stressngStressors", check_option_token(token));
            }
        }
        if let Some(cpu) = self.stressors.as_ref().and_then(|s| s.cpu.as_ref()) {
            f.check(
                "spec.stressors.cpu.workers",
                in_range(cpu.workers.into(), 1, MAX_WORKERS.into()),
            );
            if let Some(load) = cpu.load {
                f.check("spec.stressors.cpu.load", in_range(load.into(), 0, 100));
            }
            check_options("spec.stressors.cpu.options", &cpu.options, &mut f);
        }
        if let Some(mem) = self.stressors.as_ref().and_then(|s| s.memory.as_ref()) {
            let workers = int_in(
                &mut f,
                "spec.stressors.memory.workers",
                mem.workers,
                1,
                MAX_WORKERS,
            );
            let size = match &mem.size {
                Some(size) => parse_memory_size(size)
                    .map_err(|reason| {
                        f.push(
                            "spec.stressors.memory.size",
                            Rule::InvalidSize {
                                value: size.clone(),
                                reason: reason.to_string(),
                            },
                        );
                    })
                    .ok()
                    .map(Some),
                None => {
                    f.warn("spec.stressors.memory.size", Note::MemorySizeDefault);
                    Some(None)
                }
            };
            let oom_score_adj = match mem.oom_score_adj {
                Some(adj) => int_in(
                    &mut f,
                    "spec.stressors.memory.oomScoreAdj",
                    adj,
                    -1000,
                    1000,
                )
                .map(Some),
                None => Some(None),
            };
            check_options("spec.stressors.memory.options", &mem.options, &mut f);
            if let (Some(workers), Some(size), Some(oom_score_adj)) = (workers, size, oom_score_adj)
            {
                memory = Some(MemoryValues {
                    workers,
                    size,
                    oom_score_adj,
                });
            }
        }
        if let Some(duration) = &self.duration {
            crate::iorule::check_positive_duration(&mut f, &child("spec", "duration"), duration);
        }
        (memory, f)
    }
}
