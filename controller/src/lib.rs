//! # faultline-controller
//!
//! Turns chaos objects into faults (DESIGN.md §6): for each PodChaos, NetworkChaos, StressChaos
//! and IOChaos it adds the finalizer, selects the target pods, has each target's node daemon
//! (or the API, for pod-kill) inject the fault, keeps it alive with renewed ttls until the
//! `duration` ends, recovers it (also on pause, on the policy's `halt` and on delete), and
//! records all of it in the object's status and in Events. See `docs/controller.md`.
//!
//! - [`selection`]: which pods (pure); [`plan`]: what to do to each (pure);
//!   [`lifecycle`]: when, and the status that follows (pure).
//! - [`engine`]: the one reconcile every kind runs; [`kinds`]: the four kinds behind one trait.
//! - [`daemon_client`]: the node daemons over mutual TLS; [`metrics`].
//! - [`gone_pods`]: a deleted target pod wakes its experiments at once.

pub mod daemon_client;
pub mod engine;
mod fence;
pub mod gone_pods;
pub mod kinds;
pub mod lifecycle;
pub mod metrics;
pub mod plan;
pub mod ratelimit;
pub mod selection;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use faultline_api::io_chaos::IOChaos;
use faultline_api::network_chaos::NetworkChaos;
use faultline_api::pod_chaos::PodChaos;
use faultline_api::stress_chaos::StressChaos;
use faultline_rpc::serve::OPENMETRICS;
use faultline_rpc::{Endpoints, plain};
use faultline_webhook::policy::Policy;
use futures::StreamExt as _;
use jsonrpsee::server::HttpResponse;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::daemon_client::{DaemonTls, Daemons};
use crate::engine::{Ctx, error_policy, reconcile};
use crate::kinds::Chaos;
use crate::metrics::Metrics;

/// The binary's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// The webhook's policy file: `halt: true` recovers every running experiment; its
    /// protected namespaces and `maxTargets` are enforced again on selection. Re-read when it
    /// changes.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The daemons' JSON-RPC port.
    #[arg(long, default_value_t = 31767)]
    pub daemon_port: u16,
    /// The namespace of the daemon pods.
    #[arg(long, default_value = "faultline-system")]
    pub daemon_namespace: String,
    /// The name the daemons' serving certificate carries (checked for every daemon, whatever
    /// its pod IP).
    #[arg(long, default_value = "faultline-daemon.faultline-system.svc")]
    pub daemon_server_name: String,
    /// The client certificate presented to the daemons (PEM).
    #[arg(long, value_name = "FILE")]
    pub client_cert: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub client_key: PathBuf,
    /// The CA that signed the daemons' serving certificates (PEM).
    #[arg(long, value_name = "FILE")]
    pub daemon_ca: PathBuf,
    /// Plain-HTTP /metrics and /healthz.
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub metrics_listen: std::net::SocketAddr,
    /// Watch chaos objects in this namespace only (default: every namespace).
    #[arg(long, value_name = "NS")]
    pub watch_namespace: Option<String>,
    /// Elect one active replica through a `coordination.k8s.io` Lease; the others wait. Off:
    /// this process acts at once (one replica only!).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The Lease's namespace.
    #[arg(long, default_value = "faultline-system")]
    pub lease_namespace: String,
    /// The Lease's name.
    #[arg(long, default_value = "faultline-controller")]
    pub lease_name: String,
    /// How often the policy file is checked for changes.
    #[arg(long, default_value_t = 2)]
    pub policy_poll_secs: u64,
    /// Requests per second to the API server, sustained (a token bucket as client-go's; every
    /// request, a watch's start included, takes a token).
    #[arg(long, default_value_t = 50.0, value_parser = positive_qps)]
    pub kube_qps: f64,
    /// Requests to the API server allowed at once above `--kube-qps` (the bucket's size).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_burst: u32,
    /// Per-pod Events (Injected, Recovered, failures) published per reconcile pass; past it,
    /// one Event on the chaos object counts the rest. Keeps a 5,000-pod experiment from
    /// spending its API budget on Events.
    #[arg(long, default_value_t = 100)]
    pub pod_events_per_pass: usize,
    /// Watch every pod's metadata so that a deleted target pod is recovered in its status at
    /// once; off: at its experiment's next renewal (30 s) or the end of its duration.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_deletion_watch: bool,
}

