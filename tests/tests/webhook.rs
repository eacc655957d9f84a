//! The real `faultline-webhook` binary behind the real API server: the server calls it over TLS
//! through webhook configurations, applies its JSON Patches, re-validates the patched pods, and
//! shows its denials to clients.

use std::path::{Path, PathBuf};

use faultline_e2e::webhook::{
    self, CHAOS_LABEL, INJECTION_LABEL, Options, Webhook, injected, opted_in_pod,
};
use faultline_e2e::{TestEnv, chaos_api, contains, root, setup};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The CRDs, a webhook with `options`, its configurations, and the test namespace opted in to
/// injection and chaos; returns once the API server calls the webhook for both.
async fn with_webhook(env: &TestEnv, options: &Options) -> Webhook {
    env.install_crds().await;
    env.label_namespace(&env.namespace, &[INJECTION_LABEL, CHAOS_LABEL])
        .await;
    let webhook = Webhook::start(env, options).await;
    webhook.register(env).await;
    webhook::wait_for_injection(env, &env.namespace).await;
    webhook::wait_for_validation(env, &env.namespace).await;
    webhook
}

fn fixtures_dir() -> PathBuf {
    root().join("webhook/tests/fixtures")
}

/// The pod cases of webhook/tests/fixtures: (case, input pod, golden answer, template).
fn pod_fixtures() -> Vec<(String, Value, Value, Option<String>)> {
    let dir = fixtures_dir();
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            let case = name.strip_suffix(".yaml")?;
            (!case.ends_with(".injected") && !case.ends_with(".template")).then(|| case.to_owned())
        })
        .collect();
    cases.sort();
    cases
        .into_iter()
        .map(|case| {
            let read = |suffix: &str| std::fs::read_to_string(dir.join(format!("{case}{suffix}")));
            let pod: Value = serde_yaml::from_str(&read(".yaml").expect("input")).expect("YAML");
            let golden: Value =
                serde_yaml::from_str(&read(".injected.yaml").expect("golden")).expect("YAML");
            let template = read(".template.yaml").ok();
            (case, pod, golden, template)
        })
        .collect()
}

/// `value` with every string `from` replaced by `to` (the fixtures' namespace is `shop`).
fn renamespace(value: &Value, from: &str, to: &str) -> Value {
    let text = serde_json::to_string(value).expect("json");
    serde_json::from_str(
        &text
            .replace(&format!("\"{from}\""), &format!("\"{to}\""))
            .replace(&format!("pod {from}/"), &format!("pod {to}/")),
    )
    .expect("json")
}

/// Fixture inputs that are not valid pods, so the API server refuses them before any webhook
/// runs: (case, what the API server says). A finding for webhook/tests/fixtures; when the
/// fixture is fixed, this test says so and the entry goes.
const INVALID_INPUTS: &[(&str, &str)] = &[(
    "annotations-with-slash",
    // `~` is not allowed in an annotation key: the fixture exercises JSON-pointer escaping with
    // a key Kubernetes never sends.
    "metadata.annotations: Invalid value: \"example.com/weird~key\"",
)];

