//! Which pods an experiment touches: Chaos Mesh's `selector` + `mode` + `value`.

use crate::validate::{self, Findings, Note, Rule, child, index, key};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Pod filters; every filter given must match (AND), as in Chaos Mesh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSelectorSpec {
    /// Namespaces to select pods from; empty = the experiment's own namespace (set by defaulting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Node names the pods must run on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Exact pods: namespace -> pod names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pods: BTreeMap<String, Vec<String>>,
    /// Labels the pods' nodes must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selectors: BTreeMap<String, String>,
    /// Field selectors (e.g. `metadata.name`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_selectors: BTreeMap<String, String>,
    /// Labels the pods must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label_selectors: BTreeMap<String, String>,
    /// Annotations the pods must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotation_selectors: BTreeMap<String, String>,
    /// Set-based label requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression_selectors: Vec<LabelSelectorRequirement>,
    /// Pod phases (Pending, Running, Succeeded, Failed, Unknown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_phase_selectors: Vec<String>,
}

/// How many of the selected pods are hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SelectorMode {
    /// One pod, chosen at random.
    #[serde(rename = "one")]
    One,
    /// Every selected pod.
    #[serde(rename = "all")]
    All,
    /// `value` pods.
    #[serde(rename = "fixed")]
    Fixed,
    /// `value` percent of the pods.
    #[serde(rename = "fixed-percent")]
    FixedPercent,
    /// A random share of up to `value` percent.
    #[serde(rename = "random-max-percent")]
    RandomMaxPercent,
}

impl SelectorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectorMode::One => "one",
            SelectorMode::All => "all",
            SelectorMode::Fixed => "fixed",
            SelectorMode::FixedPercent => "fixed-percent",
            SelectorMode::RandomMaxPercent => "random-max-percent",
        }
    }
}

// `selector` + `mode` + `value`, inlined in every chaos spec and used by NetworkChaos `target`.
// (A plain comment: a doc comment would become the description of every spec it is inlined in.)
// `selector` is required by the schema and by validation (an empty one is refused), while serde
// takes it as absent-means-empty so that [`crate::read()`] reports it with the other problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::selector_required)]
pub struct PodSelector {
    /// Which pods: namespaces, labels, expressions, annotations, fields, nodes or exact pods.
    #[serde(default)]
    pub selector: PodSelectorSpec,
    pub mode: SelectorMode,
    /// Pod count (`fixed`) or percentage (`fixed-percent`, `random-max-percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// How many pods a mode/value pair hits at most, when that is known without listing pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetCount {
    Pods(u64),
    Percent(u64),
    /// `all`: known only once the pods are listed.
    Unbounded,
}

impl PodSelector {
    /// The static upper bound of targets (`one` = 1 pod, `fixed` = value pods, percent modes =
    /// value percent), or `None` when `value` does not parse (validation reports that).
    pub fn target_count(&self) -> Option<TargetCount> {
        let value = || {
            self.value
                .as_deref()
                .map(str::trim)
                .and_then(|v| v.parse::<u64>().ok())
        };
        match self.mode {
            SelectorMode::One => Some(TargetCount::Pods(1)),
            SelectorMode::All => Some(TargetCount::Unbounded),
            SelectorMode::Fixed => value().map(TargetCount::Pods),
            SelectorMode::FixedPercent | SelectorMode::RandomMaxPercent => {
                value().map(TargetCount::Percent)
            }
        }
    }

