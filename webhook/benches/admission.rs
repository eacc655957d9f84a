//! Admission benchmark (`cargo bench -p faultline-webhook`, harness = false).
//!
//! Three HTTPS targets, measured in the same run and in alternating order (MEASURE.md):
//! * `bare`: an axum + axum-server (rustls, ring) endpoint that reads the body and returns a
//!   fixed AdmissionReview — the ceiling (this same executable, re-run as a child process);
//! * `inject`: the real `faultline-webhook` binary, `/inject` with a Deployment-made pod;
//! * `validate`: the same binary, `/validate` with a PodChaos (allowed).
//!
//! The load generator (in this process) keeps HTTP/1.1 keep-alive TLS connections and runs two
//! phases per target: a fixed rate of 1,000 req/s (open loop: latency counted from the
//! scheduled send time, so a stall is not hidden) and saturation (closed loop, every connection
//! sends back to back). It reports p50/p99 latency, throughput, and the webhook's RSS (VmRSS
//! after the run, VmHWM peak). Client and servers share the machine's cores: the ratio to
//! `bare` is what carries meaning.
//!
//! Environment: `FAULTLINE_BENCH_SECS` (phase length, default 5), `FAULTLINE_BENCH_ROUNDS`
//! (default 2; the best round per target and phase is reported).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const BARE_ENV: &str = "FAULTLINE_BENCH_BARE_LISTEN";
const FIXED_ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

