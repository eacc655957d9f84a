//! End to end over real TLS: the `faultline-webhook` binary with certificates from
//! `faultline-certs`, real AdmissionReview JSON, a client that trusts only the generated CA,
//! bad inputs, metrics, and a certificate rotation under an open keep-alive connection.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn certs(dir: &Path) -> faultline_certs::Bundle {
    let mut opts = faultline_certs::GenerateOptions::new(vec!["localhost".into()]);
    opts.ips = vec!["127.0.0.1".parse().expect("ip")];
    let bundle = faultline_certs::generate(&opts).expect("generate");
    faultline_certs::write_bundle(&bundle, dir).expect("write certs");
    bundle
}

fn start(policy: &str) -> (Server, faultline_certs::Bundle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = certs(dir.path());
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, policy).expect("policy");
    let addr = free_port();
    let metrics = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_faultline-webhook"))
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--policy")
        .arg(&policy_path)
        .args(["--reload-interval-secs", "1"])
        // No Kubernetes API here, whatever the machine has configured.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn faultline-webhook");
    (
        Server {
            child,
            addr,
            metrics,
            dir,
        },
        bundle,
    )
}

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn url(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

async fn wait_ready(server: &Server, client: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(url(server, "/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "webhook did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts a body larger than the server accepts. The server answers 413 without reading the
/// body and closes the connection, so the client may still be writing when the close arrives
/// (EPIPE/ECONNRESET) and never read the answer. A send that fails that way is retried on a new
/// connection; any answer other than 413 fails at once.
async fn post_oversized(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    for _ in 0..8 {
        let sent = client
            .post(url(server, path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) => return answer(r).await,
            Err(err) if err.is_request() => continue,
            Err(err) => panic!("oversized request: {err}"),
        }
    }
    panic!("the 413 answer to an oversized body never reached the client in 8 tries");
}

async fn post(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = client
        .post(url(server, path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    answer(r).await
}

/// Status and body of an answer; a body that is not JSON comes back as `{"raw": text}`.
async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (status, value)
}

fn pod_review_bytes() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/review-pod.json"))
        .expect("fixture")
}

fn chaos() -> Value {
    json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "kill-cart", "namespace": "shop"},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "cart"}}}
    })
}

fn chaos_review() -> Vec<u8> {
    serde_json::to_vec(&common::chaos_review("CREATE", chaos(), Value::Null)).expect("json")
}

/// One TLS connection, kept alive, trusting only `ca_pem`.
async fn keep_alive_connection(
    addr: SocketAddr,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("TLS handshake");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    send
}

