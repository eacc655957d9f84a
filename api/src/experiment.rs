//! What the webhook, controller and daemon ask of any chaos object, whatever its kind.

use crate::duration::parse_duration;
use crate::io_chaos::IOChaos;
use crate::network_chaos::{Direction, NetworkChaos};
use crate::pod_chaos::PodChaos;
use crate::selector::PodSelector;
use crate::stress_chaos::StressChaos;
use crate::validate::{Findings, Violation, Warning, normalize_device};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::time::Duration;

/// The behaviour shared by the four chaos kinds.
pub trait Experiment: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone {
    /// The action name as written in `spec.action` (StressChaos: `stress`); policy keys are
    /// `<Kind>/<action>`.
    fn action(&self) -> &'static str;
    /// Every spec violation (DESIGN.md §2); empty = executable.
    fn validate(&self) -> Vec<Violation>;
    /// What Chaos Mesh accepts and Faultline admits but reads its own way (an ignored field, a
    /// tool default), each with its path: the webhook's admission warnings.
    fn warnings(&self) -> Vec<Warning>;
    /// Fills defaults (DESIGN.md §3 `/default`) for an object living in `namespace`; never
    /// overrides a value the user wrote.
    fn apply_defaults(&mut self, namespace: &str);
    /// The selectors that pick pods, with the JSON path where each lives (`spec`, `spec.target`).
    fn selectors(&self) -> Vec<(String, &PodSelector)>;
    /// Whether the fault persists until recovered (all but pod-kill and container-kill).
    fn lasts(&self) -> bool;
    /// The raw `spec.duration`.
    fn duration_field(&self) -> Option<&str>;

    /// The parsed `spec.duration`; `None` when absent or invalid (validation reports that).
    fn duration(&self) -> Option<Duration> {
        self.duration_field().and_then(|d| parse_duration(d).ok())
    }

    /// Every namespace the experiment can touch: selector namespaces, `pods` keys, `target`.
    fn target_namespaces(&self) -> BTreeSet<String> {
        self.selectors()
            .into_iter()
            .flat_map(|(_, s)| s.namespaces())
            .collect()
    }
}

impl Experiment for PodChaos {
    fn action(&self) -> &'static str {
        self.spec.action.as_str()
    }
    fn validate(&self) -> Vec<Violation> {
        self.spec.validate()
    }
    fn warnings(&self) -> Vec<Warning> {
        self.spec.warnings()
    }
    fn apply_defaults(&mut self, namespace: &str) {
        self.spec.scope.default_namespace(namespace);
    }
    fn selectors(&self) -> Vec<(String, &PodSelector)> {
        vec![("spec".into(), &self.spec.scope)]
    }
    fn lasts(&self) -> bool {
        self.spec.lasts()
    }
    fn duration_field(&self) -> Option<&str> {
        self.spec.duration.as_deref()
    }
}

impl Experiment for NetworkChaos {
    fn action(&self) -> &'static str {
        self.spec.action.as_str()
    }
    fn validate(&self) -> Vec<Violation> {
        self.spec.validate()
    }
    fn warnings(&self) -> Vec<Warning> {
        self.spec.warnings()
    }
    fn apply_defaults(&mut self, namespace: &str) {
        let spec = &mut self.spec;
        spec.scope.default_namespace(namespace);
        if let Some(target) = &mut spec.target {
            target.default_namespace(namespace);
        }
        spec.direction.get_or_insert(Direction::To);
        for device in [&mut spec.device, &mut spec.target_device]
            .into_iter()
            .flatten()
        {
            let normalized = normalize_device(device);
            if normalized != device.as_str() {
                *device = normalized.to_string();
            }
        }
    }
    fn selectors(&self) -> Vec<(String, &PodSelector)> {
        let mut out = vec![("spec".into(), &self.spec.scope)];
        if let Some(target) = &self.spec.target {
            out.push(("spec.target".into(), target));
        }
        out
    }
    fn lasts(&self) -> bool {
        true
    }
    fn duration_field(&self) -> Option<&str> {
        self.spec.duration.as_deref()
    }
}

impl Experiment for StressChaos {
    fn action(&self) -> &'static str {
        "stress"
    }
    fn validate(&self) -> Vec<Violation> {
        self.spec.validate()
    }
    fn warnings(&self) -> Vec<Warning> {
        self.spec.warnings()
    }
    fn apply_defaults(&mut self, namespace: &str) {
        self.spec.scope.default_namespace(namespace);
    }
    fn selectors(&self) -> Vec<(String, &PodSelector)> {
        vec![("spec".into(), &self.spec.scope)]
    }
    fn lasts(&self) -> bool {
        true
    }
    fn duration_field(&self) -> Option<&str> {
        self.spec.duration.as_deref()
    }
}

