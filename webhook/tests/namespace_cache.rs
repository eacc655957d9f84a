//! The namespace-label cache against a mocked API server (`tower_test::mock::pair`): each
//! request the reflector makes is asserted, and `/validate` is run against the cache.

mod common;

use std::time::Duration;

use faultline_webhook::policy::{NamespaceLabels, Policy};
use faultline_webhook::server::NamespaceCache;
use faultline_webhook::{Outcome, admission, review};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

async fn next(handle: &mut ApiHandle) -> (Request<Body>, SendResponse<Response<Body>>) {
    tokio::time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .expect("the cache made no request within 1 s")
        .expect("the client was dropped")
}

fn namespace_list() -> Value {
    json!({
        "apiVersion": "v1", "kind": "NamespaceList",
        "metadata": {"resourceVersion": "100"},
        "items": [
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "shop", "resourceVersion": "90", "labels": {"faultline.dev/chaos": "enabled"}}},
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": "payments", "resourceVersion": "91", "labels": {"faultline.dev/chaos": "disabled"}}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "batch", "resourceVersion": "92"}}
        ]
    })
}

async fn wait_for(cache: &NamespaceCache, ns: &str) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let answer = cache.chaos_enabled(ns);
        if answer.is_ok() || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn chaos_in(ns: &str) -> review::Review {
    let chaos = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "k", "namespace": ns},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": [ns]}}
    });
    let body =
        serde_json::to_vec(&common::chaos_review("CREATE", chaos, Value::Null)).expect("json");
    review::decode(&body).expect("decode")
}

#[tokio::test]
async fn lists_then_watches_namespaces_and_answers_from_the_cache() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let cache = NamespaceCache::default();
    cache.start(Some(client));
    let before = cache
        .chaos_enabled("shop")
        .expect_err("unknown before the first list");
    assert!(before.contains("starting"), "{before}");

    // 1. The initial list.
    let (request, send) = next(&mut handle).await;
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.uri().path(), "/api/v1/namespaces");
    let query = request.uri().query().unwrap_or_default().to_owned();
    assert!(!query.contains("watch=true"), "{query}");
    send.send_response(
        Response::builder()
            .body(Body::from(
                serde_json::to_vec(&namespace_list()).expect("json"),
            ))
            .expect("response"),
    );

    // 2. The watch from the list's resourceVersion; an ADDED event arrives on it.
    let (request, send) = next(&mut handle).await;
    assert_eq!(request.uri().path(), "/api/v1/namespaces");
    let query = request.uri().query().unwrap_or_default().to_owned();
    assert!(query.contains("watch=true"), "{query}");
    assert!(query.contains("resourceVersion=100"), "{query}");
    let event = json!({"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "late", "resourceVersion": "101", "labels": {"faultline.dev/chaos": "enabled"}}}});
    let mut line = serde_json::to_vec(&event).expect("json");
    line.push(b'\n');
    send.send_response(
        Response::builder()
            .body(Body::from(line))
            .expect("response"),
    );

    assert_eq!(wait_for(&cache, "shop").await, Ok(true));
    assert_eq!(cache.chaos_enabled("payments"), Ok(false));
    assert_eq!(cache.chaos_enabled("batch"), Ok(false));
    assert_eq!(cache.chaos_enabled("missing"), Ok(false));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while cache.chaos_enabled("late") != Ok(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch event not applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // /validate answers from the cache.
    let policy = Policy::default();
    assert_eq!(
        admission::validate(&chaos_in("shop"), &policy, &cache).outcome,
        Outcome::Allowed
    );
    let verdict = admission::validate(&chaos_in("payments"), &policy, &cache);
    assert_eq!(verdict.denied_rules, vec!["policy-namespace-not-opted-in"]);
}

#[tokio::test]
async fn an_unreachable_api_denies_chaos_with_the_reason() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let cache = NamespaceCache::default();
    cache.start(Some(client));
    let (request, send) = next(&mut handle).await;
    assert_eq!(request.uri().path(), "/api/v1/namespaces");
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "namespaces is forbidden: User \"system:serviceaccount:faultline-system:webhook\" cannot list resource \"namespaces\"",
        "reason": "Forbidden", "code": 403});
    send.send_response(
        Response::builder()
            .status(403)
            .body(Body::from(serde_json::to_vec(&status).expect("json")))
            .expect("response"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let why = loop {
        let why = cache.chaos_enabled("shop").expect_err("labels unknown");
        if why.contains("cannot be read") || tokio::time::Instant::now() > deadline {
            break why;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(why.contains("cannot be read"), "{why}");
    let verdict = admission::validate(&chaos_in("shop"), &Policy::default(), &cache);
    assert_eq!(
        verdict.denied_rules,
        vec!["policy-namespace-labels-unknown"]
    );
    assert!(
        verdict.response.result.message.contains("forbidden"),
        "{}",
        verdict.response.result.message
    );
}
