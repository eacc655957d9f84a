//! The controller at scale (`cargo xtask bench controller`): one NetworkChaos over 1, 100 and
//! 5,000 pods on 100 nodes of the real local API server (node stand-ins report the pods
//! Running), with simulated daemons answering in 1 ms on 100 loopback addresses and the real
//! `faultline-controller` binary (default `--kube-qps`/`--kube-burst`). For each size: time from
//! creation to `AllInjected`, from the end of `duration` to `AllRecovered`, and the API
//! requests the controller made per target, from the API server's own
//! `apiserver_request_total` (minus this bench's own requests). Writes the `## Controller`
//! section of docs/benchmarks.md when `FAULTLINE_BENCH_DOCS` is set.

mod daemons;
mod report;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use faultline_e2e::TestEnv;
use faultline_e2e::node::{NodeStandIn, PodReport};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const NODES: usize = 100;
const SIZES: &[usize] = &[1, 100, 5_000];
const DAEMON_NAME: &str = "faultline-daemon.faultline-system.svc";

/// What one size measured.
pub(crate) struct Run {
    pub(crate) targets: usize,
    pub(crate) to_injected: Duration,
    /// From the end of `duration` (the `Selected` time + duration) to `AllRecovered`.
    pub(crate) to_recovered: Duration,
    pub(crate) requests: u64,
    pub(crate) daemon_calls: (usize, usize),
    pub(crate) duration: Duration,
}

fn ip_of(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 3, node as u8 + 1)
}

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The sum of the API server's `apiserver_request_total` (every verb, resource and code).
async fn api_requests(env: &TestEnv) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = env
        .client
        .request_text(req)
        .await
        .expect("apiserver /metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Creates `count` pods labelled `group`, spread over the nodes, and reports them Running.
async fn pods(env: &TestEnv, nodes: &[NodeStandIn], group: &str, count: usize) {
    let api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    futures::stream::iter(0..count)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let name = format!("{group}-{i}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"group": group}},
                    "spec": {"containers": [{"name": "app", "image": "app:bench"}]}
                }))
                .unwrap();
                api.create(&PostParams::default(), &pod).await.expect("pod");
                let report = PodReport {
                    pod_ip: IpAddr::V4(Ipv4Addr::new(10, 200, (i / 250) as u8, (i % 250) as u8)),
                    container_ids: BTreeMap::new(),
                };
                nodes[i % nodes.len()]
                    .run_pod(&env.namespace, &name, &report)
                    .await
                    .expect("pod running");
            }
        })
        .await;
}

fn condition(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

fn selected_at(obj: &Value) -> Option<SystemTime> {
    let text = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Selected" && c["status"] == "True")?["lastTransitionTime"]
        .as_str()?;
    let ts: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(ts.as_second().try_into().ok()?))
}

/// One experiment over the pods of `group`; watches it (one request) until `AllRecovered`.
async fn run(env: &TestEnv, group: &str, targets: usize, calls: &daemons::Calls) -> Run {
    let duration = if targets > 1_000 {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(15)
    };
    let api = faultline_e2e::chaos_api(&env.client, &env.namespace, "NetworkChaos");
    let name = format!("bench-{group}");
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": name},
        "spec": {
            "action": "delay", "mode": "all",
            "selector": {"namespaces": [env.namespace], "labelSelectors": {"group": group}},
            "delay": {"latency": "10ms"},
            "duration": format!("{}s", duration.as_secs()),
        }
    }))
    .unwrap();
    let calls_before = (
        calls.apply.load(Ordering::Relaxed),
        calls.recover.load(Ordering::Relaxed),
    );
    // Our own requests in the window: two /metrics reads, the create, the watch's list+watch.
    let own = 5;
    let before = api_requests(env).await;
    let start = Instant::now();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher::watcher(api.clone(), config));
    let mut injected = None;
    let deadline = start + duration + Duration::from_secs(300);
    let recovered = loop {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: not recovered within {:?}", deadline - start))
            .expect("watch ended")
            .expect("watch");
        let watcher::Event::Apply(obj) = event else {
            continue;
        };
        let obj = serde_json::to_value(obj).unwrap();
        if injected.is_none() && condition(&obj, "AllInjected") {
            injected = Some(start.elapsed());
        }
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        assert!(
            !matches!(phase, "Failed" | "Pending"),
            "{name}: {phase}: {:#}",
            obj["status"]["conditions"]
        );
        if condition(&obj, "AllRecovered") {
            let end = selected_at(&obj).expect("Selected time") + duration;
            break SystemTime::now().duration_since(end).unwrap_or_default();
        }
    };
    let after = api_requests(env).await;
    Run {
        targets,
        to_injected: injected.expect("AllInjected before AllRecovered"),
        to_recovered: recovered,
        requests: after.saturating_sub(before).saturating_sub(own),
        daemon_calls: (
            calls.apply.load(Ordering::Relaxed) - calls_before.0,
            calls.recover.load(Ordering::Relaxed) - calls_before.1,
        ),
        duration,
    }
}

/// The controller's log, kept after the bench (also when it fails).
fn log_path() -> std::path::PathBuf {
    std::env::temp_dir().join("faultline-controller-bench.log")
}

