//! JSON-RPC 2.0 (HTTP POST and WebSocket on one port, path `/`) plus `GET /ready`,
//! `GET /healthz` and `GET /metrics` on the same listener; optionally the same service on a
//! Unix socket.
//!
//! Methods (params by name): `rules.set {"rules": [..]}`, `rules.add {"rule": {..}}`,
//! `rules.remove {"id": ".."}`, `rules.clear`, `rules.list`, `status`. Every change returns the
//! new `generation`. Bad params get error -32602 whose `data` is
//! `{"field": "<first bad field>", "violations": [{"field", "reason"}, ...]}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use faultline_api::iorule::IoRule;
use jsonrpsee::RpcModule;
use jsonrpsee::server::ServerHandle;
use jsonrpsee::server::{
    HttpBody, HttpRequest, HttpResponse, Server, StopHandle, serve_with_graceful_shutdown,
    stop_channel,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{Value, json};
use tower::Service;

use crate::App;
use crate::rules::RuleError;

const INVALID_PARAMS: i32 = -32602;

fn invalid(field: &str, reason: impl Into<String>) -> ErrorObjectOwned {
    let reason = reason.into();
    ErrorObjectOwned::owned(
        INVALID_PARAMS,
        format!("invalid params: {field}: {reason}"),
        Some(json!({"field": field, "violations": [{"field": field, "reason": reason}]})),
    )
}

fn rule_error(err: RuleError) -> ErrorObjectOwned {
    match &err {
        RuleError::Invalid(v) => {
            let first = v.first().map(|x| x.path.clone()).unwrap_or_default();
            let violations: Vec<Value> = v
                .iter()
                .map(|x| json!({"field": x.path, "reason": x.rule.to_string()}))
                .collect();
            ErrorObjectOwned::owned(
                INVALID_PARAMS,
                err.to_string(),
                Some(json!({"field": first, "violations": violations})),
            )
        }
        RuleError::DuplicateId { path, .. } => invalid(path, err.to_string()),
        RuleError::NotFound(_) => invalid("id", err.to_string()),
    }
}

/// The named params as an object (positional `[x]` is accepted as the first named param).
fn named(
    params: &Params<'_>,
    first: &str,
) -> Result<serde_json::Map<String, Value>, ErrorObjectOwned> {
    let value: Value = if params.as_str().is_none() {
        Value::Null
    } else {
        params
            .parse()
            .map_err(|e| invalid("params", e.message().to_string()))?
    };
    match value {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(serde_json::Map::new()),
        Value::Array(mut a) if a.len() == 1 => {
            let mut m = serde_json::Map::new();
            m.insert(first.to_string(), a.remove(0));
            Ok(m)
        }
        _ => Err(invalid(
            "params",
            format!("must be an object like {{\"{first}\": ...}}"),
        )),
    }
}

fn parse_rule(value: Value, field: &str) -> Result<IoRule, ErrorObjectOwned> {
    serde_path_to_error::deserialize::<_, IoRule>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{inner}")
        };
        invalid(&path, e.into_inner().to_string())
    })
}

fn take(m: &mut serde_json::Map<String, Value>, field: &str) -> Result<Value, ErrorObjectOwned> {
    m.remove(field).ok_or_else(|| invalid(field, "is required"))
}

/// Builds the RPC methods.
pub fn module(app: Arc<App>) -> Result<RpcModule<Arc<App>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(app);
    m.register_method("rules.set", |params, app, _| {
        let mut p = named(&params, "rules")?;
        let rules = match take(&mut p, "rules")? {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| parse_rule(v, &format!("rules[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(invalid("rules", "must be an array of rules")),
        };
        let generation = app.rules.set(rules).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation}))
    })?;
    m.register_method("rules.add", |params, app, _| {
        let mut p = named(&params, "rule")?;
        let rule = parse_rule(take(&mut p, "rule")?, "rule")?;
        let (id, generation) = app.rules.add(rule).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(json!({"id": id, "generation": generation}))
    })?;
    m.register_method("rules.remove", |params, app, _| {
        let mut p = named(&params, "id")?;
        let id = match take(&mut p, "id")? {
            Value::String(s) => s,
            _ => return Err(invalid("id", "must be a string")),
        };
        let generation = app.rules.remove(&id).map_err(rule_error)?;
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation}))
    })?;
    m.register_method("rules.clear", |_params, app, _| {
        let generation = app.rules.clear();
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation}))
    })?;
    m.register_method("rules.list", |_params, app, _| {
        let (generation, rules) = app.rules.list();
        Ok::<_, ErrorObjectOwned>(json!({"generation": generation, "rules": rules}))
    })?;
    m.register_method("status", |_params, app, _| {
        Ok::<_, ErrorObjectOwned>(app.status())
    })?;
    Ok(m)
}

fn plain(status: u16, body: String, content_type: &str) -> HttpResponse {
    let mut resp = HttpResponse::new(HttpBody::from(body));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// `GET /ready`: 200 only while the mount is live and answering.
async fn ready(app: Arc<App>) -> HttpResponse {
    let check = tokio::task::spawn_blocking(move || app.mount_live());
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(Ok(()))) => plain(200, "ready\n".into(), "text/plain"),
        Ok(Ok(Err(reason))) => plain(503, format!("not ready: {reason}\n"), "text/plain"),
        _ => plain(
            503,
            "not ready: mount check timed out\n".into(),
            "text/plain",
        ),
    }
}

