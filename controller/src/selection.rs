//! Which pods an experiment hits: a pure function of the pods, the selector, `mode`/`value`,
//! the policy's limits and the experiment's UID.
//!
//! - Filters (all must match, as in Chaos Mesh): namespaces (empty = the experiment's own),
//!   `pods` (namespace → names), labels, set-based expressions, annotations, fields
//!   (`metadata.name`, `metadata.namespace`, `spec.nodeName`, `status.phase`, `status.podIP`),
//!   `nodes`, `nodeSelectors` (labels of the pod's node), `podPhaseSelectors`.
//! - Only Running pods that are not being deleted are targets (a fault needs running
//!   containers); `podPhaseSelectors` narrows that further, it never widens it.
//! - Protected namespaces are never selected, whatever the spec says.
//! - Modes: `one` = 1; `all` = every match; `fixed` = `value` (fewer if fewer match);
//!   `fixed-percent` = ⌊n·value/100⌋; `random-max-percent` = a number in 0..=⌊n·value/100⌋
//!   drawn from the UID. Rounding down as Chaos Mesh does: a percentage never hits more than
//!   it says.
//! - Deterministic: pods are ordered by SHA-256 of (UID, namespace/name), so the same
//!   experiment picks the same pods after a controller restart, and different experiments
//!   pick independently.
//! - The policy's `maxTargets` is checked again on the count actually selected (the webhook can
//!   only check it statically, not for `all`): more is an error, never a silent cut.
//!   `maxTargets.pods` bounds every mode; `maxTargets.percent` bounds the percentage modes (for
//!   `all`, the share is always 100 % of what matches, and the pod count is the useful bound).

use std::collections::{BTreeMap, BTreeSet};

use faultline_api::selector::{PodSelector, SelectorMode};
use sha2::{Digest, Sha256};

/// A pod as selection sees it (plain data, from the API's Pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`: a pod deletion names it, so a same-name replacement is never killed.
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node: Option<String>,
    pub phase: Option<String>,
    pub pod_ip: Option<String>,
    pub deleting: bool,
    /// `(container name, containerID)` of app containers, in spec order.
    pub containers: Vec<(String, Option<String>)>,
}

impl PodInfo {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The policy's limits as selection applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub protected: BTreeSet<String>,
    pub max_pods: Option<u64>,
    pub max_percent: Option<u64>,
}

/// Why nothing can be selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("`value` {0:?} is not a whole number")]
    BadValue(Option<String>),
    #[error(
        "field selector `{0}` is not supported (metadata.name, metadata.namespace, spec.nodeName, status.phase, status.podIP)"
    )]
    UnsupportedField(String),
    #[error(
        "expression selector operator `{0}` is not supported (In, NotIn, Exists, DoesNotExist)"
    )]
    UnsupportedOperator(String),
    #[error("{count} pods selected, above the policy's maxTargets.pods {max}")]
    TooManyPods { count: u64, max: u64 },
    #[error(
        "{count} of {of} pods selected ({percent}%), above the policy's maxTargets.percent {max}"
    )]
    TooLargeShare {
        count: u64,
        of: u64,
        percent: u64,
        max: u64,
    },
}

const FIELDS: [&str; 5] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "status.podIP",
];
const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Refuses a field or operator `matches` cannot evaluate, whatever the pods: checked per pod
/// only, it would be an error or not depending on which pods get as far as that filter.
fn supported(scope: &PodSelector) -> Result<(), SelectError> {
    let s = &scope.selector;
    if let Some(field) = s
        .field_selectors
        .keys()
        .find(|f| !FIELDS.contains(&f.as_str()))
    {
        return Err(SelectError::UnsupportedField(field.clone()));
    }
    if let Some(req) = s
        .expression_selectors
        .iter()
        .find(|r| !OPERATORS.contains(&r.operator.as_str()))
    {
        return Err(SelectError::UnsupportedOperator(req.operator.clone()));
    }
    Ok(())
}

fn field_of<'a>(pod: &'a PodInfo, field: &str) -> Result<Option<&'a str>, SelectError> {
    Ok(match field {
        "metadata.name" => Some(&pod.name),
        "metadata.namespace" => Some(&pod.namespace),
        "spec.nodeName" => pod.node.as_deref(),
        "status.phase" => pod.phase.as_deref(),
        "status.podIP" => pod.pod_ip.as_deref(),
        other => return Err(SelectError::UnsupportedField(other.to_owned())),
    })
}

