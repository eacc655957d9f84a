//! The CRD schemas and validation agree: every bound (`minimum`, `maximum`) and every required
//! field the schema gives the API server is also a violation with that field's path when the
//! webhook reads the object — so what the server refuses, the webhook names too, and nothing in
//! the schema is a rule of its own. And no required field has a `default` in the schema (the
//! API server would fill it in and the webhook would see an empty value instead of a missing
//! one).

use faultline_api::read;
use serde_json::{Value, json};

/// Valid specs that, together, hold every field the schemas bound or require.
fn full_specs(kind: &str) -> Vec<Value> {
    let selector = json!({
        "namespaces": ["shop"],
        "expressionSelectors": [{"key": "tier", "operator": "In", "values": ["a"]}]
    });
    match kind {
        "PodChaos" => vec![json!({
            "action": "pod-kill", "mode": "one", "selector": selector, "gracePeriod": 5
        })],
        "NetworkChaos" => vec![
            json!({
                "action": "netem", "mode": "one", "selector": selector,
                "delay": {"latency": "10ms", "reorder": {"reorder": "5", "gap": 3}},
                "loss": {"loss": "1"}, "duplicate": {"duplicate": "1"},
                "corrupt": {"corrupt": "1"}, "rate": {"rate": "1mbit"},
                "direction": "both",
                "target": {"mode": "one", "selector": selector}
            }),
            json!({
                "action": "bandwidth", "mode": "one", "selector": selector,
                "bandwidth": {"rate": "1mbit", "limit": 10, "buffer": 10, "peakrate": 80, "minburst": 10}
            }),
        ],
        "StressChaos" => vec![json!({
            "mode": "one", "selector": selector,
            "stressors": {"cpu": {"workers": 1, "load": 50},
                          "memory": {"workers": 1, "size": "1GB", "oomScoreAdj": 0}}
        })],
        "IOChaos" => vec![
            json!({
                "action": "attrOverride", "mode": "one", "selector": selector,
                "volumePath": "/d", "percent": 50,
                "attr": {"ino": 1, "size": 1, "blocks": 1, "perm": 420, "nlink": 1, "uid": 1,
                         "gid": 1, "rdev": 1,
                         "atime": {"sec": 1, "nsec": 1}, "mtime": {"sec": 1, "nsec": 1},
                         "ctime": {"sec": 1, "nsec": 1}}
            }),
            json!({
                "action": "mistake", "mode": "one", "selector": selector, "volumePath": "/d",
                "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1}
            }),
        ],
        other => panic!("{other}"),
    }
}

/// (JSON pointer inside the spec, its schema) for every property, lists entered at index 0.
fn properties(schema: &Value, pointer: &str, out: &mut Vec<(String, Value)>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let at = format!("{pointer}/{name}");
            out.push((at.clone(), sub.clone()));
            properties(sub, &at, out);
        }
    }
    if let Some(items) = schema.get("items") {
        properties(items, &format!("{pointer}/0"), out);
    }
}

fn spec_schema(kind: &str) -> Value {
    let crd = faultline_api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("a CRD");
    let crd = serde_json::to_value(crd).expect("json");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// `/delay/reorder/gap` → `spec.delay.reorder.gap`; `/x/0/key` → `spec.x[0].key`.
fn path_of(pointer: &str) -> String {
    let mut path = String::from("spec");
    for part in pointer.split('/').skip(1) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{part}]"));
        } else {
            path.push('.');
            path.push_str(part);
        }
    }
    path
}

fn violations_at(kind: &str, spec: &Value, path: &str) -> Vec<String> {
    let object = json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": kind,
                        "metadata": {"name": "x"}, "spec": spec});
    read(kind, &object)
        .expect("a chaos kind")
        .violations
        .into_iter()
        .filter(|v| v.path == path)
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn every_schema_bound_is_a_named_violation() {
    let mut checked = 0;
    for kind in faultline_api::KINDS {
        let mut props = Vec::new();
        properties(&spec_schema(kind), "", &mut props);
        for (pointer, schema) in props {
            let bounds = [("minimum", -1i128), ("maximum", 1)];
            for (bound, step) in bounds {
                let Some(limit) = schema.get(bound).and_then(Value::as_f64) else {
                    continue;
                };
                let specs = full_specs(kind);
                let spec = specs
                    .iter()
                    .find(|s| s.pointer(&pointer).is_some())
                    .unwrap_or_else(|| panic!("{kind}: no full spec holds {pointer}"));
                let beyond = limit as i128 + step;
                let Ok(beyond) = i64::try_from(beyond) else {
                    continue; // beyond what JSON numbers here can say (u64::MAX + 1)
                };
                let mut spec = spec.clone();
                *spec.pointer_mut(&pointer).expect("present") = json!(beyond);
                let path = path_of(&pointer);
                let found = violations_at(kind, &spec, &path);
                assert!(
                    !found.is_empty(),
                    "{kind}: {path} = {beyond} (schema {bound} {limit}) is not a violation"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 25, "only {checked} bounds checked");
}

#[test]
fn every_required_field_is_named_when_missing_and_has_no_default() {
    let mut checked = 0;
    for kind in faultline_api::KINDS {
        let schema = spec_schema(kind);
        let mut props = vec![(String::new(), schema)];
        properties(&props[0].1.clone(), "", &mut props);
        for (pointer, sub) in props {
            let Some(required) = sub.get("required").and_then(Value::as_array) else {
                continue;
            };
            for field in required.iter().filter_map(Value::as_str) {
                let at = format!("{pointer}/{field}");
                assert!(
                    sub["properties"][field].get("default").is_none(),
                    "{kind}: required {at} has a default"
                );
                let specs = full_specs(kind);
                let Some(spec) = specs.iter().find(|s| s.pointer(&at).is_some()) else {
                    panic!("{kind}: no full spec holds {at}")
                };
                let mut spec = spec.clone();
                let parent = spec
                    .pointer_mut(if pointer.is_empty() { "" } else { &pointer })
                    .and_then(Value::as_object_mut)
                    .expect("an object");
                parent.remove(field);
                let path = path_of(&at);
                let found = violations_at(kind, &spec, &path);
                assert!(
                    !found.is_empty(),
                    "{kind}: {path} missing is not a violation"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} required fields checked");
}