    /// Namespaces this selector can reach: `namespaces` and the keys of `pods`.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.selector
            .namespaces
            .iter()
            .chain(self.selector.pods.keys())
            .cloned()
            .collect()
    }

    /// Each namespace this selector reaches with the field path that names it (`selector`
    /// lives at `path`): `namespaces[i]`, the keys of `pods` (`pods["shop"]`), or — when neither
    /// is set — `own`, the experiment's namespace, reported at `namespaces`.
    pub fn namespace_fields(&self, path: &str, own: &str) -> Vec<(String, String)> {
        let selector = child(path, "selector");
        let namespaces = child(&selector, "namespaces");
        let pods = child(&selector, "pods");
        let mut out: Vec<(String, String)> = self
            .selector
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| (index(&namespaces, i), ns.clone()))
            .chain(
                self.selector
                    .pods
                    .keys()
                    .map(|ns| (key(&pods, ns), ns.clone())),
            )
            .collect();
        if out.is_empty() {
            out.push((namespaces, own.to_owned()));
        }
        out
    }

    /// Fills an empty namespace list with `namespace`, unless exact `pods` already say where, or
    /// the selector is empty: validation refuses an empty selector, and a namespace filled in
    /// here would turn it into "every pod of the namespace".
    pub fn default_namespace(&mut self, namespace: &str) {
        if self.selector.namespaces.is_empty()
            && self.selector.pods.is_empty()
            && !self.selector.is_empty()
        {
            self.selector.namespaces.push(namespace.to_string());
        }
    }

    /// Checks selector, mode and value. `path` is where `selector` and `mode` live (`spec`,
    /// `spec.target`).
    pub fn validate_at(&self, path: &str, findings: &mut Findings) {
        let value_path = child(path, "value");
        let value = self
            .value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let mode = self.mode.as_str().to_string();
        match (self.mode, value) {
            // Chaos Mesh ignores it too.
            (SelectorMode::One | SelectorMode::All, Some(_)) => {
                findings.warn(value_path, Note::ValueIgnored { mode })
            }
            (SelectorMode::One | SelectorMode::All, None) => {}
            (_, None) => findings.push(value_path, Rule::ValueRequired { mode }),
            (SelectorMode::Fixed, Some(v)) => {
                if !matches!(v.parse::<u64>(), Ok(n) if n >= 1) {
                    findings.push(
                        value_path,
                        Rule::ValueNotPodCount {
                            value: v.to_string(),
                        },
                    );
                }
            }
            (_, Some(v)) => {
                if !matches!(v.parse::<u64>(), Ok(n) if (1..=100).contains(&n)) {
                    findings.push(
                        value_path,
                        Rule::ValueNotPercent {
                            value: v.to_string(),
                        },
                    );
                }
            }
        }
        let selector = child(path, "selector");
        if self.selector.is_empty() {
            findings.push(selector.clone(), Rule::EmptySelector);
        }
        self.selector.validate_at(&selector, findings);
    }
}

const POD_PHASES: &[&str] = &["Pending", "Running", "Succeeded", "Failed", "Unknown"];

