//! Properties of the pure parts of the controller: which pods an experiment hits
//! (`selection::select`), the per-target tasks and their fault ids (`plan`), and the timing
//! decisions (`lifecycle::decide`).
//!
//! Selection is checked against an independent oracle written from the module's contract
//! (every filter must match, only Running pods that are not being deleted, never a protected
//! namespace, `pods` names the namespaces when given), over random pod sets that mix protected
//! namespaces, non-Running phases, deleting pods and nodes with and without labels.
//!
//! Rounding, as documented in `selection.rs` and pinned by the examples at the end: percentages
//! round down, so `fixed-percent` 50 of 3 pods is 1 pod and of 1 pod is **0** pods — `select`
//! returns `Ok(vec![])`, which the engine reports as `Pending` / `NoTargets` and looks again in
//! 30 s; it is not an error. `n` counts only the pods that could be hit (Running, not deleting,
//! not protected, matching), never the protected ones a selector names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use faultline_api::io_chaos::IOChaosSpec;
use faultline_api::network_chaos::NetworkChaosSpec;
use faultline_api::pod_chaos::PodChaosSpec;
use faultline_api::selector::{PodSelector, PodSelectorSpec, SelectorMode};
use faultline_api::stress_chaos::StressChaosSpec;
use faultline_controller::lifecycle::{
    Goal, RENEW_EVERY, RecoverWhy, Situation, TTL_MARGIN, decide,
};
use faultline_controller::plan::{self, Call, Task};
use faultline_controller::selection::{Limits, PodInfo, SelectError, select};
use faultline_webhook::policy::ALWAYS_PROTECTED;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::sample::select as pick;
use proptest::test_runner::Config;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The world the generators draw from: small pools, so that filters often match and often not.

/// Two ordinary namespaces, one the policy may protect (`batch`) and three always protected.
const NAMESPACES: &[&str] = &[
    "shop",
    "web",
    "batch",
    "kube-system",
    "faultline-system",
    "kube-public",
];
const NAMES: &[&str] = &[
    "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11", "p12", "p13", "p14",
    "p15",
];
/// `n3` is never in the node-label map (a node the controller did not list, or gone).
const NODES: &[&str] = &["n0", "n1", "n2", "n3"];
const PHASES: &[&str] = &["Running", "Pending", "Succeeded", "Failed", "Unknown"];
const LABEL_KEYS: &[&str] = &["app", "tier"];
const LABEL_VALUES: &[&str] = &["a", "b", "c"];
const ANNOTATION_KEYS: &[&str] = &["team", "chaos"];
const ANNOTATION_VALUES: &[&str] = &["x", "y"];
const NODE_LABEL_KEYS: &[&str] = &["zone", "disk"];
const NODE_LABEL_VALUES: &[&str] = &["a", "b"];
const IPS: &[&str] = &["10.0.0.1", "10.0.0.2", "10.0.0.3"];
const CONTAINERS: &[&str] = &["app", "sidecar", "db"];
const SUPPORTED_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "status.podIP",
];

type NodeLabels = BTreeMap<String, BTreeMap<String, String>>;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // No regression files in the shared work tree; a failure prints its minimal case.
        failure_persistence: None,
        ..Config::default()
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn string_map(
    keys: &'static [&'static str],
    values: &'static [&'static str],
    size: std::ops::Range<usize>,
) -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(pick(keys).prop_map(s), pick(values).prop_map(s), size)
}

/// Empty five times out of six: a selector with many filters set rarely matches anything.
fn mostly_empty<T: std::fmt::Debug + Clone + Default + 'static>(
    strategy: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![5 => Just(T::default()), 1 => strategy].boxed()
}

/// A namespace, `shop` most often (so that pods and selectors meet), protected ones too.
fn arb_namespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("shop"),
        2 => Just("web"),
        1 => Just("batch"),
        1 => pick(&NAMESPACES[3..]),
    ]
}

fn arb_pod() -> impl Strategy<Value = PodInfo> {
    (
        arb_namespace(),
        pick(NAMES),
        string_map(LABEL_KEYS, LABEL_VALUES, 0..3),
        string_map(ANNOTATION_KEYS, ANNOTATION_VALUES, 0..2),
        prop::option::weighted(0.9, pick(NODES)),
        prop_oneof![
            6 => Just(Some("Running")),
            2 => pick(PHASES).prop_map(Some),
            1 => Just(None),
        ],
        prop::option::weighted(0.8, pick(IPS)),
        prop::bool::weighted(0.15),
        prop::collection::btree_map(
            pick(CONTAINERS),
            prop::option::weighted(0.8, any::<u64>().prop_map(|v| format!("{v:016x}"))),
            0..3,
        ),
    )
        .prop_map(
            |(ns, name, labels, annotations, node, phase, ip, deleting, containers)| PodInfo {
                namespace: s(ns),
                name: s(name),
                uid: None,
                labels,
                annotations,
                node: node.map(s),
                phase: phase.map(s),
                pod_ip: ip.map(s),
                deleting,
                containers: containers
                    .into_iter()
                    .map(|(c, id)| (s(c), id.map(|id| format!("containerd://{id}"))))
                    .collect(),
            },
        )
}

/// Pods with distinct `namespace/name` (as the API has them).
fn unique(pods: Vec<PodInfo>) -> Vec<PodInfo> {
    let mut seen = BTreeSet::new();
    pods.into_iter().filter(|p| seen.insert(p.key())).collect()
}

fn arb_pods(max: usize) -> impl Strategy<Value = Vec<PodInfo>> {
    prop::collection::vec(arb_pod(), 1..max).prop_map(unique)
}

fn arb_node_labels() -> impl Strategy<Value = NodeLabels> {
    prop::collection::btree_map(
        pick(&NODES[..3]).prop_map(s),
        string_map(NODE_LABEL_KEYS, NODE_LABEL_VALUES, 0..3),
        0..4,
    )
}

