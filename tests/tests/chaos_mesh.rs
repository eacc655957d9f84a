//! Chaos Mesh YAML against the real API server: the CRDs refuse on their own what their schema
//! forbids (required fields, bounds, patterns, enums, unknown fields under kubectl's strict
//! field validation) while the webhook, asked directly, still names every violation of the same
//! objects; and the representative Chaos Mesh shapes of `api/tests/fixtures/chaos-mesh` are
//! admitted through the API server and the real webhook, with the warnings Faultline owes.

use std::path::Path;

use faultline_e2e::webhook::{CHAOS_LABEL, Options, Webhook};
use faultline_e2e::{TestEnv, chaos_api, root, setup};
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

/// Objects the schema forbids: (what, object, what the API server's 422 names, what the webhook
/// names when it is asked directly — every violation, the schema's and the rest).
fn schema_cases() -> Vec<(&'static str, Value, Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            "network chaos missing what Chaos Mesh's CRD requires too",
            json!({"kind": "NetworkChaos", "spec": {
                "action": "delay", "mode": "one",
                "delay": {"jitter": "1ms", "reorder": {"reorder": "10"}, "correlation": "250"},
                "bandwidth": {"rate": "1mbit", "limit": 0, "buffer": 10},
                "target": {"selector": {"namespaces": ["db"]}}
            }}),
            vec![
                "spec.selector: Required value",
                "spec.delay.latency: Required value",
                "spec.delay.reorder.gap: Required value",
                "spec.bandwidth.limit: Invalid value: 0",
                "spec.target.mode: Required value",
            ],
            vec![
                "spec.selector: is required",
                "spec.delay.latency: is required",
                "spec.delay.reorder.gap: is required",
                "spec.bandwidth.limit: 0 is out of range",
                "spec.target.mode: is required",
                "spec.delay.correlation: `250` must be a percentage",
            ],
        ),
        (
            "stress chaos out of bounds",
            json!({"kind": "StressChaos", "spec": {
                "mode": "one", "selector": {"labelSelectors": {"app": "x"}},
                "stressors": {"cpu": {"workers": 0, "load": 101},
                              "memory": {"size": "1GB", "oomScoreAdj": 2000}},
                "duration": "forever"
            }}),
            vec![
                "spec.stressors.cpu.workers: Invalid value: 0",
                "spec.stressors.cpu.load: Invalid value: 101",
                "spec.stressors.memory.workers: Required value",
                "spec.stressors.memory.oomScoreAdj: Invalid value: 2000",
                "spec.duration: Invalid value: \"forever\"",
            ],
            vec![
                "spec.stressors.cpu.workers: 0 is out of range",
                "spec.stressors.cpu.load: 101 is out of range",
                "spec.stressors.memory.workers: is required",
                "spec.stressors.memory.oomScoreAdj: 2000 is out of range",
                "spec.duration: `forever` is not a duration",
            ],
        ),
        (
            "pod and io chaos with wrong types and values",
            json!({"kind": "IOChaos", "spec": {
                "action": "fault", "mode": "some", "selector": {"labelSelectors": {"app": "x"}},
                "errno": "EIO", "percent": 101,
                "attr": {"atime": {"sec": 1}}
            }}),
            vec![
                "spec.mode: Unsupported value: \"some\"",
                "spec.errno: Invalid value: \"string\"",
                "spec.percent: Invalid value: 101",
                "spec.volumePath: Required value",
                "spec.attr.atime.nsec: Required value",
            ],
            vec![
                "spec.mode: `some` is not one of",
                "spec.errno: must be a whole number, not the string \"EIO\"",
                "spec.percent: 101 is out of range",
                "spec.volumePath: is required",
                "spec.attr.atime.nsec: is required",
            ],
        ),
    ]
}

/// `object` completed into a chaos object named `name` in the test's namespace.
fn complete(env: &TestEnv, name: &str, mut object: Value) -> Value {
    object["apiVersion"] = json!("chaos.faultline.dev/v1alpha1");
    object["metadata"] = json!({"name": name, "namespace": env.namespace});
    object
}