impl PodSelectorSpec {
    /// Whether the selector names no pods in particular: no namespace, exact pod, label,
    /// expression, annotation, field, node or node label (a pod phase alone narrows nothing
    /// down). Chaos Mesh would then take every pod of the experiment's namespace.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.nodes.is_empty()
            && self.pods.is_empty()
            && self.node_selectors.is_empty()
            && self.field_selectors.is_empty()
            && self.label_selectors.is_empty()
            && self.annotation_selectors.is_empty()
            && self.expression_selectors.is_empty()
    }

    pub fn validate_at(&self, path: &str, findings: &mut Findings) {
        let list = child(path, "namespaces");
        for (i, ns) in self.namespaces.iter().enumerate() {
            findings.check(index(&list, i), validate::dns_label("namespace", ns));
        }
        let list = child(path, "nodes");
        for (i, node) in self.nodes.iter().enumerate() {
            findings.check(index(&list, i), validate::dns_subdomain("node name", node));
        }
        let map = child(path, "pods");
        for (ns, names) in &self.pods {
            let at = key(&map, ns);
            findings.check(at.clone(), validate::dns_label("namespace", ns));
            if names.is_empty() {
                findings.push(
                    at.clone(),
                    Rule::Required {
                        because: "to list at least one pod name".into(),
                    },
                );
            }
            for (i, name) in names.iter().enumerate() {
                findings.check(index(&at, i), validate::dns_subdomain("pod name", name));
            }
        }
        for (field, map) in [
            ("labelSelectors", &self.label_selectors),
            ("nodeSelectors", &self.node_selectors),
        ] {
            let at = child(path, field);
            for (k, v) in map {
                findings.check(
                    key(&at, k),
                    validate::label_key(k).and_then(|()| validate::label_value(v)),
                );
            }
        }
        let at = child(path, "annotationSelectors");
        for k in self.annotation_selectors.keys() {
            findings.check(key(&at, k), validate::label_key(k));
        }
        let at = child(path, "fieldSelectors");
        for k in self.field_selectors.keys() {
            if k.trim().is_empty() || k.contains([',', '=', '!']) {
                findings.push(
                    key(&at, k),
                    Rule::InvalidName {
                        what: "field selector",
                        value: k.clone(),
                        reason: "must be a field path like `metadata.name`".into(),
                    },
                );
            }
        }
        let list = child(path, "expressionSelectors");
        for (i, expr) in self.expression_selectors.iter().enumerate() {
            let at = index(&list, i);
            findings.check(child(&at, "key"), validate::label_key(&expr.key));
            let values = expr.values.as_deref().unwrap_or_default();
            match expr.operator.as_str() {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        findings.push(
                            child(&at, "values"),
                            Rule::ExpressionValues(format!(
                                "operator `{}` needs at least one value",
                                expr.operator
                            )),
                        );
                    }
                    for (j, v) in values.iter().enumerate() {
                        findings.check(index(&child(&at, "values"), j), validate::label_value(v));
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        findings.push(
                            child(&at, "values"),
                            Rule::ExpressionValues(format!(
                                "operator `{}` takes no values",
                                expr.operator
                            )),
                        );
                    }
                }
                other => findings.push(
                    child(&at, "operator"),
                    Rule::UnknownOperator {
                        operator: other.into(),
                    },
                ),
            }
        }
        let list = child(path, "podPhaseSelectors");
        for (i, phase) in self.pod_phase_selectors.iter().enumerate() {
            if !POD_PHASES.contains(&phase.as_str()) {
                findings.push(
                    index(&list, i),
                    Rule::UnknownPodPhase {
                        value: phase.clone(),
                    },
                );
            }
        }
    }
}

