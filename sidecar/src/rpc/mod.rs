//! JSON-RPC 2.0 (HTTP POST and WebSocket on one port, path `/`) plus `GET /ready`,
//! `GET /healthz` and `GET /metrics` on the same listener; optionally the same service on a
//! Unix socket.
//!
//! Methods (params by name, each with an optional `"mount"`): `rules.set {"rules": [..]}`,
//! `rules.add {"rule": {..}}`, `rules.remove {"id": ".."}`, `rules.clear`, `rules.list`, `status`.
//! Every change returns the new `generation`. Bad params get error -32602 naming every bad field
//! (see [`errors`]); a `mount` that names no mount lists the mounts.
//!
//! - [`listen`]: addresses checked (loopback only) and bound, socket mode.
//! - `methods`: the methods and their strict params.
//! - `errors`: the sidecar's errors as error objects.
//!
//! Accepting and serving connections is `faultline_rpc`'s, shared with the daemon.

mod errors;
pub(crate) mod listen;
mod methods;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use faultline_api::rpc::sidecar::METHODS;
use faultline_rpc::serve::OPENMETRICS;
use faultline_rpc::{Endpoints, RpcService, plain, spawn_accept_loop, spawn_plain_http};
use jsonrpsee::server::{HttpResponse, ServerHandle};

use crate::app::App;
pub(crate) use listen::Listeners;
pub(crate) use methods::module;

/// `GET /ready`: 200 only while every mount is live and answering.
async fn ready(app: Arc<App>) -> HttpResponse {
    let check = tokio::task::spawn_blocking(move || app.ready());
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

/// The sidecar's GET endpoints, on the RPC listener and on `--metrics-listen`.
struct SidecarEndpoints(Arc<App>);

impl Endpoints for SidecarEndpoints {
    async fn get(&self, path: &str) -> Option<HttpResponse> {
        match path {
            "/ready" | "/readyz" => Some(ready(self.0.clone()).await),
            "/healthz" => Some(plain(200, "ok\n".into(), "text/plain")),
            "/metrics" => Some(plain(200, self.0.metrics.encode(), OPENMETRICS)),
            _ => None,
        }
    }
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

/// Starts the RPC service on listeners bound by [`Listeners::bind`].
pub(crate) async fn start(app: Arc<App>, listeners: Listeners) -> anyhow::Result<RpcServer> {
    let (service, handle) = RpcService::new(
        module(app.clone())?,
        METHODS,
        Arc::new(SidecarEndpoints(app)),
    );
    let mut tasks = Vec::new();
    for listener in listeners.tcp {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "JSON-RPC listening (HTTP + WebSocket, GET /ready, /metrics)");
        tasks.push(spawn_accept_loop(listener, service.clone()));
    }
    if let Some((path, listener)) = listeners.unix {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        tracing::info!(path = %path.display(), "JSON-RPC listening on a Unix socket");
        tasks.push(spawn_accept_loop(listener, service.clone()));
    }
    Ok(RpcServer { handle, tasks })
}

/// A separate plain-HTTP listener (`--metrics-listen`) with the GET endpoints.
pub(crate) async fn start_metrics(
    app: Arc<App>,
    addr: SocketAddr,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("bind metrics listener {addr}: {e}"))?;
    tracing::info!(%addr, "metrics listening");
    Ok(spawn_plain_http(listener, Arc::new(SidecarEndpoints(app))))
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
