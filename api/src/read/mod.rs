//! Reading a chaos object leniently: every problem at once, each with its path — even when the
//! JSON has the wrong shape.
//!
//! serde stops at the first problem (`spec: missing field 'mode'`) and names the object rather
//! than the field. [`read`] instead walks the JSON against the kind's CRD schema
//! ([`shape`]), collecting every unknown field (`unknown-field`, with a "did you mean"), value
//! of the wrong type (`wrong-type`), value outside an enumeration (`unknown-value`) and missing
//! required field (`required`). What could not be read is left out — or, when the Rust type
//! needs it, replaced by a placeholder — and remembered as *unreadable*; the rest deserializes
//! and goes through the same validation as any object ([`crate::Experiment::validate`]), whose
//! findings about unreadable fields (or what contains them) are dropped, so one mistake is
//! reported once. Rules that depend on an unreadable `action` are skipped, as are `value` rules
//! when `mode` is unreadable.
//!
//! The webhook admits with this; typed callers (the controller, the daemon) keep using
//! [`crate::parse`] and [`crate::Experiment::validate`], which agree with it on any object
//! that reads cleanly.

mod shape;

use serde_json::{Map, Value};

use crate::experiment::{AnyChaos, ParseError};
use crate::schema::REMOTE_CLUSTER;
use crate::validate::{Rule, Violation, Warning, child, index, key, within};
use shape::{Object, Shape, spec_shape, suggestion};

/// A chaos object read leniently (see the module docs).
#[derive(Debug, Clone)]
pub struct Reading {
    /// The object as far as it could be read: unreadable fields left out or replaced by
    /// placeholders. `None` only if even that did not deserialize (malformed `metadata`).
    pub chaos: Option<AnyChaos>,
    /// Every violation: shape problems first, then the validation rules of the readable fields.
    pub violations: Vec<Violation>,
    /// What is admitted but interpreted (empty when `chaos` is `None`).
    pub warnings: Vec<Warning>,
    unreadable: Vec<String>,
}

impl Reading {
    /// The paths that could not be read (a wrong type, an unknown value or field, a missing
    /// required field).
    pub fn unreadable(&self) -> &[String] {
        &self.unreadable
    }

    /// Whether everything at `path` was read: neither it, nor what contains it, nor anything
    /// inside it is unreadable — and, for a selector's `value`, its `mode` was read too (a
    /// value is judged against its mode).
    pub fn readable(&self, path: &str) -> bool {
        let clean = |p: &str| {
            !self
                .unreadable
                .iter()
                .any(|bad| within(p, bad) || within(bad, p))
        };
        clean(path)
            && path
                .strip_suffix(".value")
                .is_none_or(|scope| clean(&child(scope, "mode")))
    }

    /// The object, when it has no violation at all.
    pub fn into_result(self) -> Result<AnyChaos, Vec<Violation>> {
        match self.chaos {
            Some(chaos) if self.violations.is_empty() => Ok(chaos),
            _ => Err(self.violations),
        }
    }
}

/// The walk over one object: the problems found and the paths that could not be read.
struct Walk {
    plural: String,
    violations: Vec<Violation>,
    unreadable: Vec<String>,
}

impl Walk {
    fn bad(&mut self, path: &str, rule: Rule) {
        self.violations.push(Violation::new(path, rule));
        self.unreadable.push(path.to_owned());
    }

    fn wrong_type(&mut self, path: &str, shape: &Shape, value: &Value) {
        self.bad(
            path,
            Rule::WrongType {
                expected: shape.expected().to_owned(),
                found: found(value),
            },
        );
    }