/// `FAULTLINE_BENCH_SIZES=1,100` runs only those sizes (default: 1, 100 and 5,000).
fn sizes() -> Vec<usize> {
    std::env::var("FAULTLINE_BENCH_SIZES")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .expect("FAULTLINE_BENCH_SIZES: numbers, comma-separated")
                })
                .collect()
        })
        .unwrap_or_else(|| SIZES.to_vec())
}

fn spawn_controller(env: &TestEnv, dir: &std::path::Path, daemon_ns: &str, port: u16) -> Child {
    let certs = dir.join("certs");
    let policy = dir.join("policy.yaml");
    // No cap on targets: the default `maxTargets.pods: 100` would (rightly) refuse 5,000.
    std::fs::write(
        &policy,
        "requireNamespaceOptIn: false\nmaxDuration: null\nmaxTargets: {pods: null, percent: null}\n",
    )
    .unwrap();
    let metrics = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port(Ipv4Addr::LOCALHOST));
    let log = std::fs::File::create(log_path()).unwrap();
    let path = |p: std::path::PathBuf| p.display().to_string();
    Command::new(env!("CARGO_BIN_EXE_faultline-controller"))
        .args(["--policy", &path(policy)])
        .args(["--watch-namespace", &env.namespace])
        .args(["--daemon-namespace", daemon_ns])
        .args(["--lease-namespace", &env.namespace])
        .args(["--daemon-port", &port.to_string()])
        .args(["--client-cert", &path(certs.join("client.crt"))])
        .args(["--client-key", &path(certs.join("client.key"))])
        .args(["--daemon-ca", &path(certs.join("ca.crt"))])
        .args(["--metrics-listen", &metrics.to_string()])
        .env("KUBECONFIG", &env.kubeconfig)
        .env("RUST_LOG", "info,faultline_controller=debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("faultline-controller")
}

async fn bench() {
    let Some(env) = faultline_e2e::setup("controller-bench").await else {
        return;
    };
    env.install_crds().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = faultline_certs::GenerateOptions::new(vec![DAEMON_NAME.into()]);
    opts.ips = vec![];
    let bundle = faultline_certs::generate(&opts).expect("certs");
    faultline_certs::write_bundle(&bundle, &dir.path().join("certs")).expect("write certs");

    let setup = Instant::now();
    let port = free_port(ip_of(0));
    let addrs: Vec<SocketAddr> = (0..NODES).map(|n| (ip_of(n), port).into()).collect();
    let calls = daemons::start(&addrs, &bundle).await;
    let daemon_ns = env.extra_namespace("flsys", &[]).await;
    let prefix = faultline_e2e::unique_name("bench-node");
    let mut nodes = Vec::new();
    for n in 0..NODES {
        let node = NodeStandIn::register(&env.client, &format!("{prefix}-{n}"), ip_of(n).into())
            .await
            .expect("node");
        let daemon_pods: Api<Pod> = Api::namespaced(env.client.clone(), &daemon_ns);
        let name = format!("daemon-{n}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "faultline-daemon"}},
            "spec": {"containers": [{"name": "daemon", "image": "faultline/daemon:bench"}]}
        }))
        .unwrap();
        daemon_pods
            .create(&PostParams::default(), &pod)
            .await
            .expect("daemon pod");
        let report = PodReport {
            pod_ip: ip_of(n).into(),
            container_ids: BTreeMap::new(),
        };
        node.run_pod(&daemon_ns, &name, &report)
            .await
            .expect("daemon pod running");
        nodes.push(node);
    }
    let sizes = sizes();
    for &size in &sizes {
        pods(&env, &nodes, &format!("g{size}"), size).await;
    }
    eprintln!(
        "setup: {NODES} nodes, {} pods in {:.0?}",
        sizes.iter().sum::<usize>(),
        setup.elapsed()
    );
    let mut controller = spawn_controller(&env, dir.path(), &daemon_ns, port);
    // Measure experiments, not the controller's start (Lease, watches).
    let log_path = log_path();
    let started = Instant::now();
    while !std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("controller running")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the controller did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut runs = Vec::new();
    for &size in &sizes {
        let r = run(&env, &format!("g{size}"), size, &calls).await;
        eprintln!(
            "{size} targets: AllInjected after {:.2?}, AllRecovered {:.2?} after the end, {} API requests ({:.3}/target), daemon calls {:?}",
            r.to_injected,
            r.to_recovered,
            r.requests,
            r.requests as f64 / size as f64,
            r.daemon_calls
        );
        assert!(
            r.daemon_calls.0 >= size && r.daemon_calls.1 == size,
            "every target applied and recovered once: {:?}",
            r.daemon_calls
        );
        runs.push(r);
    }
    let _ = controller.kill();
    let _ = controller.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let errors = log.lines().filter(|l| l.contains(" ERROR ")).count();
    assert_eq!(errors, 0, "controller errors:\n{log}");
    let section = report::section(&runs);
    println!("{section}");
    if let Ok(docs) = std::env::var("FAULTLINE_BENCH_DOCS") {
        faultline_e2e::bench::write_section(std::path::Path::new(&docs), &section)
            .expect("docs/benchmarks.md");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}