impl Experiment for IOChaos {
    fn action(&self) -> &'static str {
        self.spec.action.as_str()
    }
    fn validate(&self) -> Vec<Violation> {
        self.spec.validate()
    }
    fn warnings(&self) -> Vec<Warning> {
        self.spec.warnings()
    }
    fn apply_defaults(&mut self, namespace: &str) {
        self.spec.scope.default_namespace(namespace);
        self.spec.percent.get_or_insert(100);
    }
    fn selectors(&self) -> Vec<(String, &PodSelector)> {
        vec![("spec".into(), &self.spec.scope)]
    }
    fn lasts(&self) -> bool {
        true
    }
    fn duration_field(&self) -> Option<&str> {
        self.spec.duration.as_deref()
    }
}

/// A JSON document that is not a valid chaos object, with the path of the first bad field.
/// ([`crate::read()`] reports every bad field instead.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "kind `{0}` is not a Faultline chaos kind (PodChaos, NetworkChaos, StressChaos, IOChaos)"
    )]
    UnknownKind(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Deserializes `value` as `T`, reporting the JSON path of the first field that does not fit.
pub fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        ParseError::Invalid {
            path: if path == "." { "(root)".into() } else { path },
            message: err.into_inner().to_string(),
        }
    })
}

/// Any chaos object, for code that dispatches on `kind`.
#[derive(Debug, Clone)]
pub enum AnyChaos {
    Pod(Box<PodChaos>),
    Network(Box<NetworkChaos>),
    Stress(Box<StressChaos>),
    Io(Box<IOChaos>),
}

/// The kinds, as `kind` strings.
pub const KINDS: &[&str] = &["PodChaos", "NetworkChaos", "StressChaos", "IOChaos"];

impl AnyChaos {
    /// Parses a chaos object of `kind` (e.g. `request.kind.kind` of an AdmissionReview).
    pub fn from_value(kind: &str, value: serde_json::Value) -> Result<AnyChaos, ParseError> {
        Ok(match kind {
            "PodChaos" => AnyChaos::Pod(Box::new(parse(value)?)),
            "NetworkChaos" => AnyChaos::Network(Box::new(parse(value)?)),
            "StressChaos" => AnyChaos::Stress(Box::new(parse(value)?)),
            "IOChaos" => AnyChaos::Io(Box::new(parse(value)?)),
            other => return Err(ParseError::UnknownKind(other.to_string())),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AnyChaos::Pod(_) => "PodChaos",
            AnyChaos::Network(_) => "NetworkChaos",
            AnyChaos::Stress(_) => "StressChaos",
            AnyChaos::Io(_) => "IOChaos",
        }
    }

    /// `<Kind>/<action>`, the key of policy `allowedActions`.
    pub fn policy_action(&self) -> String {
        format!("{}/{}", self.kind(), self.action())
    }

    pub fn to_value(&self) -> serde_json::Value {
        let value = match self {
            AnyChaos::Pod(c) => serde_json::to_value(c),
            AnyChaos::Network(c) => serde_json::to_value(c),
            AnyChaos::Stress(c) => serde_json::to_value(c),
            AnyChaos::Io(c) => serde_json::to_value(c),
        };
        // Serializing derived plain-data types cannot fail.
        value.unwrap_or(serde_json::Value::Null)
    }

    pub fn metadata(&self) -> &kube::core::ObjectMeta {
        match self {
            AnyChaos::Pod(c) => c.meta(),
            AnyChaos::Network(c) => c.meta(),
            AnyChaos::Stress(c) => c.meta(),
            AnyChaos::Io(c) => c.meta(),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyChaos::Pod($c) => $e,
            AnyChaos::Network($c) => $e,
            AnyChaos::Stress($c) => $e,
            AnyChaos::Io($c) => $e,
        }
    };
}

impl AnyChaos {
    pub fn action(&self) -> &'static str {
        delegate!(self, c => c.action())
    }
    pub fn validate(&self) -> Vec<Violation> {
        delegate!(self, c => c.validate())
    }
    pub fn warnings(&self) -> Vec<Warning> {
        delegate!(self, c => c.warnings())
    }
    /// Violations and warnings; with `action_known` false (the action could not be read), the
    /// rules that depend on the action are skipped.
    pub(crate) fn findings(&self, action_known: bool) -> Findings {
        match self {
            AnyChaos::Pod(c) => c.spec.findings(action_known.then_some(c.spec.action)),
            AnyChaos::Network(c) => c.spec.checked(action_known.then_some(c.spec.action)).1,
            AnyChaos::Stress(c) => c.spec.checked().1,
            AnyChaos::Io(c) => c.spec.checked(action_known.then_some(c.spec.action)).1,
        }
    }
    pub fn apply_defaults(&mut self, namespace: &str) {
        delegate!(self, c => c.apply_defaults(namespace))
    }
    pub fn selectors(&self) -> Vec<(String, &PodSelector)> {
        delegate!(self, c => c.selectors())
    }
    pub fn lasts(&self) -> bool {
        delegate!(self, c => c.lasts())
    }
    pub fn duration(&self) -> Option<Duration> {
        delegate!(self, c => c.duration())
    }
    pub fn duration_field(&self) -> Option<&str> {
        delegate!(self, c => c.duration_field())
    }
    pub fn target_namespaces(&self) -> BTreeSet<String> {
        delegate!(self, c => c.target_namespaces())
    }
}
