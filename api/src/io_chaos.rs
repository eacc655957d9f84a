//! IOChaos: file-system faults served by the pod's FUSE sidecar.

use crate::iorule::{self, AttrOverride, IoFaultType, Mistake, compile_glob};
use crate::selector::{PodSelector, validate_container_names};
use crate::status::ChaosStatus;
use crate::validate::{self, Findings, Note, Rule, Violation, Warning};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path};

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "chaos.faultline.dev",
    version = "v1alpha1",
    kind = "IOChaos",
    plural = "iochaos",
    namespaced,
    status = "ChaosStatus",
    category = "chaos",
    doc = "Delay, fail or corrupt file-system operations on a volume of the selected pods.",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".spec.duration"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::io_spec_extras)]
/// Delay, fail or corrupt file-system operations on a volume of the selected pods.
pub struct IOChaosSpec {
    #[serde(flatten)]
    pub scope: PodSelector,
    pub action: IoFaultType,
    /// Mount path (inside the app container) of the volume behind the fault filesystem.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::ABSOLUTE))]
    pub volume_path: String,
    /// Absolute glob of the files to hit, under `volumePath`; absent = every file of the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::ABSOLUTE))]
    pub path: Option<String>,
    /// FUSE operations to hit (case-insensitive); empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Chance in percent that a matching operation is hit (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<i64>,
    /// Delay for `latency`, a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Error number for `fault` (e.g. 5 = EIO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attr: Option<AttrOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mistake: Option<Mistake>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_names: Vec<String>,
    /// How long the faults last (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::DURATION))]
    pub duration: Option<String>,
}

/// `true` when `path` is absolute and has no `.`/`..` components.
fn clean_absolute(path: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// `path` relative to `volume`, if `path` lies under it (by components, so `/data2` is not under
/// `/data`).
pub(crate) fn relative_to_volume(path: &str, volume: &str) -> Option<String> {
    let rel = Path::new(path).strip_prefix(Path::new(volume)).ok()?;
    Some(rel.to_string_lossy().into_owned())
}

/// The rule fields of an IOChaos, checked while validating (see [`IOChaosSpec::checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IoValues {
    /// The glob relative to the volume; `None` = every file.
    pub path: Option<String>,
    pub methods: Vec<&'static str>,
    pub percent: Option<u32>,
}

impl IOChaosSpec {
    /// Every violation of the spec, with its field path.
    pub fn validate(&self) -> Vec<Violation> {
        self.checked(Some(self.action)).1.into_vec()
    }

    /// What is admitted but read in Faultline's way, with its field path: the payload fields of
    /// other actions, which the conversion drops (Chaos Mesh ignores them too).
    pub fn warnings(&self) -> Vec<Warning> {
        self.checked(Some(self.action)).1.into_parts().1
    }

    /// Whether the payload field `field` (`delay`, `errno`, `attr`, `mistake`) is set.
    fn has_payload(&self, field: &str) -> bool {
        match field {
            "delay" => self.delay.is_some(),
            "errno" => self.errno.is_some(),
            "attr" => self.attr.is_some(),
            _ => self.mistake.is_some(),
        }
    }

    /// The rule fields as the sidecar takes them (when they are all valid), and the findings.
    /// The conversion to a sidecar rule uses these values instead of checking again. `action`
    /// is `None` when it could not be read: the payload rules are skipped then.
    pub(crate) fn checked(&self, action: Option<IoFaultType>) -> (Option<IoValues>, Findings) {
        let mut f = Findings::default();
        self.scope.validate_at("spec", &mut f);
        validate_container_names("spec.containerNames", &self.container_names, &mut f);
        let volume = self.volume_path.trim();
        let volume_ok = if volume.is_empty() {
            f.push(
                "spec.volumePath",
                Rule::Required {
                    because: "(which volume to put faults on)".into(),
                },
            );
            false
        } else if !clean_absolute(volume) {
            f.push(
                "spec.volumePath",
                Rule::NotAbsolute {
                    value: self.volume_path.clone(),
                },
            );
            false
        } else {
            true
        };
        let mut relative = Some(None);
        if let Some(path) = &self.path {
            relative = None;
            if !path.starts_with('/') {
                f.push(
                    "spec.path",
                    Rule::NotAbsolute {
                        value: path.clone(),
                    },
                );
            } else if let Err(rule) = compile_glob(path) {
                f.push("spec.path", rule);
            } else if volume_ok {
                match relative_to_volume(path, volume) {
                    Some(rel) => relative = Some(Some(rel)),
                    None => f.push(
                        "spec.path",
                        Rule::PathOutsideVolume {
                            path: path.clone(),
                            volume: volume.into(),
                        },
                    ),
                }
            }
        }
        let methods = iorule::check_methods(&mut f, "spec.methods", &self.methods);
        let percent = iorule::check_percent(&mut f, "spec.percent", self.percent);
        if let Some(action) = action {
            self.check_payloads(action, &mut f);
        }
        if let Some(duration) = &self.duration {
            iorule::check_positive_duration(&mut f, "spec.duration", duration);
        }
        let values = match (relative, methods, percent) {
            (Some(path), Some(methods), Some(percent)) if volume_ok => Some(IoValues {
                path,
                methods,
                percent,
            }),
            _ => None,
        };
        (values, f)
    }

    /// The action's payload is required and checked; another action's is ignored, with a
    /// warning (the sidecar rule has no place for it: [`iorule::PAYLOADS`]).
    fn check_payloads(&self, action: IoFaultType, f: &mut Findings) {
        for (owner, field, _, what) in iorule::PAYLOADS {
            let at = validate::child("spec", field);
            let present = self.has_payload(field);
            if owner != action {
                if present {
                    f.warn(
                        at,
                        Note::FieldIgnored {
                            action: action.as_str().to_owned(),
                            owners: owner.as_str().to_owned(),
                        },
                    );
                }
                continue;
            }
            match owner {
                IoFaultType::Latency => {
                    if let Some(delay) = &self.delay {
                        iorule::check_positive_duration(f, &at, delay);
                    }
                }
                IoFaultType::Fault => {
                    if let Some(errno) = self.errno {
                        f.check(at.clone(), validate::errno(errno));
                    }
                }
                IoFaultType::AttrOverride => {
                    if let Some(attr) = &self.attr {
                        attr.validate_at(&at, f);
                    }
                }
                IoFaultType::Mistake => {
                    if let Some(mistake) = &self.mistake {
                        mistake.validate_at(&at, f);
                    }
                }
            }
            if !present {
                f.push(
                    at,
                    Rule::Required {
                        because: format!("for action `{}` ({what})", action.as_str()),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_relative_paths() {
        assert_eq!(
            relative_to_volume("/data/**", "/data").as_deref(),
            Some("**")
        );
        assert_eq!(
            relative_to_volume("/data/a/*.log", "/data/").as_deref(),
            Some("a/*.log")
        );
        assert_eq!(relative_to_volume("/data", "/data").as_deref(), Some(""));
        assert_eq!(relative_to_volume("/data2/x", "/data"), None);
        assert!(clean_absolute("/var/lib"));
        assert!(!clean_absolute("var/lib"));
        assert!(!clean_absolute("/var/../etc"));
    }
}
