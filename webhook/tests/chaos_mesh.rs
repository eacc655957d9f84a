//! Chaos Mesh YAML through `/validate` and `/default`, as the API server sends it: the shapes of
//! Chaos Mesh's examples are admitted (with warnings where Faultline reads them its own way),
//! and a denial lists every violation with its path — shape problems, spec rules and policy
//! together — even when the JSON has the wrong shape.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use faultline_webhook::policy::Policy;
use faultline_webhook::{Outcome, Verdict, admission, review};
use serde_json::{Value, json};

type Labels = BTreeMap<String, BTreeMap<String, String>>;

fn opted_in(namespaces: &[&str]) -> Labels {
    namespaces
        .iter()
        .map(|ns| {
            (
                (*ns).to_owned(),
                BTreeMap::from([("faultline.dev/chaos".to_owned(), "enabled".to_owned())]),
            )
        })
        .collect()
}

fn decode(review: &Value) -> review::Review {
    review::decode(&serde_json::to_vec(review).expect("json")).expect("decode")
}

/// `/validate` of a CREATE of `object` in namespace `shop`; the verdict and the response JSON.
fn validate_with(object: Value, policy: &Policy) -> (Verdict, Value) {
    let mut object = object;
    object["metadata"]["namespace"] = json!("shop");
    let r = decode(&common::chaos_review("CREATE", object, Value::Null));
    let verdict = admission::validate(&r, policy, &opted_in(&["shop", "db"]));
    let response = common::response(&review::encode(verdict.response.clone()));
    (verdict, response)
}

/// A policy that leaves the spec rules alone: no opt-in, no duration or target limits.
fn spec_rules_only() -> Policy {
    Policy::from_yaml(
        "requireNamespaceOptIn: false\nmaxDuration: null\nmaxTargets: {pods: null, percent: null}\n",
        "p",
    )
    .expect("policy")
}

