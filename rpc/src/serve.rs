//! One accept loop for every listener kind, and the per-connection service: the binary's `GET`
//! endpoints first, JSON POSTs read here (so bad JSON gets -32700 with its line and column;
//! jsonrpsee says only "Parse error"), everything else (the WebSocket upgrade) to jsonrpsee.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use jsonrpsee::Methods;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{
    HttpBody, HttpRequest, HttpResponse, Server, ServerHandle, StopHandle,
    serve_with_graceful_shutdown, stop_channel,
};
use serde_json::json;
use tower::Service;

use crate::errors::{KnownMethodsLayer, parse_error};

/// The largest request body read (jsonrpsee's default limit).
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// The `text/…` content type of Prometheus' OpenMetrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A plain HTTP answer.
pub fn plain(status: u16, body: String, content_type: &str) -> HttpResponse {
    let mut resp = HttpResponse::new(HttpBody::from(body));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// The binary's own `GET` endpoints (`/ready`, `/healthz`, `/metrics`, …).
pub trait Endpoints: Send + Sync + 'static {
    /// The answer to `GET path`, or `None` to hand the request to jsonrpsee.
    fn get(&self, path: &str) -> impl Future<Output = Option<HttpResponse>> + Send;
}

/// Something connections are accepted from. Accepting and establishing are two steps so that
/// whatever a connection needs before it speaks HTTP (a TLS handshake) runs on that
/// connection's own task, never in the accept loop.
pub trait Listener: Send + Sync + 'static {
    /// What `accept` gives.
    type Raw: Send + 'static;
    /// The connection HTTP is served on.
    type Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static;
    /// Waits for the next connection.
    fn accept_raw(&self) -> impl Future<Output = std::io::Result<Self::Raw>> + Send;
    /// Makes it ready for HTTP (a no-op except for TLS); runs on the connection's task.
    fn establish(
        &self,
        raw: Self::Raw,
    ) -> impl Future<Output = std::io::Result<Self::Conn>> + Send + 'static;
}

impl Listener for tokio::net::TcpListener {
    type Raw = tokio::net::TcpStream;
    type Conn = tokio::net::TcpStream;
    async fn accept_raw(&self) -> std::io::Result<Self::Raw> {
        let (sock, _) = self.accept().await?;
        // Small JSON-RPC answers: do not wait for Nagle.
        let _ = sock.set_nodelay(true);
        Ok(sock)
    }
    fn establish(
        &self,
        raw: Self::Raw,
    ) -> impl Future<Output = std::io::Result<Self::Conn>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

impl Listener for tokio::net::UnixListener {
    type Raw = tokio::net::UnixStream;
    type Conn = tokio::net::UnixStream;
    async fn accept_raw(&self) -> std::io::Result<Self::Raw> {
        self.accept().await.map(|(sock, _)| sock)
    }
    fn establish(
        &self,
        raw: Self::Raw,
    ) -> impl Future<Output = std::io::Result<Self::Conn>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

/// TCP with TLS; client certificates are required or not as the acceptor's
/// `rustls::ServerConfig` says (the daemon requires them).
#[cfg(feature = "tls")]
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

#[cfg(feature = "tls")]
impl TlsListener {
    /// A client that has not finished its handshake by then is dropped.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// TLS on `tcp` with `acceptor`'s configuration.
    pub fn new(tcp: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        Self { tcp, acceptor }
    }
}

#[cfg(feature = "tls")]
impl Listener for TlsListener {
    type Raw = (tokio::net::TcpStream, std::net::SocketAddr);
    type Conn = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    async fn accept_raw(&self) -> std::io::Result<Self::Raw> {
        let (sock, peer) = self.tcp.accept().await?;
        let _ = sock.set_nodelay(true);
        Ok((sock, peer))
    }
    fn establish(
        &self,
        (sock, peer): Self::Raw,
    ) -> impl Future<Output = std::io::Result<Self::Conn>> + Send + 'static {
        let accept = self.acceptor.accept(sock);
        async move {
            match tokio::time::timeout(Self::HANDSHAKE_TIMEOUT, accept).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(err)) => {
                    // Refused clients (no certificate, another CA, expired) end here: say who
                    // and why, since the client only sees a TLS alert.
                    tracing::warn!(%peer, %err, "TLS handshake refused");
                    Err(err)
                }
                Err(_) => {
                    tracing::warn!(%peer, "TLS handshake timed out");
                    Err(std::io::ErrorKind::TimedOut.into())
                }
            }
        }
    }
}

/// jsonrpsee's tower service builder with our middleware.
type Builder = jsonrpsee::server::TowerServiceBuilder<
    tower::layer::util::Stack<KnownMethodsLayer, tower::layer::util::Identity>,
    tower::layer::util::Identity,