async fn send_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    body: Vec<u8>,
) -> Value {
    let req = http::Request::post("/inject")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    send.ready()
        .await
        .expect("the open connection is still usable");
    let resp = send
        .send_request(req)
        .await
        .expect("request on the open connection");
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_admission_over_tls_survives_bad_input_and_rotates_certs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (server, bundle) = start("requireNamespaceOptIn: false\n");
    let c = client(&bundle.ca_cert);
    wait_ready(&server, &c).await;
    // Without namespace opt-in nothing waits for the API: ready at once.
    let ready = c.get(url(&server, "/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);

    // A real pod review: patched, uid echoed.
    let (status, body) = post(&c, &server, "/inject", pod_review_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        body["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(body["response"]["allowed"], true);
    let patch = common::patch_of(&body["response"]).expect("patch");
    assert!(!patch.0.is_empty());

    // A chaos review: validated and defaulted.
    let (status, body) = post(&c, &server, "/validate", chaos_review()).await;
    assert_eq!(
        (status, &body["response"]["allowed"]),
        (200, &json!(true)),
        "{body}"
    );
    let (status, body) = post(&c, &server, "/default", chaos_review()).await;
    assert_eq!(
        (status, &body["response"]["allowed"]),
        (200, &json!(true)),
        "{body}"
    );

    // Bad inputs: a 4xx with a JSON error, or a denial with a reason.
    let review = pod_review_bytes();
    let mut no_object: Value = serde_json::from_slice(&review).expect("json");
    no_object["request"]
        .as_object_mut()
        .expect("request")
        .remove("object");
    let mut bad_pod: Value = serde_json::from_slice(&review).expect("json");
    bad_pod["request"]["object"]["spec"]["containers"] = json!({"not": "a list"});
    let mut unknown_chaos = common::chaos_review("CREATE", chaos(), Value::Null);
    unknown_chaos["request"]["kind"]["kind"] = json!("TimeChaos");
    let mut no_request: Value = serde_json::from_slice(&review).expect("json");
    no_request
        .as_object_mut()
        .expect("review")
        .remove("request");
    let wrong_kind = String::from_utf8(review.clone()).expect("utf-8").replace(
        "\"kind\": \"AdmissionReview\"",
        "\"kind\": \"AdmissionResponse\"",
    );
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("non-JSON", "/inject", b"hello".to_vec(), 400),
        (
            "truncated",
            "/inject",
            review[..review.len() / 2].to_vec(),
            400,
        ),
        ("wrong kind", "/validate", wrong_kind.into_bytes(), 400),
        (
            "missing request",
            "/inject",
            serde_json::to_vec(&no_request).expect("json"),
            400,
        ),
        ("empty body", "/default", Vec::new(), 400),
        (
            "missing object",
            "/inject",
            serde_json::to_vec(&no_object).expect("json"),
            200,
        ),
        (
            "unknown chaos kind",
            "/validate",
            serde_json::to_vec(&unknown_chaos).expect("json"),
            200,
        ),
        (
            "unparsable pod",
            "/inject",
            serde_json::to_vec(&bad_pod).expect("json"),
            200,
        ),
        ("10 MiB body", "/inject", vec![b' '; 10 * 1024 * 1024], 413),
    ];
    for (name, path, body, want) in cases {
        let (status, answer) = if want == 413 {
            post_oversized(&c, &server, path, body).await
        } else {
            post(&c, &server, path, body).await
        };
        assert_eq!(status, want, "{name}: {answer}");
        if status == 200 {
            assert_eq!(answer["response"]["allowed"], false, "{name}: {answer}");
            let message = answer["response"]["status"]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(!message.is_empty(), "{name}: denial without a reason");
        } else {
            assert!(answer["error"].is_string(), "{name}: {answer}");
        }
        // Still serving.
        let (status, _) = post(&c, &server, "/inject", pod_review_bytes()).await;
        assert_eq!(status, 200, "after {name}");
    }

    // Metrics on the plain port.
    let text = reqwest::get(format!("http://{}/metrics", server.metrics))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            r#"faultline_webhook_requests_total{endpoint="inject",kind="Pod",result="patched"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"faultline_webhook_denials_total{rule="unknown-kind"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"faultline_webhook_injections_total{mode="native"}"#),
        "{text}"
    );
    assert!(
        text.contains("faultline_webhook_request_duration_seconds_bucket"),
        "{text}"
    );

    // Rotation: open a keep-alive connection, replace the certificate files with a new CA's.
    let mut open = keep_alive_connection(server.addr, &bundle.ca_cert).await;
    let answer = send_on(&mut open, pod_review_bytes()).await;
    assert_eq!(answer["response"]["allowed"], true);
    let rotated = certs(server.dir.path());
    let new_client = client(&rotated.ca_cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // A fresh client each time: a new handshake.
        if new_client_ok(&server, &rotated.ca_cert).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // New handshakes see the new certificate: a client trusting only the old CA fails ...
    let old_only = client(&bundle.ca_cert);
    let err = old_only
        .get(url(&server, "/healthz"))
        .send()
        .await
        .expect_err("old CA must not verify the rotated certificate");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // ... while the connection opened before the rotation keeps working.
    for _ in 0..3 {
        let answer = send_on(&mut open, pod_review_bytes()).await;
        assert_eq!(answer["response"]["allowed"], true);
    }
    let (status, _) = post(&new_client, &server, "/validate", chaos_review()).await;
    assert_eq!(status, 200);
    let text = reqwest::get(format!("http://{}/metrics", server.metrics))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"faultline_webhook_reloads_total{file="tls",result="ok"}"#),
        "{text}"
    );
}

/// A 413 for a body the server did not read must close the connection *and say so*
/// (`Connection: close`): otherwise the client puts the connection back in its pool, the server
/// closes it, and the next request sent on it fails without an answer (IncompleteMessage) — what
/// an API server would see as a failed admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_an_oversized_body_is_answered() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (server, bundle) = start("requireNamespaceOptIn: false\n");
    let c = client(&bundle.ca_cert);
    wait_ready(&server, &c).await;
    for round in 0..20 {
        let (status, _) = post_oversized(&c, &server, "/inject", vec![b' '; 8 * 1024 * 1024]).await;
        assert_eq!(status, 413, "round {round}");
        let (status, _) = post(&c, &server, "/inject", pod_review_bytes()).await;
        assert_eq!(status, 200, "round {round}");
    }
}

/// hyper closes a connection that has been idle for its header read timeout (30 s by default),
/// which races with a client sending its next request on it. The webhook keeps idle connections
/// longer than the API server does (90 s), so an idle connection is still served after 35 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_not_closed_under_the_client() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (server, bundle) = start("requireNamespaceOptIn: false\n");
    let c = client(&bundle.ca_cert);
    wait_ready(&server, &c).await;
    let mut open = keep_alive_connection(server.addr, &bundle.ca_cert).await;
    let answer = send_on(&mut open, pod_review_bytes()).await;
    assert_eq!(answer["response"]["allowed"], true);
    tokio::time::sleep(Duration::from_secs(35)).await;
    let answer = send_on(&mut open, pod_review_bytes()).await;
    assert_eq!(answer["response"]["allowed"], true);
}