/// Creates each fixture pod through the API server, each in its own namespace opted in to
/// injection, and checks what it stored against the golden answer of the webhook's unit tests:
/// the golden pod (or the input, when the golden has no patch) must be contained in the stored
/// pod, which also holds the API server's defaults and its ServiceAccount token volume.
async fn run_fixtures(
    env: &TestEnv,
    cases: &[(String, Value, Value, Option<String>)],
) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    let mut placed = Vec::new();
    for (case, input, golden, _) in cases {
        let from = input["metadata"]["namespace"].as_str().unwrap_or("default");
        let namespace = env.extra_namespace(case, &[INJECTION_LABEL]).await;
        webhook::wait_for_injection(env, &namespace).await;
        placed.push((case.clone(), namespace.clone()));
        let input = renamespace(input, from, &namespace);
        let golden = renamespace(golden, from, &namespace);
        let expected = if golden["pod"].is_null() {
            &input
        } else {
            &golden["pod"]
        };
        let pods = Api::<Pod>::namespaced(env.client.clone(), &namespace);
        let pod: Pod = serde_json::from_value(input.clone()).expect("pod");
        let invalid = INVALID_INPUTS
            .iter()
            .find(|(c, _)| c == case)
            .map(|(_, m)| *m);
        match (
            pods.create(&PostParams::default(), &pod).await,
            golden["allowed"].as_bool(),
        ) {
            (Err(kube::Error::Api(e)), _) if invalid.is_some_and(|m| e.message.contains(m)) => {
                eprintln!(
                    "note: {case}: the fixture is not a valid pod: {}",
                    e.message
                );
            }
            (Ok(_), _) if invalid.is_some() => failures.push(format!(
                "{case}: now accepted: remove it from INVALID_INPUTS"
            )),
            (Ok(stored), Some(true)) => {
                let stored = serde_json::to_value(stored).expect("json");
                if let Err(diff) = contains(&stored, expected) {
                    failures.push(format!(
                        "{case}: the stored pod differs from the golden: {diff}"
                    ));
                }
            }
            (Err(kube::Error::Api(e)), Some(false)) => {
                // The golden lists the pod's volumes; the API server added its token volume.
                let message = golden["message"].as_str().unwrap_or_default();
                let want = message
                    .split(" (spec.volumes has:")
                    .next()
                    .unwrap_or_default();
                if !e.message.contains(want) {
                    failures.push(format!(
                        "{case}: refused with {:?}, expected {want:?}",
                        e.message
                    ));
                }
            }
            (Ok(_), _) => failures.push(format!("{case}: created, the golden says denied")),
            (Err(e), _) => failures.push(format!("{case}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pod_fixture_goes_through_the_real_api_server() {
    let Some(env) = setup("pod_fixtures").await else {
        return;
    };
    let cases: Vec<_> = pod_fixtures()
        .into_iter()
        .filter(|c| c.3.is_none())
        .collect();
    assert!(cases.len() >= 10, "{} cases", cases.len());
    let _webhook = with_webhook(&env, &Options::default()).await;
    let placed = run_fixtures(&env, &cases).await;
    // Native mode: the sidecar is an init container that keeps running.
    let bare_input = &cases
        .iter()
        .find(|c| c.0 == "bare-pod")
        .expect("bare-pod")
        .1;
    let bare = fixture_pod(&env, &placed, "bare-pod", bare_input).await;
    let init = &bare
        .spec
        .expect("spec")
        .init_containers
        .expect("init containers")[0];
    assert_eq!(init.name, "faultline-sidecar");
    assert_eq!(init.restart_policy.as_deref(), Some("Always"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_with_their_own_template_legacy_mode() {
    let Some(env) = setup("fixtures_with_their_own_template_legacy_mode").await else {
        return;
    };
    let cases: Vec<_> = pod_fixtures()
        .into_iter()
        .filter(|c| c.3.is_some())
        .collect();
    assert!(
        cases.iter().any(|c| c.0 == "legacy-mode"),
        "no legacy-mode fixture"
    );
    let mut placed = Vec::new();
    for case in &cases {
        let options = Options {
            injection: case.3.clone(),
            ..Options::default()
        };
        let mut webhook = with_webhook(&env, &options).await;
        placed.extend(run_fixtures(&env, std::slice::from_ref(case)).await);
        webhook.stop();
        // Each case registers its own configurations: drop these before the next.
        delete_configurations(&env).await;
    }
    // Legacy mode: the sidecar is the first app container, with a postStart hook.
    let legacy = cases.iter().find(|c| c.0 == "legacy-mode").expect("legacy");
    let pod = fixture_pod(&env, &placed, "legacy-mode", &legacy.1).await;
    let first = &pod.spec.expect("spec").containers[0];
    assert_eq!(first.name, "faultline-sidecar");
    assert!(
        first
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .is_some()
    );
}

/// The pod of fixture `case`, from the namespace [`run_fixtures`] created it in.
async fn fixture_pod(
    env: &TestEnv,
    placed: &[(String, String)],
    case: &str,
    fixture: &Value,
) -> Pod {
    let (_, namespace) = placed.iter().find(|(c, _)| c == case).expect("case ran");
    let name = fixture["metadata"]["name"].as_str().expect("name");
    Api::<Pod>::namespaced(env.client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{case}: {namespace}/{name}: {e}"))
}

async fn delete_configurations(env: &TestEnv) {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    let dp = DeleteParams::default();
    let _ = Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .delete(&format!("{}-mutate", env.namespace), &dp)
        .await;
    let _ = Api::<ValidatingWebhookConfiguration>::all(env.client.clone())
        .delete(&format!("{}-validate", env.namespace), &dp)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_not_opted_in_are_untouched() {
    let Some(env) = setup("pods_not_opted_in_are_untouched").await else {
        return;
    };
    let _webhook = with_webhook(&env, &Options::default()).await;
    // A labelled pod in a namespace that did not opt in: not sent to the webhook at all.
    let other = env.extra_namespace("plain", &[]).await;
    let stored = Api::<Pod>::namespaced(env.client.clone(), &other)
        .create(&PostParams::default(), &opted_in_pod("labelled"))
        .await
        .expect("create");
    assert!(!injected(&stored));
    // An unlabelled pod in an opted-in namespace: the webhook sees it and leaves it alone.
    let mut pod = opted_in_pod("unlabelled");
    pod.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
    let stored = Api::<Pod>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    assert!(!injected(&stored));
    let spec = stored.spec.expect("spec");
    assert!(spec.init_containers.is_none_or(|c| c.is_empty()));
    assert_eq!(spec.containers.len(), 1);
}

/// A NetworkChaos with three violations the schema allows: `mode: fixed` without `value`, a
/// protected target namespace, a duration above the policy's 1 h.
fn bad_network_chaos(namespace: &str) -> Value {
    json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": "slow-cart", "namespace": namespace},
        "spec": {
            "action": "delay", "mode": "fixed",
            "selector": {"namespaces": ["kube-system"], "labelSelectors": {"app": "cart"}},
            "delay": {"latency": "100ms"},
            "duration": "2h"
        }
    })
}

const VIOLATIONS: [&str; 3] = ["spec.value", "spec.selector.namespaces[0]", "spec.duration"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chaos_is_refused_with_every_violation() {
    let Some(env) = setup("bad_chaos_is_refused_with_every_violation").await else {
        return;
    };
    let _webhook = with_webhook(&env, &Options::default()).await;
    let bad = bad_network_chaos(&env.namespace);
    let typed: DynamicObject = serde_json::from_value(bad.clone()).expect("object");
    let err = chaos_api(&env.client, &env.namespace, "NetworkChaos")
        .create(&PostParams::default(), &typed)
        .await
        .expect_err("refused");
    let kube::Error::Api(err) = err else {
        panic!("not an API answer: {err}")
    };
    assert_eq!(err.code, 403, "{err:?}");
    assert!(
        err.message.contains("denied the request"),
        "{}",
        err.message
    );
    for path in VIOLATIONS {
        assert!(err.message.contains(path), "{path} not in {}", err.message);
    }
    // What a user sees from kubectl apply.
    let (ok, _, stderr) = env.kubectl(&["apply", "-f", "-"], Some(&bad.to_string()));
    assert!(!ok, "kubectl apply succeeded");
    for path in VIOLATIONS {
        assert!(
            stderr.contains(path),
            "kubectl apply: {path} not in {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_updates_are_refused_and_finalizers_can_be_removed() {
    let Some(env) = setup("spec_updates_are_refused_and_finalizers_can_be_removed").await else {
        return;
    };
    let _webhook = with_webhook(&env, &Options::default()).await;
    let api = chaos_api(&env.client, &env.namespace, "PodChaos");
    let chaos: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "kill-cart", "finalizers": ["chaos.faultline.dev/records"]},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "cart"}}}
    }))
    .expect("object");
    let stored = api
        .create(&PostParams::default(), &chaos)
        .await
        .expect("create");
    // /default filled the selector's namespace.
    let stored_json = serde_json::to_value(&stored).expect("json");
    assert_eq!(
        stored_json["spec"]["selector"]["namespaces"],
        json!([env.namespace]),
        "{stored_json}"
    );
    let err = api
        .patch(
            "kill-cart",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "all"}})),
        )
        .await
        .expect_err("a spec change is refused");
    assert!(err.to_string().contains("spec"), "{err}");
    // Metadata changes are updates that keep the spec: allowed.
    api.patch(
        "kill-cart",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"faultline.dev/pause": "true"}}})),
    )
    .await
    .expect("an annotation may change");
    // Deleting waits for the finalizer; removing it completes the deletion.
    api.delete("kill-cart", &DeleteParams::default())
        .await
        .expect("delete");
    let pending = api.get("kill-cart").await.expect("still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    api.patch(
        "kill-cart",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("the finalizer can be removed");
    faultline_e2e::wait_for("kill-cart to be gone", || async {
        api.get_opt("kill-cart").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_stopped_chaos_fails_closed_and_other_pods_are_created() {
    let Some(env) = setup("webhook_stopped_fails_closed").await else {
        return;
    };
    let mut webhook = with_webhook(&env, &Options::default()).await;
    let plain = env.extra_namespace("plain", &[]).await;
    webhook.stop();
    let chaos: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "kill-cart"},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "cart"}}}
    }))
    .expect("object");
    let err = chaos_api(&env.client, &env.namespace, "PodChaos")
        .create(&PostParams::default(), &chaos)
        .await
        .expect_err("no webhook: refused");
    assert!(err.to_string().contains("failed calling webhook"), "{err}");
    // Pods of an opted-in namespace cannot be created either (failurePolicy Fail)...
    let err = Api::<Pod>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &opted_in_pod("blocked"))
        .await
        .expect_err("opted-in pods need the webhook");
    assert!(err.to_string().contains("failed calling webhook"), "{err}");
    // ...but pods elsewhere are not sent to it, and are created.
    Api::<Pod>::namespaced(env.client.clone(), &plain)
        .create(&PostParams::default(), &opted_in_pod("free"))
        .await
        .expect("a pod outside opted-in namespaces is created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_cache_sees_a_label_added_without_a_restart() {
    let Some(env) = setup("namespace_cache_sees_a_label").await else {
        return;
    };
    let _webhook = with_webhook(&env, &Options::default()).await;
    let late = env.extra_namespace("late", &[]).await;
    let pods = Api::<Pod>::namespaced(env.client.clone(), &late);
    let before = pods
        .create(&PostParams::default(), &opted_in_pod("before"))
        .await
        .expect("create");
    assert!(!injected(&before));
    env.label_namespace(&late, &[INJECTION_LABEL]).await;
    let mut n = 0;
    faultline_e2e::wait_for("injection in the newly labelled namespace", || {
        n += 1;
        let pods = pods.clone();
        async move {
            let pod = pods
                .create(&PostParams::default(), &opted_in_pod(&format!("after-{n}")))
                .await
                .ok()?;
            injected(&pod).then_some(())
        }
    })
    .await;
    // Chaos too: a namespace labelled later becomes a valid target.
    let target = env.extra_namespace("target", &[]).await;
    let chaos = |name: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
            "metadata": {"name": name},
            "spec": {"action": "pod-kill", "mode": "one",
                     "selector": {"namespaces": [target], "labelSelectors": {"app": "cart"}}}
        }))
        .expect("object")
    };
    let api = chaos_api(&env.client, &env.namespace, "PodChaos");
    let err = api
        .create(&PostParams::default(), &chaos("early"))
        .await
        .expect_err("target not opted in");
    assert!(err.to_string().contains("faultline.dev/chaos"), "{err}");
    env.label_namespace(&target, &[CHAOS_LABEL]).await;
    let mut n = 0;
    faultline_e2e::wait_for("chaos allowed in the newly labelled target", || {
        n += 1;
        let api = api.clone();
        let object = chaos(&format!("late-{n}"));
        async move {
            api.create(&PostParams::default(), &object)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}

#[test]
fn fixture_discovery_finds_the_goldens() {
    let cases = pod_fixtures();
    assert!(cases.len() >= 12, "{}", cases.len());
    assert!(
        Path::new(&fixtures_dir())
            .join("bare-pod.injected.yaml")
            .is_file()
    );
    for (case, _, golden, _) in &cases {
        assert!(golden["allowed"].is_boolean(), "{case}");
    }
}
