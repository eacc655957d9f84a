//! The HTTPS shell: axum + axum-server (rustls, ring), file reloads, the namespace cache, and
//! the plain-HTTP metrics server. All decisions are made by the pure handlers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::inject::Template;
use crate::metrics::Metrics;
pub use crate::namespace_cache::NamespaceCache;
use crate::policy::Policy;
use crate::review;
use crate::{Verdict, admission, inject};

/// Largest accepted body: two objects at etcd's 1.5 MiB limit (object + oldObject), the
/// envelope, and room. Larger bodies get HTTP 413.
pub const MAX_BODY: usize = 6 * 1024 * 1024;

/// How long an idle keep-alive connection stays open (hyper's header read timeout, which starts
/// when a connection goes idle). It must be longer than the API server's own idle timeout for
/// webhook connections (90 s, Go's `IdleConnTimeout` in Kubernetes' transport defaults): the
/// client then always closes an idle connection first, and never sends a request on one the
/// server is closing at that moment — an admission that would fail with no answer.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Server settings (the flags of `faultline-webhook serve`).
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTPS address.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub tls_cert: PathBuf,
    /// PEM private key.
    pub tls_key: PathBuf,
    /// Plain-HTTP metrics address.
    pub metrics_listen: SocketAddr,
    /// Policy file (absent = defaults).
    pub policy: Option<PathBuf>,
    /// Injection template (absent = defaults).
    pub injection: Option<PathBuf>,
    /// How often watched files are checked.
    pub reload_interval: Duration,
}

/// Shared state of the handlers. The policy and the template are swapped whole on reload
/// (`ArcSwap`): readers never wait and there is no lock to poison.
pub struct App {
    policy: ArcSwap<Policy>,
    template: ArcSwap<Template>,
    namespaces: NamespaceCache,
    /// The metrics.
    pub metrics: Metrics,
}

