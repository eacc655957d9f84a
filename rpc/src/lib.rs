//! # faultline-rpc
//!
//! JSON-RPC 2.0 serving shared by `faultline-sidecar` and `faultline-daemon` (DESIGN.md §4, §5):
//! jsonrpsee's methods on HTTP POST and WebSocket at path `/`, the binary's own `GET` endpoints
//! (`/ready`, `/healthz`, `/metrics`) on the same listener, and error objects worded for the
//! person who sent the call.
//!
//! jsonrpsee has no TLS and no Unix-socket listener of its own, so connections are accepted
//! here and handed to its tower service: one accept loop ([`spawn_accept_loop`]) for every kind
//! of [`Listener`] — TCP, Unix socket and (feature `tls`) mutual TLS, whose handshake runs on
//! the connection's own task so a slow or hostile client never holds up the next accept.
//!
//! - [`serve`]: the accept loop, the per-connection service, the plain-HTTP side listener.
//! - [`errors`]: -32700 with line and column, -32601 with the method list, -32602 with every
//!   bad field, and the middleware that answers unknown methods.

pub mod errors;
pub mod serve;

#[cfg(feature = "tls")]
pub use serve::TlsListener;
pub use serve::{Endpoints, Listener, RpcService, plain, spawn_accept_loop, spawn_plain_http};

/// Loopback, IPv4-mapped loopback (`::ffff:127.0.0.1`) included: where an unauthenticated
/// fault-control endpoint may listen.
pub fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    match addr {
        std::net::SocketAddr::V4(a) => a.ip().is_loopback(),
        std::net::SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