fn positive_qps(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(q) if q.is_finite() && q >= 0.01 => Ok(q),
        Ok(_) => Err("must be at least 0.01 (requests per second)".into()),
        Err(e) => Err(format!("{e} (requests per second, e.g. 50 or 0.5)")),
    }
}

struct ControllerEndpoints(Arc<Metrics>);

impl Endpoints for ControllerEndpoints {
    async fn get(&self, path: &str) -> Option<HttpResponse> {
        match path {
            "/healthz" | "/readyz" => Some(plain(200, "ok\n".into(), "text/plain")),
            "/metrics" => Some(plain(200, self.0.encode(), OPENMETRICS)),
            _ => None,
        }
    }
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Ok(Policy::load(p)?),
        None => Ok(Policy::default()),
    }
}

/// (mtime, size, inode) of a file: changes when it is rewritten or a ConfigMap's symlink swaps.
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Re-reads the policy when its file changes; each change wakes every experiment.
fn watch_policy(
    path: PathBuf,
    every: Duration,
    policy: Arc<ArcSwap<Policy>>,
    changed: tokio::sync::watch::Sender<()>,
) {
    tokio::spawn(async move {
        let mut last = stamp(&path);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            match Policy::load(&path) {
                Ok(p) => {
                    tracing::info!(path = %path.display(), halt = p.halt, "policy reloaded");
                    policy.store(Arc::new(p));
                    let _ = changed.send(());
                }
                Err(err) => {
                    tracing::error!(error = %err, "policy not reloaded; keeping the previous one")
                }
            }
        }
    });
}

fn changes(rx: tokio::sync::watch::Receiver<()>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok().map(|()| ((), rx))
    })
}

async fn run_kind<K>(
    ctx: Arc<Ctx>,
    rx: tokio::sync::watch::Receiver<()>,
    namespace: Option<String>,
    deleted: Option<tokio::sync::broadcast::Receiver<gone_pods::DeletedPod>>,
) where
    K: Chaos + Clone + serde::de::DeserializeOwned + serde::Serialize,
    K: kube::Resource<DynamicType = ()>,
{
    let api: Api<K> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut controller = Controller::new(api, watcher::Config::default());
    if let Some(deleted) = deleted {
        let wakes = gone_pods::wakes(controller.store(), deleted);
        controller = controller.reconcile_on(wakes);
    }
    controller
        .reconcile_all_on(changes(rx))
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(kind = K::KIND, error = %err, "reconcile");
            }
        })
        .await;
}

/// Waits until this process holds the Lease; then watches it and exits the process if the
/// lease is lost (another replica may be acting already: stopping at once is the safe side,
/// and the Deployment restarts this one as a follower).
async fn lead(client: &Client, config: &Config) -> anyhow::Result<()> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&identity)
        .with_duration(fence::LEASE.as_secs())
        .with_grace(fence::GRACE.as_secs())
        .build()
        .await
        .with_context(|| format!("the Lease {}/{}", config.lease_namespace, config.lease_name))?;
    let (mut leading, task) = manager.watch().await;
    tracing::info!(lease = %config.lease_name, namespace = %config.lease_namespace, %identity, "waiting to lead");
    while !*leading.borrow_and_update() {
        leading
            .changed()
            .await
            .context("the Lease watch ended before this replica became leader")?;
    }
    tracing::info!(%identity, "leading: reconciling chaos objects");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
    let name = config.lease_name.clone();
    tokio::spawn(async move {
        let mut fence = fence::Fence::new(std::time::Instant::now());
        let mut poll = tokio::time::interval(fence::POLL);
        let lost = loop {
            tokio::select! {
                changed = leading.changed() => {
                    if changed.is_err() {
                        break "the Lease watch ended".to_owned();
                    }
                    if !*leading.borrow_and_update() {
                        break "the Lease went to another replica".to_owned();
                    }
                }
                _ = poll.tick() => {
                    let now = std::time::Instant::now();
                    let seen = match tokio::time::timeout(fence::READ, leases.get(&name)).await {
                        Ok(Ok(lease)) => {
                            let spec = lease.spec.unwrap_or_default();
                            let renewed = spec.renew_time.map(|t| t.0.to_string());
                            fence.observe(&identity, spec.holder_identity.as_deref(), renewed.as_deref(), now)
                        }
                        Ok(Err(err)) => {
                            tracing::warn!(%err, "reading the Lease");
                            fence.check(now)
                        }
                        Err(_) => fence.check(now),
                    };
                    if let Err(why) = seen {
                        break why;
                    }
                }
            }
        };
        tracing::error!(
            reason = lost,
            "leadership lost; exiting so that only one replica acts"
        );
        task.abort();
        std::process::exit(1);
    });
    Ok(())
}

