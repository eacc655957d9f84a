//! The CRDs of `manifests/crds/` against the real API server: accepted and served, every
//! example experiment of the repository stored and read back unchanged, and what the schema
//! forbids refused by the API server itself (no webhook is registered here).

use std::path::Path;

use faultline_e2e::{chaos_api, root, setup};
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_accepted_and_served() {
    let Some(env) = setup("crds_are_accepted_and_served").await else {
        return;
    };
    let names = env.install_crds().await;
    assert_eq!(
        names,
        [
            "iochaos.chaos.faultline.dev",
            "networkchaos.chaos.faultline.dev",
            "podchaos.chaos.faultline.dev",
            "stresschaos.chaos.faultline.dev"
        ]
    );
    let (ok, out, err) = env.kubectl(&["api-resources", "--api-group=chaos.faultline.dev"], None);
    assert!(ok, "{err}");
    for kind in ["IOChaos", "NetworkChaos", "PodChaos", "StressChaos"] {
        assert!(out.contains(kind), "{kind} not served:\n{out}");
    }
    let (ok, out, err) = env.kubectl(&["get", "chaos", "-n", &env.namespace], None);
    assert!(ok, "kubectl get chaos (the category): {err}");
    assert!(
        err.contains("No resources found") || out.is_empty(),
        "{out}{err}"
    );
    // The published schema carries our descriptions and enums.
    let (ok, out, err) = env.kubectl(&["explain", "podchaos.spec.action"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("pod-kill") && out.contains("container-kill"),
        "{out}"
    );
}

/// Every experiment written in the repository: YAML blocks of README.md and docs/*.md, the JSON
/// object of the curl example in docs/webhook.md, and api/tests/fixtures/chaos-mesh/*.yaml.
fn examples() -> Vec<(String, Value)> {
    let root = root();
    let mut found = Vec::new();
    let mut markdown = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    markdown.extend(docs);
    for file in &markdown {
        let text = std::fs::read_to_string(file).expect("markdown");
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let block = block.split("```").next().unwrap_or_default();
            if !block.contains("apiVersion: chaos.faultline.dev/") {
                continue;
            }
            let value: Value = serde_yaml::from_str(block)
                .unwrap_or_else(|e| panic!("{name}: YAML block {}: {e}", i + 1));
            found.push((format!("{name} (YAML block {})", i + 1), value));
        }
        // JSON objects embedded in shell examples: `"object": {...}`.
        for (i, part) in text.split("\"object\": ").skip(1).enumerate() {
            if let Some(object) = balanced_object(part)
                && object.contains("chaos.faultline.dev/")
            {
                let value: Value = serde_json::from_str(object)
                    .unwrap_or_else(|e| panic!("{name}: JSON object {}: {e}", i + 1));
                found.push((format!("{name} (JSON object {})", i + 1), value));
            }
        }
    }
    let fixtures = root.join("api/tests/fixtures/chaos-mesh");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .expect("chaos-mesh fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("fixture");
        let value: Value = serde_yaml::from_str(&text).expect("fixture YAML");
        found.push((relative(&root, &file), value));
    }
    found
}

fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The text of the JSON object that starts `text`, braces balanced (strings respected).
fn balanced_object(text: &str) -> Option<&str> {
    if !text.starts_with('{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' if !in_string => depth += 1,
            '}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_experiment_round_trips() {
    let Some(env) = setup("every_example_experiment_round_trips").await else {
        return;
    };
    env.install_crds().await;
    let examples = examples();
    assert!(
        examples.len() >= 16,
        "found only {} examples",
        examples.len()
    );
    assert!(examples.iter().any(|(n, _)| n.starts_with("README.md")));
    assert!(
        examples
            .iter()
            .any(|(n, _)| n.starts_with("docs/webhook.md"))
    );
    let mut failures = Vec::new();
    for (i, (origin, example)) in examples.iter().enumerate() {
        let kind = example["kind"].as_str().expect("kind");
        let mut object = example.clone();
        let name = format!("example-{i}");
        object["metadata"] = json!({"name": name});
        let api = chaos_api(&env.client, &env.namespace, kind);
        let typed: DynamicObject = serde_json::from_value(object).expect("object");
        if let Err(e) = api.create(&PostParams::default(), &typed).await {
            failures.push(format!("{origin}: refused: {e}"));
            continue;
        }
        let stored = serde_json::to_value(api.get(&name).await.expect("read back")).expect("json");
        if stored["spec"] != example["spec"] {
            failures.push(format!(
                "{origin}: spec changed by the API server\n  sent:   {}\n  stored: {}",
                example["spec"], stored["spec"]
            ));
        }
        if stored["apiVersion"] != example["apiVersion"] || stored["kind"] != example["kind"] {
            failures.push(format!("{origin}: apiVersion/kind changed: {stored}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_what_the_schema_forbids() {
    let Some(env) = setup("the_api_server_refuses_what_the_schema_forbids").await else {
        return;
    };
    env.install_crds().await;
    let pod_kill = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "bad"},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "web"}}}
    });
    // (what is wrong, the change, what the API server's message must name)
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "unknown action",
            json!({"spec": {"action": "explode"}}),
            &["spec.action", "Unsupported value: \"explode\""],
        ),
        (
            "unknown mode",
            json!({"spec": {"mode": "ones"}}),
            &["spec.mode", "Unsupported value: \"ones\""],
        ),
        (
            "grace period of the wrong type",
            json!({"spec": {"gracePeriod": "soon"}}),
            &["spec.gracePeriod", "must be of type integer"],
        ),
        (
            "no spec",
            json!({"spec": null}),
            &["spec", "Required value"],
        ),
        (
            "two errors at once",
            json!({"spec": {"action": "explode", "mode": "ones"}}),
            &["spec.action", "spec.mode"],
        ),
    ];
    let api = chaos_api(&env.client, &env.namespace, "PodChaos");
    for (what, change, wants) in cases {
        let mut object = pod_kill.clone();
        merge(&mut object, &change);
        let typed: DynamicObject = serde_json::from_value(object.clone()).expect("object");
        match api.create(&PostParams::default(), &typed).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{what}: {e:?}");
                assert_eq!(e.reason, "Invalid", "{what}: {e:?}");
                for want in wants {
                    assert!(
                        e.message.contains(want),
                        "{what}: {want:?} not in {:?}",
                        e.message
                    );
                }
            }
            other => panic!("{what}: {object} was not refused by the schema: {other:?}"),
        }
    }
    // An unknown field is pruned, not stored (structural schema).
    let mut object = pod_kill.clone();
    object["metadata"]["name"] = json!("pruned");
    object["spec"]["actoin"] = json!("pod-kill");
    let typed: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &typed)
        .await
        .expect("create");
    let stored = serde_json::to_value(api.get("pruned").await.expect("get")).expect("json");
    assert!(stored["spec"].get("actoin").is_none(), "{stored}");
}

/// JSON merge patch (RFC 7386) of `change` into `target`.
fn merge(target: &mut Value, change: &Value) {
    match (target, change) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}