fn main() {
    if let Ok(listen) = std::env::var(BARE_ENV) {
        bare_server(&listen);
        return;
    }
    if let Err(e) = run() {
        eprintln!("benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

/// The ceiling: TLS + HTTP + reading the body, no admission work.
fn bare_server(listen: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = std::env::var("FAULTLINE_BENCH_CERT").unwrap_or_default();
    let key = std::env::var("FAULTLINE_BENCH_KEY").unwrap_or_default();
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad {BARE_ENV}: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    rt.block_on(async move {
        let tls = match axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bare server TLS: {e}");
                std::process::exit(2);
            }
        };
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|body: axum::body::Bytes| async move {
                std::hint::black_box(body.len());
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    FIXED_ANSWER,
                )
            }),
        );
        if let Err(e) = axum_server::bind_rustls(addr, tls)
            .serve(app.into_make_service())
            .await
        {
            eprintln!("bare server: {e}");
        }
    });
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[derive(Clone, Copy)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    /// Expected HTTP status.
    status: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    p50_us: f64,
    p99_us: f64,
    rps: f64,
    errors: u64,
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn run() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs: u64 = std::env::var("FAULTLINE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: usize = std::env::var("FAULTLINE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir()?;
    let mut opts = faultline_certs::GenerateOptions::new(vec!["localhost".into()]);
    opts.ips = vec!["127.0.0.1".parse()?];
    let bundle = faultline_certs::generate(&opts)?;
    faultline_certs::write_bundle(&bundle, dir.path())?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "requireNamespaceOptIn: false\n")?;

    let webhook_addr = free_port()?;
    let metrics_addr = free_port()?;
    let bare_addr = free_port()?;
    let webhook = Proc(
        Command::new(env!("CARGO_BIN_EXE_faultline-webhook"))
            .arg("serve")
            .args(["--listen", &webhook_addr.to_string()])
            .args(["--metrics-listen", &metrics_addr.to_string()])
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .arg("--policy")
            .arg(&policy)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let bare = Proc(
        Command::new(std::env::current_exe()?)
            .env(BARE_ENV, bare_addr.to_string())
            .env("FAULTLINE_BENCH_CERT", dir.path().join("tls.crt"))
            .env("FAULTLINE_BENCH_KEY", dir.path().join("tls.key"))
            .stdout(Stdio::null())
            .spawn()?,
    );

    let inject_body = Bytes::from(std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/review-pod.json"),
    )?);
    let validate_body = Bytes::from(serde_json::to_vec(&serde_json::json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "0d1c3b2a-5e4f-4a6b-8c7d-9e0f1a2b3c4d",
            "kind": {"group": "chaos.faultline.dev", "version": "v1alpha1", "kind": "PodChaos"},
            "resource": {"group": "chaos.faultline.dev", "version": "v1alpha1", "resource": "podchaos"},
            "requestKind": {"group": "chaos.faultline.dev", "version": "v1alpha1", "kind": "PodChaos"},
            "requestResource": {"group": "chaos.faultline.dev", "version": "v1alpha1", "resource": "podchaos"},
            "name": "kill-cart", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
                "metadata": {"name": "kill-cart", "namespace": "shop"},
                "spec": {"action": "pod-kill", "mode": "fixed", "value": "2",
                         "selector": {"namespaces": ["shop"], "labelSelectors": {"app": "cart"}}}
            },
            "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))?);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ca = bundle.ca_cert.clone();
    rt.block_on(async move {
        let targets = [
            (Target { name: "bare", addr: bare_addr, path: "/", status: 200 }, inject_body.clone()),
            (Target { name: "inject", addr: webhook_addr, path: "/inject", status: 200 }, inject_body.clone()),
            (Target { name: "validate", addr: webhook_addr, path: "/validate", status: 200 }, validate_body),
            // Diagnostic: the webhook's shell alone (routing, body, metrics, a 400 JSON answer).
            (Target { name: "shell (400 on {})", addr: webhook_addr, path: "/inject", status: 400 }, Bytes::from_static(b"{}")),
        ];
        for (t, _) in &targets {
            wait_up(t.addr, &ca).await?;
        }
        // Warm-up: connections, allocator, caches.
        for (t, body) in &targets {
            saturate(*t, body.clone(), &ca, 8, Duration::from_secs(1)).await?;
        }
        let phase = Duration::from_secs(secs);
        let mut fixed: Vec<Vec<Phase>> = vec![Vec::new(); targets.len()];
        let mut sat: Vec<Vec<Phase>> = vec![Vec::new(); targets.len()];
        for round in 0..rounds {
            // Alternate the order every round.
            let order: Vec<usize> = if round % 2 == 0 { vec![0, 1, 2, 3] } else { vec![3, 2, 1, 0] };
            for &i in &order {
                let (t, body) = &targets[i];
                fixed[i].push(fixed_rate(*t, body.clone(), &ca, 8, 1000.0, phase).await?);
                sat[i].push(saturate(*t, body.clone(), &ca, 16, phase).await?);
            }
        }
        let (rss, hwm) = rss_kib(webhook.0.id());
        let (bare_rss, bare_hwm) = rss_kib(bare.0.id());
        let best_latency = |v: &Vec<Phase>| {
            v.iter()
                .copied()
                .min_by(|a, b| a.p99_us.total_cmp(&b.p99_us))
                .unwrap_or_default()
        };
        let best_rps = |v: &Vec<Phase>| {
            v.iter()
                .copied()
                .max_by(|a, b| a.rps.total_cmp(&b.rps))
                .unwrap_or_default()
        };
        // Ratios to bare within each round (neighbouring phases share the machine's mood),
        // then the median over rounds.
        let ratios = |i: usize| {
            let mut r: Vec<f64> = sat[i]
                .iter()
                .zip(&sat[0])
                .map(|(t, b)| t.rps / b.rps.max(1.0))
                .collect();
            r.sort_by(f64::total_cmp);
            r
        };
        println!("\n## Webhook admission benchmark ({rounds} rounds x {secs} s per phase)\n");
        println!("Latency at 1,000 req/s: best round by p99. Saturation: best round; `vs bare`: median of the per-round ratios [min-max].\n");
        println!("| target | p50 @1k/s (ms) | p99 @1k/s (ms) | achieved @1k/s | saturation req/s | vs bare | p50 sat (ms) | p99 sat (ms) | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (i, (t, _)) in targets.iter().enumerate() {
            let f = best_latency(&fixed[i]);
            let s = best_rps(&sat[i]);
            let errors: u64 = fixed[i].iter().chain(&sat[i]).map(|p| p.errors).sum();
            let r = ratios(i);
            let median = r.get(r.len() / 2).copied().unwrap_or_default();
            let (lo, hi) = (
                r.first().copied().unwrap_or_default(),
                r.last().copied().unwrap_or_default(),
            );
            println!(
                "| {} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2} [{:.2}-{:.2}] | {:.3} | {:.3} | {} |",
                t.name,
                f.p50_us / 1000.0,
                f.p99_us / 1000.0,
                f.rps,
                s.rps,
                median,
                lo,
                hi,
                s.p50_us / 1000.0,
                s.p99_us / 1000.0,
                errors
            );
        }
        println!("\nwebhook RSS after the run: {:.1} MiB (peak {:.1} MiB); bare server: {:.1} MiB (peak {:.1} MiB)",
            rss as f64 / 1024.0, hwm as f64 / 1024.0, bare_rss as f64 / 1024.0, bare_hwm as f64 / 1024.0);
        for (i, (t, _)) in targets.iter().enumerate() {
            let all: Vec<String> = sat[i].iter().map(|p| format!("{:.0}", p.rps)).collect();
            let lat: Vec<String> = fixed[i].iter().map(|p| format!("{:.3}", p.p99_us / 1000.0)).collect();
            println!("rounds {}: saturation req/s [{}], p99 @1k/s ms [{}]", t.name, all.join(", "), lat.join(", "));
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<Sender> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(
        ca_pem.as_bytes(),
    )?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn wait_up(addr: SocketAddr, ca: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match connect(addr, ca).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn one(send: &mut Sender, path: &str, status: u16, body: Bytes) -> bool {
    if send.ready().await.is_err() {
        return false;
    }
    let Ok(req) = http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
    else {
        return false;
    };
    match send.send_request(req).await {
        Ok(resp) if resp.status() == status => resp.into_body().collect().await.is_ok(),
        _ => false,
    }
}

fn summarize(mut lat_us: Vec<u32>, errors: u64, elapsed: Duration) -> Phase {
    lat_us.sort_unstable();
    let pick = |q: f64| {
        if lat_us.is_empty() {
            0.0
        } else {
            f64::from(lat_us[((lat_us.len() - 1) as f64 * q) as usize])
        }
    };
    Phase {
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        rps: lat_us.len() as f64 / elapsed.as_secs_f64(),
        errors,
    }
}

async fn saturate(
    t: Target,
    body: Bytes,
    ca: &str,
    conns: usize,
    length: Duration,
) -> anyhow::Result<Phase> {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..conns {
        let mut send = connect(t.addr, ca).await?;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(65_536);
            let mut errors = 0u64;
            while start.elapsed() < length {
                let sent = Instant::now();
                if one(&mut send, t.path, t.status, body.clone()).await {
                    lat.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        lat.extend(l);
        errors += e;
    }
    Ok(summarize(lat, errors, start.elapsed()))
}

async fn fixed_rate(
    t: Target,
    body: Bytes,
    ca: &str,
    conns: usize,
    rate: f64,
    length: Duration,
) -> anyhow::Result<Phase> {
    let per_conn = Duration::from_secs_f64(conns as f64 / rate);
    let total = (rate * length.as_secs_f64()) as usize / conns;
    let mut tasks = Vec::new();
    let start = Instant::now() + Duration::from_millis(50);
    for c in 0..conns {
        let mut send = connect(t.addr, ca).await?;
        let body = body.clone();
        // Stagger the connections across one interval.
        let offset = per_conn.mul_f64(c as f64 / conns as f64);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            let mut errors = 0u64;
            let mut last_done = Instant::now();
            for i in 0..total {
                let due = start + offset + per_conn * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(due.into()).await;
                // Coordinated omission: when the previous answer came after this request was
                // due, the server held it back, so count from `due`; otherwise from the actual
                // send (the timer wheel wakes up to 1 ms late, which is the client's lateness).
                let begin = if last_done > due { due } else { Instant::now() };
                if one(&mut send, t.path, t.status, body.clone()).await {
                    lat.push(begin.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                } else {
                    errors += 1;
                }
                last_done = Instant::now();
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        lat.extend(l);
        errors += e;
    }
    Ok(summarize(lat, errors, length))
}
