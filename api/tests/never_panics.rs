//! Property tests: reading, validation, defaulting and conversion never panic, whatever JSON
//! arrives; the lenient reader agrees with typed validation on objects that read cleanly.

use faultline_api::convert::{io::io_rule, network::network_fault, stress::stress_plan};
use faultline_api::iorule::IoRule;
use faultline_api::{AnyChaos, KINDS, read};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Field names of every kind, so generated objects reach past deserialization often.
const FIELDS: &[&str] = &[
    "selector",
    "mode",
    "value",
    "action",
    "duration",
    "containerNames",
    "gracePeriod",
    "namespaces",
    "labelSelectors",
    "pods",
    "expressionSelectors",
    "key",
    "operator",
    "values",
    "podPhaseSelectors",
    "delay",
    "latency",
    "jitter",
    "correlation",
    "reorder",
    "gap",
    "loss",
    "duplicate",
    "corrupt",
    "rate",
    "bandwidth",
    "limit",
    "buffer",
    "peakrate",
    "minburst",
    "direction",
    "target",
    "externalTargets",
    "device",
    "targetDevice",
    "stressors",
    "cpu",
    "memory",
    "workers",
    "load",
    "size",
    "oomScoreAdj",
    "options",
    "stressngStressors",
    "volumePath",
    "path",
    "methods",
    "percent",
    "errno",
    "attr",
    "perm",
    "mtime",
    "sec",
    "nsec",
    "mistake",
    "filling",
    "maxOccurrences",
    "maxLength",
    "type",
    "faults",
    "weight",
    "ttl",
];

const STRINGS: &[&str] = &[
    "",
    "one",
    "all",
    "fixed",
    "fixed-percent",
    "random-max-percent",
    "delay",
    "loss",
    "netem",
    "bandwidth",
    "partition",
    "pod-kill",
    "container-kill",
    "pod-failure",
    "latency",
    "fault",
    "attrOverride",
    "mistake",
    "zero",
    "random",
    "to",
    "from",
    "both",
    "In",
    "Exists",
    "10ms",
    "-1s",
    "1.5h",
    "25",
    "101",
    "1mbps",
    "10",
    "50%",
    "/data",
    "/data/**",
    "[",
    "eth0@if1",
    "read",
    "\u{0}",
    "99999999999999999999999h",
    "--cpu 1",
    "--temp-path /",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(100),
            Just(101),
            Just(8193)
        ]
        .prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn shaped_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..8).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn valid_spec(kind: &str) -> Value {
    match kind {
        "PodChaos" => {
            json!({"action": "container-kill", "mode": "fixed", "value": "1", "containerNames": ["a"], "duration": "1m",
                   "selector": {"namespaces": ["a"]}})
        }
        "NetworkChaos" => {
            json!({"action": "netem", "mode": "all", "delay": {"latency": "1ms", "reorder": {"reorder": "5", "gap": 2}},
                                 "loss": {"loss": "1"}, "rate": {"rate": "1mbit"}, "direction": "both",
                                 "selector": {"labelSelectors": {"app": "a"}},
                                 "target": {"mode": "all", "selector": {"namespaces": ["b"]}},
                                 "externalTargets": ["1.1.1.1:80"],
                                 "bandwidth": {"rate": "1mbit", "limit": 1, "buffer": 1}})
        }
        "StressChaos" => {
            json!({"mode": "one", "selector": {"namespaces": ["a"]},
                   "stressors": {"cpu": {"workers": 1, "options": [""]}, "memory": {"workers": 2, "size": "10%"}}})
        }
        _ => json!({"action": "mistake", "mode": "one", "volumePath": "/d", "path": "/d/*",
                    "selector": {"namespaces": ["a"]},
                    "mistake": {"filling": "random", "maxOccurrences": 2, "maxLength": 4}, "attr": {"perm": 1}}),
    }
}

fn object(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": kind,
           "metadata": {"name": "x", "namespace": "ns"}, "spec": spec})
}