/// `/validate` of the real webhook for a CREATE of `object`, asked directly (as the API server
/// would ask it if the schema let the object through): the denial message, or `None`.
async fn ask_webhook(webhook: &Webhook, env: &TestEnv, object: &Value) -> Option<String> {
    let kind = object["kind"].as_str().expect("kind");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "6b0f7c1e-0000-4000-8000-000000000019",
            "kind": {"group": "chaos.faultline.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "chaos.faultline.dev", "version": "v1alpha1",
                         "resource": kind.to_lowercase()},
            "namespace": env.namespace, "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": object
        }
    });
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(webhook.ca_pem.as_bytes()).expect("CA"),
        )
        .build()
        .expect("client");
    let answer: Value = client
        .post(format!("https://{}/validate", webhook.addr))
        .json(&review)
        .send()
        .await
        .expect("the webhook answers")
        .json()
        .await
        .expect("JSON");
    let response = &answer["response"];
    (response["allowed"] != true).then(|| {
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
}

async fn webhook_in(env: &TestEnv) -> Webhook {
    env.install_crds().await;
    env.label_namespace(&env.namespace, &[CHAOS_LABEL]).await;
    Webhook::start(env, &Options::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_on_its_own_and_the_webhook_names_every_violation() {
    let Some(env) =
        setup("the_schema_refuses_on_its_own_and_the_webhook_names_every_violation").await
    else {
        return;
    };
    // Not registered with the API server: the schema alone answers the creates.
    let webhook = webhook_in(&env).await;
    for (i, (what, object, server_names, webhook_names)) in schema_cases().into_iter().enumerate() {
        let object = complete(&env, &format!("bad-{i}"), object);
        let kind = object["kind"].as_str().expect("kind");
        let typed: DynamicObject = serde_json::from_value(object.clone()).expect("object");
        match chaos_api(&env.client, &env.namespace, kind)
            .create(&PostParams::default(), &typed)
            .await
        {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{what}: {e:?}");
                for want in &server_names {
                    assert!(
                        e.message.contains(want),
                        "{what}: {want:?} not in {}",
                        e.message
                    );
                }
            }
            other => panic!("{what}: not refused by the schema: {other:?}"),
        }
        let denial = ask_webhook(&webhook, &env, &object)
            .await
            .unwrap_or_else(|| panic!("{what}: the webhook allowed it"));
        for want in &webhook_names {
            assert!(denial.contains(want), "{what}: {want:?} not in {denial}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_or_named_never_silently_dropped() {
    let Some(env) = setup("unknown_fields_are_refused_or_named_never_silently_dropped").await
    else {
        return;
    };
    env.install_crds().await;
    let object = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "typo", "namespace": env.namespace},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "x"}},
                 "durration": "5m"}
    })
    .to_string();
    // kubectl's default field validation is Strict: the API server refuses, naming the field.
    let (ok, _, stderr) = env.kubectl(&["apply", "-f", "-"], Some(&object));
    assert!(!ok, "kubectl apply accepted an unknown field");
    assert!(
        stderr.contains("unknown field") && stderr.contains("spec.durration"),
        "{stderr}"
    );
    // With Warn, it is dropped, and the warning names it.
    let (ok, _, stderr) = env.kubectl(&["apply", "--validate=warn", "-f", "-"], Some(&object));
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Warning: unknown field \"spec.durration\""),
        "{stderr}"
    );
    let (ok, out, stderr) = env.kubectl(
        &[
            "get",
            "podchaos",
            "typo",
            "-n",
            &env.namespace,
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let stored: Value = serde_json::from_str(&out).expect("json");
    assert!(stored["spec"].get("durration").is_none(), "{stored}");
}

/// Every shape of `api/tests/fixtures/chaos-mesh`, moved into the test's namespace.
fn chaos_mesh_fixtures(env: &TestEnv, dir: &str) -> Vec<(String, Value)> {
    let dir = root().join("api/tests/fixtures").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            let text = std::fs::read_to_string(&file).expect("fixture");
            let mut value: Value = serde_yaml::from_str(&text).expect("YAML");
            value["metadata"] = json!({"name": format!("cm-{i}"), "namespace": env.namespace});
            for scope in ["/spec/selector", "/spec/target/selector"] {
                if let Some(Value::Object(selector)) = value.pointer_mut(scope) {
                    if selector.contains_key("namespaces") {
                        selector.insert("namespaces".into(), json!([env.namespace]));
                    }
                    if let Some(Value::Object(pods)) = selector.get_mut("pods") {
                        let names: Vec<Value> = pods
                            .values()
                            .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                            .collect();
                        pods.clear();
                        pods.insert(env.namespace.clone(), Value::Array(names));
                    }
                }
            }
            (name_of(&file), value)
        })
        .collect()
}

fn name_of(file: &Path) -> String {
    file.file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_mesh_yaml_is_admitted_through_the_api_server_and_the_webhook() {
    let Some(env) =
        setup("chaos_mesh_yaml_is_admitted_through_the_api_server_and_the_webhook").await
    else {
        return;
    };
    let webhook = webhook_in(&env).await;
    webhook.register(&env).await;
    faultline_e2e::webhook::wait_for_validation(&env, &env.namespace).await;
    let mut failures = Vec::new();
    let mut warned = Vec::new();
    for (file, object) in chaos_mesh_fixtures(&env, "chaos-mesh") {
        let (ok, _, stderr) = env.kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
        if !ok {
            failures.push(format!("{file}: {stderr}"));
        }
        warned.extend(
            stderr
                .lines()
                .filter(|l| l.starts_with("Warning: spec"))
                .map(|l| format!("{file}: {l}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for want in [
        "stress-memory-minimal.yaml: Warning: spec.stressors.memory.size: not set: stress-ng's default applies",
        "stress-both.yaml: Warning: spec.stressors: ignored: stressngStressors is set",
        "network-partition-everything.yaml: Warning: spec: no target or externalTargets",
        "io-latency-extra-payload.yaml: Warning: spec.errno: ignored: action `latency`",
    ] {
        assert!(
            warned.iter().any(|w| w.starts_with(want)),
            "{want:?} not in {warned:#?}\n{}",
            webhook.log()
        );
    }
    // Refused on purpose, through the API server, each with its reason.
    for (file, object) in chaos_mesh_fixtures(&env, "chaos-mesh-denied") {
        let (ok, _, stderr) = env.kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
        assert!(!ok, "{file} was admitted");
        let want = match file.as_str() {
            "remote-cluster.yaml" => "spec.remoteCluster: is not supported",
            "empty-selector.yaml" => "spec.selector: selects no pods in particular",
            // kubectl's strict field validation refuses it before the schema and the webhook
            // (the webhook's own denial of it, every violation named, is in webhook/tests).
            _ => "unknown field \"spec.selector.labelSelector\"",
        };
        assert!(stderr.contains(want), "{file}: {want:?} not in {stderr}");
    }
}