/// Serves one connection: our GET endpoints, everything else to jsonrpsee.
fn serve_conn<I>(
    io: I,
    app: Arc<App>,
    methods: jsonrpsee::Methods,
    stop: StopHandle,
    builder: jsonrpsee::server::TowerServiceBuilder<
        tower::layer::util::Identity,
        tower::layer::util::Identity,
    >,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let stop2 = stop.clone();
    let svc = tower::service_fn(move |req: HttpRequest<hyper::body::Incoming>| {
        let app = app.clone();
        let mut rpc = builder.clone().build(methods.clone(), stop2.clone());
        async move {
            if req.method() == http::Method::GET {
                match req.uri().path() {
                    "/ready" | "/readyz" => return Ok::<_, anyhow::Error>(ready(app).await),
                    "/healthz" => return Ok(plain(200, "ok\n".into(), "text/plain")),
                    "/metrics" => {
                        return Ok(plain(
                            200,
                            app.metrics.encode(),
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ));
                    }
                    _ => {}
                }
            }
            rpc.call(req).await.map_err(|e| anyhow::anyhow!("{e}"))
        }
    });
    tokio::spawn(async move {
        if let Err(err) = serve_with_graceful_shutdown(io, svc, stop.shutdown()).await {
            tracing::debug!(?err, "rpc connection ended");
        }
    });
}

/// Running RPC listeners.
pub struct RpcServer {
    pub handle: ServerHandle,
    pub local_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RpcServer {
    pub async fn stop(self) {
        let _ = self.handle.stop();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

/// A listener the RPC service accepts connections from (TCP or Unix socket).
trait Accept: Send + Sync + 'static {
    type Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static;
    fn accept_conn(&self) -> impl std::future::Future<Output = std::io::Result<Self::Conn>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        let (sock, _) = self.accept().await?;
        // Small JSON-RPC answers: do not wait for Nagle.
        let _ = sock.set_nodelay(true);
        Ok(sock)
    }
}

impl Accept for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    async fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().await.map(|(sock, _)| sock)
    }
}

/// Accepts connections on `listener` and serves each until `stop` fires.
fn spawn_accept_loop<L: Accept>(
    listener: L,
    app: Arc<App>,
    methods: jsonrpsee::Methods,
    stop: StopHandle,
    builder: jsonrpsee::server::TowerServiceBuilder<
        tower::layer::util::Identity,
        tower::layer::util::Identity,
    >,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let sock = tokio::select! {
                r = listener.accept_conn() => match r {
                    Ok(s) => s,
                    Err(err) => { tracing::warn!(?err, "rpc accept failed"); continue; }
                },
                _ = stop.clone().shutdown() => break,
            };
            serve_conn(
                sock,
                app.clone(),
                methods.clone(),
                stop.clone(),
                builder.clone(),
            );
        }
    })
}

/// Starts the RPC service on `tcp` and/or a Unix socket `unix`.
pub async fn start(
    app: Arc<App>,
    tcp: Option<SocketAddr>,
    unix: Option<PathBuf>,
) -> anyhow::Result<RpcServer> {
    let methods: jsonrpsee::Methods = module(app.clone())?.into();
    let (stop, handle) = stop_channel();
    let builder = Server::builder().to_service_builder();
    let mut tasks = Vec::new();
    let mut local_addr = None;
    if let Some(addr) = tcp {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("bind rpc listener {addr}: {e}"))?;
        local_addr = listener.local_addr().ok();
        tracing::info!(addr = ?local_addr, "JSON-RPC listening (HTTP + WebSocket, GET /ready, /metrics)");
        tasks.push(spawn_accept_loop(
            listener,
            app.clone(),
            methods.clone(),
            stop.clone(),
            builder.clone(),
        ));
    }
    if let Some(path) = unix {
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| anyhow::anyhow!("bind rpc socket {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "JSON-RPC listening on a Unix socket");
        tasks.push(spawn_accept_loop(
            listener,
            app.clone(),
            methods.clone(),
            stop.clone(),
            builder.clone(),
        ));
    }
    Ok(RpcServer {
        handle,
        local_addr,
        tasks,
    })
}

/// A separate plain-HTTP `/metrics` listener (`--metrics-listen`).
pub async fn start_metrics(
    app: Arc<App>,
    addr: SocketAddr,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("bind metrics listener {addr}: {e}"))?;
    tracing::info!(%addr, "metrics listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            let svc = tower::service_fn(move |req: HttpRequest<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        plain(
                            200,
                            app.metrics.encode(),
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                    } else {
                        plain(404, "not found\n".into(), "text/plain")
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = jsonrpsee::server::serve(sock, svc).await;
            });
        }
    }))
}

/// `faultline-sidecar probe`: GET /ready over plain TCP; Ok when 200.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("write {addr}: {e}"))?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("not ready (HTTP {status}): {body}"))
    }
}

/// Counts as `{"read": {"count": n, "errors": e}, ...}`.
pub fn op_counts(app: &App) -> Value {
    let mut ops = serde_json::Map::new();
    for (name, count, errors) in app.metrics.op_counts() {
        ops.insert(name.into(), json!({"count": count, "errors": errors}));
    }
    Value::Object(ops)
}
