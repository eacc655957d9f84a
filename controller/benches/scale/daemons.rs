//! Simulated node daemons for the scale bench: the controller's real mTLS JSON-RPC client talks
//! to real `faultline-rpc` servers (the daemon's own serving stack: TLS with required client
//! certificates, JSON-RPC batches), one per loopback address, whose methods answer after 1 ms
//! instead of touching a node. They count what they were asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faultline_rpc::{Endpoints, RpcService, TlsListener, spawn_accept_loop};
use jsonrpsee::RpcModule;
use jsonrpsee::server::HttpResponse;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

/// How long every simulated call takes.
pub(crate) const ANSWER_AFTER: Duration = Duration::from_millis(1);

const METHODS: &[&str] = &["network.apply", "network.recover"];

/// Calls received by every simulated daemon together.
#[derive(Default)]
pub(crate) struct Calls {
    pub(crate) apply: AtomicUsize,
    pub(crate) recover: AtomicUsize,
}

struct NoEndpoints;

impl Endpoints for NoEndpoints {
    async fn get(&self, _path: &str) -> Option<HttpResponse> {
        None
    }
}

fn server_config(bundle: &faultline_certs::Bundle) -> Arc<rustls::ServerConfig> {
    let pem = |text: &str| {
        rustls_pemfile::certs(&mut text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM certificates")
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in pem(&bundle.ca_cert) {
        roots.add(ca).expect("CA");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let key = rustls_pemfile::private_key(&mut bundle.tls_key.as_bytes())
        .expect("key PEM")
        .expect("a key");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(pem(&bundle.tls_cert), key)
            .expect("serving certificate"),
    )
}

fn module(calls: Arc<Calls>) -> RpcModule<Arc<Calls>> {
    let mut module = RpcModule::new(calls);
    module
        .register_async_method("network.apply", |_params, calls, _| async move {
            tokio::time::sleep(ANSWER_AFTER).await;
            calls.apply.fetch_add(1, Ordering::Relaxed);
            serde_json::json!({})
        })
        .expect("register network.apply");
    module
        .register_async_method("network.recover", |_params, calls, _| async move {
            tokio::time::sleep(ANSWER_AFTER).await;
            calls.recover.fetch_add(1, Ordering::Relaxed);
            serde_json::json!({})
        })
        .expect("register network.recover");
    module
}

/// Starts one simulated daemon per address; they run until the process ends.
pub(crate) async fn start(addrs: &[SocketAddr], bundle: &faultline_certs::Bundle) -> Arc<Calls> {
    let calls = Arc::new(Calls::default());
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(bundle));
    for addr in addrs {
        // One service per daemon, as each real daemon is its own process: jsonrpsee's limit on
        // connections (100) is per service.
        let (service, handle) =
            RpcService::new(module(calls.clone()), METHODS, Arc::new(NoEndpoints));
        // The servers live as long as the bench.
        std::mem::forget(handle);
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("simulated daemon on {addr}: {e}"));
        spawn_accept_loop(TlsListener::new(tcp, acceptor.clone()), service);
    }
    calls
}
