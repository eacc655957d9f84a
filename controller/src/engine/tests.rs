//! What a real API server cannot be made to do on cue: a 409 at the status write of a chosen
//! pass (tower-test's mock service under a real `kube::Client`).

use std::sync::{Arc, Mutex};

use faultline_api::pod_chaos::PodChaos;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

use super::*;
use crate::daemon_client::{DaemonTls, Daemons};

/// (method, path and query, body) of every request the mock saw.
type Seen = Arc<Mutex<Vec<(Method, String, Value)>>>;

fn experiment(resource_version: &str, status: Value) -> Value {
    json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1",
        "kind": "PodChaos",
        "metadata": {
            "name": "exp", "namespace": "ns1", "uid": "uid-1",
            "resourceVersion": resource_version,
            "finalizers": [FINALIZER],
        },
        "spec": {
            "action": "pod-kill", "mode": "one",
            "selector": {"namespaces": ["ns1"], "labelSelectors": {"app": "web"}},
        },
        "status": status,
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "ns1", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.5"},
    })
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// A mock API server: the pod list, deletions, Events; the first status write refused with
/// 409; a re-read answered with `fresh`.
fn serve(fresh: Value) -> (Ctx, Seen) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut status_writes = 0;
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let body = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let path = parts.uri.path_and_query().unwrap().to_string();
            log.lock()
                .unwrap()
                .push((parts.method.clone(), path.clone(), body.clone()));
            let chaos = "/apis/chaos.faultline.dev/v1alpha1/namespaces/ns1/podchaos/exp";
            let answer = match (&parts.method, path.as_str()) {
                (&Method::GET, p) if p.starts_with("/api/v1/namespaces/ns1/pods?") => reply(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod()]}),
                ),
                (&Method::DELETE, p) if p.starts_with("/api/v1/namespaces/ns1/pods/web-0") => {
                    reply(StatusCode::OK, &pod())
                }
                (&Method::POST, p) if p.contains("/events") => reply(StatusCode::CREATED, &body),
                (&Method::PATCH, p) if p.starts_with(&format!("{chaos}/status")) => {
                    status_writes += 1;
                    if status_writes == 1 {
                        reply(
                            StatusCode::CONFLICT,
                            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "reason": "Conflict", "code": 409,
                                "message": "the object has been modified"}),
                        )
                    } else {
                        reply(StatusCode::OK, &fresh)
                    }
                }
                (&Method::GET, p) if p.starts_with(chaos) => reply(StatusCode::OK, &fresh),
                (m, p) => panic!("unexpected request {m} {p}"),
            };
            send.send_response(answer);
        }
    });
    let metrics = Arc::new(Metrics::new());
    let tls = DaemonTls {
        ca_pem: Vec::new(),
        identity_pem: Vec::new(),
        server_name: "unused".into(),
    };
    let ctx = Ctx {
        daemons: Daemons::new(
            client.clone(),
            "faultline-system".into(),
            31767,
            tls,
            metrics.clone(),
        ),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        client,
        policy: Arc::new(ArcSwap::from_pointee(Policy::default())),
        metrics,
        pod_events_per_pass: 100,
        renewals: Default::default(),
        backoff: Default::default(),
        stale: Default::default(),
    };
    (ctx, seen)
}

fn status_writes(seen: &Seen) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| m == Method::PATCH && p.contains("/status"))
        .map(|(_, _, body)| body.clone())
        .collect()
}

fn deletes(seen: &Seen) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(m, _, _)| m == Method::DELETE)
        .count()
}

#[tokio::test]
async fn a_conflict_on_metadata_only_keeps_the_records_of_what_was_sent() {
    // Between the read and the write someone paused the experiment: a new resourceVersion,
    // the same (empty) status.
    let mut fresh = experiment("8", Value::Null);
    fresh["metadata"]["annotations"] = json!({PAUSE: "true"});
    let (ctx, seen) = serve(fresh);
    let obj: PodChaos = serde_json::from_value(experiment("7", Value::Null)).unwrap();
    let action = reconcile(Arc::new(obj), Arc::new(ctx))
        .await
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    assert_eq!(deletes(&seen), 1, "the pod was killed once");
    let writes = status_writes(&seen);
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert_eq!(writes[0]["metadata"]["resourceVersion"], "7");
    assert_eq!(
        writes[1]["metadata"]["resourceVersion"], "8",
        "onto the fresh version"
    );
    let records = &writes[1]["status"]["records"];
    assert_eq!(records[0]["id"], "ns1/web-0");
    assert_eq!(records[0]["phase"], "Injected", "{records:#}");
}

#[tokio::test]
async fn a_conflict_with_another_writers_status_decides_again() {
    let other = json!({"records": [{"id": "ns1/web-1", "phase": "Injected"}]});
    let (ctx, seen) = serve(experiment("8", other));
    let obj: PodChaos = serde_json::from_value(experiment("7", Value::Null)).unwrap();
    let action = reconcile(Arc::new(obj), Arc::new(ctx))
        .await
        .expect("reconciled");
    assert_eq!(
        action,
        Action::requeue(CONFLICT_RETRY),
        "decide again, soon"
    );
    assert_eq!(
        status_writes(&seen).len(),
        1,
        "no write over another writer's status"
    );
}