fn exercise(kind: &str, spec: Value) {
    let object = object(kind, spec);
    let reading = read(kind, &object).expect("a known kind");
    for v in &reading.violations {
        let _ = v.to_string();
    }
    if let Some(repaired) = reading.chaos {
        exercise_typed(repaired);
    }
    if let Ok(chaos) = AnyChaos::from_value(kind, object) {
        exercise_typed(chaos);
    }
}

fn exercise_typed(mut chaos: AnyChaos) {
    let _ = chaos.validate();
    let _ = chaos.warnings();
    chaos.apply_defaults("ns");
    let _ = chaos.validate();
    let _ = chaos.target_namespaces();
    let _ = chaos.duration();
    for (_, selector) in chaos.selectors() {
        let _ = selector.target_count();
    }
    match &chaos {
        AnyChaos::Network(c) => drop(network_fault(&c.spec)),
        AnyChaos::Stress(c) => drop(stress_plan(&c.spec, u64::MAX)),
        AnyChaos::Io(c) => drop(io_rule(&c.spec, None)),
        AnyChaos::Pod(_) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_specs_never_panic(kind in prop::sample::select(KINDS), spec in shaped_json()) {
        exercise(kind, spec);
    }

    /// Valid specs with a few fields replaced by arbitrary values, top level and nested: these
    /// mostly deserialize, so validation and conversion see odd values in every field.
    #[test]
    fn mutated_valid_specs_never_panic(
        kind in prop::sample::select(KINDS),
        top in prop::collection::vec((prop::sample::select(FIELDS), leaf()), 0..3),
        nested in prop::collection::vec((prop::sample::select(FIELDS), leaf()), 0..3),
    ) {
        let mut spec = valid_spec(kind);
        for (field, value) in top {
            spec[field] = value;
        }
        for object in ["delay", "bandwidth", "stressors", "attr", "mistake", "selector"] {
            if let Some(Value::Object(map)) = spec.get_mut(object) {
                for (field, value) in &nested {
                    map.insert(field.to_string(), value.clone());
                }
            }
        }
        exercise(kind, spec);
    }

    /// On an object that deserializes and has nothing the reader could not read, the reader
    /// reports exactly what typed validation does.
    #[test]
    fn read_agrees_with_typed_validation(
        kind in prop::sample::select(KINDS),
        top in prop::collection::vec((prop::sample::select(FIELDS), leaf()), 0..3),
    ) {
        let mut spec = valid_spec(kind);
        for (field, value) in top {
            spec[field] = value;
        }
        let object = object(kind, spec);
        let reading = read(kind, &object).expect("a known kind");
        if let Ok(chaos) = AnyChaos::from_value(kind, object)
            && reading.unreadable().is_empty()
        {
            prop_assert_eq!(&reading.violations, &chaos.validate());
            prop_assert_eq!(&reading.warnings, &chaos.warnings());
        }
    }

    #[test]
    fn arbitrary_rules_never_panic(rule in shaped_json()) {
        if let Ok(rule) = serde_json::from_value::<IoRule>(rule) {
            let _ = rule.validate();
            let _ = rule.ttl_duration();
        }
    }
}

/// The generator does reach validation: some generated specs deserialize.
#[test]
fn generator_reaches_validation() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = shaped_json();
    let parsed = (0..3000)
        .filter(|_| {
            let mut spec = strategy.new_tree(&mut runner).unwrap().current();
            if let Value::Object(map) = &mut spec {
                map.insert("mode".into(), json!("all"));
                map.insert("action".into(), json!("pod-kill"));
            }
            AnyChaos::from_value(
                "PodChaos",
                json!({"apiVersion": "v", "kind": "PodChaos", "metadata": {}, "spec": spec}),
            )
            .is_ok()
        })
        .count();
    assert!(
        parsed > 30,
        "only {parsed} of 3000 generated specs deserialized"
    );
}