async fn new_client_ok(server: &Server, ca: &str) -> bool {
    client(ca)
        .get(url(server, "/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_api_pods_are_served_and_chaos_is_denied() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Default policy: requireNamespaceOptIn true, and no Kubernetes API reachable.
    let (server, bundle) = start("");
    let c = client(&bundle.ca_cert);
    wait_ready(&server, &c).await;
    // Pods are admitted, but not injected: their namespace's opt-in cannot be known.
    let (status, body) = post(&c, &server, "/inject", pod_review_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"]["patch"].is_null(), "{body}");
    assert!(
        body["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("are not known yet"),
        "{body}"
    );
    let (status, body) = post(&c, &server, "/validate", chaos_review()).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false);
    let message = body["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("namespace labels are not known yet"),
        "{message}"
    );
    let ready = c.get(url(&server, "/readyz")).send().await.expect("readyz");
    assert_eq!(
        ready.status(),
        503,
        "not ready while namespace labels are unknown"
    );
    let ready: Value = ready.json().await.expect("json");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("requireNamespaceOptIn: false"),
        "{ready}"
    );
    assert!(
        ready["namespaceLabels"]
            .as_str()
            .unwrap_or_default()
            .starts_with("unknown"),
        "{ready}"
    );

    // Policy reload: halt switches on without a restart.
    std::fs::write(
        server.dir.path().join("policy.yaml"),
        "requireNamespaceOptIn: false\nhalt: true\n",
    )
    .expect("policy");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = post(&c, &server, "/validate", chaos_review()).await;
        let message = body["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if message.contains("kill switch") {
            break;
        }
        assert!(Instant::now() < deadline, "policy not reloaded: {message}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _: PathBuf = server.dir.path().to_owned();
}

#[test]
fn a_bad_policy_file_stops_the_start_naming_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path());
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "maxTargets: {percent: 150}\n").expect("policy");
    let output = Command::new(env!("CARGO_BIN_EXE_faultline-webhook"))
        .arg("serve")
        .args(["--listen", &free_port().to_string()])
        .args(["--metrics-listen", &free_port().to_string()])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: maxTargets.percent: 150 is not a percentage",
            policy.display()
        )),
        "{stderr}"
    );

    // A missing key file is named, with how to make one; printed once, without a backtrace
    // even with RUST_BACKTRACE=1. `--listen localhost:PORT` is a valid address.
    let output = Command::new(env!("CARGO_BIN_EXE_faultline-webhook"))
        .args(["serve", "--tls-cert"])
        .arg(dir.path().join("tls.crt"))
        .args(["--tls-key", "/nonexistent/tls.key"])
        .args(["--listen", &format!("localhost:{}", free_port().port())])
        .args(["--metrics-listen", &free_port().to_string()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tls-key /nonexistent/tls.key: no such file")
            && stderr.contains("faultline-certs generate"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("/nonexistent/tls.key").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");

    // A file that cannot be read: the file and the OS's reason, each once.
    let output = Command::new(env!("CARGO_BIN_EXE_faultline-webhook"))
        .args(["serve", "--policy", "/nonexistent/policy.yaml"])
        .args(["--listen", &free_port().to_string()])
        .args(["--metrics-listen", &free_port().to_string()])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("/nonexistent/policy.yaml").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (mut server, bundle) = start("requireNamespaceOptIn: false\n");
    let c = client(&bundle.ca_cert);
    wait_ready(&server, &c).await;
    // Signalled from here: a minimal machine has no `kill` program (procps).
    let pid = nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