fn arb_expression() -> impl Strategy<Value = LabelSelectorRequirement> {
    (
        pick(LABEL_KEYS),
        pick(&["In", "NotIn", "Exists", "DoesNotExist"][..]),
        prop::collection::vec(pick(LABEL_VALUES).prop_map(s), 1..3),
    )
        .prop_map(|(key, op, values)| LabelSelectorRequirement {
            key: s(key),
            operator: s(op),
            values: matches!(op, "In" | "NotIn").then_some(values),
        })
}

fn arb_field() -> impl Strategy<Value = (String, String)> {
    pick(SUPPORTED_FIELDS).prop_flat_map(|field| {
        let pool: &'static [&'static str] = match field {
            "metadata.name" => NAMES,
            "metadata.namespace" => NAMESPACES,
            "spec.nodeName" => NODES,
            "status.phase" => PHASES,
            _ => IPS,
        };
        pick(pool).prop_map(move |v| (s(field), s(v)))
    })
}

fn arb_selector_spec() -> impl Strategy<Value = PodSelectorSpec> {
    (
        (
            prop_oneof![
                2 => Just(Vec::new()),
                3 => prop::collection::vec(arb_namespace().prop_map(s), 1..4),
            ],
            mostly_empty(prop::collection::btree_map(
                arb_namespace().prop_map(s),
                prop::collection::vec(pick(NAMES).prop_map(s), 0..5),
                1..3,
            )),
            mostly_empty(string_map(LABEL_KEYS, LABEL_VALUES, 1..2)),
            mostly_empty(string_map(ANNOTATION_KEYS, ANNOTATION_VALUES, 1..2)),
            mostly_empty(prop::collection::vec(arb_expression(), 1..3)),
        ),
        (
            mostly_empty(
                prop::collection::vec(arb_field(), 1..3)
                    .prop_map(|v| v.into_iter().collect::<BTreeMap<_, _>>()),
            ),
            mostly_empty(prop::collection::vec(pick(NODES).prop_map(s), 1..3)),
            mostly_empty(string_map(NODE_LABEL_KEYS, NODE_LABEL_VALUES, 1..2)),
            mostly_empty(prop::collection::vec(pick(PHASES).prop_map(s), 1..3)),
        ),
    )
        .prop_map(
            |(
                (namespaces, pods, labels, annotations, expressions),
                (fields, nodes, node_selectors, phases),
            )| PodSelectorSpec {
                namespaces,
                nodes,
                pods,
                node_selectors,
                field_selectors: fields,
                label_selectors: labels,
                annotation_selectors: annotations,
                expression_selectors: expressions,
                pod_phase_selectors: phases,
            },
        )
}

fn arb_mode() -> impl Strategy<Value = SelectorMode> {
    pick(
        &[
            SelectorMode::One,
            SelectorMode::All,
            SelectorMode::Fixed,
            SelectorMode::FixedPercent,
            SelectorMode::RandomMaxPercent,
        ][..],
    )
}

/// Mostly whole numbers (some above 100, some padded), sometimes absent or not a number.
fn arb_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => (0u64..=120).prop_map(|v| Some(v.to_string())),
        1 => (0u64..=100).prop_map(|v| Some(format!(" {v} "))),
        1 => prop_oneof![
            Just(None),
            Just(Some(s(""))),
            Just(Some(s("abc"))),
            Just(Some(s("-1"))),
            Just(Some(s("1.5"))),
            Just(Some(s("50%"))),
        ],
    ]
}

fn arb_scope() -> impl Strategy<Value = PodSelector> {
    (arb_selector_spec(), arb_mode(), arb_value()).prop_map(|(selector, mode, value)| PodSelector {
        selector,
        mode,
        value,
    })
}

/// A UID shaped like the API server's (a random UUID).
fn arb_uid() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|v| {
        let h = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    })
}

/// The always-protected namespaces, and sometimes the policy's own addition `batch`.
fn arb_protected() -> impl Strategy<Value = BTreeSet<String>> {
    any::<bool>().prop_map(|batch| {
        ALWAYS_PROTECTED
            .iter()
            .copied()
            .chain(batch.then_some("batch"))
            .map(s)
            .collect()
    })
}

