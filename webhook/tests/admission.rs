//! `/validate` and `/default` through the real decoder, one test per rule.

mod common;

use std::collections::BTreeMap;

use faultline_webhook::policy::{NamespaceLabels, Policy, Unknown};
use faultline_webhook::{Outcome, Verdict, admission, review};
use serde_json::{Value, json};

fn opted_in(namespaces: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
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

fn validate_with(object: Value, policy: &Policy, labels: &dyn NamespaceLabels) -> (Verdict, Value) {
    let r = decode(&common::chaos_review("CREATE", object, Value::Null));
    let verdict = admission::validate(&r, policy, labels);
    let response = common::response(&review::encode(verdict.response.clone()));
    (verdict, response)
}

fn validate(object: Value) -> (Verdict, Value) {
    validate_with(object, &Policy::default(), &opted_in(&["shop", "batch"]))
}

fn pod_kill() -> Value {
    json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "kill-cart", "namespace": "shop"},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "cart"}}}
    })
}

fn delay(duration: Option<&str>) -> Value {
    let mut v = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {"name": "slow-cart", "namespace": "shop"},
        "spec": {
            "action": "delay", "mode": "all",
            "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "cart"}},
            "delay": {"latency": "100ms", "jitter": "10ms"}
        }
    });
    if let Some(d) = duration {
        v["spec"]["duration"] = json!(d);
    }
    v
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn valid_experiment_is_allowed_with_audit_annotations() {
    let (verdict, response) = validate(pod_kill());
    assert_eq!(verdict.outcome, Outcome::Allowed, "{response}");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["uid"], "3f1c2b7e-93b1-4a8e-9a33-2b9d1b9c0e5a");
    let audit = &response["auditAnnotations"];
    assert_eq!(audit["experiment"], "PodChaos shop/kill-cart");
    assert_eq!(audit["author"], "alice@example.com");
    assert_eq!(audit["targets"], "shop");
    assert_eq!(audit["action"], "PodChaos/pod-kill");
}

#[test]
fn halt_denies_every_create() {
    let policy = Policy::from_yaml("halt: true\n", "p").expect("policy");
    let (verdict, response) = validate_with(pod_kill(), &policy, &opted_in(&["shop"]));
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert!(message(&response).contains("kill switch"), "{response}");
    assert_eq!(verdict.denied_rules, vec!["policy-halt"]);
}

#[test]
fn protected_namespaces_are_denied_wherever_they_appear() {
    let mut chaos = pod_kill();
    chaos["spec"]["selector"]["namespaces"] = json!(["shop", "kube-system"]);
    let (verdict, response) = validate(chaos);
    assert_eq!(verdict.denied_rules, vec!["policy-protected-namespace"]);
    assert!(
        message(&response)
            .contains("spec.selector.namespaces[1]: namespace \"kube-system\" is protected"),
        "{response}"
    );

    let mut chaos = pod_kill();
    chaos["spec"]["selector"] = json!({"pods": {"faultline-system": ["controller-0"]}});
    let (_, response) = validate(chaos);
    assert!(
        message(&response).contains("spec.selector.pods[\"faultline-system\"]: "),
        "{response}"
    );

    let mut chaos = delay(Some("5m"));
    chaos["spec"]["target"] = json!({"mode": "all", "selector": {"namespaces": ["kube-system"]}});
    let (_, response) = validate(chaos);
    assert!(
        message(&response)
            .contains("spec.target.selector.namespaces[0]: namespace \"kube-system\""),
        "{response}"
    );

    // Listed in the policy too, and the object's own namespace counts when none is given.
    let policy = Policy::from_yaml("protectedNamespaces: [shop]\n", "p").expect("policy");
    let mut chaos = pod_kill();
    chaos["spec"]["selector"] = json!({"labelSelectors": {"app": "cart"}});
    let (_, response) = validate_with(chaos, &policy, &opted_in(&["shop"]));
    assert!(
        message(&response).contains("spec.selector.namespaces: namespace \"shop\" is protected"),
        "{response}"
    );
}

