//! Where the daemon listens: JSON-RPC over mutual TLS on `--listen`, plain HTTP on
//! `--insecure-listen` (loopback only), `/metrics` and `/healthz` on `--metrics-listen`. The
//! accept loop is `faultline_rpc`'s, shared with the sidecar.

use std::net::SocketAddr;
use std::sync::Arc;

use faultline_rpc::serve::OPENMETRICS;
use faultline_rpc::{
    Endpoints, RpcService, TlsListener, plain, spawn_accept_loop, spawn_plain_http,
};
use jsonrpsee::server::{HttpResponse, ServerHandle};

use crate::Daemon;
use crate::methods::{METHODS, module};

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error(
        "--insecure-listen {addr}: not a loopback address; plain HTTP would let anyone on the \
         network apply faults. Use --listen with --tls-cert, --tls-key and --client-ca"
    )]
    NotLoopback { addr: String },
    #[error("{flag} {addr}: {reason}")]
    Bind {
        flag: &'static str,
        addr: String,
        reason: String,
    },
}

/// The daemon's GET endpoints.
pub(crate) struct DaemonEndpoints(pub Arc<Daemon>);

impl Endpoints for DaemonEndpoints {
    async fn get(&self, path: &str) -> Option<HttpResponse> {
        match path {
            "/healthz" | "/readyz" => Some(plain(200, "ok\n".into(), "text/plain")),
            "/metrics" => Some(plain(200, self.0.metrics.encode(), OPENMETRICS)),
            _ => None,
        }
    }
}

/// Resolves `addr` and, for `--insecure-listen`, checks that every address is loopback.
pub(crate) fn checked_insecure(addr: &str) -> Result<Vec<SocketAddr>, ListenError> {
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| ListenError::Bind {
            flag: "--insecure-listen",
            addr: addr.into(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(faultline_rpc::is_loopback) {
        return Err(ListenError::NotLoopback { addr: addr.into() });
    }
    Ok(addrs)
}

async fn bind(
    flag: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, ListenError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ListenError::Bind {
            flag,
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// The running listeners.
pub(crate) struct Servers {
    pub(crate) handle: ServerHandle,
    /// The bound addresses (port 0 resolved), for logs and tests.
    pub(crate) tls: Option<SocketAddr>,
    pub(crate) insecure: Vec<SocketAddr>,
    pub(crate) metrics: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Servers {
    pub(crate) fn stop(self) {
        let _ = self.handle.stop();
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Starts every listener the flags ask for.
pub(crate) async fn start(
    daemon: Arc<Daemon>,
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    insecure: &[SocketAddr],
    metrics: Option<SocketAddr>,
) -> anyhow::Result<Servers> {
    let endpoints = Arc::new(DaemonEndpoints(daemon.clone()));
    let (service, handle) = RpcService::new(module(daemon.clone())?, METHODS, endpoints.clone());
    let mut servers = Servers {
        handle,
        tls: None,
        insecure: Vec::new(),
        metrics: None,
        tasks: Vec::new(),
    };
    if let Some((addr, config)) = tls {
        let listener = bind("--listen", addr).await?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, "JSON-RPC listening (mutual TLS; client certificates required)");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        servers.tls = Some(local);
        servers.tasks.push(spawn_accept_loop(
            TlsListener::new(listener, acceptor),
            service.clone(),
        ));
    }
    for addr in insecure {
        let listener = bind("--insecure-listen", *addr).await?;
        let local = listener.local_addr()?;
        tracing::warn!(addr = %local, "JSON-RPC listening on plain HTTP (loopback only, no authentication)");
        servers.insecure.push(local);
        servers
            .tasks
            .push(spawn_accept_loop(listener, service.clone()));
    }
    if let Some(addr) = metrics {
        let listener = bind("--metrics-listen", addr).await?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, "metrics listening (/metrics, /healthz)");
        servers.metrics = Some(local);
        servers.tasks.push(spawn_plain_http(listener, endpoints));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_only_on_loopback() {
        assert!(checked_insecure("127.0.0.1:0").is_ok());
        assert!(checked_insecure("[::1]:0").is_ok());
        assert!(checked_insecure("localhost:0").is_ok());
        let err = checked_insecure("0.0.0.0:31767").unwrap_err().to_string();
        assert!(
            err.contains("not a loopback address") && err.contains("--listen"),
            "{err}"
        );
        assert!(checked_insecure("10.0.0.1:1").is_err());
    }
}
