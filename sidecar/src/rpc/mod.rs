//! JSON-RPC 2.0 (HTTP POST and WebSocket on one port, path `/`) plus `GET /ready`,
//! `GET /healthz` and `GET /metrics` on the same listener; optionally the same service on a
//! Unix socket.
//!
//! Methods (params by name): `rules.set {"rules": [..]}`, `rules.add {"rule": {..}}`,
//! `rules.remove {"id": ".."}`, `rules.clear`, `rules.list`, `status`. Every change returns the
//! new `generation`. Bad params get error -32602 naming every bad field (see [`errors`]).
//!
//! - [`listen`]: addresses checked (loopback only) and bound, socket mode.
//! - `methods`: the methods and their strict params.
//! - `errors`: error objects and the unknown-method middleware.

mod errors;
pub(crate) mod listen;
mod methods;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    HttpBody, HttpRequest, HttpResponse, Server, ServerHandle, StopHandle,
    serve_with_graceful_shutdown, stop_channel,
};
use serde_json::json;
use tower::Service;

use crate::App;
pub(crate) use listen::Listeners;
pub(crate) use methods::module;
pub(crate) use methods::op_counts;

/// The largest request body read (jsonrpsee's default limit).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// jsonrpsee's tower service builder with our middleware.
type Builder = jsonrpsee::server::TowerServiceBuilder<
    tower::layer::util::Stack<errors::KnownMethodsLayer, tower::layer::util::Identity>,
    tower::layer::util::Identity,
>;

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

/// A JSON-RPC POST: the body is read here first so that bad JSON gets -32700 with its line and
/// column (jsonrpsee says only "Parse error"); then it goes to jsonrpsee.
async fn post<S>(
    req: HttpRequest<hyper::body::Incoming>,
    mut rpc: S,
) -> anyhow::Result<HttpResponse>
where
    S: Service<HttpRequest<HttpBody>, Response = HttpResponse>,
    S::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return Ok(plain(
                413,
                format!("request body larger than {MAX_BODY} bytes\n"),
                "text/plain",
            ));
        }
        Err(err) => return Err(anyhow::anyhow!("read request body: {err}")),
    };
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let body = json!({"jsonrpc": "2.0", "id": null, "error": errors::parse_error(&err)});
        return Ok(plain(400, body.to_string(), "application/json"));
    }
    let req = HttpRequest::from_parts(parts, HttpBody::from(bytes.to_vec()));
    rpc.call(req).await.map_err(|e| anyhow::anyhow!("{e}"))
}

/// Serves one connection: our GET endpoints, JSON POSTs through [`post`], everything else (the
/// WebSocket upgrade, wrong content types) to jsonrpsee.
fn serve_conn<I>(
    io: I,
    app: Arc<App>,
    methods: jsonrpsee::Methods,
    stop: StopHandle,
    builder: Builder,
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
            if req.method() == http::Method::POST
                && jsonrpsee::server::http::content_type_is_json(&req)
            {
                return post(req, rpc).await;
            }
            rpc.call(req).await.map_err(|e| anyhow::anyhow!("{e}"))
        }
    });
    tokio::spawn(async move {
        if let Err(err) = serve_with_graceful_shutdown(io, svc, stop.shutdown()).await {
            tracing::debug!(%err, "rpc connection ended");
        }
    });
}

/// Running RPC listeners.
pub(crate) struct RpcServer {
    pub handle: ServerHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RpcServer {
    pub(crate) async fn stop(self) {
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
    builder: Builder,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let sock = tokio::select! {
                r = listener.accept_conn() => match r {
                    Ok(s) => s,
                    Err(err) => { tracing::warn!(%err, "rpc accept failed"); continue; }
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

/// Starts the RPC service on listeners bound by [`Listeners::bind`].
pub(crate) async fn start(app: Arc<App>, listeners: Listeners) -> anyhow::Result<RpcServer> {
    let methods: jsonrpsee::Methods = module(app.clone())?.into();
    let (stop, handle) = stop_channel();
    let builder: Builder = Server::builder()
        .set_rpc_middleware(RpcServiceBuilder::new().layer(errors::KnownMethodsLayer))
        .to_service_builder();
    let mut tasks = Vec::new();
    for listener in listeners.tcp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "JSON-RPC listening (HTTP + WebSocket, GET /ready, /metrics)");
        tasks.push(spawn_accept_loop(
            listener,
            app.clone(),
            methods.clone(),
            stop.clone(),
            builder.clone(),
        ));
    }
    if let Some((path, listener)) = listeners.unix {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        tracing::info!(path = %path.display(), "JSON-RPC listening on a Unix socket");
        tasks.push(spawn_accept_loop(
            listener,
            app.clone(),
            methods.clone(),
            stop.clone(),
            builder.clone(),
        ));
    }
    Ok(RpcServer { handle, tasks })
}

/// A separate plain-HTTP `/metrics` listener (`--metrics-listen`).
pub(crate) async fn start_metrics(
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

/// Why `faultline-sidecar probe` failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The sidecar answered, but is not ready (a mount is not live).
    #[error("not ready (HTTP {status}): {body}")]
    NotReady {
        /// The HTTP status of `/ready`.
        status: u16,
        /// Its body: what is not ready.
        body: String,
    },
    /// The sidecar could not be reached or did not answer HTTP.
    #[error("{0}")]
    Unreachable(String),
}

/// `faultline-sidecar probe`: GET /ready at `addr` (`host:port`, names resolved); Ok when 200.
pub fn probe(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    let client = crate::client::Client::tcp(addr, timeout);
    match client.get("/ready") {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(ProbeError::NotReady {
            status,
            body: body.trim().to_owned(),
        }),
        Err(err) => Err(ProbeError::Unreachable(err.to_string())),
    }
}