#[test]
fn namespaces_must_opt_in() {
    let mut chaos = pod_kill();
    chaos["spec"]["selector"]["namespaces"] = json!(["shop", "payments"]);
    let (verdict, response) = validate(chaos.clone());
    assert_eq!(verdict.denied_rules, vec!["policy-namespace-not-opted-in"]);
    assert!(
        message(&response).contains("spec.selector.namespaces[1]: namespace \"payments\" is not labelled faultline.dev/chaos=enabled"),
        "{response}"
    );
    let policy = Policy::from_yaml("requireNamespaceOptIn: false\n", "p").expect("policy");
    let (verdict, _) = validate_with(chaos, &policy, &Unknown("no API".into()));
    assert_eq!(verdict.outcome, Outcome::Allowed);
}

#[test]
fn unknown_labels_deny_with_a_clear_message() {
    let (verdict, response) = validate_with(
        pod_kill(),
        &Policy::default(),
        &Unknown("the Kubernetes API cannot be read: connection refused".into()),
    );
    assert_eq!(
        verdict.denied_rules,
        vec!["policy-namespace-labels-unknown"]
    );
    let m = message(&response);
    assert!(m.contains("namespace labels are not known yet"), "{m}");
    assert!(m.contains("connection refused"), "{m}");
}

#[test]
fn max_duration_applies_to_experiments_that_last() {
    let (verdict, response) = validate(delay(None));
    assert_eq!(verdict.denied_rules, vec!["policy-max-duration"]);
    assert!(
        message(&response).contains("spec.duration: is required"),
        "{response}"
    );

    let (_, response) = validate(delay(Some("2h")));
    assert!(
        message(&response).contains("spec.duration: \"2h\" is longer than policy maxDuration 1h"),
        "{response}"
    );

    let (verdict, response) = validate(delay(Some("30m")));
    assert_eq!(verdict.outcome, Outcome::Allowed, "{response}");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| {
        w.as_str()
            .unwrap_or_default()
            .contains("network faults affect every container")
    }));

    // pod-kill does not last: no duration needed.
    let (verdict, _) = validate(pod_kill());
    assert_eq!(verdict.outcome, Outcome::Allowed);

    let policy = Policy::from_yaml("maxDuration: null\n", "p").expect("policy");
    let (verdict, _) = validate_with(delay(None), &policy, &opted_in(&["shop"]));
    assert_eq!(verdict.outcome, Outcome::Allowed);
}

#[test]
fn max_targets_is_enforced_where_the_spec_says_a_number() {
    let mut chaos = pod_kill();
    chaos["spec"]["mode"] = json!("fixed");
    chaos["spec"]["value"] = json!("500");
    let (verdict, response) = validate(chaos);
    assert_eq!(verdict.denied_rules, vec!["policy-max-targets"]);
    assert!(
        message(&response).contains("spec.value: 500 pods is more than policy maxTargets.pods 100"),
        "{response}"
    );

    let mut chaos = pod_kill();
    chaos["spec"]["mode"] = json!("random-max-percent");
    chaos["spec"]["value"] = json!("80");
    let (_, response) = validate(chaos);
    assert!(
        message(&response).contains("spec.value: 80% is more than policy maxTargets.percent 50%"),
        "{response}"
    );

    let mut chaos = pod_kill();
    chaos["spec"]["mode"] = json!("fixed-percent");
    chaos["spec"]["value"] = json!("50");
    assert_eq!(validate(chaos).0.outcome, Outcome::Allowed);
}

#[test]
fn allowed_actions_are_keyed_by_target_namespace() {
    let policy = Policy::from_yaml(
        "allowedActions: {shop: [PodChaos/pod-kill, NetworkChaos/*]}\n",
        "p",
    )
    .expect("policy");
    let labels = opted_in(&["shop", "batch"]);
    assert_eq!(
        validate_with(pod_kill(), &policy, &labels).0.outcome,
        Outcome::Allowed
    );
    assert_eq!(
        validate_with(delay(Some("1m")), &policy, &labels).0.outcome,
        Outcome::Allowed
    );
    let mut chaos = pod_kill();
    chaos["spec"]["action"] = json!("pod-failure");
    chaos["spec"]["duration"] = json!("1m");
    let (verdict, response) = validate_with(chaos.clone(), &policy, &labels);
    assert_eq!(verdict.denied_rules, vec!["policy-action-not-allowed"]);
    assert!(
        message(&response).contains("PodChaos/pod-failure is not allowed in namespace \"shop\""),
        "{response}"
    );
    // batch has no entry: unrestricted.
    chaos["metadata"]["namespace"] = json!("batch");
    chaos["spec"]["selector"]["namespaces"] = json!(["batch"]);
    assert_eq!(
        validate_with(chaos, &policy, &labels).0.outcome,
        Outcome::Allowed
    );
}