/// Runs the controller until SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kube_config = kube::Config::infer()
        .await
        .context("a Kubernetes client (in-cluster or $KUBECONFIG)")?;
    // The Lease has its own client, outside the QPS budget: its renewals must never queue behind
    // a burst of Events and status writes (a lost Lease stops the process).
    let lease_client = Client::try_from(kube_config.clone())
        .context("a Kubernetes client (in-cluster or $KUBECONFIG)")?;
    let client = kube::client::ClientBuilder::try_from(kube_config)
        .context("a Kubernetes client (in-cluster or $KUBECONFIG)")?
        .with_layer(&ratelimit::RateLimitLayer::new(
            config.kube_qps,
            config.kube_burst,
        ))
        .build();
    tracing::info!(
        qps = config.kube_qps,
        burst = config.kube_burst,
        "API server client"
    );
    let policy = Arc::new(ArcSwap::from_pointee(load_policy(config.policy.as_ref())?));
    let (tx, rx) = tokio::sync::watch::channel(());
    if let Some(path) = &config.policy {
        watch_policy(
            path.clone(),
            Duration::from_secs(config.policy_poll_secs.max(1)),
            policy.clone(),
            tx,
        );
    }
    let read = |p: &PathBuf, flag: &str| {
        std::fs::read(p).with_context(|| format!("{flag} {}", p.display()))
    };
    let mut identity = read(&config.client_cert, "--client-cert")?;
    identity.push(b'\n');
    identity.extend(read(&config.client_key, "--client-key")?);
    let tls = DaemonTls {
        ca_pem: read(&config.daemon_ca, "--daemon-ca")?,
        identity_pem: identity,
        server_name: config.daemon_server_name.clone(),
    };
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("--metrics-listen {}", config.metrics_listen))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening (/metrics, /healthz)");
    faultline_rpc::spawn_plain_http(listener, Arc::new(ControllerEndpoints(metrics.clone())));
    let reporter = Reporter {
        controller: "faultline-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Ctx {
        daemons: Daemons::new(
            client.clone(),
            config.daemon_namespace.clone(),
            config.daemon_port,
            tls,
            metrics.clone(),
        ),
        recorder: Recorder::new(client.clone(), reporter),
        client,
        policy,
        metrics,
        pod_events_per_pass: config.pod_events_per_pass,
        renewals: Default::default(),
        backoff: Default::default(),
        stale: Default::default(),
    });
    if config.leader_election {
        lead(&lease_client, &config).await?;
    }
    tracing::info!("controller running: PodChaos, NetworkChaos, StressChaos, IOChaos");
    let deleted = config
        .pod_deletion_watch
        .then(|| gone_pods::watch(ctx.client.clone()));
    let subscribe = || deleted.as_ref().map(|tx| tx.subscribe());
    let ns = &config.watch_namespace;
    tokio::join!(
        run_kind::<PodChaos>(ctx.clone(), rx.clone(), ns.clone(), subscribe()),
        run_kind::<NetworkChaos>(ctx.clone(), rx.clone(), ns.clone(), subscribe()),
        run_kind::<StressChaos>(ctx.clone(), rx.clone(), ns.clone(), subscribe()),
        run_kind::<IOChaos>(ctx.clone(), rx, ns.clone(), subscribe()),
    );
    Ok(())
}

/// Logs on stderr, `RUST_LOG` (default `info`), colour only on a terminal.
pub fn logs_init() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
