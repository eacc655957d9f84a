//! Table-driven validation tests: a valid spec passes; each invalid example fails with the right
//! JSON path and rule; every rule of `Rule::ALL_NAMES` is exercised and documented.

use faultline_api::validate::Rule;
use faultline_api::{AnyChaos, ParseError};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Merges `patch` into `base` (RFC 7386: null deletes).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(k);
                } else {
                    merge(base.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

fn valid_spec(kind: &str) -> Value {
    match kind {
        "PodChaos" => {
            json!({"action": "pod-kill", "mode": "one", "selector": {"namespaces": ["shop"]}})
        }
        "NetworkChaos" => json!({
            "action": "delay", "mode": "all", "selector": {"labelSelectors": {"app": "web"}},
            "delay": {"latency": "100ms", "jitter": "10ms", "correlation": "25"}, "duration": "5m"
        }),
        "StressChaos" => json!({
            "mode": "fixed", "value": "2", "selector": {"namespaces": ["shop"]},
            "stressors": {"cpu": {"workers": 2, "load": 80}}, "duration": "1m"
        }),
        "IOChaos" => json!({
            "action": "latency", "mode": "one", "selector": {"namespaces": ["shop"]},
            "volumePath": "/var/lib/data", "path": "/var/lib/data/**/*.db", "delay": "10ms",
            "methods": ["read", "WRITE"], "percent": 50, "duration": "10m"
        }),
        other => panic!("no base spec for {other}"),
    }
}

fn object(kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "exp", "namespace": "shop"},
        "spec": spec
    })
}

fn violations(kind: &str, patch: Value) -> Vec<(String, &'static str)> {
    let mut spec = valid_spec(kind);
    merge(&mut spec, &patch);
    let chaos = AnyChaos::from_value(kind, object(kind, spec)).expect("test spec parses");
    chaos
        .validate()
        .into_iter()
        .map(|v| (v.path, v.rule.name()))
        .collect()
}

/// (kind, patch over the valid spec, expected (path, rule id) violations)
type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

