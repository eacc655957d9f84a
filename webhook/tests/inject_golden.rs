//! Golden fixtures for `/inject`: `tests/fixtures/<case>.yaml` (a Pod, optionally with
//! `<case>.template.yaml`) → `<case>.injected.yaml` (the answer: allowed, warnings, message,
//! patch, resulting pod). `FAULTLINE_REGENERATE_GOLDEN=1 cargo test -p faultline-webhook --test
//! inject_golden` rewrites them; otherwise a difference (or a golden without input) fails.
//!
//! For every case: the input and the result deserialize as k8s-openapi Pods, the answer is a
//! real AdmissionReview, the patch applies with json-patch, the result has exactly one sidecar
//! whose status annotation reads back, re-injecting it yields no patch, and the patch only adds
//! or replaces scalars (never a whole list or map it did not create, never a removal).

mod common;

use std::path::{Path, PathBuf};

use faultline_webhook::inject::{self, SidecarStatus, Template};
use faultline_webhook::review;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.ends_with(".yaml") && !n.ends_with(".injected.yaml") && !n.ends_with(".template.yaml")
        })
        .map(|n| n.trim_end_matches(".yaml").to_owned())
        .collect();
    cases.sort();
    cases
}

fn template(case: &str) -> Template {
    let path = fixtures().join(format!("{case}.template.yaml"));
    if path.exists() {
        Template::load(&path).expect("template")
    } else {
        Template::default()
    }
}

fn answer(pod: &Value, template: &Template) -> Value {
    let body = serde_json::to_vec(&common::pod_review(pod.clone())).expect("review json");
    let review = review::decode(&body).expect("decode");
    let namespace = review.request.namespace.clone().unwrap_or_default();
    let verdict = inject::handle(
        &review,
        template,
        &common::injection_enabled(&namespace),
        &faultline_webhook::policy::Policy::default(),
    );
    common::response(&review::encode(verdict.response))
}

fn check_patch_is_minimal(case: &str, patch: &json_patch::Patch) {
    for op in &patch.0 {
        match op {
            json_patch::PatchOperation::Add(_) => {}
            json_patch::PatchOperation::Replace(r) => assert!(
                !r.value.is_array() && !r.value.is_object(),
                "{case}: replaces a whole list or map at {}",
                r.path
            ),
            other => panic!("{case}: unexpected operation {other:?}"),
        }
    }
}

fn run_case(case: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join(format!("{case}.yaml"))).expect("fixture");
    let pod: Value = serde_yaml::from_str(&text).expect("fixture is YAML");
    let typed: Pod = serde_json::from_value(pod.clone())
        .unwrap_or_else(|e| panic!("{case}: the input is not a Pod: {e}"));
    if let Some(text) = typed
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(inject::STATUS_ANNOTATION))
    {
        SidecarStatus::parse(text)
            .unwrap_or_else(|e| panic!("{case}: the status annotation does not read: {e}"));
    }
    let template = template(case);
    let response = answer(&pod, &template);
    assert_eq!(
        response["uid"], "3f1c2b7e-93b1-4a8e-9a33-2b9d1b9c0e5a",
        "{case}: uid echoed"
    );
    let allowed = response["allowed"].as_bool().expect("allowed");
    let mut golden = json!({ "allowed": allowed });
    if let Some(w) = response.get("warnings") {
        golden["warnings"] = w.clone();
    }
    if !allowed {
        golden["message"] = response["status"]["message"].clone();
        assert!(common::patch_of(&response).is_none());
    }
    if let Some(a) = response.get("auditAnnotations") {
        golden["auditAnnotations"] = a.clone();
    }
    if let Some(patch) = common::patch_of(&response) {
        check_patch_is_minimal(case, &patch);
        let mut result = pod.clone();
        json_patch::patch(&mut result, &patch).unwrap_or_else(|e| panic!("{case}: patch: {e}"));
        let typed: Pod = serde_json::from_value(result.clone())
            .unwrap_or_else(|e| panic!("{case}: result is not a Pod: {e}"));
        assert!(inject::already_injected(&typed), "{case}");
        let spec = typed.spec.as_ref().expect("spec");
        let sidecars = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter(|c| c.name.starts_with(inject::SIDECAR_NAME))
            .count();
        assert_eq!(sidecars, 1, "{case}: one sidecar per pod");
        let status = typed
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(inject::STATUS_ANNOTATION))
            .map(|text| SidecarStatus::parse(text).expect("status annotation"))
            .expect("status annotation");
        for v in &status.volumes {
            assert_eq!(
                status.endpoint(&v.volume),
                Some((inject::SIDECAR_NAME, template.rpc_port)),
                "{case}"
            );
        }
        let again = answer(&result, &template);
        assert_eq!(again["allowed"], true, "{case}: re-injection allowed");
        assert!(
            common::patch_of(&again).is_none(),
            "{case}: re-injection must yield no patch"
        );
        golden["patch"] = serde_json::to_value(&patch).expect("patch json");
        golden["pod"] = result;
    }
    serde_yaml::to_string(&golden).expect("golden yaml")
}

