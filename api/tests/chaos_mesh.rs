//! Chaos Mesh experiments, with only `apiVersion` changed, deserialize, validate, default and
//! convert; serializing them back loses nothing.

use faultline_api::convert::{io::io_rule, network::network_fault, stress::stress_plan};
use faultline_api::{AnyChaos, Experiment};
use serde_json::Value;
use std::path::Path;

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chaos-mesh");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            let value: Value = serde_yaml::from_str(&text).expect("fixture is YAML");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 14,
        "expected the Chaos Mesh fixtures, found {}",
        out.len()
    );
    out
}

fn parse(name: &str, value: &Value) -> AnyChaos {
    let kind = value["kind"].as_str().expect("kind");
    AnyChaos::from_value(kind, value.clone()).unwrap_or_else(|err| panic!("{name}: {err}"))
}

#[test]
fn chaos_mesh_examples_deserialize_and_validate() {
    for (name, value) in fixtures() {
        let chaos = parse(&name, &value);
        assert_eq!(chaos.validate(), vec![], "{name}");
    }
}

#[test]
fn round_trip_keeps_every_field() {
    for (name, value) in fixtures() {
        let chaos = parse(&name, &value);
        let mut back = chaos.to_value();
        // The typed objects carry no status when none was given.
        if let Some(obj) = back.as_object_mut() {
            obj.remove("status");
        }
        assert_eq!(back, value, "{name}");
    }
}

#[test]
fn defaults_keep_examples_valid_and_are_idempotent() {
    for (name, value) in fixtures() {
        let mut chaos = parse(&name, &value);
        chaos.apply_defaults("team");
        assert_eq!(chaos.validate(), vec![], "{name}");
        assert!(
            !chaos.target_namespaces().is_empty(),
            "{name}: defaulting gives every selector a namespace"
        );
        let once = chaos.to_value();
        chaos.apply_defaults("team");
        assert_eq!(
            chaos.to_value(),
            once,
            "{name}: defaulting twice changes nothing"
        );
    }
}

#[test]
fn examples_convert() {
    for (name, value) in fixtures() {
        match parse(&name, &value) {
            AnyChaos::Network(c) => {
                network_fault(&c.spec).unwrap_or_else(|v| panic!("{name}: {v:?}"));
            }
            AnyChaos::Stress(c) => {
                let plan =
                    stress_plan(&c.spec, 4 << 30).unwrap_or_else(|v| panic!("{name}: {v:?}"));
                assert!(!plan.args.is_empty(), "{name}");
            }
            AnyChaos::Io(c) => {
                let rule = io_rule(&c.spec, Some(name.clone()))
                    .unwrap_or_else(|v| panic!("{name}: {v:?}"));
                assert_eq!(
                    rule.validate(),
                    vec![],
                    "{name}: the converted rule is valid for the sidecar"
                );
                assert_eq!(rule.path.as_deref(), Some("**/*"), "{name}");
            }
            AnyChaos::Pod(c) => assert!(!c.action().is_empty()),
        }
    }
}