fn cases() -> Vec<Case> {
    vec![
        // --- selector, mode, value (all kinds share them) ---
        (
            "PodChaos",
            json!({"mode": "all", "value": "3"}),
            vec![("spec.value", "value-not-allowed")],
        ),
        (
            "PodChaos",
            json!({"mode": "fixed"}),
            vec![("spec.value", "value-required")],
        ),
        (
            "PodChaos",
            json!({"mode": "fixed", "value": "0"}),
            vec![("spec.value", "value-not-pod-count")],
        ),
        (
            "PodChaos",
            json!({"mode": "fixed-percent", "value": "150"}),
            vec![("spec.value", "value-not-percent")],
        ),
        (
            "PodChaos",
            json!({"mode": "random-max-percent", "value": "0"}),
            vec![("spec.value", "value-not-percent")],
        ),
        (
            "PodChaos",
            json!({"selector": {"namespaces": ["Shop"]}}),
            vec![("spec.selector.namespaces[0]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"nodes": ["node_1"]}}),
            vec![("spec.selector.nodes[0]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"pods": {"shop": ["Web"]}}}),
            vec![("spec.selector.pods[\"shop\"][0]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"pods": {"shop": []}}}),
            vec![("spec.selector.pods[\"shop\"]", "required")],
        ),
        (
            "PodChaos",
            json!({"selector": {"labelSelectors": {"app": "-web"}}}),
            vec![("spec.selector.labelSelectors[\"app\"]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"nodeSelectors": {"a/b/c": "x"}}}),
            vec![("spec.selector.nodeSelectors[\"a/b/c\"]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"annotationSelectors": {"bad key": "x"}}}),
            vec![(
                "spec.selector.annotationSelectors[\"bad key\"]",
                "invalid-name",
            )],
        ),
        (
            "PodChaos",
            json!({"selector": {"fieldSelectors": {"": "x"}}}),
            vec![("spec.selector.fieldSelectors[\"\"]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"expressionSelectors": [{"key": "tier", "operator": "Gt"}]}}),
            vec![(
                "spec.selector.expressionSelectors[0].operator",
                "unknown-operator",
            )],
        ),
        (
            "PodChaos",
            json!({"selector": {"expressionSelectors": [{"key": "tier", "operator": "In"}]}}),
            vec![(
                "spec.selector.expressionSelectors[0].values",
                "expression-values",
            )],
        ),
        (
            "PodChaos",
            json!({"selector": {"podPhaseSelectors": ["running"]}}),
            vec![("spec.selector.podPhaseSelectors[0]", "unknown-pod-phase")],
        ),
        // --- PodChaos ---
        (
            "PodChaos",
            json!({"action": "container-kill"}),
            vec![("spec.containerNames", "required")],
        ),
        (
            "PodChaos",
            json!({"action": "container-kill", "containerNames": ["app", "Side_car"]}),
            vec![("spec.containerNames[1]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"gracePeriod": -1}),
            vec![("spec.gracePeriod", "out-of-range")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "30"}),
            vec![("spec.duration", "invalid-duration")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "-1s"}),
            vec![("spec.duration", "invalid-duration")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "0s"}),
            vec![("spec.duration", "zero-duration")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "2m30s"}),
            vec![],
        ),
        // --- NetworkChaos ---
        (
            "NetworkChaos",
            json!({"delay": null}),
            vec![("spec.delay", "required")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": ""}}),
            vec![("spec.delay.latency", "required")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": "1.5h"}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": "100"}}),
            vec![("spec.delay.latency", "invalid-duration")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"jitter": "-5ms"}}),
            vec![("spec.delay.jitter", "invalid-duration")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"correlation": "101"}}),
            vec![("spec.delay.correlation", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"reorder": {"reorder": "x"}}}),
            vec![("spec.delay.reorder.reorder", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": "0s", "reorder": {"reorder": "10", "gap": 5}}}),
            vec![("spec.delay.reorder", "reorder-without-latency")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"reorder": {"reorder": "10", "gap": -1}}}),
            vec![("spec.delay.reorder.gap", "out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "loss", "delay": null, "loss": {"loss": "150"}}),
            vec![("spec.loss.loss", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "loss", "delay": null, "loss": {"loss": "25", "correlation": "-1"}}),
            vec![("spec.loss.correlation", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "loss", "delay": null}),
            vec![("spec.loss", "required")],
        ),
        (
            "NetworkChaos",
            json!({"action": "duplicate", "delay": null, "duplicate": {}}),
            vec![("spec.duplicate.duplicate", "required")],
        ),
        (
            "NetworkChaos",
            json!({"action": "corrupt", "delay": null, "corrupt": {"corrupt": "100.5"}}),
            vec![("spec.corrupt.corrupt", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "netem", "delay": null}),
            vec![("spec", "netem-without-effect")],
        ),
        (
            "NetworkChaos",
            json!({"action": "netem", "rate": {"rate": "10"}}),
            vec![("spec.rate.rate", "invalid-rate")],
        ),
        (
            "NetworkChaos",
            json!({"action": "rate", "delay": null, "rate": {"rate": "1 KBps"}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"action": "bandwidth", "delay": null, "bandwidth": {"rate": "1mbps", "limit": 20971520, "buffer": 10000}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"action": "bandwidth", "delay": null, "bandwidth": {"rate": "fast", "limit": 0, "buffer": 0}}),
            vec![
                ("spec.bandwidth.rate", "invalid-rate"),
                ("spec.bandwidth.limit", "out-of-range"),
                ("spec.bandwidth.buffer", "out-of-range"),
            ],
        ),
        (
            "NetworkChaos",
            json!({"bandwidth": {"rate": "1mbps", "limit": 1, "buffer": 1}}),
            vec![("spec.bandwidth", "forbidden")],
        ),
        (
            "NetworkChaos",
            json!({"direction": "from"}),
            vec![("spec.direction", "direction-needs-target")],
        ),
        (
            "NetworkChaos",
            json!({"direction": "both", "target": {"mode": "all", "selector": {"namespaces": ["db"]}}, "externalTargets": ["1.2.3.4"]}),
            vec![("spec.externalTargets", "external-targets-need-direction-to")],
        ),
        (
            "NetworkChaos",
            json!({"direction": "both", "target": {"mode": "all", "selector": {"namespaces": ["db"]}}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"target": {"mode": "fixed", "selector": {}}}),
            vec![("spec.target.value", "value-required")],
        ),
        (
            "NetworkChaos",
            json!({"action": "partition", "delay": null}),
            vec![("spec.target", "partition-without-peer")],
        ),
        (
            "NetworkChaos",
            json!({"action": "partition", "delay": null, "direction": "both", "externalTargets": ["10.0.0.0/8", "example.com"]}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"externalTargets": ["10.0.0.0/99"]}),
            vec![("spec.externalTargets[0]", "invalid-external-target")],
        ),
        (
            "NetworkChaos",
            json!({"device": "eth0@if12", "targetDevice": "veth0"}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"device": "eth0/../x"}),
            vec![("spec.device", "invalid-device")],
        ),
        (
            "NetworkChaos",
            json!({"targetDevice": "averyveryverylongname"}),
            vec![("spec.targetDevice", "invalid-device")],
        ),
        // --- StressChaos ---
        (
            "StressChaos",
            json!({"stressors": null}),
            vec![("spec.stressors", "no-stressor")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": null}}),
            vec![("spec.stressors", "no-stressor")],
        ),
        (
            "StressChaos",
            json!({"stressngStressors": "--cpu 1"}),
            vec![("spec.stressngStressors", "stressors-conflict")],
        ),
        (
            "StressChaos",
            json!({"stressors": null, "stressngStressors": "--cpu 1 --timeout 60s"}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": null, "stressngStressors": "cpu 1"}),
            vec![("spec.stressngStressors", "invalid-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": null, "stressngStressors": "--cpu 1 --temp-path /etc"}),
            vec![("spec.stressngStressors", "forbidden-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"workers": 0}}}),
            vec![("spec.stressors.cpu.workers", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"workers": 8193}}}),
            vec![("spec.stressors.cpu.workers", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"load": 101}}}),
            vec![("spec.stressors.cpu.load", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"options": ["--cpu-method matrixprod", "fast"]}}}),
            vec![("spec.stressors.cpu.options[1]", "invalid-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"options": ["--log-file=/etc/passwd"]}}}),
            vec![("spec.stressors.cpu.options[0]", "forbidden-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "256MB", "oomScoreAdj": -1000}}}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "50%"}}}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "lots"}}}),
            vec![("spec.stressors.memory.size", "invalid-size")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1}}}),
            vec![("spec.stressors.memory.size", "required")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "1GB", "oomScoreAdj": 1001}}}),
            vec![("spec.stressors.memory.oomScoreAdj", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"containerNames": ["APP"]}),
            vec![("spec.containerNames[0]", "invalid-name")],
        ),
        // --- IOChaos ---
        (
            "IOChaos",
            json!({"volumePath": ""}),
            vec![("spec.volumePath", "required")],
        ),
        (
            "IOChaos",
            json!({"volumePath": "data"}),
            vec![("spec.volumePath", "not-absolute")],
        ),
        (
            "IOChaos",
            json!({"path": "data/*"}),
            vec![("spec.path", "not-absolute")],
        ),
        (
            "IOChaos",
            json!({"path": "/etc/**"}),
            vec![("spec.path", "path-outside-volume")],
        ),
        (
            "IOChaos",
            json!({"path": "/var/lib/data/[a"}),
            vec![("spec.path", "invalid-glob")],
        ),
        (
            "IOChaos",
            json!({"methods": ["read", "frob"]}),
            vec![("spec.methods[1]", "unknown-method")],
        ),
        (
            "IOChaos",
            json!({"percent": 101}),
            vec![("spec.percent", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"delay": null}),
            vec![("spec.delay", "required")],
        ),
        (
            "IOChaos",
            json!({"delay": "0ms"}),
            vec![("spec.delay", "zero-duration")],
        ),
        ("IOChaos", json!({"action": "fault", "errno": 5}), vec![]),
        (
            "IOChaos",
            json!({"action": "fault"}),
            vec![("spec.errno", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "fault", "errno": 0}),
            vec![("spec.errno", "unknown-errno")],
        ),
        (
            "IOChaos",
            json!({"action": "fault", "errno": 4096}),
            vec![("spec.errno", "unknown-errno")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride"}),
            vec![("spec.attr", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {}}),
            vec![("spec.attr", "empty-attr-override")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {"perm": 4096, "kind": "regularFile"}}),
            vec![("spec.attr.perm", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {"mtime": {"sec": 1, "nsec": 1000000000}}}),
            vec![("spec.attr.mtime.nsec", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"action": "mistake"}),
            vec![("spec.mistake", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 100}}),
            vec![],
        ),
        (
            "IOChaos",
            json!({"action": "mistake", "mistake": {"filling": "random", "maxOccurrences": 0, "maxLength": 2097152}}),
            vec![
                ("spec.mistake.maxOccurrences", "out-of-range"),
                ("spec.mistake.maxLength", "out-of-range"),
            ],
        ),
        (
            "IOChaos",
            json!({"duration": "forever"}),
            vec![("spec.duration", "invalid-duration")],
        ),
    ]
}

