//! # faultline-daemon
//!
//! The privileged node agent (DESIGN.md §5): it applies and recovers faults on its node when
//! the controller asks, over JSON-RPC 2.0 with mutual TLS.
//!
//! ```text
//! faultline-daemon --listen 0.0.0.0:31767 --tls-cert F --tls-key F --client-ca F --state-dir DIR
//!                  [--metrics-listen 0.0.0.0:31766] [--containerd-socket PATH]
//!                  [--containerd-namespace k8s.io] [--node-name N] [--insecure-listen 127.0.0.1:P]
//! ```
//!
//! ## Layout
//! - [`server`], [`tls`]: listeners (mTLS, loopback-only plain HTTP, metrics); the accept loop
//!   is `faultline_rpc`'s, shared with the sidecar.
//! - [`methods`]: the RPC methods with strict params; [`error`]: error codes and objects.
//! - [`apply`]: what each method does; [`lifecycle`]: what every apply goes through (ids, the
//!   per-id lock of [`id_lock`], journal-first ordering, failed applies); [`faults`]: the
//!   registry of applied faults, recovery, ttl timers, the start-up pass; [`journal`] +
//!   [`record`]: the crash-safe journal.
//! - Targets: [`target`] (container or pid → [`process::ProcessRef`]), [`containerd`].
//! - Faults: [`stress`] + [`cgroup`], [`pod_failure`], [`io_relay`] + [`netns`], [`network`].
//! - [`capabilities`] + [`qdisc_probe`]: what the node can do, probed at start.
//!
//! ## Guarantees
//! Every fault is journaled (fsync'd) before it is applied and unjournaled after it is
//! recovered; at start every journaled fault is recovered; a fault with a `ttl` is recovered
//! by the daemon when it expires; SIGTERM recovers every fault before exiting. See
//! `docs/daemon.md`.

pub(crate) mod apply;
pub(crate) mod capabilities;
pub(crate) mod cgroup;
pub(crate) mod clock;
pub(crate) mod containerd;
pub(crate) mod error;
pub(crate) mod faults;
pub(crate) mod id_lock;
pub mod io_relay;
pub mod journal;
pub(crate) mod lifecycle;
pub(crate) mod methods;
pub(crate) mod metrics;
pub mod netns;
pub mod network;
pub mod pod_failure;
pub mod process;
pub(crate) mod qdisc_probe;
pub mod record;
pub(crate) mod server;
pub(crate) mod stress;
pub(crate) mod target;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use faultline_api::rpc::daemon::Capabilities;

use crate::cgroup::Hierarchy;
use crate::containerd::Containerd;
use crate::faults::Registry;
use crate::journal::Journal;
use crate::metrics::Metrics;

/// Logs on stderr, level from `RUST_LOG` (default `info`), JSON with `--log-format json`
/// semantics via `FAULTLINE_LOG_FORMAT=json`; colour only on a terminal.
pub fn logs_init() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("FAULTLINE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `err` and its causes, each once.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    faultline_api::report::error_text(err)
}

/// The binary's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Where JSON-RPC is served over mutual TLS (needs --tls-cert, --tls-key, --client-ca).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP JSON-RPC, no authentication: loopback addresses only (refused otherwise).
    #[arg(long, value_name = "ADDR")]
    pub insecure_listen: Option<String>,
    /// The daemon's serving certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub tls_key: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub client_ca: Option<PathBuf>,
    /// The journal of applied faults lives here (one daemon per directory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Plain-HTTP /metrics and /healthz.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// containerd's socket (default: the first of the usual places that exists).
    #[arg(long, value_name = "PATH")]
    pub containerd_socket: Option<PathBuf>,
    /// containerd namespace of the pods' containers.
    #[arg(long, default_value = "k8s.io", value_name = "NS")]
    pub containerd_namespace: String,
    /// This node's name (logs).
    #[arg(long, env = "NODE_NAME", value_name = "N")]
    pub node_name: Option<String>,
    /// The fault sidecar's JSON-RPC port on 127.0.0.1 inside a pod.
    #[arg(long, default_value_t = 65533, value_name = "PORT")]
    pub sidecar_port: u16,
    /// Image containers are switched to by podFailure.apply when the call names none.
    #[arg(long, default_value = pod_failure::DEFAULT_PAUSE_IMAGE, value_name = "IMAGE")]
    pub pause_image: String,
}

/// What the operations need from the flags.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) containerd_socket: Option<PathBuf>,
    pub(crate) containerd_namespace: String,
    pub(crate) sidecar_port: u16,
    pub(crate) pause_image: String,
    pub(crate) stress_ng: Option<PathBuf>,
}

