//! `podFailure.apply` / `podFailure.recover` of the real daemon against a real kube-apiserver
//! (`faultline-e2e`): overlapping experiments restore the real images of every container and
//! init container in either order, a pod that is gone counts as recovered, a crash is recovered
//! at the next start, and a concurrent writer of the pod never makes the daemon lose or clobber
//! an update. There is no kubelet: the pods stay Pending, and pod failure only edits the object.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Daemon, Options};
use faultline_e2e::TestEnv;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const ANNOTATION: &str = "faultline.dev/pod-failure";
const DEFAULT_PAUSE: &str = "registry.k8s.io/pause:3.10";

/// The real images of the test pods: `(init containers, containers)`, name → image.
fn real_images() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, i)| ((*n).to_owned(), (*i).to_owned()))
            .collect()
    };
    (
        map(&[("migrate", "shop/migrate:3"), ("wait-db", "busybox:1.36")]),
        map(&[("app", "shop/cart:7"), ("log", "fluent/fluent-bit:3.0")]),
    )
}

/// Starts the daemon with the control plane's kubeconfig; `None` when the test skips.
async fn start(test: &str) -> Option<(TestEnv, Daemon)> {
    let env = faultline_e2e::setup(test).await?;
    let d = Daemon::start(Options {
        kubeconfig: Some(env.kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    Some((env, d))
}

fn pods(env: &TestEnv) -> Api<Pod> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

/// A pod with two init containers and two containers, and annotations and labels of its own.
async fn create_pod(env: &TestEnv, name: &str) -> Pod {
    let (init, main) = real_images();
    let containers = |m: &BTreeMap<String, String>| -> Vec<Value> {
        m.iter()
            .map(|(n, i)| json!({"name": n, "image": i}))
            .collect()
    };
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"app": "cart"},
            "annotations": {"keep": "me", "team": "shop"}
        },
        "spec": {
            "initContainers": containers(&init),
            "containers": containers(&main)
        }
    }))
    .expect("pod");
    pods(env)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"))
}

async fn get(env: &TestEnv, name: &str) -> Pod {
    pods(env)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get pod {name}: {e}"))
}

/// `(init containers, containers)` of `pod`, name → image.
fn images(pod: &Pod) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let spec = pod.spec.as_ref().expect("spec");
    let of = |cs: &[k8s_openapi::api::core::v1::Container]| {
        cs.iter()
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect()
    };
    (
        of(spec.init_containers.as_deref().unwrap_or_default()),
        of(&spec.containers),
    )
}

/// Every container and init container runs `pause`.
fn assert_paused(pod: &Pod, pause: &str) {
    let (init, main) = images(pod);
    for (name, image) in init.iter().chain(&main) {
        assert_eq!(image, pause, "container {name} of {pod:?}");
    }
    assert_eq!(init.len() + main.len(), 4);
}

/// The real images are back, our annotation is gone, the pod's own metadata is untouched.
fn assert_restored(pod: &Pod) {
    assert_eq!(
        images(pod),
        real_images(),
        "images of {:?}",
        pod.metadata.name
    );
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key(ANNOTATION), "{annotations:?}");
    assert_eq!(annotations.get("keep").map(String::as_str), Some("me"));
    assert_eq!(annotations.get("team").map(String::as_str), Some("shop"));
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some("cart"));
}

/// The annotation's content: `{"images": {...}, "holders": [...]}`.
fn saved(pod: &Pod) -> Value {
    let text = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .unwrap_or_else(|| panic!("no {ANNOTATION} on {:?}", pod.metadata));
    serde_json::from_str(text).expect("annotation JSON")
}

/// The real images are what the annotation saved (never a pause image), held by `holders`.
fn assert_saved(pod: &Pod, holders: &[&str]) {
    let (init, main) = real_images();
    let saved = saved(pod);
    assert_eq!(
        saved["images"],
        json!({"containers": main, "initContainers": init}),
        "{saved}"
    );
    assert_eq!(saved["holders"], json!(holders), "{saved}");
}