#[test]
fn valid_specs_pass() {
    for kind in faultline_api::KINDS {
        assert_eq!(violations(kind, json!({})), vec![], "{kind}");
    }
}

#[test]
fn each_rule_reports_its_path_and_variant() {
    for (kind, patch, want) in cases() {
        let got = violations(kind, patch.clone());
        let want: Vec<(String, &str)> = want.into_iter().map(|(p, r)| (p.to_string(), r)).collect();
        assert_eq!(got, want, "{kind} with {patch}");
    }
}

/// The rule ids the table exercises, plus those only sidecar rules can break (checked here on a
/// real sidecar rule), cover every rule there is.
#[test]
fn every_rule_is_exercised() {
    let mut seen: BTreeSet<&str> = cases()
        .into_iter()
        .flat_map(|(_, _, want)| want.into_iter().map(|(_, r)| r))
        .collect();
    let zero_weights: faultline_api::iorule::IoRule = serde_json::from_value(
        json!({"type": "fault", "faults": [{"errno": 5, "weight": 0}, {"errno": 28, "weight": 0}]}),
    )
    .expect("a rule whose weights are all zero still parses");
    seen.extend(zero_weights.validate().iter().map(|v| v.rule.name()));
    let all: BTreeSet<&str> = Rule::ALL_NAMES.iter().copied().collect();
    assert_eq!(
        seen,
        all,
        "missing from the table: {:?}",
        all.difference(&seen).collect::<Vec<_>>()
    );
}

