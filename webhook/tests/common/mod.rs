//! Helpers shared by the webhook's integration tests.
#![allow(dead_code)]

use serde_json::{Value, json};

/// An AdmissionReview exactly as kube-apiserver sends it.
/// `gvr` = (group, version, kind, resource plural).
pub(crate) fn review(
    (group, version, kind, resource): (&str, &str, &str, &str),
    operation: &str,
    namespace: &str,
    object: Value,
    old_object: Value,
) -> Value {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "3f1c2b7e-93b1-4a8e-9a33-2b9d1b9c0e5a",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "alice@example.com",
                "uid": "0d3b6a4c-1f42-4b9f-8f6e-0e1f0a7b9c11",
                "groups": ["sre", "system:authenticated"]
            },
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// A pod CREATE review.
pub(crate) fn pod_review(pod: Value) -> Value {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    review(("", "v1", "Pod", "pods"), "CREATE", &ns, pod, Value::Null)
}

/// A chaos-object review.
pub(crate) fn chaos_review(operation: &str, object: Value, old_object: Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let ns = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let resource = format!("{}es", kind.to_lowercase()).replace("chaoses", "chaos");
    review(
        ("chaos.faultline.dev", "v1alpha1", &kind, &resource),
        operation,
        &ns,
        object,
        old_object,
    )
}

/// The response part of an answer body.
pub(crate) fn response(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).expect("answer is JSON");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    v["response"].clone()
}

/// The decoded JSON Patch of a response, if any.
pub(crate) fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let b64 = response.get("patch")?.as_str()?;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64_decode(b64);
    Some(serde_json::from_slice(&bytes).expect("patch is a JSON Patch"))
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64 digit") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// Namespace labels where `namespace` is opted in to sidecar injection.
pub(crate) fn injection_enabled(
    namespace: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    std::collections::BTreeMap::from([(
        namespace.to_owned(),
        std::collections::BTreeMap::from([(
            "faultline.dev/injection".to_owned(),
            "enabled".to_owned(),
        )]),
    )])
}
