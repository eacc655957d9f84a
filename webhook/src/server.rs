//! The HTTPS shell: axum + axum-server (rustls, ring), file reloads, the namespace cache, and
//! the plain-HTTP metrics server. All decisions are made by the pure handlers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::inject::Template;
use crate::metrics::Metrics;
use crate::policy::{NamespaceLabels, Policy};
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

/// What the namespace cache knows.
#[derive(Debug, Clone)]
enum CacheState {
    NotStarted,
    Syncing(String),
    Synced,
}

/// Namespace labels from a reflector over the Kubernetes API, started on first need.
#[derive(Clone)]
pub struct NamespaceCache {
    store: Arc<Mutex<Option<Store<Namespace>>>>,
    state: Arc<Mutex<CacheState>>,
}

impl Default for NamespaceCache {
    fn default() -> Self {
        NamespaceCache {
            store: Arc::new(Mutex::new(None)),
            state: Arc::new(Mutex::new(CacheState::NotStarted)),
        }
    }
}

impl NamespaceCache {
    fn set_state(&self, state: CacheState) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    fn describe(&self) -> String {
        match self.state.lock().map(|s| s.clone()) {
            Ok(CacheState::NotStarted) => "not needed".to_owned(),
            Ok(CacheState::Syncing(why)) => format!("unknown: {why}"),
            Ok(CacheState::Synced) => "synced".to_owned(),
            Err(_) => "unknown".to_owned(),
        }
    }

    fn synced(&self) -> bool {
        matches!(self.state.lock().map(|s| s.clone()), Ok(CacheState::Synced))
    }

    /// Starts the watch once (idempotent). `client` = `None`: in-cluster / kubeconfig default.
    pub fn start(&self, client: Option<kube::Client>) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if !matches!(*state, CacheState::NotStarted) {
                return;
            }
            *state = CacheState::Syncing("the Namespace watch is starting".to_owned());
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let client = match client {
                Some(c) => c,
                None => loop {
                    match kube::Client::try_default().await {
                        Ok(c) => break c,
                        Err(e) => {
                            tracing::warn!(error = %e, "no Kubernetes client; retrying in 5s");
                            cache.set_state(CacheState::Syncing(format!(
                                "no Kubernetes API client: {e}"
                            )));
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                    }
                },
            };
            cache.run(client).await;
        });
    }

    /// Runs the reflector until the process ends.
    pub async fn run(&self, client: kube::Client) {
        let api: kube::Api<Namespace> = kube::Api::all(client);
        let (reader, writer) = reflector::store();
        if let Ok(mut s) = self.store.lock() {
            *s = Some(reader);
        }
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    tracing::info!("namespace cache synced");
                    self.set_state(CacheState::Synced);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "namespace watch failed; retrying");
                    let synced =
                        matches!(self.state.lock().map(|s| s.clone()), Ok(CacheState::Synced));
                    // Once synced, keep answering from the last known state while the watch
                    // recovers; before that, say why the labels are unknown.
                    if !synced {
                        self.set_state(CacheState::Syncing(format!(
                            "the Kubernetes API cannot be read: {e}"
                        )));
                    }
                }
            }
        }
    }
}

impl NamespaceLabels for NamespaceCache {
    fn label(&self, namespace: &str, key: &str) -> Result<Option<String>, String> {
        match self.state.lock().map(|s| s.clone()) {
            Ok(CacheState::Synced) => {}
            Ok(CacheState::Syncing(why)) => return Err(why),
            Ok(CacheState::NotStarted) => {
                return Err("the Namespace watch has not started".to_owned());
            }
            Err(_) => return Err("the namespace cache is unavailable".to_owned()),
        }
        let store = self
            .store
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| "the namespace cache is unavailable".to_owned())?;
        Ok(store
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.as_ref()?.get(key).cloned()))
    }

    fn watched(&self) -> bool {
        !matches!(
            self.state.lock().map(|s| s.clone()),
            Ok(CacheState::NotStarted)
        )
    }
}

/// Shared state of the handlers.
pub struct App {
    policy: RwLock<Arc<Policy>>,
    template: RwLock<Arc<Template>>,
    namespaces: NamespaceCache,
    /// The metrics.
    pub metrics: Metrics,
}

impl App {
    /// State with the given policy, template and namespace cache.
    pub fn new(policy: Policy, template: Template, namespaces: NamespaceCache) -> Self {
        App {
            policy: RwLock::new(Arc::new(policy)),
            template: RwLock::new(Arc::new(template)),
            namespaces,
            metrics: Metrics::new(),
        }
    }

    fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| Arc::clone(&p))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    fn template(&self) -> Arc<Template> {
        self.template
            .read()
            .map(|t| Arc::clone(&t))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    fn set_policy(&self, policy: Policy) {
        if policy.require_namespace_opt_in {
            self.namespaces.start(None);
        }
        match self.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
    }

    fn set_template(&self, template: Template) {
        match self.template.write() {
            Ok(mut t) => *t = Arc::new(template),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(template),
        }
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
    // One line per admission at info, so what the webhook did to an object can be traced.
    match verdict.outcome {
        crate::Outcome::Denied => tracing::info!(
            endpoint,
            uid = %request.uid,
            kind = %verdict.kind,
            namespace,
            name = %request.name,
            message = %verdict.response.result.message,
            "denied"
        ),
        crate::Outcome::Patched => tracing::info!(
            endpoint,
            uid = %request.uid,
            kind = %verdict.kind,
            namespace,
            name = %request.name,
            volumes = verdict.injected_volumes,
            "patched"
        ),
        crate::Outcome::Allowed => tracing::info!(
            endpoint,
            uid = %request.uid,
            kind = %verdict.kind,
            namespace,
            name = %request.name,
            warnings = ?verdict.response.warnings.as_deref().unwrap_or_default(),
            "allowed"
        ),
    }
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
    admit(&app, "inject", body, |r| {
        inject::handle(r, &template, &app.namespaces)
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

/// Runs the webhook until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    install_crypto_provider();
    let policy = match config.policy.as_deref() {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    let template = match config.injection.as_deref() {
        Some(path) => Template::load(path)?,
        None => Template::default(),
    };
    for (flag, path) in [
        ("--tls-cert", &config.tls_cert),
        ("--tls-key", &config.tls_key),
    ] {
        if !path.exists() {
            anyhow::bail!(
                "{flag} {}: no such file. Make a CA and a serving certificate with \
                 `faultline-certs generate --out DIR --dns NAME` and pass \
                 --tls-cert DIR/tls.crt --tls-key DIR/tls.key",
                path.display()
            );
        }
    }
    let tls = RustlsConfig::from_pem_file(&config.tls_cert, &config.tls_key)
        .await
        .with_context(|| {
            format!(
                "loading --tls-cert {} and --tls-key {}",
                config.tls_cert.display(),
                config.tls_key.display()
            )
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
        .with_context(|| format!("binding --metrics-listen {}", config.metrics_listen))?;
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
        .with_context(|| format!("serving on --listen {}", config.listen))?;
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