    /// `value` read as `shape`; `None` when it cannot be (reported).
    fn value(&mut self, shape: &Shape, value: &Value, path: &str) -> Option<Value> {
        match (shape, value) {
            (_, Value::Null) => None,
            (Shape::Any, v) => Some(v.clone()),
            (Shape::String { values }, Value::String(s)) => {
                if values.is_empty() || values.contains(s) {
                    Some(value.clone())
                } else {
                    self.bad(
                        path,
                        Rule::UnknownValue {
                            value: s.clone(),
                            accepted: values.join(", "),
                        },
                    );
                    None
                }
            }
            (Shape::Integer { min, max }, Value::Number(n)) => {
                let whole = n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from));
                match whole {
                    Some(w) if (*min..=*max).contains(&w) => Some(value.clone()),
                    Some(w) => {
                        self.bad(
                            path,
                            Rule::OutOfRange {
                                value: w,
                                min: *min,
                                max: *max,
                            },
                        );
                        None
                    }
                    None => {
                        self.wrong_type(path, shape, value);
                        None
                    }
                }
            }
            (Shape::Number, Value::Number(_)) | (Shape::Bool, Value::Bool(_)) => {
                Some(value.clone())
            }
            (Shape::Object(object), Value::Object(map)) => Some(self.object(object, map, path)),
            (Shape::Map(inner), Value::Object(map)) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.value(inner, v, &key(path, k))?)))
                    .collect(),
            )),
            (Shape::Array(inner), Value::Array(items)) => Some(Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = index(path, i);
                        self.value(inner, item, &at).unwrap_or_else(|| {
                            // Keep the place, so later entries keep their index.
                            self.unreadable.push(at);
                            inner.placeholder()
                        })
                    })
                    .collect(),
            )),
            (shape, v) => {
                self.wrong_type(path, shape, v);
                None
            }
        }
    }

    /// An object of known fields: unknown ones reported and left out, required ones reported
    /// when missing and replaced by placeholders (unreadable).
    fn object(&mut self, object: &Object, map: &Map<String, Value>, path: &str) -> Value {
        let mut out = Map::new();
        for (name, value) in map {
            let at = child(path, name);
            match object.fields.get(name) {
                Some(field) => {
                    if let Some(v) = self.value(&field.shape, value, &at) {
                        out.insert(name.clone(), v);
                    }
                }
                None => {
                    let hint = self.unknown_field_hint(object, name, path);
                    self.bad(&at, Rule::UnknownField { hint });
                }
            }
        }
        for (name, field) in object.fields.iter().filter(|(_, f)| f.required) {
            if out.contains_key(name) {
                continue;
            }
            let at = child(path, name);
            if map.get(name).is_none_or(Value::is_null) {
                let because = if field.hint.is_empty() {
                    String::new()
                } else {
                    format!("({})", field.hint)
                };
                self.bad(&at, Rule::Required { because });
            }
            out.insert(name.clone(), field.shape.placeholder());
        }
        Value::Object(out)
    }

    fn unknown_field_hint(&self, object: &Object, name: &str, path: &str) -> String {
        if let Some(close) = suggestion(name, object.fields.keys()) {
            return format!("; did you mean `{close}`?");
        }
        if object.fields.len() <= 12 {
            let known: Vec<&str> = object.fields.keys().map(String::as_str).collect();
            return format!(" (known: {})", known.join(", "));
        }
        // `kubectl explain` takes the path without list indices.
        let mut explain = String::new();
        let mut depth = 0;
        for c in path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ if depth == 0 => explain.push(c),
                _ => {}
            }
        }
        format!(" (see `kubectl explain {}.{explain}`)", self.plural)
    }
}

/// How a JSON value looks, for "must be X, not Y".
fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 40 => "a long string".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

