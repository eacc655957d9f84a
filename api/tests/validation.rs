//! Table-driven validation tests: a valid spec passes; each invalid example fails with the right
//! JSON path and rule, read the way the webhook reads it ([`faultline_api::read`]: shape and
//! validation together); each warning case warns with the right path and note; every rule and
//! every note is exercised.

#[path = "validation/cases.rs"]
mod cases;
#[path = "validation/notes.rs"]
mod notes;

use faultline_api::validate::{Note, Rule};
use faultline_api::{AnyChaos, ParseError, read};
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

type Found = (Vec<(String, &'static str)>, Vec<(String, &'static str)>);

/// Violations and warnings of the valid spec of `kind` with `patch` merged in.
fn findings(kind: &str, patch: &Value) -> Found {
    let mut spec = valid_spec(kind);
    merge(&mut spec, patch);
    let reading = read(kind, &object(kind, spec)).expect("a known kind");
    (
        reading
            .violations
            .into_iter()
            .map(|v| (v.path, v.rule.name()))
            .collect(),
        reading
            .warnings
            .into_iter()
            .map(|w| (w.path, w.note.name()))
            .collect(),
    )
}

fn violations(kind: &str, patch: Value) -> Vec<(String, &'static str)> {
    findings(kind, &patch).0
}

fn owned(want: Vec<(&str, &'static str)>) -> Vec<(String, &'static str)> {
    want.into_iter().map(|(p, r)| (p.to_string(), r)).collect()
}

#[test]
fn valid_specs_pass() {
    for kind in faultline_api::KINDS {
        assert_eq!(findings(kind, &json!({})), (vec![], vec![]), "{kind}");
    }
}

#[test]
fn each_rule_reports_its_path_and_variant() {
    for (kind, patch, want) in cases::cases() {
        let got = violations(kind, patch.clone());
        assert_eq!(got, owned(want), "{kind} with {patch}");
    }
}

#[test]
fn each_warning_reports_its_path_and_note() {
    for (kind, patch, want) in notes::cases() {
        let (violations, warnings) = findings(kind, &patch);
        assert_eq!(violations, vec![], "{kind} with {patch}: admitted");
        assert_eq!(warnings, owned(want), "{kind} with {patch}");
    }
}

/// The rule ids the table exercises, plus those only sidecar rules can break (checked here on
/// real sidecar rules), cover every rule there is.
#[test]
fn every_rule_is_exercised() {
    let mut seen: BTreeSet<&str> = cases::cases()
        .into_iter()
        .flat_map(|(_, _, want)| want.into_iter().map(|(_, r)| r))
        .collect();
    for rule in [
        json!({"type": "fault", "faults": [{"errno": 5, "weight": 0}, {"errno": 28, "weight": 0}]}),
        json!({"type": "latency", "latency": "1ms", "faults": [{"errno": 5}]}),
    ] {
        let rule: faultline_api::iorule::IoRule =
            serde_json::from_value(rule).expect("the rule has the right shape");
        seen.extend(rule.validate().iter().map(|v| v.rule.name()));
    }
    let all: BTreeSet<&str> = Rule::ALL_NAMES.iter().copied().collect();
    assert_eq!(
        seen,
        all,
        "missing from the table: {:?}",
        all.difference(&seen).collect::<Vec<_>>()
    );
}

#[test]
fn every_note_is_exercised() {
    let seen: BTreeSet<&str> = notes::cases()
        .into_iter()
        .flat_map(|(_, _, want)| want.into_iter().map(|(_, n)| n))
        .collect();
    let all: BTreeSet<&str> = Note::ALL_NAMES.iter().copied().collect();
    assert_eq!(seen, all);
}

/// Warnings reach users as HTTP headers, which the API server may cut at 120 characters.
#[test]
fn warnings_are_short() {
    for (kind, patch, _) in notes::cases() {
        let mut spec = valid_spec(kind);
        merge(&mut spec, &patch);
        let reading = read(kind, &object(kind, spec)).expect("a known kind");
        for w in reading.warnings {
            let text = w.to_string();
            assert!(text.len() <= 120, "{} characters: {text}", text.len());
        }
    }
}

#[test]
fn three_mistakes_three_violations() {
    let got = violations(
        "NetworkChaos",
        json!({"mode": "fixed", "delay": {"latency": "10", "correlation": "250"}}),
    );
    assert_eq!(
        got,
        owned(vec![
            ("spec.value", "value-required"),
            ("spec.delay.latency", "invalid-duration"),
            ("spec.delay.correlation", "percent-out-of-range"),
        ])
    );
}

/// Type errors and missing fields no longer stop at the first: each one, and every other
/// violation of the object, is reported together.
#[test]
fn shape_and_rule_violations_together() {
    let got = violations(
        "NetworkChaos",
        json!({"mode": null, "action": "delay", "delay": {"latency": 100, "jitter": "-1ms"},
               "direction": "sideways", "device": "a/b", "loss": {"loss": "x", "corelation": "5"}}),
    );
    assert_eq!(
        got,
        owned(vec![
            ("spec.delay.latency", "wrong-type"),
            ("spec.direction", "unknown-value"),
            ("spec.loss.corelation", "unknown-field"),
            ("spec.mode", "required"),
            ("spec.delay.jitter", "invalid-duration"),
            ("spec.loss.loss", "percent-out-of-range"),
            ("spec.device", "invalid-device"),
        ])
    );
}

#[test]
fn messages_name_field_and_reason() {
    let cases = [
        (
            "NetworkChaos",
            json!({"delay": {"latency": "100"}}),
            "spec.delay.latency: `100` has no unit; write e.g. `100s` or `100ms` (units: ns, us, ms, s, m, h)",
        ),
        (
            "PodChaos",
            json!({"mode": null}),
            "spec.mode: is required (one of one, all, fixed, fixed-percent, random-max-percent)",
        ),
        (
            "PodChaos",
            json!({"action": "pod-explode"}),
            "spec.action: `pod-explode` is not one of pod-kill, pod-failure, container-kill",
        ),
        (
            "PodChaos",
            json!({"gracePeriod": "soon"}),
            "spec.gracePeriod: must be a whole number, not the string \"soon\"",
        ),
        (
            "PodChaos",
            json!({"actoin": "pod-kill"}),
            "spec.actoin: unknown field; did you mean `action`?",
        ),
        (
            "NetworkChaos",
            json!({"externalTargets": ["1.1.1.1:0"]}),
            "spec.externalTargets[0]: `1.1.1.1:0` is not an IP, CIDR or host name with an optional port: port `0` must be a number from 1 to 65535",
        ),
        (
            "PodChaos",
            json!({"remoteCluster": "east"}),
            "spec.remoteCluster: is not supported: Faultline acts only on the cluster it runs in (Chaos Mesh multi-cluster); create the experiment in `east` itself",
        ),
    ];
    for (kind, patch, want) in cases {
        let mut spec = valid_spec(kind);
        merge(&mut spec, &patch);
        let reading = read(kind, &object(kind, spec)).expect("a known kind");
        assert_eq!(reading.violations[0].to_string(), want);
    }
}

/// Typed parsing (serde) still stops at the first problem and names its field; `read` is what
/// reports them all.
#[test]
fn typed_parsing_names_the_first_field() {
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
    assert_eq!(
        AnyChaos::from_value("HTTPChaos", json!({})).unwrap_err(),
        ParseError::UnknownKind("HTTPChaos".into())
    );
}