async fn apply(d: &Daemon, env: &TestEnv, pod: &str, extra: Value) -> String {
    let mut params = json!({"namespace": env.namespace, "pod": pod});
    if let (Some(p), Value::Object(extra)) = (params.as_object_mut(), extra) {
        p.extend(extra);
    }
    let result = d.ok("podFailure.apply", params).await;
    let id = result["faultId"].as_str().expect("faultId").to_owned();
    assert!(id.starts_with("podfail-"), "{result}");
    id
}

async fn recover(d: &Daemon, env: &TestEnv, pod: &str, fault: &str) {
    let r = d
        .ok(
            "podFailure.recover",
            json!({"namespace": env.namespace, "pod": pod, "faultId": fault}),
        )
        .await;
    assert_eq!(r, json!({}));
}

/// The fault ids `faults.list` reports, sorted.
async fn listed(d: &Daemon) -> Vec<String> {
    let list = d.ok("faults.list", json!({})).await;
    let mut ids: Vec<String> = list["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "podFailure", "{f}");
            f["faultId"].as_str().expect("faultId").to_owned()
        })
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`.
async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn overlapping_experiments_restore_the_real_images_in_either_order() {
    let Some((env, d)) = start("pod-failure-overlap").await else {
        return;
    };
    create_pod(&env, "cart-ab").await;
    create_pod(&env, "cart-ba").await;

    // cart-ab is released A then B with the default pause image; cart-ba B then A with the
    // first experiment's own pauseImage.
    for (pod, pause, first_extra, a_first) in [
        ("cart-ab", DEFAULT_PAUSE, json!({}), true),
        (
            "cart-ba",
            "registry.k8s.io/pause:3.9",
            json!({"pauseImage": "registry.k8s.io/pause:3.9"}),
            false,
        ),
    ] {
        let a = apply(&d, &env, pod, first_extra).await;
        let p = get(&env, pod).await;
        assert_paused(&p, pause);
        assert_saved(&p, &[&a]);

        // The second experiment holds a pod that already runs the pause image: the saved
        // images must stay the real ones (Chaos Mesh PR 5085 saved the pause image here).
        let b = apply(
            &d,
            &env,
            pod,
            json!({"pauseImage": "registry.k8s.io/pause:other"}),
        )
        .await;
        assert_ne!(a, b);
        let p = get(&env, pod).await;
        assert_paused(&p, pause);
        assert_saved(&p, &[&a, &b]);
        assert_eq!(listed(&d).await, sorted(&[&a, &b]));
        assert_eq!(d.journal().len(), 2, "{:?}", d.journal());

        let (first, second) = if a_first { (&a, &b) } else { (&b, &a) };
        recover(&d, &env, pod, first).await;
        let p = get(&env, pod).await;
        assert_paused(&p, pause);
        assert_saved(&p, &[second]);
        assert_eq!(listed(&d).await, vec![second.clone()]);
        assert_eq!(d.journal(), vec![format!("{second}.json")]);

        recover(&d, &env, pod, second).await;
        assert_restored(&get(&env, pod).await);
        assert!(listed(&d).await.is_empty());
        assert!(d.journal().is_empty(), "{:?}", d.journal());

        // Recovering it again is an unknown fault, and changes nothing.
        let err = d
            .call(
                "podFailure.recover",
                json!({"namespace": env.namespace, "pod": pod, "faultId": second}),
            )
            .await
            .unwrap_err();
        assert_eq!(err["code"], -32004, "{err}");
        assert_restored(&get(&env, pod).await);
    }
}

#[tokio::test]
async fn recover_without_a_fault_id_releases_every_hold_on_that_pod_only() {
    let Some((env, d)) = start("pod-failure-recover-pod").await else {
        return;
    };
    create_pod(&env, "cart-0").await;
    create_pod(&env, "cart-1").await;
    let a = apply(&d, &env, "cart-0", json!({})).await;
    let b = apply(&d, &env, "cart-0", json!({})).await;
    let other = apply(&d, &env, "cart-1", json!({})).await;
    assert_saved(&get(&env, "cart-0").await, &[&a, &b]);

    let r = d
        .ok(
            "podFailure.recover",
            json!({"namespace": env.namespace, "pod": "cart-0"}),
        )
        .await;
    assert_eq!(r, json!({}));
    assert_restored(&get(&env, "cart-0").await);
    // The other pod keeps its hold.
    let p = get(&env, "cart-1").await;
    assert_paused(&p, DEFAULT_PAUSE);
    assert_saved(&p, &[&other]);
    assert_eq!(listed(&d).await, vec![other.clone()]);
    assert_eq!(d.journal(), vec![format!("{other}.json")]);

    // With no hold left on it, the same call is a no-op.
    d.ok(
        "podFailure.recover",
        json!({"namespace": env.namespace, "pod": "cart-0"}),
    )
    .await;
    d.ok(
        "podFailure.recover",
        json!({"namespace": env.namespace, "pod": "cart-1"}),
    )
    .await;
    assert_restored(&get(&env, "cart-1").await);
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
}

/// A hold with a `ttl` is released by the daemon itself when it ends: the real images come back
/// with no client calling again.
#[tokio::test]
async fn a_ttl_releases_the_hold_by_itself() {
    let Some((env, d)) = start("pod-failure-ttl").await else {
        return;
    };
    create_pod(&env, "cart-7").await;
    let pause = "registry.k8s.io/pause:ttl";
    let id = apply(
        &d,
        &env,
        "cart-7",
        json!({"ttl": "2s", "pauseImage": pause}),
    )
    .await;
    assert_paused(&get(&env, "cart-7").await, pause);
    until(
        "the ttl restores the images",
        Duration::from_secs(20),
        || async {
            let pod = get(&env, "cart-7").await;
            (images(&pod) == real_images()).then_some(pod)
        },
    )
    .await;
    assert_restored(&get(&env, "cart-7").await);
    until("the journal entry goes", Duration::from_secs(5), || async {
        d.journal().is_empty().then_some(())
    })
    .await;
    assert!(listed(&d).await.is_empty(), "{id} still listed");
}

#[tokio::test]
async fn a_pod_deleted_while_failed_counts_as_recovered() {
    let Some((env, d)) = start("pod-failure-deleted").await else {
        return;
    };
    create_pod(&env, "cart-0").await;
    let id = apply(&d, &env, "cart-0", json!({})).await;
    assert_eq!(d.journal(), vec![format!("{id}.json")]);
    pods(&env)
        .delete("cart-0", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    until("the pod is gone", Duration::from_secs(30), || async {
        pods(&env)
            .get_opt("cart-0")
            .await
            .expect("get pod")
            .is_none()
            .then_some(())
    })
    .await;

    recover(&d, &env, "cart-0", &id).await;
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
}

#[tokio::test]
async fn applying_to_a_pod_that_does_not_exist_names_it_and_journals_nothing() {
    let Some((env, d)) = start("pod-failure-missing").await else {
        return;
    };
    let err = d
        .call(
            "podFailure.apply",
            json!({"namespace": env.namespace, "pod": "ghost"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32001, "{err}");
    let message = err["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("{}/ghost", env.namespace)),
        "{err}"
    );
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
    // The daemon keeps serving.
    create_pod(&env, "cart-0").await;
    let id = apply(&d, &env, "cart-0", json!({})).await;
    recover(&d, &env, "cart-0", &id).await;
    assert_restored(&get(&env, "cart-0").await);
}

/// `kill -9` with a pod failed: the next start restores the pod within 2 s, journal empty.
#[tokio::test]
async fn a_crash_is_recovered_at_the_next_start() {
    let Some((env, mut d)) = start("pod-failure-crash").await else {
        return;
    };
    create_pod(&env, "cart-0").await;
    let a = apply(&d, &env, "cart-0", json!({})).await;
    let b = apply(&d, &env, "cart-0", json!({})).await;
    d.kill9();
    // The crash left the fault behind: the pod is still failed and both holds are journaled.
    let p = get(&env, "cart-0").await;
    assert_paused(&p, DEFAULT_PAUSE);
    assert_saved(&p, &[&a, &b]);
    assert_eq!(d.journal().len(), 2);

    let started = Instant::now();
    d.restart().await;
    let ready = started.elapsed();
    until(
        "the real images are back after the restart",
        Duration::from_secs(10),
        || async {
            let p = pods(&env).get("cart-0").await.ok()?;
            (images(&p) == real_images() && d.journal().is_empty()).then_some(())
        },
    )
    .await;
    let recovered = started.elapsed();
    eprintln!(
        "pod failure crash recovery: daemon ready {ready:?} after the restart, pod restored and \
         journal empty {recovered:?} after it"
    );
    assert!(
        recovered < Duration::from_secs(2),
        "recovered only after {recovered:?}\n{}",
        d.log()
    );
    assert_restored(&get(&env, "cart-0").await);
    assert!(listed(&d).await.is_empty());
    assert!(
        d.log().contains("journaled by an earlier run; recovering"),
        "{}",
        d.log()
    );
    // At the first attempt, not a retry.
    assert!(!d.log().contains("recovery failed"), "{}", d.log());
}

/// PUTs of pods the API server refused with 409 Conflict so far (its own metrics).
async fn pod_put_conflicts(env: &TestEnv) -> u64 {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = env
        .client
        .request_text(req)
        .await
        .expect("kube-apiserver /metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("code=\"409\"")
                && l.contains("resource=\"pods\"")
                && l.contains("subresource=\"\"")
                && l.contains("verb=\"PUT\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Another writer updates the pod's labels while the daemon holds and releases it: the daemon
/// retries its conflicting writes (optimistic concurrency), never undoes the writer's updates,
/// and still restores the real images. Repeated until the API server has refused at least one
/// of the daemon's writes with 409, so the retry path is known to have run.
#[tokio::test]
async fn a_concurrent_writer_neither_breaks_the_restore_nor_loses_its_updates() {
    let Some((env, d)) = start("pod-failure-conflict").await else {
        return;
    };
    create_pod(&env, "cart-0").await;
    let conflicts_before = pod_put_conflicts(&env).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0u32;
    loop {
        round += 1;
        let writer = {
            let pods = pods(&env);
            tokio::spawn(async move {
                for n in 0..10u32 {
                    let patch = json!({"metadata": {"labels": {
                        "writer": format!("r{round}-{n}"),
                        format!("w{n}"): "x",
                    }}});
                    pods.patch("cart-0", &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("label patch");
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            })
        };
        let a = apply(&d, &env, "cart-0", json!({})).await;
        let b = apply(&d, &env, "cart-0", json!({})).await;
        let p = get(&env, "cart-0").await;
        assert_paused(&p, DEFAULT_PAUSE);
        assert_saved(&p, &[&a, &b]);
        recover(&d, &env, "cart-0", &b).await;
        recover(&d, &env, "cart-0", &a).await;
        writer.await.expect("writer");

        let p = get(&env, "cart-0").await;
        assert_restored(&p);
        let labels = p.metadata.labels.clone().unwrap_or_default();
        // Every update of the writer survived the daemon's writes.
        assert_eq!(
            labels.get("writer").map(String::as_str),
            Some(format!("r{round}-9").as_str()),
            "{labels:?}"
        );
        for n in 0..10 {
            assert!(labels.contains_key(&format!("w{n}")), "{labels:?}");
        }
        assert!(listed(&d).await.is_empty());
        assert!(d.journal().is_empty(), "{:?}", d.journal());

        let conflicts = pod_put_conflicts(&env).await - conflicts_before;
        if conflicts > 0 {
            eprintln!(
                "pod failure under a concurrent writer: {conflicts} conflicting PUTs retried \
                 in {round} round(s)"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write of the daemon conflicted with the writer in {round} rounds"
        );
    }
}