const ROOT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Reads a chaos object of `kind` (e.g. `request.kind.kind` of an AdmissionReview) leniently:
/// the object as far as it reads, and every violation. Fails only for a kind that is not a
/// Faultline chaos kind.
pub fn read(kind: &str, value: &Value) -> Result<Reading, ParseError> {
    let spec_shape = spec_shape(kind).ok_or_else(|| ParseError::UnknownKind(kind.to_owned()))?;
    let mut walk = Walk {
        plural: kind.to_ascii_lowercase(),
        violations: Vec::new(),
        unreadable: Vec::new(),
    };
    let Value::Object(root) = value else {
        walk.wrong_type("(root)", &Shape::Any, value);
        return Ok(Reading {
            chaos: None,
            violations: walk.violations,
            warnings: Vec::new(),
            unreadable: vec![String::new()],
        });
    };
    let mut repaired = Map::new();
    for (name, v) in root {
        if name == "spec" {
            continue;
        }
        if ROOT_FIELDS.contains(&name.as_str()) {
            repaired.insert(name.clone(), v.clone());
        } else {
            walk.bad(
                name,
                Rule::UnknownField {
                    hint: format!(" (known: {})", ROOT_FIELDS.join(", ")),
                },
            );
        }
    }
    let spec = match root.get("spec") {
        None | Some(Value::Null) => {
            walk.bad(
                "spec",
                Rule::Required {
                    because: "(what the experiment does)".into(),
                },
            );
            Shape::Object(spec_shape.clone()).placeholder()
        }
        Some(Value::Object(map)) => walk.object(spec_shape, map, "spec"),
        Some(other) => {
            walk.wrong_type("spec", &Shape::Object(spec_shape.clone()), other);
            Shape::Object(spec_shape.clone()).placeholder()
        }
    };
    if let Some(Value::String(cluster)) = spec.get(REMOTE_CLUSTER)
        && !cluster.trim().is_empty()
    {
        walk.violations.push(Violation::new(
            child("spec", REMOTE_CLUSTER),
            Rule::Unsupported {
                reason: format!(
                    "Faultline acts only on the cluster it runs in (Chaos Mesh multi-cluster); create the experiment in `{cluster}` itself"
                ),
            },
        ));
    }
    repaired.insert("spec".into(), spec);
    // The API server always sends these; a caller that left them out still gets its spec read.
    repaired
        .entry("apiVersion")
        .or_insert_with(|| Value::from(format!("{}/{}", crate::GROUP, crate::VERSION)));
    repaired.entry("kind").or_insert_with(|| Value::from(kind));
    repaired
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Walk {
        mut violations,
        unreadable,
        ..
    } = walk;
    let mut reading = Reading {
        chaos: None,
        violations: Vec::new(),
        warnings: Vec::new(),
        unreadable,
    };
    match AnyChaos::from_value(kind, Value::Object(repaired)) {
        Ok(chaos) => {
            let action_known = reading.readable("spec.action");
            let (found, warnings) = chaos.findings(action_known).into_parts();
            violations.extend(found.into_iter().filter(|v| reading.readable(&v.path)));
            reading.warnings = warnings
                .into_iter()
                .filter(|w| reading.readable(&w.path))
                .collect();
            reading.chaos = Some(chaos);
        }
        Err(ParseError::Invalid { path, message }) => {
            reading.unreadable.push(path.clone());
            violations.push(Violation::new(
                path,
                Rule::WrongType {
                    expected: "readable".into(),
                    found: message,
                },
            ));
        }
        Err(ParseError::UnknownKind(kind)) => return Err(ParseError::UnknownKind(kind)),
    }
    reading.violations = violations;
    Ok(reading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(kind: &str, spec: Value) -> Vec<(String, &'static str)> {
        let object = json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "x"}, "spec": spec});
        read(kind, &object)
            .expect("known kind")
            .violations
            .into_iter()
            .map(|v| (v.path, v.rule.name()))
            .collect()
    }

    fn owned(v: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        v.iter().map(|(p, r)| ((*p).to_owned(), *r)).collect()
    }

    #[test]
    fn missing_required_fields_are_each_named() {
        assert_eq!(
            problems("PodChaos", json!({})),
            owned(&[
                ("spec.action", "required"),
                ("spec.mode", "required"),
                ("spec.selector", "required"),
            ])
        );
        assert_eq!(
            problems(
                "NetworkChaos",
                json!({"action": "partition", "mode": "one",
                "selector": {"namespaces": ["a"]}, "target": {}})
            ),
            owned(&[
                ("spec.target.mode", "required"),
                ("spec.target.selector", "required"),
            ])
        );
    }

    #[test]
    fn wrong_types_unknown_values_and_fields_all_at_once() {
        let got = problems(
            "PodChaos",
            json!({"action": "pod-explode", "mode": "some", "selector": {"namespaces": ["a"]},
                   "gracePeriod": "soon", "actoin": "pod-kill", "containerNames": ["Bad_Name"]}),
        );
        assert_eq!(
            got,
            owned(&[
                ("spec.action", "unknown-value"),
                ("spec.actoin", "unknown-field"),
                ("spec.gracePeriod", "wrong-type"),
                ("spec.mode", "unknown-value"),
                ("spec.containerNames[0]", "invalid-name"),
            ])
        );
    }

    #[test]
    fn one_mistake_is_reported_once() {
        // An unreadable mode: no `value` rule on top. An unreadable action: no action rules.
        assert_eq!(
            problems(
                "PodChaos",
                json!({"action": "pod-kill", "mode": 3, "value": "x",
                "selector": {"namespaces": ["a"]}})
            ),
            owned(&[("spec.mode", "wrong-type")])
        );
        assert_eq!(
            problems(
                "NetworkChaos",
                json!({"action": "slow", "mode": "one",
                "selector": {"namespaces": ["a"]}})
            ),
            owned(&[("spec.action", "unknown-value")])
        );
        // A missing latency is required once, not also "empty".
        assert_eq!(
            problems(
                "NetworkChaos",
                json!({"action": "delay", "mode": "one",
                "selector": {"namespaces": ["a"]}, "delay": {"jitter": "1ms"}})
            ),
            owned(&[("spec.delay.latency", "required")])
        );
    }

    #[test]
    fn integers_must_fit_the_rust_type() {
        assert_eq!(
            problems(
                "NetworkChaos",
                json!({"action": "bandwidth", "mode": "one",
                "selector": {"namespaces": ["a"]},
                "bandwidth": {"rate": "1mbit", "limit": 1, "buffer": 1, "peakrate": -1}})
            ),
            owned(&[("spec.bandwidth.peakrate", "out-of-range")])
        );
        assert_eq!(
            problems(
                "IOChaos",
                json!({"action": "fault", "mode": "one", "errno": 5.5,
                "selector": {"namespaces": ["a"]}, "volumePath": "/d"})
            ),
            owned(&[("spec.errno", "wrong-type")])
        );
    }

    #[test]
    fn list_entries_keep_their_index() {
        assert_eq!(
            problems(
                "PodChaos",
                json!({"action": "container-kill", "mode": "one",
                "selector": {"namespaces": ["a"]}, "containerNames": [5, "Bad"]})
            ),
            owned(&[
                ("spec.containerNames[0]", "wrong-type"),
                ("spec.containerNames[1]", "invalid-name"),
            ])
        );
    }

    #[test]
    fn remote_cluster_is_refused() {
        let got = problems(
            "PodChaos",
            json!({"action": "pod-kill", "mode": "one",
            "selector": {"namespaces": ["a"]}, "remoteCluster": "cluster-east"}),
        );
        assert_eq!(got, owned(&[("spec.remoteCluster", "unsupported")]));
        assert_eq!(
            problems(
                "PodChaos",
                json!({"action": "pod-kill", "mode": "one",
                "selector": {"namespaces": ["a"]}, "remoteCluster": ""})
            ),
            vec![],
            "an empty remoteCluster is this cluster, as in Chaos Mesh"
        );
    }

    #[test]
    fn shapeless_input_is_named_too() {
        assert_eq!(
            problems("StressChaos", json!("x")),
            owned(&[("spec", "wrong-type")])
        );
        let reading = read("IOChaos", &json!([1])).expect("known kind");
        assert!(reading.chaos.is_none());
        assert_eq!(reading.violations[0].path, "(root)");
        assert!(matches!(
            read("HTTPChaos", &json!({})),
            Err(ParseError::UnknownKind(_))
        ));
        let reading = read(
            "PodChaos",
            &json!({"kind": "PodChaos", "extra": 1, "spec": null}),
        )
        .expect("known kind");
        let paths: Vec<_> = reading.violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["extra", "spec"]);
    }

    #[test]
    fn unknown_field_hints() {
        let object = json!({"kind": "NetworkChaos", "spec": {"action": "delay", "mode": "one",
            "selector": {"namespaces": ["a"], "labelSelector": {"app": "x"}},
            "delay": {"latency": "1ms", "latnecy": "2ms"}, "bogus": 1}});
        let reading = read("NetworkChaos", &object).expect("known kind");
        let text: Vec<String> = reading.violations.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"spec.delay.latnecy: unknown field; did you mean `latency`?".to_owned()),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"spec.selector.labelSelector: unknown field; did you mean `labelSelectors`?"
                    .to_owned()
            ),
            "{text:?}"
        );
        assert!(
            text.contains(
                &"spec.bogus: unknown field (see `kubectl explain networkchaos.spec`)".to_owned()
            ),
            "{text:?}"
        );
        assert!(!reading.readable("spec.delay.latnecy"));
        assert!(reading.readable("spec.delay.latency"));
    }
}