fn unlimited(protected: &BTreeSet<String>) -> Limits {
    Limits {
        protected: protected.clone(),
        max_pods: None,
        max_percent: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: the contract of `selection.rs`, written independently of its code.

fn oracle_matches(
    pod: &PodInfo,
    sel: &PodSelectorSpec,
    own: &str,
    nodes: &NodeLabels,
    protected: &BTreeSet<String>,
) -> bool {
    // Only Running pods that are not being deleted; never a protected namespace.
    if pod.deleting || pod.phase.as_deref() != Some("Running") || protected.contains(&pod.namespace)
    {
        return false;
    }
    // Where: exact pods when given, else the namespaces, else the experiment's own namespace.
    let in_scope = if !sel.pods.is_empty() {
        sel.pods
            .get(&pod.namespace)
            .is_some_and(|names| names.contains(&pod.name))
    } else if sel.namespaces.is_empty() {
        pod.namespace == own
    } else {
        sel.namespaces.contains(&pod.namespace)
    };
    let subset = |want: &BTreeMap<String, String>, have: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    let expressions = sel.expression_selectors.iter().all(|r| {
        let label = pod.labels.get(&r.key);
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" => label.is_some_and(|l| values.contains(l)),
            "NotIn" => label.is_none_or(|l| !values.contains(l)),
            "Exists" => label.is_some(),
            "DoesNotExist" => label.is_none(),
            other => panic!("generated an unsupported operator {other}"),
        }
    });
    let fields = sel.field_selectors.iter().all(|(field, want)| {
        let have = match field.as_str() {
            "metadata.name" => Some(pod.name.clone()),
            "metadata.namespace" => Some(pod.namespace.clone()),
            "spec.nodeName" => pod.node.clone(),
            "status.phase" => pod.phase.clone(),
            "status.podIP" => pod.pod_ip.clone(),
            other => panic!("generated an unsupported field {other}"),
        };
        have.as_deref() == Some(want.as_str())
    });
    let on_node = sel.nodes.is_empty() || pod.node.as_ref().is_some_and(|n| sel.nodes.contains(n));
    let node_labels = sel.node_selectors.is_empty()
        || pod
            .node
            .as_ref()
            .and_then(|n| nodes.get(n))
            .is_some_and(|labels| subset(&sel.node_selectors, labels));
    let phase = sel.pod_phase_selectors.is_empty()
        || pod
            .phase
            .as_ref()
            .is_some_and(|p| sel.pod_phase_selectors.contains(p));
    in_scope
        && subset(&sel.label_selectors, &pod.labels)
        && subset(&sel.annotation_selectors, &pod.annotations)
        && expressions
        && fields
        && on_node
        && node_labels
        && phase
}

fn oracle_candidates(
    pods: &[PodInfo],
    scope: &PodSelector,
    own: &str,
    nodes: &NodeLabels,
    protected: &BTreeSet<String>,
) -> Vec<PodInfo> {
    let mut out: Vec<PodInfo> = pods
        .iter()
        .filter(|p| oracle_matches(p, &scope.selector, own, nodes, protected))
        .cloned()
        .collect();
    out.sort_by_key(PodInfo::key);
    out
}

/// `value` as a whole number, as the modes that need one read it.
fn whole(value: &Option<String>) -> Option<u64> {
    value.as_deref().and_then(|v| v.trim().parse().ok())
}

fn needs_value(mode: SelectorMode) -> bool {
    !matches!(mode, SelectorMode::One | SelectorMode::All)
}

fn is_percent(mode: SelectorMode) -> bool {
    matches!(
        mode,
        SelectorMode::FixedPercent | SelectorMode::RandomMaxPercent
    )
}

/// ⌊n·v/100⌋ with `v` capped at 100.
fn floor_percent(n: u64, v: u64) -> u64 {
    n * v.min(100) / 100
}

fn keys(pods: &[PodInfo]) -> Vec<String> {
    pods.iter().map(PodInfo::key).collect()
}

// ---------------------------------------------------------------------------------------------
// Selection properties.

proptest! {
    #![proptest_config(config(2048))]

    /// Mode arithmetic and filters: never more than the mode asks (`one` ≤ 1, `fixed` =
    /// min(value, n), `fixed-percent` = ⌊n·v/100⌋ exactly, `random-max-percent` ≤ ⌊n·v/100⌋,
    /// `all` = every match); every target matches every filter, is Running, not deleting and
    /// not in a protected namespace; targets are distinct, sorted by key, taken from the input.
    #[test]
    fn targets_obey_mode_and_filters(
        pods in arb_pods(32),
        nodes in arb_node_labels(),
        scope in arb_scope(),
        own in arb_namespace(),
        uid in arb_uid(),
        protected in arb_protected(),
    ) {
        let got = select(&pods, &nodes, &scope, own, &uid, &unlimited(&protected));
        if needs_value(scope.mode) && whole(&scope.value).is_none() {
            prop_assert_eq!(got, Err(SelectError::BadValue(scope.value.clone())));
            return Ok(());
        }
        let targets = got.expect("supported selector, whole value, no limits");
        let candidates = oracle_candidates(&pods, &scope, own, &nodes, &protected);
        let n = candidates.len() as u64;
        let k = targets.len() as u64;
        match scope.mode {
            SelectorMode::One => prop_assert_eq!(k, n.min(1)),
            SelectorMode::All => prop_assert_eq!(&targets, &candidates),
            SelectorMode::Fixed => {
                let v = whole(&scope.value).unwrap();
                prop_assert!(k <= v);
                prop_assert_eq!(k, v.min(n));
            }
            SelectorMode::FixedPercent => {
                let v = whole(&scope.value).unwrap();
                prop_assert_eq!(k, floor_percent(n, v));
                prop_assert!(k * 100 <= n * v, "a percentage never hits more than it says");
            }
            SelectorMode::RandomMaxPercent => {
                let v = whole(&scope.value).unwrap();
                prop_assert!(k <= floor_percent(n, v));
            }
        }
        let sorted_keys = keys(&targets);
        prop_assert!(sorted_keys.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        for t in &targets {
            prop_assert!(candidates.contains(t), "{} is not a match", t.key());
            prop_assert!(pods.contains(t), "{} is not an input pod", t.key());
            prop_assert_eq!(t.phase.as_deref(), Some("Running"));
            prop_assert!(!t.deleting);
            prop_assert!(!protected.contains(&t.namespace));
            for ns in ALWAYS_PROTECTED {
                prop_assert_ne!(t.namespace.as_str(), ns);
            }
        }
    }

    /// Determinism: the same inputs give the same targets, and so does any order of the pods
    /// (a restarted controller lists them in another order and must pick the same ones).
    #[test]
    fn deterministic_whatever_the_order(
        (pods, shuffled) in arb_pods(32).prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
        nodes in arb_node_labels(),
        scope in arb_scope(),
        own in arb_namespace(),
        uid in arb_uid(),
        protected in arb_protected(),
    ) {
        let limits = unlimited(&protected);
        let first = select(&pods, &nodes, &scope, own, &uid, &limits);
        prop_assert_eq!(&first, &select(&pods, &nodes, &scope, own, &uid, &limits));
        prop_assert_eq!(&first, &select(&shuffled, &nodes, &scope, own, &uid, &limits));
    }

    /// Stability: a pod that does not match (wrong namespace or labels, not Running, deleting,
    /// protected…) never changes the selection, whatever the mode.
    #[test]
    fn a_non_matching_pod_changes_nothing(
        pods in arb_pods(28),
        mut extra in arb_pod(),
        nodes in arb_node_labels(),
        scope in arb_scope(),
        own in arb_namespace(),
        uid in arb_uid(),
        protected in arb_protected(),
        at in any::<prop::sample::Index>(),
    ) {
        if pods.iter().any(|p| p.key() == extra.key()) {
            // Another name in the same namespace, one the pod set does not have yet.
            let free = NAMES
                .iter()
                .find(|n| !pods.iter().any(|p| p.namespace == extra.namespace && p.name == **n));
            prop_assume!(free.is_some());
            extra.name = s(free.unwrap());
        }
        prop_assume!(!oracle_matches(&extra, &scope.selector, own, &nodes, &protected));
        let limits = unlimited(&protected);
        let before = select(&pods, &nodes, &scope, own, &uid, &limits);
        let mut more = pods.clone();
        more.insert(at.index(pods.len() + 1), extra);
        prop_assert_eq!(before, select(&more, &nodes, &scope, own, &uid, &limits));
    }

    /// Protected namespaces are never selected whatever the selector says: named in
    /// `namespaces`, in `pods`, as the experiment's own namespace, or by a field selector.
    #[test]
    fn protected_namespaces_are_never_selected(
        pods in prop::collection::vec(arb_pod(), 0..24)
            .prop_map(|ps| ps.into_iter().map(|mut p| { p.phase = Some(s("Running")); p.deleting = false; p }).collect())
            .prop_map(unique),
        nodes in arb_node_labels(),
        target in pick(&ALWAYS_PROTECTED[..]),
        how in 0u8..4,
        uid in arb_uid(),
    ) {
        let all_names: Vec<String> = NAMES.iter().copied().map(s).collect();
        let selector = match how {
            0 => PodSelectorSpec { namespaces: vec![s(target)], ..Default::default() },
            1 => PodSelectorSpec { pods: BTreeMap::from([(s(target), all_names)]), ..Default::default() },
            2 => PodSelectorSpec::default(),
            _ => PodSelectorSpec {
                namespaces: NAMESPACES.iter().copied().map(s).collect(),
                field_selectors: BTreeMap::from([(s("metadata.namespace"), s(target))]),
                ..Default::default()
            },
        };
        let scope = PodSelector { selector, mode: SelectorMode::All, value: None };
        let protected: BTreeSet<String> = ALWAYS_PROTECTED.iter().copied().map(s).collect();
        prop_assert_eq!(select(&pods, &nodes, &scope, target, &uid, &unlimited(&protected)), Ok(vec![]));
    }

    /// Policy limits: a count above `maxTargets.pods` is an error (never a silent cut), a
    /// share above `maxTargets.percent` is an error for the percentage modes only, and within
    /// the limits the targets are exactly those chosen without limits.
    #[test]
    fn limits_refuse_never_cut(
        pods in arb_pods(32),
        nodes in arb_node_labels(),
        scope in arb_scope(),
        own in arb_namespace(),
        uid in arb_uid(),
        protected in arb_protected(),
        max_pods in prop::option::of(0u64..12),
        max_percent in prop::option::of(0u64..=100),
    ) {
        let free = select(&pods, &nodes, &scope, own, &uid, &unlimited(&protected));
        let limits = Limits { protected: protected.clone(), max_pods, max_percent };
        let got = select(&pods, &nodes, &scope, own, &uid, &limits);
        let Ok(free) = free else {
            prop_assert_eq!(got, free);
            return Ok(());
        };
        let n = oracle_candidates(&pods, &scope, own, &nodes, &protected).len() as u64;
        let k = free.len() as u64;
        match (max_pods, max_percent) {
            (Some(max), _) if k > max => {
                prop_assert_eq!(got, Err(SelectError::TooManyPods { count: k, max }));
            }
            (_, Some(max)) if is_percent(scope.mode) && n > 0 && k * 100 > max * n => {
                prop_assert_eq!(got, Err(SelectError::TooLargeShare { count: k, of: n, percent: k * 100 / n, max }));
            }
            _ => prop_assert_eq!(got, Ok(free)),
        }
        // A percentage mode within the policy's percentage is never refused for its share.
        if let (Some(max), Some(v)) = (max_percent, whole(&scope.value))
            && is_percent(scope.mode)
            && v <= max
        {
            let refused = matches!(
                select(&pods, &nodes, &scope, own, &uid, &limits),
                Err(SelectError::TooLargeShare { .. })
            );
            prop_assert!(!refused, "refused a share within the limit");
        }
    }

    /// A selector the controller cannot evaluate (an unsupported field or operator) is an
    /// error whatever the pods — not only when some pod happens to reach that filter.
    #[test]
    fn unsupported_selectors_fail_whatever_the_pods(
        pods in arb_pods(12),
        nodes in arb_node_labels(),
        mut scope in arb_scope(),
        own in arb_namespace(),
        uid in arb_uid(),
        protected in arb_protected(),
        field in prop::bool::ANY,
    ) {
        let want = if field {
            scope.selector.field_selectors.insert(s("spec.serviceAccountName"), s("default"));
            SelectError::UnsupportedField(s("spec.serviceAccountName"))
        } else {
            scope.selector.expression_selectors.push(LabelSelectorRequirement {
                key: s("app"),
                operator: s("Gt"),
                values: Some(vec![s("1")]),
            });
            SelectError::UnsupportedOperator(s("Gt"))
        };
        prop_assert_eq!(select(&pods, &nodes, &scope, own, &uid, &unlimited(&protected)), Err(want));
    }
}

proptest! {
    #![proptest_config(Config { max_global_rejects: 1 << 16, ..config(1024) })]

    /// Growth: in `fixed` mode a new matching pod replaces at most one target (the ranking
    /// is per pod, so the other targets keep their places), and is added when there was room.
    #[test]
    fn a_new_match_moves_at_most_one_fixed_target(
        pods in prop::collection::vec(arb_pod(), 1..20)
            .prop_map(|ps| ps.into_iter().map(|mut p| { p.phase = Some(s("Running")); p.deleting = false; p }).collect())
            .prop_map(unique),
        nodes in arb_node_labels(),
        spec in arb_selector_spec(),
        value in 1u64..8,
        own in arb_namespace(),
        uid in arb_uid(),
        protected in arb_protected(),
        which in any::<prop::sample::Index>(),
    ) {
        let scope = PodSelector { selector: spec, mode: SelectorMode::Fixed, value: Some(value.to_string()) };
        let candidates = oracle_candidates(&pods, &scope, own, &nodes, &protected);
        prop_assume!(!candidates.is_empty());
        let new = candidates[which.index(candidates.len())].key();
        let fewer: Vec<PodInfo> = pods.iter().filter(|p| p.key() != new).cloned().collect();
        let limits = unlimited(&protected);
        let before: BTreeSet<String> = keys(&select(&fewer, &nodes, &scope, own, &uid, &limits).unwrap()).into_iter().collect();
        let after: BTreeSet<String> = keys(&select(&pods, &nodes, &scope, own, &uid, &limits).unwrap()).into_iter().collect();
        prop_assert!(before.difference(&after).count() <= 1);
        prop_assert!(after.difference(&before).all(|k| *k == new));
        if (before.len() as u64) < value {
            prop_assert!(after.contains(&new));
        }
    }

    /// A selector built from one pod's own data (its namespace, name, a label, an annotation,
    /// label expressions, fields, node, a node label, phase — a random subset of them, all at
    /// once) selects that pod with `all` exactly when it can be hit (Running, not deleting, not
    /// protected), and selects exactly the oracle's matches.
    #[test]
    fn a_selector_built_from_a_pod_selects_it(
        pods in arb_pods(32),
        nodes in arb_node_labels(),
        which in any::<prop::sample::Index>(),
        mask in any::<[bool; 9]>(),
        uid in arb_uid(),
        protected in arb_protected(),
    ) {
        let p = pods[which.index(pods.len())].clone();
        let first = |m: &BTreeMap<String, String>| m.iter().next().map(|(k, v)| BTreeMap::from([(k.clone(), v.clone())])).unwrap_or_default();
        let mut sel = PodSelectorSpec::default();
        if mask[0] {
            sel.namespaces = vec![p.namespace.clone(), s("web")];
        }
        if mask[1] {
            sel.pods = BTreeMap::from([(p.namespace.clone(), vec![s("p0"), p.name.clone()])]);
        }
        if mask[2] {
            sel.label_selectors = first(&p.labels);
        }
        if mask[3] {
            sel.annotation_selectors = first(&p.annotations);
        }
        if mask[4] {
            sel.expression_selectors = LABEL_KEYS.iter().map(|k| match p.labels.get(*k) {
                Some(v) => LabelSelectorRequirement { key: s(k), operator: s("In"), values: Some(vec![v.clone(), s("zzz")]) },
                None => LabelSelectorRequirement { key: s(k), operator: s("DoesNotExist"), values: None },
            }).collect();
        }
        if mask[5] {
            sel.field_selectors.insert(s("metadata.name"), p.name.clone());
            if let Some(ip) = &p.pod_ip {
                sel.field_selectors.insert(s("status.podIP"), ip.clone());
            }
        }
        if mask[6] && let Some(n) = &p.node {
            sel.nodes = vec![n.clone()];
        }
        if mask[7] && let Some(labels) = p.node.as_ref().and_then(|n| nodes.get(n)) {
            sel.node_selectors = first(labels);
        }
        if mask[8] && let Some(phase) = &p.phase {
            sel.pod_phase_selectors = vec![phase.clone(), s("Pending")];
        }
        let scope = PodSelector { selector: sel, mode: SelectorMode::All, value: None };
        let targets = select(&pods, &nodes, &scope, &p.namespace, &uid, &unlimited(&protected)).unwrap();
        prop_assert_eq!(&targets, &oracle_candidates(&pods, &scope, &p.namespace, &nodes, &protected));
        let can_be_hit = p.phase.as_deref() == Some("Running") && !p.deleting && !protected.contains(&p.namespace);
        prop_assert_eq!(targets.contains(&p), can_be_hit);
    }
}

// ---------------------------------------------------------------------------------------------
// Different UIDs pick differently (statistics over many UIDs), and example-based rounding.

fn running(ns: &str, name: &str) -> PodInfo {
    PodInfo {
        namespace: s(ns),
        name: s(name),
        uid: None,
        labels: BTreeMap::from([(s("app"), s("cart"))]),
        annotations: BTreeMap::new(),
        node: Some(s("n0")),
        phase: Some(s("Running")),
        pod_ip: Some(s("10.0.0.1")),
        deleting: false,
        containers: vec![(s("app"), Some(s("containerd://abc")))],
    }
}

fn fleet(ns: &str, n: usize) -> Vec<PodInfo> {
    (0..n).map(|i| running(ns, &format!("cart-{i}"))).collect()
}

fn scope(mode: SelectorMode, value: Option<&str>) -> PodSelector {
    PodSelector {
        selector: PodSelectorSpec {
            label_selectors: BTreeMap::from([(s("app"), s("cart"))]),
            ..Default::default()
        },
        mode,
        value: value.map(s),
    }
}

fn policy(max_pods: Option<u64>, max_percent: Option<u64>) -> Limits {
    Limits {
        protected: ALWAYS_PROTECTED.iter().copied().map(s).collect(),
        max_pods,
        max_percent,
    }
}

fn pick_n(
    pods: &[PodInfo],
    scope: &PodSelector,
    uid: &str,
    limits: &Limits,
) -> Result<usize, SelectError> {
    select(pods, &BTreeMap::new(), scope, "shop", uid, limits).map(|t| t.len())
}

#[test]
fn different_uids_pick_different_pods() {
    // `fixed` 3 of 10: 120 possible sets. 400 UIDs must spread over many of them, and each
    // pod must be picked about 3/10 of the time (a fair draw, not a fixed prefix).
    let pods = fleet("shop", 10);
    let sc = scope(SelectorMode::Fixed, Some("3"));
    let mut sets = BTreeSet::new();
    let mut hits: BTreeMap<String, u32> = BTreeMap::new();
    const UIDS: u32 = 400;
    for i in 0..UIDS {
        let uid = format!("00000000-0000-4000-8000-{i:012}");
        let chosen = select(
            &pods,
            &BTreeMap::new(),
            &sc,
            "shop",
            &uid,
            &policy(None, None),
        )
        .unwrap();
        assert_eq!(chosen.len(), 3);
        for p in &chosen {
            *hits.entry(p.key()).or_default() += 1;
        }
        sets.insert(keys(&chosen));
    }
    assert!(
        sets.len() > 80,
        "only {} distinct sets over {UIDS} UIDs",
        sets.len()
    );
    assert_eq!(hits.len(), 10, "every pod is picked by some UID");
    for (pod, n) in &hits {
        // Expected 120 (σ ≈ 9.2); 70..=170 is more than 5σ each way.
        assert!((70..=170).contains(n), "{pod} picked {n} times of {UIDS}");
    }
    // `random-max-percent` 100 of 10: the count itself is drawn from the UID, over 0..=10.
    let sc = scope(SelectorMode::RandomMaxPercent, Some("100"));
    let counts: BTreeSet<usize> = (0..UIDS)
        .map(|i| pick_n(&pods, &sc, &format!("uid-{i}"), &policy(None, None)).unwrap())
        .collect();
    assert_eq!(
        counts,
        (0..=10).collect(),
        "every count in 0..=10 is drawn by some UID"
    );
}

#[test]
fn same_uid_same_pods_after_restart() {
    let pods = fleet("shop", 50);
    let sc = scope(SelectorMode::FixedPercent, Some("20"));
    let uid = "6f1c2a9e-0d3b-4c55-9a7e-2b8f3e1d4c60";
    let first = select(
        &pods,
        &BTreeMap::new(),
        &sc,
        "shop",
        uid,
        &policy(None, None),
    )
    .unwrap();
    let mut reversed = pods.clone();
    reversed.reverse();
    let again = select(
        &reversed,
        &BTreeMap::new(),
        &sc,
        "shop",
        uid,
        &policy(None, None),
    )
    .unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first, again);
}

/// Rounding of the percentage modes, as documented: ⌊n·value/100⌋, never up.
#[test]
fn fixed_percent_rounds_down() {
    let free = policy(None, None);
    let pct = |n: usize, v: &str| {
        pick_n(
            &fleet("shop", n),
            &scope(SelectorMode::FixedPercent, Some(v)),
            "u",
            &free,
        )
        .unwrap()
    };
    assert_eq!(pct(3, "50"), 1, "1.5 pods → 1");
    assert_eq!(pct(4, "50"), 2);
    assert_eq!(pct(10, "33"), 3, "3.3 pods → 3");
    assert_eq!(pct(10, "39"), 3, "3.9 pods → 3, not 4");
    assert_eq!(pct(199, "1"), 1, "1.99 pods → 1");
    assert_eq!(pct(99, "1"), 0, "0.99 pods → 0");
    assert_eq!(pct(7, "100"), 7);
    assert_eq!(
        pct(7, "150"),
        7,
        "above 100 counts as 100 (validation refuses it anyway)"
    );
    assert_eq!(pct(7, " 50 "), 3, "the value is trimmed");
}

/// One pod at 50 %: zero targets. `select` returns `Ok(vec![])`, not an error; the engine
/// sees an empty selection and reports `Pending` with reason `NoTargets` (looking again in
/// 30 s), exactly as when nothing matches.
#[test]
fn one_pod_at_fifty_percent_is_no_target_not_an_error() {
    let free = policy(None, None);
    let one = fleet("shop", 1);
    let got = select(
        &one,
        &BTreeMap::new(),
        &scope(SelectorMode::FixedPercent, Some("50")),
        "shop",
        "u",
        &free,
    );
    assert_eq!(got, Ok(vec![]));
    // `random-max-percent` rounds its maximum the same way: 0 of 1 pod at 50 %.
    for i in 0..50 {
        let got = pick_n(
            &one,
            &scope(SelectorMode::RandomMaxPercent, Some("50")),
            &format!("u{i}"),
            &free,
        );
        assert_eq!(got, Ok(0));
    }
    // Even a percentage limit stricter than the request cannot refuse zero targets.
    let strict = policy(None, Some(10));
    assert_eq!(
        pick_n(
            &one,
            &scope(SelectorMode::FixedPercent, Some("50")),
            "u",
            &strict
        ),
        Ok(0)
    );
}

/// `n` is what could be hit: the protected pods a selector names do not count towards the
/// percentage, nor do non-Running or deleting pods.
#[test]
fn percent_of_what_could_be_hit() {
    let mut pods = fleet("shop", 2);
    pods.extend(fleet("kube-system", 8));
    let mut pending = running("shop", "cart-pending");
    pending.phase = Some(s("Pending"));
    let mut leaving = running("shop", "cart-leaving");
    leaving.deleting = true;
    pods.extend([pending, leaving]);
    let mut sc = scope(SelectorMode::FixedPercent, Some("50"));
    sc.selector.namespaces = vec![s("shop"), s("kube-system")];
    let got = select(
        &pods,
        &BTreeMap::new(),
        &sc,
        "shop",
        "u",
        &policy(None, None),
    )
    .unwrap();
    assert_eq!(got.len(), 1, "50 % of the 2 Running shop pods, not of 12");
    assert_eq!(got[0].namespace, "shop");
}

#[test]
fn values_the_modes_read() {
    let pods = fleet("shop", 5);
    let free = policy(None, None);
    let n = |mode, v: Option<&str>| pick_n(&pods, &scope(mode, v), "u", &free);
    assert_eq!(n(SelectorMode::One, None), Ok(1));
    assert_eq!(
        n(SelectorMode::One, Some("4")),
        Ok(1),
        "`one` ignores value"
    );
    assert_eq!(
        n(SelectorMode::All, Some("1")),
        Ok(5),
        "`all` ignores value"
    );
    assert_eq!(n(SelectorMode::Fixed, Some("3")), Ok(3));
    assert_eq!(
        n(SelectorMode::Fixed, Some("9")),
        Ok(5),
        "fewer if fewer match"
    );
    assert_eq!(
        n(SelectorMode::Fixed, Some("0")),
        Ok(0),
        "validation refuses 0 before this"
    );
    assert_eq!(
        n(SelectorMode::Fixed, None),
        Err(SelectError::BadValue(None))
    );
    assert_eq!(
        n(SelectorMode::FixedPercent, Some("12.5")),
        Err(SelectError::BadValue(Some(s("12.5"))))
    );
    // An empty namespace: `one` finds nothing, which is not an error either.
    assert_eq!(
        pick_n(&[], &scope(SelectorMode::One, None), "u", &free),
        Ok(0)
    );
}

/// The policy's limits on the count actually selected: refused with the numbers, never cut.
#[test]
fn limits_examples() {
    let pods = fleet("shop", 10);
    // `all` of 10 with maxTargets.pods 5: an error, not 5 of them.
    assert_eq!(
        pick_n(
            &pods,
            &scope(SelectorMode::All, None),
            "u",
            &policy(Some(5), None)
        ),
        Err(SelectError::TooManyPods { count: 10, max: 5 })
    );
    // `all` is 100 % of what matches; maxTargets.percent does not apply to it.
    assert_eq!(
        pick_n(
            &pods,
            &scope(SelectorMode::All, None),
            "u",
            &policy(None, Some(50))
        ),
        Ok(10)
    );
    // 60 % of 10 against maxTargets.percent 50.
    assert_eq!(
        pick_n(
            &pods,
            &scope(SelectorMode::FixedPercent, Some("60")),
            "u",
            &policy(None, Some(50))
        ),
        Err(SelectError::TooLargeShare {
            count: 6,
            of: 10,
            percent: 60,
            max: 50
        })
    );
    // 55 % of 10 is 5 pods = 50 %: within the limit once rounded down.
    assert_eq!(
        pick_n(
            &pods,
            &scope(SelectorMode::FixedPercent, Some("55")),
            "u",
            &policy(None, Some(50))
        ),
        Ok(5)
    );
    // Exactly at the limit is allowed.
    assert_eq!(
        pick_n(
            &pods,
            &scope(SelectorMode::Fixed, Some("5")),
            "u",
            &policy(Some(5), None)
        ),
        Ok(5)
    );
}

// ---------------------------------------------------------------------------------------------
// Plan: fault ids.

fn selector_json() -> Value {
    json!({"selector": {"namespaces": ["shop"]}, "mode": "all"})
}

fn spec<T: serde::de::DeserializeOwned>(extra: Value) -> T {
    let mut v = selector_json();
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).expect("a valid spec")
}

