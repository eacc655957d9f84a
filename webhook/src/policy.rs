//! The admission policy of DESIGN.md §3 (`--policy FILE`) and the namespace-label lookup it needs.
//!
//! ```yaml
//! protectedNamespaces: [kube-system, kube-public, kube-node-lease, faultline-system]
//! requireNamespaceOptIn: true
//! maxDuration: 1h          # null disables the rule
//! maxTargets: {pods: 100, percent: 50}
//! allowedActions: {}       # namespace -> ["PodChaos/pod-kill", "IOChaos/*", "*"]; "*" key = other namespaces
//! halt: false
//! ```
//!
//! The four system namespaces are protected whatever the file lists. Unknown fields are errors
//! (a typo must not silently disable a rule), reported with the file and field path.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use faultline_api::duration::parse_duration;
use serde::{Deserialize, Serialize};

/// Namespaces protected whatever the policy says.
pub const ALWAYS_PROTECTED: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "faultline-system",
];
/// Label a namespace needs to be a chaos target (with `requireNamespaceOptIn`).
pub const CHAOS_LABEL: &str = "faultline.dev/chaos";
/// Its value.
pub const CHAOS_LABEL_VALUE: &str = "enabled";
/// Label a namespace needs for its pods to get the fault-filesystem sidecar.
pub const INJECTION_LABEL: &str = "faultline.dev/injection";
/// Its value.
pub const INJECTION_LABEL_VALUE: &str = "enabled";
/// Label a pod needs to get the sidecar.
pub const POD_INJECT_LABEL: &str = "faultline.dev/inject";
/// Its value.
pub const POD_INJECT_LABEL_VALUE: &str = "true";

/// `maxTargets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MaxTargets {
    /// Largest pod count (`fixed`); `null` = no limit.
    pub pods: Option<u64>,
    /// Largest percentage (`fixed-percent`, `random-max-percent`); `null` = no limit.
    pub percent: Option<u64>,
}

impl Default for MaxTargets {
    fn default() -> Self {
        MaxTargets {
            pods: Some(100),
            percent: Some(50),
        }
    }
}

/// The policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// Extra protected namespaces (the four of [`ALWAYS_PROTECTED`] always are).
    pub protected_namespaces: Vec<String>,
    /// Targets must be in namespaces labelled `faultline.dev/chaos=enabled`.
    pub require_namespace_opt_in: bool,
    /// Longest `duration` of an experiment that lasts; `null` = no limit.
    pub max_duration: Option<String>,
    /// Static target limits.
    pub max_targets: MaxTargets,
    /// Target namespace → allowed `Kind/action` patterns.
    pub allowed_actions: BTreeMap<String, Vec<String>>,
    /// The kill switch.
    pub halt: bool,
    #[serde(skip)]
    max_duration_parsed: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            protected_namespaces: ALWAYS_PROTECTED.iter().map(|s| (*s).to_owned()).collect(),
            require_namespace_opt_in: true,
            max_duration: Some("1h".to_owned()),
            max_targets: MaxTargets::default(),
            allowed_actions: BTreeMap::new(),
            halt: false,
            max_duration_parsed: Some(Duration::from_secs(3600)),
        }
    }
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad YAML, wrong type or unknown field.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Field path.
        field: String,
        /// Why.
        message: String,
    },
}

impl Policy {
    /// Parses and checks a policy file's text; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, PolicyError> {
        let invalid = |field: String, message: String| PolicyError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        let mut policy: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let (field, message) = crate::yaml_error(&e);
                invalid(field, message)
            })?
        };
        policy.max_duration_parsed = match policy.max_duration.as_deref() {
            None => None,
            Some(text) => Some(
                parse_duration(text)
                    .map_err(|e| invalid("maxDuration".to_owned(), e.to_string()))?,
            ),
        };
        if let Some(p) = policy.max_targets.percent
            && p > 100
        {
            return Err(invalid(
                "maxTargets.percent".to_owned(),
                format!("{p} is not a percentage (0-100)"),
            ));
        }
        for (ns, patterns) in &policy.allowed_actions {
            for (i, pattern) in patterns.iter().enumerate() {
                check_pattern(pattern)
                    .map_err(|m| invalid(format!("allowedActions.{ns}[{i}]"), m))?;
            }
        }
        Ok(policy)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// The parsed `maxDuration`.
    pub fn max_duration(&self) -> Option<Duration> {
        self.max_duration_parsed
    }

    /// Whether `namespace` is protected.
    pub fn is_protected(&self, namespace: &str) -> bool {
        ALWAYS_PROTECTED.contains(&namespace)
            || self.protected_namespaces.iter().any(|p| p == namespace)
    }

    /// Every protected namespace.
    pub fn protected(&self) -> BTreeSet<&str> {
        ALWAYS_PROTECTED
            .iter()
            .copied()
            .chain(self.protected_namespaces.iter().map(String::as_str))
            .collect()
    }

    /// Whether `kind/action` may target `namespace`. `None` = no rule applies (allowed); else
    /// the patterns that apply.
    pub fn allowed_patterns(&self, namespace: &str) -> Option<&[String]> {
        self.allowed_actions
            .get(namespace)
            .or_else(|| self.allowed_actions.get("*"))
            .map(Vec::as_slice)
    }
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let Some((kind, action)) = pattern.split_once('/') else {
        return Err(format!(
            "{pattern:?} must be \"Kind/action\", \"Kind/*\" or \"*\""
        ));
    };
    if !faultline_api::KINDS.contains(&kind) {
        return Err(format!(
            "{pattern:?}: unknown kind {kind:?} (one of {})",
            faultline_api::KINDS.join(", ")
        ));
    }
    if action.is_empty() {
        return Err(format!("{pattern:?}: empty action"));
    }
    Ok(())
}