#[test]
fn every_violation_is_listed_with_its_path() {
    let mut chaos = delay(Some("2h"));
    chaos["spec"]["mode"] = json!("fixed");
    chaos["spec"]["selector"]["namespaces"] = json!(["kube-system"]);
    let (verdict, response) = validate(chaos);
    let m = message(&response);
    assert!(m.starts_with("NetworkChaos shop/slow-cart denied: "), "{m}");
    assert!(m.contains("spec.value: "), "{m}");
    assert!(m.contains("spec.selector.namespaces[0]: "), "{m}");
    assert!(m.contains("spec.duration: "), "{m}");
    assert!(
        verdict.denied_rules.len() >= 3,
        "{:?}",
        verdict.denied_rules
    );
    assert!(verdict.denied_rules.contains(&"policy-max-duration"));
    assert!(
        verdict.denied_rules.contains(&"value-required"),
        "{:?}",
        verdict.denied_rules
    );
}

#[test]
fn update_may_not_change_spec() {
    let old = pod_kill();
    let mut new = old.clone();
    new["metadata"]["annotations"] = json!({"faultline.dev/pause": "true"});
    new["status"] = json!({"conditions": []});
    let r = decode(&common::chaos_review("UPDATE", new.clone(), old.clone()));
    // Halt and unknown labels do not block updates that keep the spec (finalizers, pause).
    let halt = Policy::from_yaml("halt: true\n", "p").expect("policy");
    assert_eq!(
        admission::validate(&r, &halt, &Unknown("x".into())).outcome,
        Outcome::Allowed
    );

    new["spec"]["mode"] = json!("all");
    let r = decode(&common::chaos_review("UPDATE", new, old));
    let verdict = admission::validate(&r, &Policy::default(), &opted_in(&["shop"]));
    assert_eq!(verdict.denied_rules, vec!["spec-immutable"]);
    assert!(
        verdict
            .response
            .result
            .message
            .starts_with("spec: cannot be changed")
    );
}

#[test]
fn an_unreadable_object_can_still_be_updated_when_its_spec_is_kept() {
    // Made under another schema: this version cannot parse it, but finalizer removal must pass.
    let mut old = pod_kill();
    old["spec"]["action"] = json!("pod-explode");
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!([]);
    let r = decode(&common::chaos_review("UPDATE", new.clone(), old.clone()));
    let verdict = admission::validate(&r, &Policy::default(), &opted_in(&["shop"]));
    assert_eq!(verdict.outcome, Outcome::Allowed);
    // Changing it is still checked (and here, unreadable).
    new["spec"]["mode"] = json!("all");
    let r = decode(&common::chaos_review("UPDATE", new, old));
    let verdict = admission::validate(&r, &Policy::default(), &opted_in(&["shop"]));
    assert_eq!(verdict.outcome, Outcome::Denied);
}