fn all_tasks(
    uid: &str,
    pods: &[PodInfo],
    names: &[String],
    peers: &[String],
) -> Vec<(&'static str, Vec<Task>)> {
    let pod = |action: &str| -> PodChaosSpec {
        spec(json!({"action": action, "containerNames": names, "gracePeriod": 0}))
    };
    let net = |extra: Value| -> NetworkChaosSpec { spec(extra) };
    let peers: Result<Vec<String>, String> = Ok(peers.to_vec());
    let stress: StressChaosSpec =
        spec(json!({"containerNames": names, "stressors": {"cpu": {"workers": 1}}}));
    let io: IOChaosSpec =
        spec(json!({"action": "latency", "volumePath": "/data", "delay": "10ms", "percent": 50}));
    vec![
        ("pod-kill", plan::pod_chaos(&pod("pod-kill"), uid, pods)),
        (
            "pod-failure",
            plan::pod_chaos(&pod("pod-failure"), uid, pods),
        ),
        (
            "container-kill",
            plan::pod_chaos(&pod("container-kill"), uid, pods),
        ),
        (
            "network-delay",
            plan::network_chaos(
                &net(json!({"action": "delay", "delay": {"latency": "10ms"}})),
                uid,
                pods,
                &peers,
            ),
        ),
        (
            "network-partition",
            plan::network_chaos(
                &net(json!({"action": "partition", "direction": "both"})),
                uid,
                pods,
                &peers,
            ),
        ),
        ("stress", plan::stress_chaos(&stress, uid, pods)),
        ("io", plan::io_chaos(&io, uid, pods)),
    ]
}