/// The daemon's state, shared by every call.
pub(crate) struct Daemon {
    pub(crate) settings: Settings,
    pub(crate) faults: Registry,
    pub(crate) metrics: Metrics,
    pub(crate) capabilities: Capabilities,
    hierarchies: Vec<Hierarchy>,
    runtime: tokio::sync::Mutex<Option<Containerd>>,
    kube: tokio::sync::OnceCell<kube::Client>,
    /// Network changes one at a time: each reads the faults on a device and rewrites its
    /// qdiscs, which two at once would race on.
    network: tokio::sync::Mutex<()>,
    /// Set at SIGTERM: applies are refused from then on, so none lands after the last
    /// recovery pass.
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

impl Daemon {
    /// Opens the journal (taking its lock) and probes the node.
    pub(crate) async fn new(config: &Config) -> anyhow::Result<Arc<Self>> {
        let journal = Journal::open(&config.state_dir)?;
        let (layout, hierarchies) =
            cgroup::host_layout().context("read /proc/self/mountinfo for the cgroup layout")?;
        let settings = Settings {
            containerd_socket: config.containerd_socket.clone(),
            containerd_namespace: config.containerd_namespace.clone(),
            sidecar_port: config.sidecar_port,
            pause_image: config.pause_image.clone(),
            stress_ng: stress::find_stress_ng(),
        };
        let runtime = match Containerd::connect(
            settings.containerd_socket.as_deref(),
            &settings.containerd_namespace,
        )
        .await
        {
            Ok(c) => {
                tracing::info!(socket = %c.socket.display(), version = %c.version, namespace = %c.namespace, "containerd reachable");
                Some(c)
            }
            Err(err) => {
                tracing::warn!(error = %err, "containerd not reachable; container targets will fail until it is");
                None
            }
        };
        let capabilities =
            capabilities::probe(runtime.as_ref(), layout, settings.stress_ng.is_some()).await;
        tracing::info!(capabilities = %serde_json::to_string(&capabilities).unwrap_or_default(), "node probed");
        Ok(Arc::new(Self {
            settings,
            faults: Registry::new(journal),
            metrics: Metrics::new(),
            capabilities,
            hierarchies,
            runtime: tokio::sync::Mutex::new(runtime),
            kube: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(()),
            closing: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

#[cfg(test)]
impl Daemon {
    /// A daemon on `state_dir` with no container runtime, for tests of the registry and the
    /// apply/recover lifecycle (faults whose undo needs no runtime: stress).
    pub(crate) fn for_tests(state_dir: &std::path::Path) -> Arc<Self> {
        Arc::new(Self {
            settings: Settings {
                containerd_socket: None,
                containerd_namespace: "k8s.io".into(),
                sidecar_port: 65533,
                pause_image: pod_failure::DEFAULT_PAUSE_IMAGE.into(),
                stress_ng: None,
            },
            faults: Registry::new(Journal::open(state_dir).expect("journal")),
            metrics: Metrics::new(),
            capabilities: Capabilities {
                version: String::new(),
                runtime: None,
                cgroup: faultline_api::rpc::daemon::CgroupLayout::V2,
                qdiscs: Default::default(),
                stress_ng: false,
            },
            hierarchies: Vec::new(),
            runtime: tokio::sync::Mutex::new(None),
            kube: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(()),
            closing: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// Runs the daemon until `shutdown` resolves; then recovers every fault and stops.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = match (
        &config.listen,
        &config.tls_cert,
        &config.tls_key,
        &config.client_ca,
    ) {
        (Some(addr), Some(cert), Some(key), Some(ca)) => {
            Some((*addr, tls::server_config(cert, key, ca)?))
        }
        (Some(_), ..) => anyhow::bail!(
            "--listen needs --tls-cert, --tls-key and --client-ca (clients must present a \
             certificate signed by --client-ca)"
        ),
        (None, ..) => None,
    };
    let insecure = match &config.insecure_listen {
        Some(addr) => server::checked_insecure(addr)?,
        None => Vec::new(),
    };
    if tls.is_none() && insecure.is_empty() {
        anyhow::bail!(
            "nothing to listen on: pass --listen (mutual TLS) or --insecure-listen (loopback)"
        );
    }
    let daemon = Daemon::new(&config).await?;
    if let Some(node) = &config.node_name {
        tracing::info!(node, "node agent starting");
    }
    let (found, unreadable) = faults::recover_journal(&daemon).await?;
    if found + unreadable > 0 {
        tracing::info!(found, unreadable, "journal of an earlier run handled");
    }
    let servers = server::start(daemon.clone(), tls, &insecure, config.metrics_listen).await?;
    shutdown.await;
    tracing::info!("shutting down: recovering every fault");
    daemon.close().await;
    servers.stop();
    match daemon.recover_all().await {
        Ok(recovered) => tracing::info!(recovered = recovered.len(), "every fault recovered"),
        Err(err) => {
            tracing::error!(error = %error_chain(&err), "some faults could not be recovered; they stay journaled for the next start")
        }
    }
    Ok(())
}