>;

/// The methods, the endpoints and the stop signal every accepted connection is served with.
pub struct RpcService<E> {
    methods: Methods,
    endpoints: Arc<E>,
    builder: Builder,
    stop: StopHandle,
}

impl<E> Clone for RpcService<E> {
    fn clone(&self) -> Self {
        Self {
            methods: self.methods.clone(),
            endpoints: self.endpoints.clone(),
            builder: self.builder.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<E: Endpoints> RpcService<E> {
    /// The service for `methods` (whose names are `known`, so other names get -32601 listing
    /// them) and `endpoints`; the handle stops every accept loop and connection.
    pub fn new(
        methods: impl Into<Methods>,
        known: &'static [&'static str],
        endpoints: Arc<E>,
    ) -> (Self, ServerHandle) {
        let (stop, handle) = stop_channel();
        let builder: Builder = Server::builder()
            .set_rpc_middleware(RpcServiceBuilder::new().layer(KnownMethodsLayer::new(known)))
            .to_service_builder();
        let svc = Self {
            methods: methods.into(),
            endpoints,
            builder,
            stop,
        };
        (svc, handle)
    }

    /// Serves one connection until it ends or the service stops.
    fn serve_conn<I>(&self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let this = self.clone();
        let svc = tower::service_fn(move |req: HttpRequest<hyper::body::Incoming>| {
            let endpoints = this.endpoints.clone();
            let mut rpc = this
                .builder
                .clone()
                .build(this.methods.clone(), this.stop.clone());
            async move {
                if req.method() == http::Method::GET
                    && let Some(resp) = endpoints.get(req.uri().path()).await
                {
                    return Ok::<_, String>(resp);
                }
                if req.method() == http::Method::POST
                    && jsonrpsee::server::http::content_type_is_json(&req)
                {
                    return post(req, rpc).await;
                }
                rpc.call(req).await.map_err(|e| e.to_string())
            }
        });
        let stop = self.stop.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_with_graceful_shutdown(io, svc, stop.shutdown()).await {
                tracing::debug!(%err, "rpc connection ended");
            }
        });
    }
}

/// A JSON-RPC POST: the body is read here first so that bad JSON gets -32700 with its line and
/// column; then it goes to jsonrpsee.
async fn post<S>(
    req: HttpRequest<hyper::body::Incoming>,
    mut rpc: S,
) -> Result<HttpResponse, String>
where
    S: Service<HttpRequest<HttpBody>, Response = HttpResponse>,
    S::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            let mut resp = plain(
                413,
                format!("request body larger than {MAX_BODY} bytes\n"),
                "text/plain",
            );
            // The rest of the body is unread: the connection cannot carry another request.
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return Ok(resp);
        }
        Err(err) => return Err(format!("read request body: {err}")),
    };
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let body = json!({"jsonrpc": "2.0", "id": null, "error": parse_error(&err)});
        return Ok(plain(400, body.to_string(), "application/json"));
    }
    let req = HttpRequest::from_parts(parts, HttpBody::from(bytes.to_vec()));
    rpc.call(req).await.map_err(|e| e.to_string())
}

/// Accepts connections on `listener` and serves each with `service` until it stops.
pub fn spawn_accept_loop<L: Listener, E: Endpoints>(
    listener: L,
    service: RpcService<E>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let raw = tokio::select! {
                r = listener.accept_raw() => match r {
                    Ok(raw) => raw,
                    Err(err) => {
                        tracing::warn!(%err, "rpc accept failed");
                        // EMFILE and friends: do not spin on an error that repeats at once.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = service.stop.clone().shutdown() => break,
            };
            let establish = listener.establish(raw);
            let service = service.clone();
            tokio::spawn(async move {
                if let Ok(conn) = establish.await {
                    service.serve_conn(conn);
                }
            });
        }
    })
}

/// A plain-HTTP listener answering only `endpoints`' GETs (`--metrics-listen`); 404 otherwise.
pub fn spawn_plain_http<E: Endpoints>(
    listener: tokio::net::TcpListener,
    endpoints: Arc<E>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(err) => {
                    tracing::warn!(%err, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            let svc = tower::service_fn(move |req: HttpRequest<hyper::body::Incoming>| {
                let endpoints = endpoints.clone();
                async move {
                    let found = if req.method() == http::Method::GET {
                        endpoints.get(req.uri().path()).await
                    } else {
                        None
                    };
                    Ok::<_, Infallible>(
                        found.unwrap_or_else(|| plain(404, "not found\n".into(), "text/plain")),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = jsonrpsee::server::serve(sock, svc).await;
            });
        }
    })
}