#[test]
fn bad_objects_are_denied_with_a_reason() {
    // Unknown kind in our group.
    let mut chaos = pod_kill();
    chaos["kind"] = json!("TimeChaos");
    let (verdict, response) = validate(chaos);
    assert_eq!(verdict.denied_rules, vec!["unknown-kind"]);
    assert!(message(&response).contains("TimeChaos"), "{response}");

    // A field of the wrong type or value: path named.
    let mut chaos = pod_kill();
    chaos["spec"]["action"] = json!("explode");
    let (verdict, response) = validate(chaos);
    assert_eq!(verdict.denied_rules, vec!["unknown-value"]);
    assert!(
        message(&response).contains("spec.action: `explode` is not one of pod-kill"),
        "{response}"
    );

    // An object that is not JSON an object can be read from at all.
    let mut r = common::chaos_review("CREATE", pod_kill(), Value::Null);
    r["request"]["object"]["metadata"] = json!({"labels": "app=x"});
    let verdict = admission::validate(&decode(&r), &Policy::default(), &opted_in(&["shop"]));
    assert_eq!(verdict.denied_rules, vec!["malformed"]);
    assert!(
        verdict.response.result.message.contains("metadata.labels"),
        "{}",
        verdict.response.result.message
    );

    // No object.
    let mut r = common::chaos_review("CREATE", pod_kill(), Value::Null);
    r["request"]
        .as_object_mut()
        .expect("request")
        .remove("object");
    let verdict = admission::validate(&decode(&r), &Policy::default(), &opted_in(&["shop"]));
    assert_eq!(verdict.denied_rules, vec!["missing-object"]);

    // A pod sent to /validate.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let verdict = admission::validate(
        &decode(&common::pod_review(pod)),
        &Policy::default(),
        &opted_in(&[]),
    );
    assert_eq!(verdict.denied_rules, vec!["unsupported-kind"]);
}

#[test]
fn delete_is_allowed() {
    let r = decode(&common::chaos_review("DELETE", Value::Null, pod_kill()));
    assert_eq!(
        admission::validate(&r, &Policy::default(), &Unknown("x".into())).outcome,
        Outcome::Allowed
    );
}

fn default(object: Value) -> (Verdict, Option<Value>) {
    let r = decode(&common::chaos_review("CREATE", object.clone(), Value::Null));
    let verdict = admission::default(&r);
    let response = common::response(&review::encode(verdict.response.clone()));
    let patched = common::patch_of(&response).map(|patch| {
        let mut doc = object.clone();
        json_patch::patch(&mut doc, &patch).expect("patch applies");
        doc
    });
    (verdict, patched)
}

#[test]
fn default_fills_namespaces_direction_and_percent() {
    let mut chaos = delay(Some("1m"));
    chaos["spec"]["selector"] = json!({"labelSelectors": {"app": "cart"}});
    chaos["spec"]["target"] = json!({"mode": "all", "selector": {"labelSelectors": {"app": "db"}}});
    let (verdict, patched) = default(chaos);
    assert_eq!(verdict.outcome, Outcome::Patched);
    let patched = patched.expect("patch");
    assert_eq!(patched["spec"]["selector"]["namespaces"], json!(["shop"]));
    assert_eq!(
        patched["spec"]["target"]["selector"]["namespaces"],
        json!(["shop"])
    );
    assert_eq!(patched["spec"]["direction"], "to");
    assert_eq!(
        patched["spec"]["selector"]["labelSelectors"],
        json!({"app": "cart"})
    );
    // Defaulting twice changes nothing.
    assert_eq!(default(patched).0.outcome, Outcome::Allowed);

    let io = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "IOChaos",
        "metadata": {"name": "slow-disk", "namespace": "batch"},
        "spec": {"action": "latency", "mode": "one", "volumePath": "/data", "delay": "10ms", "duration": "1m",
                 "selector": {"labelSelectors": {"app": "db"}}}
    });
    let patched = default(io).1.expect("patch");
    assert_eq!(patched["spec"]["percent"], 100);
    assert_eq!(patched["spec"]["selector"]["namespaces"], json!(["batch"]));
}

#[test]
fn default_never_overrides_user_values() {
    let mut chaos = delay(Some("1m"));
    chaos["spec"]["direction"] = json!("both");
    let (verdict, _) = default(chaos);
    assert_eq!(verdict.outcome, Outcome::Allowed, "nothing to fill");
}

/// Every rule the webhook applies itself is documented, under its metric name.
#[test]
fn every_webhook_rule_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhook.md"))
        .expect("docs/webhook.md");
    for rule in faultline_webhook::admission::WebhookRule::ALL {
        assert!(
            doc.contains(&format!("`{}`", rule.name())),
            "docs/webhook.md does not name `{}`",
            rule.name()
        );
    }
}
