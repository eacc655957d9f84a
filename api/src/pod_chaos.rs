//! PodChaos: kill pods, kill containers, or make pods fail.

use crate::selector::{PodSelector, validate_container_names};
use crate::status::ChaosStatus;
use crate::validate::{Findings, Rule, Violation, Warning, child};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "chaos.faultline.dev",
    version = "v1alpha1",
    kind = "PodChaos",
    plural = "podchaos",
    namespaced,
    status = "ChaosStatus",
    category = "chaos",
    doc = "Kill pods or containers, or make pods fail, in the selected pods.",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".spec.duration"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::spec_extras)]
/// Kill pods or containers, or make pods fail, in the selected pods.
pub struct PodChaosSpec {
    #[serde(flatten)]
    pub scope: PodSelector,
    pub action: PodChaosAction,
    /// Containers to kill (`container-kill`) or to fail (`pod-failure`, empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_names: Vec<String>,
    /// Seconds the pod gets to terminate on `pod-kill` (0 = immediately).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub grace_period: Option<i64>,
    /// How long `pod-failure` lasts (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::DURATION))]
    pub duration: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PodChaosAction {
    PodKill,
    PodFailure,
    ContainerKill,
}

impl PodChaosAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PodChaosAction::PodKill => "pod-kill",
            PodChaosAction::PodFailure => "pod-failure",
            PodChaosAction::ContainerKill => "container-kill",
        }
    }
}

impl PodChaosSpec {
    /// Every violation of the spec, with its field path.
    pub fn validate(&self) -> Vec<Violation> {
        self.findings(Some(self.action)).into_vec()
    }

    /// What is admitted but read in Faultline's way, with its field path.
    pub fn warnings(&self) -> Vec<Warning> {
        self.findings(Some(self.action)).into_parts().1
    }

    /// Violations and warnings; `action` is `None` when it could not be read, and then the
    /// rules that depend on it are skipped.
    pub(crate) fn findings(&self, action: Option<PodChaosAction>) -> Findings {
        let mut f = Findings::default();
        self.scope.validate_at("spec", &mut f);
        validate_container_names("spec.containerNames", &self.container_names, &mut f);
        if action == Some(PodChaosAction::ContainerKill) && self.container_names.is_empty() {
            f.push(
                "spec.containerNames",
                Rule::Required {
                    because: "for action `container-kill` (which containers to kill?)".into(),
                },
            );
        }
        if let Some(grace) = self.grace_period {
            f.check(
                "spec.gracePeriod",
                crate::validate::in_range(grace.into(), 0, i64::MAX.into()),
            );
        }
        if let Some(duration) = &self.duration {
            crate::iorule::check_positive_duration(&mut f, &child("spec", "duration"), duration);
        }
        f
    }

    /// `pod-kill` and `container-kill` are instant; `pod-failure` lasts until recovered.
    pub fn lasts(&self) -> bool {
        self.action == PodChaosAction::PodFailure
    }
}