/// Container names, as DNS labels.
pub fn validate_container_names(path: &str, names: &[String], findings: &mut Findings) {
    for (i, name) in names.iter().enumerate() {
        findings.check(index(path, i), validate::dns_label("container name", name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(mode: SelectorMode, value: Option<&str>) -> PodSelector {
        PodSelector {
            selector: PodSelectorSpec {
                label_selectors: BTreeMap::from([("app".into(), "web".into())]),
                ..PodSelectorSpec::default()
            },
            mode,
            value: value.map(Into::into),
        }
    }

    type Ids = Vec<(String, &'static str)>;

    fn findings(s: &PodSelector) -> (Ids, Ids) {
        let mut f = Findings::default();
        s.validate_at("spec", &mut f);
        let (violations, warnings) = f.into_parts();
        (
            violations
                .into_iter()
                .map(|v| (v.path, v.rule.name()))
                .collect(),
            warnings
                .into_iter()
                .map(|w| (w.path, w.note.name()))
                .collect(),
        )
    }

    fn rules(s: &PodSelector) -> Vec<(String, &'static str)> {
        findings(s).0
    }

    #[test]
    fn mode_value_table() {
        use SelectorMode::*;
        let cases: &[(SelectorMode, Option<&str>, Option<&str>)] = &[
            (One, None, None),
            (All, None, None),
            (Fixed, Some("3"), None),
            (Fixed, None, Some("value-required")),
            (Fixed, Some("0"), Some("value-not-pod-count")),
            (Fixed, Some("-1"), Some("value-not-pod-count")),
            (Fixed, Some("1.5"), Some("value-not-pod-count")),
            (FixedPercent, Some("50"), None),
            (FixedPercent, Some("100"), None),
            (FixedPercent, Some("0"), Some("value-not-percent")),
            (FixedPercent, Some("101"), Some("value-not-percent")),
            (RandomMaxPercent, Some("abc"), Some("value-not-percent")),
            (RandomMaxPercent, Some(""), Some("value-required")),
        ];
        for (mode, value, want) in cases {
            let got = rules(&sel(*mode, *value));
            match want {
                None => assert_eq!(got, vec![], "{mode:?} {value:?}"),
                Some(rule) => assert_eq!(
                    got,
                    vec![("spec.value".to_string(), *rule)],
                    "{mode:?} {value:?}"
                ),
            }
        }
    }

    #[test]
    fn a_value_that_mode_one_or_all_ignores_is_a_warning() {
        for mode in [SelectorMode::One, SelectorMode::All] {
            assert_eq!(
                findings(&sel(mode, Some("3"))),
                (vec![], vec![("spec.value".to_string(), "value-ignored")])
            );
        }
    }

    #[test]
    fn an_empty_selector_is_refused() {
        let mut s = sel(SelectorMode::All, None);
        s.selector = PodSelectorSpec::default();
        assert_eq!(
            rules(&s),
            vec![("spec.selector".to_string(), "empty-selector")]
        );
        s.selector.pod_phase_selectors = vec!["Running".into()];
        assert_eq!(
            rules(&s),
            vec![("spec.selector".to_string(), "empty-selector")],
            "a phase alone still means every pod"
        );
        s.selector.namespaces = vec!["shop".into()];
        assert_eq!(rules(&s), vec![], "a namespace, named, is a choice");
    }

    #[test]
    fn selector_fields() {
        let mut s = sel(SelectorMode::All, None);
        s.selector.namespaces = vec!["ok".into(), "Not_OK".into()];
        s.selector
            .label_selectors
            .insert("app.kubernetes.io/name".into(), "web".into());
        s.selector
            .label_selectors
            .insert("bad key!".into(), "x".into());
        s.selector.pods.insert("shop".into(), vec![]);
        s.selector.pod_phase_selectors = vec!["Running".into(), "running".into()];
        s.selector.expression_selectors = vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: None,
            },
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Exists".into(),
                values: Some(vec!["x".into()]),
            },
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Gt".into(),
                values: None,
            },
        ];
        assert_eq!(
            rules(&s),
            vec![
                ("spec.selector.namespaces[1]".to_string(), "invalid-name"),
                ("spec.selector.pods[\"shop\"]".to_string(), "required"),
                (
                    "spec.selector.labelSelectors[\"bad key!\"]".to_string(),
                    "invalid-name"
                ),
                (
                    "spec.selector.expressionSelectors[0].values".to_string(),
                    "expression-values"
                ),
                (
                    "spec.selector.expressionSelectors[1].values".to_string(),
                    "expression-values"
                ),
                (
                    "spec.selector.expressionSelectors[2].operator".to_string(),
                    "unknown-operator"
                ),
                (
                    "spec.selector.podPhaseSelectors[1]".to_string(),
                    "unknown-pod-phase"
                ),
            ]
        );
    }

    #[test]
    fn target_counts() {
        assert_eq!(
            sel(SelectorMode::One, None).target_count(),
            Some(TargetCount::Pods(1))
        );
        assert_eq!(
            sel(SelectorMode::Fixed, Some("7")).target_count(),
            Some(TargetCount::Pods(7))
        );
        assert_eq!(
            sel(SelectorMode::FixedPercent, Some("30")).target_count(),
            Some(TargetCount::Percent(30))
        );
        assert_eq!(
            sel(SelectorMode::All, None).target_count(),
            Some(TargetCount::Unbounded)
        );
        assert_eq!(sel(SelectorMode::Fixed, Some("x")).target_count(), None);
    }

    #[test]
    fn default_namespace_respects_pods_and_empty_selectors() {
        let mut s = sel(SelectorMode::All, None);
        s.default_namespace("team");
        assert_eq!(s.selector.namespaces, vec!["team".to_string()]);
        s.default_namespace("other");
        assert_eq!(s.selector.namespaces, vec!["team".to_string()]);
        let mut s = sel(SelectorMode::All, None);
        s.selector.pods.insert("shop".into(), vec!["web-0".into()]);
        s.default_namespace("team");
        assert!(s.selector.namespaces.is_empty());
        assert_eq!(s.namespaces(), BTreeSet::from(["shop".to_string()]));
        let mut s = sel(SelectorMode::All, None);
        s.selector = PodSelectorSpec::default();
        s.default_namespace("team");
        assert!(
            s.selector.is_empty(),
            "an empty selector stays empty, to be refused"
        );
    }
}