/// Whether `kind/action` matches one of `patterns`.
pub fn action_allowed(patterns: &[String], kind: &str, action: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p.split_once('/')
                .is_some_and(|(k, a)| k == kind && (a == "*" || a.eq_ignore_ascii_case(action)))
    })
}

/// Answers questions about namespace labels: "is this namespace opted in to chaos, or to
/// sidecar injection?".
pub trait NamespaceLabels: Send + Sync {
    /// The value of label `key` of `namespace`: `Ok(None)` when the namespace or the label does
    /// not exist, `Err(why)` when the labels are not known (cache not synced, API unreachable).
    fn label(&self, namespace: &str, key: &str) -> Result<Option<String>, String>;

    /// Whether labels are looked up at all. `false` when nothing watches namespaces (no
    /// policy needs them yet), so a caller can tell "not known yet" from "not watched".
    fn watched(&self) -> bool {
        true
    }

    /// `Ok(true/false)` when known (a namespace that does not exist is `false`), `Err(why)`
    /// when the labels are not known.
    fn chaos_enabled(&self, namespace: &str) -> Result<bool, String> {
        Ok(self.label(namespace, CHAOS_LABEL)?.as_deref() == Some(CHAOS_LABEL_VALUE))
    }

    /// Like [`NamespaceLabels::chaos_enabled`], for `faultline.dev/injection: enabled`.
    fn injection_enabled(&self, namespace: &str) -> Result<bool, String> {
        Ok(self.label(namespace, INJECTION_LABEL)?.as_deref() == Some(INJECTION_LABEL_VALUE))
    }
}

/// Fixed labels, namespace → labels (tests, and `requireNamespaceOptIn: false`).
impl NamespaceLabels for BTreeMap<String, BTreeMap<String, String>> {
    fn label(&self, namespace: &str, key: &str) -> Result<Option<String>, String> {
        Ok(self
            .get(namespace)
            .and_then(|labels| labels.get(key))
            .cloned())
    }
}

/// Labels that cannot be known; carries the reason.
#[derive(Debug, Clone)]
pub struct Unknown(pub String);

impl NamespaceLabels for Unknown {
    fn label(&self, _namespace: &str, _key: &str) -> Result<Option<String>, String> {
        Err(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let p = Policy::from_yaml("", "p.yaml").expect("empty file");
        assert_eq!(p, Policy::default());
        assert!(p.require_namespace_opt_in);
        assert_eq!(p.max_duration(), Some(Duration::from_secs(3600)));
        assert_eq!(
            p.max_targets,
            MaxTargets {
                pods: Some(100),
                percent: Some(50)
            }
        );
        assert!(!p.halt);
    }

    #[test]
    fn system_namespaces_stay_protected() {
        let p = Policy::from_yaml("protectedNamespaces: [payments]\n", "p.yaml").expect("parse");
        for ns in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "faultline-system",
            "payments",
        ] {
            assert!(p.is_protected(ns), "{ns}");
        }
        assert!(!p.is_protected("shop"));
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = |text: &str| {
            Policy::from_yaml(text, "policy.yaml")
                .unwrap_err()
                .to_string()
        };
        assert!(e("maxDuration: 1y\n").starts_with("policy.yaml: maxDuration: unknown unit"));
        assert!(e("halt: maybe\n").starts_with("policy.yaml: halt: "));
        assert!(
            e("maxTargets: {pods: 1, percents: 3}\n")
                .contains("maxTargets: unknown field `percents`")
        );
        assert_eq!(
            e("maxTargets: {percent: 150}\n"),
            "policy.yaml: maxTargets.percent: 150 is not a percentage (0-100)"
        );
        assert!(
            e("allowedActions: {shop: [PodChaos]}\n")
                .starts_with("policy.yaml: allowedActions.shop[0]: ")
        );
        assert!(e("allowedActions: {shop: [FooChaos/x]}\n").contains("unknown kind \"FooChaos\""));
        assert!(
            e("requireNamespaceOptln: true\n").contains("unknown field `requireNamespaceOptln`")
        );
    }

    #[test]
    fn null_disables_limits() {
        let p = Policy::from_yaml(
            "maxDuration: null\nmaxTargets: {pods: null, percent: null}\n",
            "p",
        )
        .expect("parse");
        assert_eq!(p.max_duration(), None);
        assert_eq!(
            p.max_targets,
            MaxTargets {
                pods: None,
                percent: None
            }
        );
    }

    #[test]
    fn action_patterns() {
        let patterns = vec!["PodChaos/pod-kill".to_owned(), "IOChaos/*".to_owned()];
        assert!(action_allowed(&patterns, "PodChaos", "pod-kill"));
        assert!(!action_allowed(&patterns, "PodChaos", "pod-failure"));
        assert!(action_allowed(&patterns, "IOChaos", "latency"));
        assert!(!action_allowed(&patterns, "NetworkChaos", "delay"));
        assert!(action_allowed(&["*".to_owned()], "NetworkChaos", "delay"));
        let p = Policy::from_yaml("allowedActions: {shop: [PodChaos/*], '*': []}\n", "p")
            .expect("parse");
        assert_eq!(p.allowed_patterns("shop").map(<[String]>::len), Some(1));
        assert_eq!(p.allowed_patterns("other").map(<[String]>::len), Some(0));
    }
}