#[test]
fn three_mistakes_three_violations() {
    let got = violations(
        "NetworkChaos",
        json!({"mode": "fixed", "delay": {"latency": "10", "correlation": "250"}}),
    );
    assert_eq!(
        got,
        vec![
            ("spec.value".to_string(), "value-required"),
            ("spec.delay.latency".to_string(), "invalid-duration"),
            ("spec.delay.correlation".to_string(), "percent-out-of-range"),
        ]
    );
}

#[test]
fn messages_name_field_and_reason() {
    let mut spec = valid_spec("NetworkChaos");
    merge(&mut spec, &json!({"delay": {"latency": "100"}}));
    let chaos = AnyChaos::from_value("NetworkChaos", object("NetworkChaos", spec)).unwrap();
    let message = chaos.validate()[0].to_string();
    assert_eq!(
        message,
        "spec.delay.latency: `100` has no unit; write e.g. `100s` or `100ms` (units: ns, us, ms, s, m, h)"
    );
}

#[test]
fn wrong_shapes_name_the_field() {
    let err = AnyChaos::from_value(
        "PodChaos",
        object("PodChaos", json!({"action": "pod-explode", "mode": "one"})),
    )
    .unwrap_err();
    let ParseError::Invalid { path, message } = err else {
        panic!("expected Invalid")
    };
    assert_eq!(path, "spec.action");
    assert!(message.contains("pod-explode"), "{message}");
    let err = AnyChaos::from_value(
        "NetworkChaos",
        object(
            "NetworkChaos",
            json!({"action": "delay", "mode": "one", "bandwidth": {"limit": "x"}}),
        ),
    )
    .unwrap_err();
    assert!(
        matches!(err, ParseError::Invalid { ref path, .. } if path == "spec.bandwidth.limit"),
        "{err}"
    );
    assert_eq!(
        AnyChaos::from_value("HTTPChaos", json!({})).unwrap_err(),
        ParseError::UnknownKind("HTTPChaos".into())
    );
}