fn fixtures(dir: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../api/tests/fixtures")
        .join(dir);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| {
            let path = e.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("fixture");
            (
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                serde_yaml::from_str(&text).expect("YAML"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn chaos_mesh_examples_are_admitted() {
    let fixtures = fixtures("chaos-mesh");
    assert!(fixtures.len() >= 25);
    for (name, object) in fixtures {
        let (verdict, response) = validate_with(object, &spec_rules_only());
        assert_eq!(verdict.outcome, Outcome::Allowed, "{name}: {response}");
        for w in warnings(&response) {
            assert!(
                w.len() <= 120,
                "{name}: a warning of {} characters: {w}",
                w.len()
            );
        }
    }
}

#[test]
fn what_faultline_reads_its_own_way_is_said_in_warnings() {
    let cases = [
        (
            "stress-memory-minimal.yaml",
            "spec.stressors.memory.size: not set: stress-ng's default applies, 256MB per worker",
        ),
        (
            "stress-both.yaml",
            "spec.stressors: ignored: stressngStressors is set and takes precedence, as in Chaos Mesh",
        ),
        (
            "stress-both.yaml",
            "spec.value: ignored: mode `all` takes no value",
        ),
        (
            "stress-cpu-options.yaml",
            "spec.stressors.cpu.options[2]: empty option, dropped",
        ),
        (
            "network-partition-everything.yaml",
            "spec: no target or externalTargets: the pods are cut off from every address",
        ),
        (
            "io-latency-extra-payload.yaml",
            "spec.errno: ignored: action `latency` does not use it (only fault)",
        ),
    ];
    let fixtures = fixtures("chaos-mesh");
    for (file, want) in cases {
        let (_, object) = fixtures
            .iter()
            .find(|(name, _)| name == file)
            .unwrap_or_else(|| panic!("{file}"));
        let (verdict, response) = validate_with(object.clone(), &spec_rules_only());
        assert_eq!(verdict.outcome, Outcome::Allowed, "{file}: {response}");
        let got = warnings(&response);
        assert!(
            got.iter().any(|w| w == want),
            "{file}: {want:?} not in {got:?}"
        );
    }
}

#[test]
fn refused_chaos_mesh_shapes_name_every_violation() {
    let cases: [(&str, &[&str]); 3] = [
        ("empty-selector.yaml", &["spec.selector: selects no pods"]),
        (
            "remote-cluster.yaml",
            &[
                "spec.remoteCluster: is not supported: Faultline acts only on the cluster it runs in",
            ],
        ),
        (
            "typos-and-types.yaml",
            &[
                "spec.delay.latency: is required",
                "spec.duration: must be a string, not 10",
                "spec.mode: `some` is not one of",
                "spec.selector.labelSelector: unknown field; did you mean `labelSelectors`?",
                "spec.delay.correlation: `250` must be a percentage",
            ],
        ),
    ];
    let fixtures = fixtures("chaos-mesh-denied");
    for (file, wants) in cases {
        let (_, object) = fixtures
            .iter()
            .find(|(name, _)| name == file)
            .unwrap_or_else(|| panic!("{file}"));
        let (verdict, response) = validate_with(object.clone(), &spec_rules_only());
        assert_eq!(verdict.outcome, Outcome::Denied, "{file}");
        assert_eq!(
            verdict.denied_rules.len(),
            wants.len(),
            "{file}: {response}"
        );
        let m = message(&response);
        for want in wants {
            assert!(m.contains(want), "{file}: {want:?} not in {m}");
        }
    }
}

/// Shape problems, spec rules and policy, all in one denial; policy rules about what could not
/// be read are left out (they would judge a placeholder).
#[test]
fn shape_spec_and_policy_violations_together() {
    let object = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": "slow"},
        "spec": {
            "action": "delay", "mode": "fixed", "value": "500",
            "selector": {"namespaces": ["kube-system"], "labelSelectors": {"app": "web"}},
            "delay": {"latency": "10ms", "jitter": 5},
            "externalTargets": ["1.1.1.1:80", "1.1.1.1:0"],
            "duraton": "5m"
        }
    });
    let (verdict, response) = validate_with(object, &Policy::default());
    let m = message(&response);
    for want in [
        "spec.delay.jitter: must be a string, not 5",
        "spec.duraton: unknown field; did you mean `duration`?",
        "spec.externalTargets[1]: `1.1.1.1:0`",
        "spec.selector.namespaces[0]: namespace \"kube-system\" is protected",
        "spec.duration: is required: NetworkChaos/delay lasts until recovered",
        "spec.value: 500 pods is more than policy maxTargets.pods 100",
    ] {
        assert!(m.contains(want), "{want:?} not in {m}");
    }
    assert_eq!(
        verdict.denied_rules,
        [
            "wrong-type",
            "unknown-field",
            "invalid-external-target",
            "policy-protected-namespace",
            "policy-max-duration",
            "policy-max-targets"
        ]
    );

    // An unreadable mode: no maxTargets judgement of its value; an unreadable action: no
    // allowedActions or maxDuration judgement.
    let object = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "k"},
        "spec": {"action": "pod-explode", "mode": "ones", "value": "500",
                 "selector": {"namespaces": ["shop"]}}
    });
    let policy =
        Policy::from_yaml("allowedActions: {shop: [NetworkChaos/*]}\n", "p").expect("policy");
    let (verdict, _) = validate_with(object, &policy);
    assert_eq!(verdict.denied_rules, ["unknown-value", "unknown-value"]);
}

#[test]
fn an_object_that_does_not_read_cleanly_gets_no_defaults() {
    let default = |object: Value| {
        let r = decode(&common::chaos_review("CREATE", object, Value::Null));
        admission::default(&r)
    };
    let base = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "k", "namespace": "shop"},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "x"}}}
    });
    assert_eq!(default(base.clone()).outcome, Outcome::Patched);
    let mut typo = base.clone();
    typo["spec"]["mdoe"] = json!("all");
    assert_eq!(default(typo).outcome, Outcome::Allowed, "no patch");
    // An empty selector is left empty, for /validate to refuse.
    let mut empty = base;
    empty["spec"]["selector"] = json!({});
    assert_eq!(default(empty.clone()).outcome, Outcome::Allowed, "no patch");
    let (verdict, _) = validate_with(empty, &spec_rules_only());
    assert_eq!(verdict.denied_rules, ["empty-selector"]);
}
