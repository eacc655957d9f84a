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
/// The chaos object as the mock API server has it.
type Shared = Arc<Mutex<Value>>;

fn bump(object: &mut Value) {
    let rv: u64 = object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    object["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
}

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

/// A change someone else makes to the object (a new `resourceVersion` follows).
type Meddle = fn(&mut Value);

/// A mock API server holding one chaos object, `current`: the pod list, deletions, Events;
/// status writes are conflict-checked against its `resourceVersion` (which each write bumps);
/// after status write number `meddle_after` is applied, `meddle` changes the object as
/// another client would.
fn serve(current: Value, meddle_after: usize, meddle: Meddle) -> (Ctx, Seen, Shared) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let object: Shared = Arc::new(Mutex::new(current));
    let state = object.clone();
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
            let mut current = state.lock().unwrap();
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
                    if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
                    {
                        reply(
                            StatusCode::CONFLICT,
                            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "reason": "Conflict", "code": 409,
                                "message": "the object has been modified"}),
                        )
                    } else {
                        status_writes += 1;
                        current["status"] = body["status"].clone();
                        bump(&mut current);
                        let written = reply(StatusCode::OK, &current);
                        if status_writes == meddle_after {
                            meddle(&mut current);
                            bump(&mut current);
                        }
                        written
                    }
                }
                (&Method::GET, p) if p.starts_with(chaos) => reply(StatusCode::OK, &current),
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
    (ctx, seen, object)
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

fn nobody(_: &mut Value) {}

#[tokio::test]
async fn records_are_written_before_the_fault_is_sent_and_settled_after() {
    let (ctx, seen, _) = serve(experiment("7", Value::Null), 0, nobody);
    let obj: PodChaos = serde_json::from_value(experiment("7", Value::Null)).unwrap();
    reconcile(Arc::new(obj), Arc::new(ctx))
        .await
        .expect("reconciled");
    let requests: Vec<(Method, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _)| *m == Method::DELETE || p.contains("/status"))
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert_eq!(requests[0].0, Method::PATCH, "the record first");
    assert_eq!(requests[1].0, Method::DELETE, "then the kill");
    assert_eq!(requests[2].0, Method::PATCH, "then its outcome");
    let writes = status_writes(&seen);
    assert_eq!(writes[0]["status"]["records"][0]["phase"], "Pending");
    assert_eq!(writes[1]["metadata"]["resourceVersion"], "8");
    assert_eq!(writes[1]["status"]["records"][0]["phase"], "Injected");
}

#[tokio::test]
async fn a_conflict_on_metadata_only_keeps_the_records_of_what_was_sent() {
    // After the records were written ahead, while the kill was on its way, someone paused the
    // experiment: a new resourceVersion, the same status.
    fn pause(o: &mut Value) {
        o["metadata"]["annotations"] = json!({PAUSE: "true"});
    }
    let (ctx, seen, _) = serve(experiment("7", Value::Null), 1, pause);
    let obj: PodChaos = serde_json::from_value(experiment("7", Value::Null)).unwrap();
    let action = reconcile(Arc::new(obj), Arc::new(ctx))
        .await
        .expect("reconciled");
    assert_eq!(action, Action::await_change());
    assert_eq!(deletes(&seen), 1, "the pod was killed once");
    let writes = status_writes(&seen);
    assert_eq!(writes.len(), 3, "{writes:#?}");
    assert_eq!(writes[1]["metadata"]["resourceVersion"], "8", "refused");
    assert_eq!(
        writes[2]["metadata"]["resourceVersion"], "9",
        "onto the fresh version"
    );
    let records = &writes[2]["status"]["records"];
    assert_eq!(records[0]["id"], "ns1/web-0");
    assert_eq!(records[0]["phase"], "Injected", "{records:#}");
}

#[tokio::test]
async fn an_experiment_deleted_while_its_faults_go_out_keeps_their_records() {
    fn delete(o: &mut Value) {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    let (ctx, seen, object) = serve(experiment("7", Value::Null), 1, delete);
    let obj: PodChaos = serde_json::from_value(experiment("7", Value::Null)).unwrap();
    reconcile(Arc::new(obj), Arc::new(ctx))
        .await
        .expect("reconciled");
    assert_eq!(deletes(&seen), 1);
    // The outcome was not written over the deletion, but the record written ahead is there:
    // the cleanup pass recovers what it names.
    let records = object.lock().unwrap()["status"]["records"].clone();
    assert_eq!(records[0]["id"], "ns1/web-0", "{records:#}");
    assert_eq!(records[0]["phase"], "Pending");
}

#[tokio::test]
async fn a_conflict_with_another_writers_status_decides_again_and_sends_nothing() {
    let other = json!({"records": [{"id": "ns1/web-1", "phase": "Injected"}]});
    let (ctx, seen, _) = serve(experiment("8", other), 0, nobody);
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
    assert_eq!(deletes(&seen), 0, "nothing sent from an outdated version");
}

#[tokio::test]
async fn a_pause_before_the_records_are_written_ahead_sends_nothing() {
    // Paused between the read and the write ahead: metadata only, but nothing was sent yet,
    // so the pass decides again from the paused object instead of killing.
    let mut paused = experiment("8", Value::Null);
    paused["metadata"]["annotations"] = json!({PAUSE: "true"});
    let (ctx, seen, _) = serve(paused, 0, nobody);
    let obj: PodChaos = serde_json::from_value(experiment("7", Value::Null)).unwrap();
    let action = reconcile(Arc::new(obj), Arc::new(ctx))
        .await
        .expect("reconciled");
    assert_eq!(action, Action::requeue(CONFLICT_RETRY));
    assert_eq!(deletes(&seen), 0, "no kill decided on an outdated version");
    assert_eq!(status_writes(&seen).len(), 1, "refused, not carried over");
}
