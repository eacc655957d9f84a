//! Chaos Mesh experiments, with only `apiVersion` changed, deserialize, validate, default and
//! convert; serializing them back loses nothing. Those Chaos Mesh admits and Faultline reads its
//! own way are admitted with the warnings listed here; those Faultline refuses on purpose
//! (`fixtures/chaos-mesh-denied`) are refused with every violation named.

use faultline_api::convert::{io::io_rule, network::network_fault, stress::stress_plan};
use faultline_api::{AnyChaos, Experiment, read};
use serde_json::Value;
use std::path::Path;

fn fixtures() -> Vec<(String, Value)> {
    fixtures_in("chaos-mesh")
}

fn fixtures_in(dir: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
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
        out.len() >= 3,
        "expected the Chaos Mesh fixtures, found {}",
        out.len()
    );
    out
}

/// The warnings each fixture is admitted with (path, note id); fixtures not listed have none.
const WARNED: &[(&str, &[(&str, &str)])] = &[
    (
        "io-latency-extra-payload.yaml",
        &[("spec.errno", "field-ignored")],
    ),
    (
        "network-partition-everything.yaml",
        &[("spec", "partition-everything")],
    ),
    (
        "stress-both.yaml",
        &[
            ("spec.value", "value-ignored"),
            ("spec.stressors", "stressors-ignored"),
        ],
    ),
    (
        "stress-cpu-options.yaml",
        &[("spec.stressors.cpu.options[2]", "empty-option")],
    ),
    (
        "stress-memory-minimal.yaml",
        &[("spec.stressors.memory.size", "memory-size-default")],
    ),
];

#[test]
fn chaos_mesh_examples_are_admitted_with_the_expected_warnings() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 25, "{} fixtures", fixtures.len());
    for (name, value) in fixtures {
        let kind = value["kind"].as_str().expect("kind");
        let reading = read(kind, &value).expect("a chaos kind");
        assert_eq!(reading.violations, vec![], "{name}");
        let warnings: Vec<(String, &str)> = reading
            .warnings
            .iter()
            .map(|w| (w.path.clone(), w.note.name()))
            .collect();
        let want: Vec<(String, &str)> = WARNED
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, w)| w.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect())
            .unwrap_or_default();
        assert_eq!(warnings, want, "{name}");
    }
    for (file, _) in WARNED {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/chaos-mesh")
                .join(file)
                .exists(),
            "{file}"
        );
    }
}

/// What Faultline refuses on purpose, every violation with its path.
#[test]
fn refused_on_purpose_with_every_violation() {
    let want: &[(&str, &[(&str, &str)])] = &[
        (
            "empty-selector.yaml",
            &[("spec.selector", "empty-selector")],
        ),
        (
            "remote-cluster.yaml",
            &[("spec.remoteCluster", "unsupported")],
        ),
        (
            "typos-and-types.yaml",
            &[
                ("spec.delay.latency", "required"),
                ("spec.duration", "wrong-type"),
                ("spec.mode", "unknown-value"),
                ("spec.selector.labelSelector", "unknown-field"),
                ("spec.delay.correlation", "percent-out-of-range"),
            ],
        ),
    ];
    let fixtures = fixtures_in("chaos-mesh-denied");
    assert_eq!(fixtures.len(), want.len());
    for ((name, value), (file, violations)) in fixtures.into_iter().zip(want) {
        assert_eq!(name, *file);
        let kind = value["kind"].as_str().expect("kind");
        let got: Vec<(String, &str)> = read(kind, &value)
            .expect("a chaos kind")
            .violations
            .into_iter()
            .map(|v| (v.path, v.rule.name()))
            .collect();
        let violations: Vec<(String, &str)> = violations
            .iter()
            .map(|(p, r)| ((*p).to_owned(), *r))
            .collect();
        assert_eq!(got, violations, "{name}");
    }
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
                let path = rule.path.as_deref().unwrap_or_default();
                assert!(
                    !path.starts_with('/'),
                    "{name}: relative to the mount, {path}"
                );
            }
            AnyChaos::Pod(c) => assert!(!c.action().is_empty()),
        }
    }
}

/// Both of Chaos Mesh's `externalTargets` shapes, ports included, reach the partition the
/// daemon applies, as structured peers in canonical text.
#[test]
fn external_targets_with_ports_reach_the_partition() {
    use faultline_api::convert::network::NetworkFault;
    let (_, value) = fixtures()
        .into_iter()
        .find(|(name, _)| name == "network-partition-external-targets.yaml")
        .expect("fixture");
    let AnyChaos::Network(chaos) = AnyChaos::from_value("NetworkChaos", value).expect("parses")
    else {
        panic!("a NetworkChaos")
    };
    let NetworkFault::Partition { peers, .. } = network_fault(&chaos.spec).expect("converts")
    else {
        panic!("a partition")
    };
    let text: Vec<String> = peers.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "8.8.8.8/32",
            "www.example.com",
            "1.1.1.1/32:80",
            "example.com:443",
            "10.0.0.0/8:22",
            "[fd00::/64]:80"
        ]
    );
}