fn daemon_safe(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// Every `faultId` a task's calls carry.
fn carried_ids(task: &Task) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Call::Daemon { params, .. }) = &task.inject
        && let Some(id) = params.get("faultId")
    {
        out.push(id.as_str().unwrap().to_owned());
    }
    if let Some((_, params)) = &task.recover
        && let Some(id) = params.get("faultId")
    {
        out.push(id.as_str().unwrap().to_owned());
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    /// Fault ids: one per record, distinct, `[a-z0-9-]`, at most 63 characters, the same on
    /// every call (so a re-sent call renews instead of applying twice), the one the calls carry,
    /// and disjoint between two experiments.
    #[test]
    fn fault_ids_are_distinct_safe_and_stable(
        pods in arb_pods(16),
        uid in arb_uid(),
        other in arb_uid(),
        names in prop::collection::vec(pick(CONTAINERS).prop_map(s), 0..3),
        peers in prop::collection::vec(pick(IPS).prop_map(s), 0..3),
    ) {
        prop_assume!(uid != other);
        let by_key: BTreeMap<String, &PodInfo> = pods.iter().map(|p| (p.key(), p)).collect();
        let first = all_tasks(&uid, &pods, &names, &peers);
        prop_assert_eq!(&first, &all_tasks(&uid, &pods, &names, &peers), "stable across calls");
        let theirs: BTreeSet<String> = all_tasks(&other, &pods, &names, &peers)
            .into_iter()
            .flat_map(|(_, ts)| ts.into_iter().map(|t| t.fault_id))
            .collect();
        for (kind, tasks) in &first {
            let records: BTreeSet<&str> = tasks.iter().map(|t| t.record_id.as_str()).collect();
            let ids: BTreeSet<&str> = tasks.iter().map(|t| t.fault_id.as_str()).collect();
            prop_assert_eq!(records.len(), tasks.len(), "{}: a record twice", kind);
            prop_assert_eq!(ids.len(), tasks.len(), "{}: a fault id twice", kind);
            for t in tasks {
                prop_assert!(daemon_safe(&t.fault_id), "{}: {:?}", kind, t.fault_id);
                prop_assert_eq!(&t.fault_id, &plan::fault_id(&uid, &t.record_id));
                prop_assert!(!theirs.contains(&t.fault_id), "{}: shared with another experiment", kind);
                for carried in carried_ids(t) {
                    prop_assert_eq!(&carried, &t.fault_id, "{}: a call carries another id", kind);
                }
                // The record names its pod (and container), and the task goes to its node.
                let pod_key: String = t.record_id.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
                let pod = by_key.get(&pod_key);
                prop_assert!(pod.is_some(), "{}: record {} of no pod", kind, t.record_id);
                prop_assert_eq!(&t.node, &pod.unwrap().node);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle: ttl and wake-up.

fn timestamp(secs: i64, nanos: i32) -> Timestamp {
    Timestamp::new(1_800_000_000 + secs, nanos).unwrap()
}

/// Situations around an experiment's end: durations short and long, `now` anywhere (before
/// the start too: another replica's clock) and often within a minute of the end either way.
fn arb_situation(max_duration_secs: u64) -> impl Strategy<Value = Situation> {
    let secs = prop_oneof![0..=120u64, 0..=max_duration_secs];
    (
        prop::bool::weighted(0.85),
        prop::option::weighted(0.85, (secs, 0u32..1_000_000_000)),
        prop::option::weighted(0.9, (-100_000i64..100_000, 0i32..1_000_000_000)),
        (-100_000i64..200_000, 0i32..1_000_000_000),
        prop::option::of(-60_000_000_000i64..60_000_000_000),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(lasts, duration, started, now, near_end, paused, halted)| {
                let duration = duration.map(|(s, n)| Duration::new(s, n));
                let started = started.map(|(s, n)| timestamp(s, n));
                let now = match (started, duration, near_end) {
                    (Some(at), Some(d), Some(delta)) => at + d + SignedDuration::from_nanos(delta),
                    _ => timestamp(now.0, now.1),
                };
                Situation {
                    lasts,
                    duration,
                    started,
                    now,
                    paused,
                    halted,
                }
            },
        )
}

/// The end of a lasting experiment with a duration.
fn end_of(s: &Situation) -> Option<Timestamp> {
    s.duration.map(|d| s.started.unwrap_or(s.now) + d)
}

fn left(s: &Situation) -> Option<Duration> {
    end_of(s).map(|end| {
        let d = end.duration_since(s.now);
        if d.is_negative() {
            Duration::ZERO
        } else {
            d.unsigned_abs()
        }
    })
}

proptest! {
    #![proptest_config(config(8192))]

    /// The requested ttl always exceeds the time left (so the fault cannot lapse before the
    /// end) and the next wake-up (so it cannot lapse before its renewal); the wake-up never
    /// overshoots the end and is never later than the renewal period; halt beats pause beats
    /// everything; one-shot actions never wait.
    #[test]
    fn ttl_covers_the_time_left_and_wake_up_never_overshoots(s in arb_situation(10_000_000)) {
        let (goal, wake) = decide(&s);
        if s.halted {
            prop_assert_eq!((goal, wake), (Goal::Recovered(RecoverWhy::Halted), None));
            return Ok(());
        }
        if s.paused {
            prop_assert_eq!((goal, wake), (Goal::Recovered(RecoverWhy::Paused), None));
            return Ok(());
        }
        if !s.lasts {
            prop_assert_eq!((goal, wake), (Goal::Injected { ttl: None }, None));
            return Ok(());
        }
        match (end_of(&s), goal) {
            (Some(end), Goal::Recovered(why)) => {
                prop_assert_eq!(why, RecoverWhy::Ended);
                prop_assert!(s.now >= end, "recovered before the end");
                prop_assert_eq!(wake, None);
            }
            (Some(end), Goal::Injected { ttl }) => {
                prop_assert!(s.now < end, "injected after the end");
                let left = left(&s).unwrap();
                let ttl = ttl.expect("a lasting fault has a ttl");
                let wake = wake.expect("a running experiment wakes up");
                prop_assert!(ttl > left, "ttl {:?} ≤ time left {:?}", ttl, left);
                prop_assert_eq!(ttl, left + TTL_MARGIN);
                prop_assert!(!wake.is_zero());
                prop_assert!(wake <= left, "wake {:?} after the end ({:?} left)", wake, left);
                prop_assert!(s.now + wake <= end);
                prop_assert!(wake <= RENEW_EVERY);
                prop_assert!(ttl > wake);
            }
            (None, Goal::Injected { ttl }) => {
                let ttl = ttl.expect("a lasting fault has a ttl");
                prop_assert_eq!(wake, Some(RENEW_EVERY));
                prop_assert!(ttl >= RENEW_EVERY + TTL_MARGIN, "ttl {:?} lapses before the renewal", ttl);
            }
            (None, Goal::Recovered(why)) => prop_assert!(false, "no duration, yet recovered: {:?}", why),
        }
    }

    /// Following the wake-ups from any moment lands exactly on the end (not a nanosecond
    /// late), where the goal turns to recovered, within ⌈left / renew⌉ wake-ups.
    #[test]
    fn wake_ups_land_on_the_end(mut s in arb_situation(7_200)) {
        s.lasts = true;
        s.paused = false;
        s.halted = false;
        // Once selected, the start is fixed (the `Selected` condition's time).
        s.started = Some(s.started.unwrap_or(s.now));
        s.duration = Some(s.duration.unwrap_or(Duration::from_secs(95)));
        let end = end_of(&s).unwrap();
        let budget = left(&s).unwrap().as_nanos().div_ceil(RENEW_EVERY.as_nanos()) as usize + 1;
        let mut woke = false;
        for _ in 0..=budget {
            match decide(&s) {
                (Goal::Recovered(RecoverWhy::Ended), None) => {
                    prop_assert!(s.now >= end);
                    // Past the end only when it started out past it.
                    prop_assert!(!woke || s.now == end, "recovered at {} instead of {}", s.now, end);
                    return Ok(());
                }
                (Goal::Injected { .. }, Some(wake)) => {
                    woke = true;
                    s.now += wake;
                    prop_assert!(s.now <= end, "woke up past the end");
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert!(false, "not recovered after {} wake-ups", budget);
    }
}
