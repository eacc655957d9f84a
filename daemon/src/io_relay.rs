//! `io.apply` / `io.recover`: I/O rules relayed to the fault sidecar of the target's pod.
//!
//! The sidecar listens on 127.0.0.1 inside the pod's network namespace (DESIGN.md §4), out of
//! reach of the network. The daemon opens the connection from a thread that entered that
//! namespace ([`crate::netns`]), then speaks HTTP/1.1 JSON-RPC over it from async code.
//!
//! Rules are added one by one with `rules.add` under ids derived from the fault id
//! (`<faultId>.<n>`), which the journal holds before the first is sent: recovery removes them
//! by id whether or not the daemon lived to see the answers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use faultline_api::iorule::IoRule;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::error::ApplyError;
use crate::netns::{NetnsError, run_in};
use crate::process::ProcessRef;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most rules one `io.apply` may add.
pub(crate) const MAX_RULES: usize = 64;

/// Why the sidecar could not be told.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(
        "no fault sidecar answers on 127.0.0.1:{port} in the network namespace of process \
         {pid} (is the pod injected?): {reason}"
    )]
    NoSidecar { pid: u32, port: u16, reason: String },
    #[error("sidecar of process {pid}: {method}: {reason}")]
    Call {
        pid: u32,
        method: &'static str,
        reason: String,
    },
    /// The sidecar refused the call's params (its -32602 error object, passed on).
    #[error("sidecar of process {pid} refused {method}: {message}")]
    Refused {
        pid: u32,
        method: &'static str,
        message: String,
        data: Option<Value>,
    },
}

/// The ids under which the rules of `fault_id` are added, in order.
pub fn rule_ids(fault_id: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{fault_id}.{n}")).collect()
}

/// A JSON-RPC connection to one sidecar.
struct Sidecar {
    pid: u32,
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    next_id: u64,
}

impl Sidecar {
    async fn connect(netns: &ProcessRef, port: u16) -> Result<Self, RelayError> {
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let pid = netns.pid;
        let no_sidecar = |reason: String| RelayError::NoSidecar { pid, port, reason };
        let stream = run_in(netns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        })
        .await?
        .map_err(|e| no_sidecar(e.to_string()))?;
        stream
            .set_nonblocking(true)
            .map_err(|e| no_sidecar(e.to_string()))?;
        let stream =
            tokio::net::TcpStream::from_std(stream).map_err(|e| no_sidecar(e.to_string()))?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| no_sidecar(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "sidecar connection ended");
            }
        });
        Ok(Self {
            pid,
            send,
            next_id: 1,
        })
    }

    async fn call(&mut self, method: &'static str, params: Value) -> Result<Value, RelayError> {
        let pid = self.pid;
        let fail = |reason: String| RelayError::Call {
            pid,
            method,
            reason,
        };
        let body =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        self.next_id += 1;
        let req = http::Request::post("/")
            .header(http::header::HOST, "127.0.0.1")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            // After an answer the connection task needs a moment to take the next request;
            // sending before it is ready fails with "connection was not ready".
            self.send.ready().await.map_err(|e| fail(e.to_string()))?;
            let resp = self
                .send
                .send_request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).map_err(|e| fail(format!("answer: {e}")))
        };
        let answer = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| fail("no answer in 10 s".into()))??;
        if let Some(error) = answer.get("error") {
            return Err(RelayError::Refused {
                pid,
                method,
                message: error["message"].as_str().unwrap_or("error").to_owned(),
                data: error.get("data").cloned(),
            });
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }
}

/// Adds `rules` under `ids` to the sidecar, on its mount `mount` (a volume name or the path
/// where the app mounts it; `None` when the sidecar serves one volume); when one fails, takes
/// back every rule this call may have added. The failure says whether that worked: rules it
/// could not take back are recovered later from the journal.
pub(crate) async fn apply(
    netns: &ProcessRef,
    port: u16,
    rules: &[IoRule],
    ids: &[String],
    mount: Option<&str>,
) -> Result<(), ApplyError<RelayError>> {
    let mut sidecar = Sidecar::connect(netns, port)
        .await
        .map_err(ApplyError::undone)?;
    for (n, (rule, id)) in rules.iter().zip(ids).enumerate() {
        let mut rule = rule.clone();
        rule.id = Some(id.clone());
        let mut params = json!({"rule": rule});
        if let Some(mount) = mount {
            params["mount"] = json!(mount);
        }
        if let Err(err) = sidecar.call("rules.add", params).await {
            // A refusal means this rule was not added. Any other failure (the connection
            // dropped, no answer in time) may have lost the answer to a rule the sidecar did
            // add: take that one back too (a rule it does not have counts as removed).
            let maybe_added = match err {
                RelayError::Refused { .. } => &ids[..n],
                _ => &ids[..=n],
            };
            return Err(
                match take_back(&mut sidecar, netns, port, maybe_added).await {
                    Ok(()) => ApplyError::undone(err),
                    Err(()) => ApplyError::left_behind(err),
                },
            );
        }
    }
    Ok(())
}

/// Removes the rules of a failed apply: over its connection, or over a new one when that
/// connection is the thing that failed. What still cannot be removed is logged by id.
async fn take_back(
    sidecar: &mut Sidecar,
    netns: &ProcessRef,
    port: u16,
    ids: &[String],
) -> Result<(), ()> {
    if ids.is_empty() || remove(sidecar, ids).await.is_ok() {
        return Ok(());
    }
    recover(netns, port, ids).await.map_err(|err| {
        tracing::error!(
            pid = netns.pid,
            rules = ?ids,
            error = %crate::error_chain(&err),
            "a failed io.apply could not take back the rules it may have added"
        );
    })
}

/// `rules.remove` of each of `ids`; a rule the sidecar does not have counts as removed.
async fn remove(sidecar: &mut Sidecar, ids: &[String]) -> Result<(), RelayError> {
    for id in ids {
        match sidecar.call("rules.remove", json!({"id": id})).await {
            Ok(_) => {}
            Err(RelayError::Refused { data, .. })
                if data
                    .as_ref()
                    .and_then(|d| d["violations"][0]["rule"].as_str())
                    == Some("not-found") => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Removes the rules `ids`; a rule the sidecar does not have (never added, expired by its own
/// `ttl`, sidecar restarted) counts as removed. A pod that is gone has nothing to remove.
pub async fn recover(netns: &ProcessRef, port: u16, ids: &[String]) -> Result<(), RelayError> {
    if !netns.is_alive() {
        return Ok(());
    }
    let mut sidecar = match Sidecar::connect(netns, port).await {
        Err(RelayError::Netns(NetnsError::Gone { .. })) => return Ok(()),
        other => other?,
    };
    remove(&mut sidecar, ids).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derive_from_the_fault() {
        assert_eq!(rule_ids("io-1", 2), ["io-1.0", "io-1.1"]);
    }
}