/// Whether `pod` matches every filter of `scope` (namespaces resolved by the caller).
fn matches(
    pod: &PodInfo,
    scope: &PodSelector,
    namespaces: &BTreeSet<String>,
    node_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<bool, SelectError> {
    let s = &scope.selector;
    if !s.pods.is_empty() {
        match s.pods.get(&pod.namespace) {
            Some(names) if names.contains(&pod.name) => {}
            _ => return Ok(false),
        }
    } else if !namespaces.contains(&pod.namespace) {
        return Ok(false);
    }
    let has = |map: &BTreeMap<String, String>, k: &String, v: &String| map.get(k) == Some(v);
    if !s
        .label_selectors
        .iter()
        .all(|(k, v)| has(&pod.labels, k, v))
    {
        return Ok(false);
    }
    if !s
        .annotation_selectors
        .iter()
        .all(|(k, v)| has(&pod.annotations, k, v))
    {
        return Ok(false);
    }
    for req in &s.expression_selectors {
        let value = pod.labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        let ok = match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(SelectError::UnsupportedOperator(other.to_owned())),
        };
        if !ok {
            return Ok(false);
        }
    }
    for (field, want) in &s.field_selectors {
        if field_of(pod, field)? != Some(want.as_str()) {
            return Ok(false);
        }
    }
    if !s.nodes.is_empty() && !pod.node.as_ref().is_some_and(|n| s.nodes.contains(n)) {
        return Ok(false);
    }
    if !s.node_selectors.is_empty() {
        let labels = pod.node.as_ref().and_then(|n| node_labels.get(n));
        if !labels.is_some_and(|l| s.node_selectors.iter().all(|(k, v)| has(l, k, v))) {
            return Ok(false);
        }
    }
    if !s.pod_phase_selectors.is_empty()
        && !pod
            .phase
            .as_ref()
            .is_some_and(|p| s.pod_phase_selectors.contains(p))
    {
        return Ok(false);
    }
    Ok(true)
}

/// The namespaces a selector reaches: `namespaces`, else the experiment's own.
pub fn namespaces(scope: &PodSelector, own: &str) -> BTreeSet<String> {
    if !scope.selector.pods.is_empty() {
        return scope.selector.pods.keys().cloned().collect();
    }
    if scope.selector.namespaces.is_empty() {
        return BTreeSet::from([own.to_owned()]);
    }
    scope.selector.namespaces.iter().cloned().collect()
}

fn rank(uid: &str, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(uid.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// How many of `n` matching pods `mode`/`value` asks for.
pub fn count(
    mode: SelectorMode,
    value: Option<&str>,
    n: u64,
    uid: &str,
) -> Result<u64, SelectError> {
    let value = || {
        value
            .map(str::trim)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| SelectError::BadValue(value.map(str::to_owned)))
    };
    Ok(match mode {
        SelectorMode::One => n.min(1),
        SelectorMode::All => n,
        SelectorMode::Fixed => value()?.min(n),
        SelectorMode::FixedPercent => n * value()?.min(100) / 100,
        SelectorMode::RandomMaxPercent => {
            let max = n * value()?.min(100) / 100;
            let draw = u64::from_be_bytes(
                rank(uid, "random-max-percent")[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            );
            draw % (max + 1)
        }
    })
}

/// The targets of an experiment with UID `uid` in namespace `own`.
pub fn select(
    pods: &[PodInfo],
    node_labels: &BTreeMap<String, BTreeMap<String, String>>,
    scope: &PodSelector,
    own: &str,
    uid: &str,
    limits: &Limits,
) -> Result<Vec<PodInfo>, SelectError> {
    supported(scope)?;
    let namespaces: BTreeSet<String> = namespaces(scope, own)
        .into_iter()
        .filter(|ns| !limits.protected.contains(ns))
        .collect();
    let mut candidates = Vec::new();
    for pod in pods {
        if pod.deleting
            || pod.phase.as_deref() != Some("Running")
            || limits.protected.contains(&pod.namespace)
        {
            continue;
        }
        if matches(pod, scope, &namespaces, node_labels)? {
            candidates.push(pod);
        }
    }
    let n = candidates.len() as u64;
    let k = count(scope.mode, scope.value.as_deref(), n, uid)?;
    if let Some(max) = limits.max_pods
        && k > max
    {
        return Err(SelectError::TooManyPods { count: k, max });
    }
    // The share limit is about percentages: `all` of a small namespace is 100 % of it, which
    // `maxTargets.pods` (above) bounds instead.
    let percent_mode = matches!(
        scope.mode,
        SelectorMode::FixedPercent | SelectorMode::RandomMaxPercent
    );
    if let Some(max) = limits.max_percent
        && percent_mode
        && n > 0
        && k * 100 > max * n
    {
        return Err(SelectError::TooLargeShare {
            count: k,
            of: n,
            percent: k * 100 / n,
            max,
        });
    }
    // One hash per pod, not one per comparison (5,000-pod experiments).
    candidates.sort_by_cached_key(|p| rank(uid, &p.key()));
    let mut chosen: Vec<PodInfo> = candidates.into_iter().take(k as usize).cloned().collect();
    chosen.sort_by_key(PodInfo::key);
    Ok(chosen)
}