#[test]
fn golden_fixtures() {
    let regenerate = std::env::var_os("FAULTLINE_REGENERATE_GOLDEN").is_some();
    let cases = cases();
    assert!(cases.len() >= 12, "fixtures missing: {cases:?}");
    let mut stale = Vec::new();
    for case in &cases {
        let got = run_case(case);
        let path = fixtures().join(format!("{case}.injected.yaml"));
        if regenerate {
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != got {
            stale.push(case.clone());
            eprintln!("--- {case}: golden differs; got:\n{got}");
        }
    }
    // A golden without its input is stale too.
    for entry in std::fs::read_dir(fixtures()).expect("fixtures dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if let Some(case) = name.strip_suffix(".injected.yaml")
            && !cases.iter().any(|c| c == case)
        {
            stale.push(format!("{case} (no input)"));
        }
    }
    assert!(
        stale.is_empty(),
        "stale goldens (FAULTLINE_REGENERATE_GOLDEN=1 to rewrite after review): {stale:?}"
    );
}

fn handle(review: &Value) -> faultline_webhook::Verdict {
    let body = serde_json::to_vec(review).expect("json");
    let review = review::decode(&body).expect("decode");
    let namespace = review.request.namespace.clone().unwrap_or_default();
    inject::handle(
        &review,
        &Template::default(),
        &common::injection_enabled(&namespace),
        &faultline_webhook::policy::Policy::default(),
    )
}

fn bare_pod() -> Value {
    let text = std::fs::read_to_string(fixtures().join("bare-pod.yaml")).expect("fixture");
    serde_yaml::from_str(&text).expect("yaml")
}

/// The earlier shape (a sidecar per volume) is recognised as injected and its annotation reads
/// back with each volume's own sidecar and port.
#[test]
fn pods_of_the_earlier_shape_are_left_alone() {
    let text =
        std::fs::read_to_string(fixtures().join("earlier-shape-injected.yaml")).expect("fixture");
    let pod: Value = serde_yaml::from_str(&text).expect("yaml");
    let typed: Pod = serde_json::from_value(pod.clone()).expect("pod");
    assert!(inject::already_injected(&typed));
    let status = SidecarStatus::parse(
        &typed.metadata.annotations.as_ref().expect("annotations")[inject::STATUS_ANNOTATION],
    )
    .expect("annotation");
    assert!(status.per_volume());
    assert_eq!(
        status.endpoint("index"),
        Some(("faultline-sidecar-2", 65534))
    );
    assert_eq!(
        status.volume("/logs").map(|v| v.volume.as_str()),
        Ok("logs")
    );
    // Without the annotation too: its sidecars say it.
    let mut bare = pod;
    bare["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove(inject::STATUS_ANNOTATION);
    let response = answer(&bare, &Template::default());
    assert_eq!(response["allowed"], true);
    assert!(common::patch_of(&response).is_none());
}

#[test]
fn dry_run_is_patched_but_not_counted() {
    let mut r = common::pod_review(bare_pod());
    r["request"]["dryRun"] = json!(true);
    let verdict = handle(&r);
    assert_eq!(verdict.outcome, faultline_webhook::Outcome::Patched);
    assert_eq!(verdict.injected_volumes, 0);
    let verdict = handle(&common::pod_review(bare_pod()));
    assert_eq!(verdict.injected_volumes, 1);
}

#[test]
fn a_pod_that_does_not_parse_is_denied_with_the_field() {
    let mut pod = bare_pod();
    pod["spec"]["containers"][0]["ports"] = json!("eighty");
    let verdict = handle(&common::pod_review(pod));
    assert_eq!(verdict.outcome, faultline_webhook::Outcome::Denied);
    let message = &verdict.response.result.message;
    assert!(
        message.starts_with("request.object is not a valid Pod: spec.containers[0].ports: "),
        "{message}"
    );
}

#[test]
fn only_pod_creates_are_mutated() {
    let mut r = common::pod_review(bare_pod());
    r["request"]["operation"] = json!("UPDATE");
    r["request"]["oldObject"] = r["request"]["object"].clone();
    assert_eq!(handle(&r).outcome, faultline_webhook::Outcome::Allowed);

    let mut r = common::pod_review(bare_pod());
    r["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let verdict = handle(&r);
    assert_eq!(verdict.denied_rules, vec!["inject-wrong-kind"]);

    let mut r = common::pod_review(bare_pod());
    r["request"]
        .as_object_mut()
        .expect("request")
        .remove("object");
    assert_eq!(handle(&r).denied_rules, vec!["inject-no-object"]);
}

#[test]
fn reserved_names_are_denied() {
    let mut pod = bare_pod();
    pod["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "faultline-fuse-x", "emptyDir": {}}));
    let verdict = handle(&common::pod_review(pod));
    assert_eq!(verdict.denied_rules, vec!["inject-reserved-name"]);
    assert!(
        verdict
            .response
            .result
            .message
            .contains("spec.volumes[1].name")
    );
}

/// The webhook checks opt-in itself, whatever the webhook configuration's selectors: a pod
/// without `faultline.dev/inject: "true"`, or in a namespace without
/// `faultline.dev/injection=enabled`, is allowed unchanged with the reason as a warning.
#[test]
fn pods_that_did_not_opt_in_are_untouched() {
    let mut cases = Vec::new();
    for label in [None, Some("false"), Some("TRUE")] {
        let mut pod = bare_pod();
        let labels = pod["metadata"]["labels"].as_object_mut().expect("labels");
        match label {
            Some(v) => labels.insert("faultline.dev/inject".into(), json!(v)),
            None => labels.remove("faultline.dev/inject"),
        };
        cases.push((
            format!("pod label {label:?}"),
            pod,
            "shop",
            "not labelled faultline.dev/inject",
        ));
    }
    cases.push((
        "namespace not opted in".to_owned(),
        bare_pod(),
        "payments",
        "namespace \"shop\" is not labelled faultline.dev/injection=enabled",
    ));
    for (name, pod, enabled_namespace, reason) in cases {
        let body = serde_json::to_vec(&common::pod_review(pod)).expect("json");
        let review = review::decode(&body).expect("decode");
        let verdict = inject::handle(
            &review,
            &Template::default(),
            &common::injection_enabled(enabled_namespace),
            &faultline_webhook::policy::Policy::default(),
        );
        assert_eq!(
            verdict.outcome,
            faultline_webhook::Outcome::Allowed,
            "{name}"
        );
        assert!(verdict.response.patch.is_none(), "{name}: patched");
        let warnings = verdict.response.warnings.unwrap_or_default();
        assert!(
            warnings.iter().any(|w| w.contains(reason)),
            "{name}: {warnings:?}"
        );
    }
}