impl App {
    /// State with the given policy, template and namespace cache.
    pub fn new(policy: Policy, template: Template, namespaces: NamespaceCache) -> Self {
        App {
            policy: ArcSwap::from_pointee(policy),
            template: ArcSwap::from_pointee(template),
            namespaces,
            metrics: Metrics::new(),
        }
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    fn template(&self) -> Arc<Template> {
        self.template.load_full()
    }

    fn set_policy(&self, policy: Policy) {
        if policy.require_namespace_opt_in {
            self.namespaces.start(None);
        } else {
            tracing::warn!(
                "requireNamespaceOptIn is false: namespace labels are not checked, so chaos targets and sidecar \
                 injection rest on the pod label, the protected namespaces and the webhook configuration's selectors"
            );
        }
        self.policy.store(Arc::new(policy));
    }

    fn set_template(&self, template: Template) {
        self.template.store(Arc::new(template));
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn rejected(
    app: &App,
    endpoint: &'static str,
    start: Instant,
    status: StatusCode,
    message: String,
) -> Response {
    app.metrics.bad_request(endpoint, start.elapsed());
    tracing::debug!(endpoint, %status, %message, "rejected a body");
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    json(status, body)
}

fn admit(
    app: &App,
    endpoint: &'static str,
    body: Result<Bytes, BytesRejection>,
    decide: impl FnOnce(&review::Review) -> Verdict,
) -> Response {
    let start = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let mut response = rejected(app, endpoint, start, status, rejection.body_text());
            // The body was not read to its end (too large, or broken off), so hyper will close
            // this connection after the answer. Say so: without `Connection: close` the client
            // pools the connection and its next request on it fails with no answer at all.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    let review = match review::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            return rejected(app, endpoint, start, StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let verdict = decide(&review);
    let request = &review.request;
    let namespace = request.namespace.as_deref().unwrap_or("");
    // One line per admission at info, so what the webhook did to an object can be traced:
    // the denial's message, the number of injected volumes, or the warnings of an allowance.
    let detail = match verdict.outcome {
        crate::Outcome::Denied => verdict.response.result.message.clone(),
        crate::Outcome::Patched => format!("{} volume(s) injected", verdict.injected_volumes),
        crate::Outcome::Allowed => verdict
            .response
            .warnings
            .as_deref()
            .unwrap_or_default()
            .join("; "),
    };
    tracing::info!(
        endpoint,
        uid = %request.uid,
        kind = %verdict.kind,
        namespace,
        name = %request.name,
        detail,
        "{}",
        verdict.outcome.as_str()
    );
    app.metrics.observe(endpoint, &verdict, start.elapsed());
    json(StatusCode::OK, review::encode(verdict.response))
}

async fn validate_handler(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let policy = app.policy();
    admit(&app, "validate", body, |r| {
        admission::validate(r, &policy, &app.namespaces)
    })
}

async fn default_handler(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    admit(&app, "default", body, admission::default)
}

async fn inject_handler(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let template = app.template();
    let policy = app.policy();
    admit(&app, "inject", body, |r| {
        inject::handle(r, &template, &app.namespaces, &policy)
    })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let policy = app.policy();
    let labels = app.namespaces.describe();
    // Not ready while the policy needs namespace labels that are not known: every chaos
    // object would be denied and no pod injected, and the body says why.
    let waiting = policy.require_namespace_opt_in && !app.namespaces.synced();
    let (status, state) = if waiting {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting")
    } else {
        (StatusCode::OK, "ok")
    };
    let mut body = serde_json::json!({
        "status": state,
        "halt": policy.halt,
        "namespaceLabels": labels,
    });
    if waiting {
        body["reason"] = serde_json::Value::String(format!(
            "the policy requires namespace opt-in (requireNamespaceOptIn) and the namespace labels are {labels}: \
             chaos experiments are denied and pods are not injected until they are known. Without a cluster, \
             set requireNamespaceOptIn: false in the policy file"
        ));
    }
    json(status, serde_json::to_vec(&body).unwrap_or_default())
}

async fn metrics_handler(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// The HTTPS router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/validate", post(validate_handler))
        .route("/default", post(default_handler))
        .route("/inject", post(inject_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// The metrics router.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(app)
}

/// Identity of a file's current content for change detection.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

async fn watch_files(app: Arc<App>, tls: RustlsConfig, config: Config) {
    let mut tls_stamp = (stamp(&config.tls_cert), stamp(&config.tls_key));
    let mut policy_stamp = config.policy.as_deref().map(stamp);
    let mut template_stamp = config.injection.as_deref().map(stamp);
    let mut tick = tokio::time::interval(config.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = (stamp(&config.tls_cert), stamp(&config.tls_key));
        if now != tls_stamp && now.0.is_some() && now.1.is_some() {
            match tls
                .reload_from_pem_file(&config.tls_cert, &config.tls_key)
                .await
            {
                Ok(()) => {
                    tracing::info!(cert = %config.tls_cert.display(), "reloaded the TLS certificate");
                    app.metrics.reload("tls", true);
                    tls_stamp = now;
                }
                Err(e) => {
                    // Half-rotated (new cert, old key)? Retry on the next tick.
                    tracing::warn!(cert = %config.tls_cert.display(), error = %e, "TLS reload failed; keeping the previous certificate");
                    app.metrics.reload("tls", false);
                }
            }
        }
        if let Some(path) = config.policy.as_deref() {
            let now = stamp(path);
            if Some(now) != policy_stamp && now.is_some() {
                policy_stamp = Some(now);
                match Policy::load(path) {
                    Ok(p) => {
                        tracing::info!(policy = %path.display(), halt = p.halt, "reloaded the policy");
                        app.metrics.reload("policy", true);
                        app.set_policy(p);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "policy reload failed; keeping the previous policy");
                        app.metrics.reload("policy", false);
                    }
                }
            }
        }
        if let Some(path) = config.injection.as_deref() {
            let now = stamp(path);
            if Some(now) != template_stamp && now.is_some() {
                template_stamp = Some(now);
                match Template::load(path) {
                    Ok(t) => {
                        tracing::info!(injection = %path.display(), "reloaded the injection template");
                        app.metrics.reload("injection", true);
                        app.set_template(t);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "injection template reload failed; keeping the previous one");
                        app.metrics.reload("injection", false);
                    }
                }
            }
        }
    }
}

/// Installs the ring CryptoProvider for the process (no-op if one is installed already).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why the webhook could not start or stopped serving; each names the flag or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The policy file does not load.
    #[error(transparent)]
    Policy(crate::policy::PolicyError),
    /// The injection template does not load.
    #[error(transparent)]
    Injection(crate::inject::TemplateError),
    /// A TLS file does not exist.
    #[error(
        "{flag} {}: no such file. Make a CA and a serving certificate with \
         `faultline-certs generate --out DIR --dns NAME` and pass \
         --tls-cert DIR/tls.crt --tls-key DIR/tls.key",
        path.display()
    )]
    MissingTlsFile {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The missing file.
        path: PathBuf,
    },
    /// The certificate and key do not load.
    #[error("loading --tls-cert {} and --tls-key {}", cert.display(), key.display())]
    Tls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls or the file system said.
        source: std::io::Error,
    },
    /// An address cannot be bound or served.
    #[error("{flag} {addr}")]
    Bind {
        /// The flag naming the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs the webhook until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<(), ServeError> {
    install_crypto_provider();
    let policy = match config.policy.as_deref() {
        Some(path) => Policy::load(path).map_err(ServeError::Policy)?,
        None => Policy::default(),
    };
    let template = match config.injection.as_deref() {
        Some(path) => Template::load(path).map_err(ServeError::Injection)?,
        None => Template::default(),
    };
    for (flag, path) in [
        ("--tls-cert", &config.tls_cert),
        ("--tls-key", &config.tls_key),
    ] {
        if !path.exists() {
            return Err(ServeError::MissingTlsFile {
                flag,
                path: path.clone(),
            });
        }
    }
    let tls = RustlsConfig::from_pem_file(&config.tls_cert, &config.tls_key)
        .await
        .map_err(|source| ServeError::Tls {
            cert: config.tls_cert.clone(),
            key: config.tls_key.clone(),
            source,
        })?;
    let app = Arc::new(App::new(
        Policy::default(),
        template,
        NamespaceCache::default(),
    ));
    app.set_policy(policy);

    let handle: Handle<SocketAddr> = Handle::new();
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| ServeError::Bind {
            flag: "--metrics-listen",
            addr: config.metrics_listen,
            source,
        })?;
    let metrics_app = metrics_router(Arc::clone(&app));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    tokio::spawn(watch_files(Arc::clone(&app), tls.clone(), config.clone()));

    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
    });

    let listening = handle.clone();
    tokio::spawn(async move {
        if let Some(addr) = listening.listening().await {
            tracing::info!(%addr, "serving admission over HTTPS");
        }
    });
    let mut server = axum_server::bind_rustls(config.listen, tls).handle(handle);
    server
        .http_builder()
        .http1()
        .header_read_timeout(IDLE_CONNECTION_TIMEOUT);
    server
        .serve(router(app).into_make_service())
        .await
        .map_err(|source| ServeError::Bind {
            flag: "--listen",
            addr: config.listen,
            source,
        })?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
