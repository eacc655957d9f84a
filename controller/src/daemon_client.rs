//! The daemons: which one serves a node, and JSON-RPC calls to it over mutual TLS.
//!
//! The daemon of node N is the pod labelled `app.kubernetes.io/name=faultline-daemon` in the
//! daemon namespace (`faultline-system`) with `spec.nodeName: N`, at its `status.podIP` and
//! `--daemon-port` (31767). Its serving certificate is checked against `--daemon-ca` for the
//! name `--daemon-server-name` (one certificate for the DaemonSet, whatever the pod IP), and the
//! controller presents `--client-cert`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::metrics::Metrics;

/// Why a daemon call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DaemonCallError {
    #[error(
        "no faultline-daemon runs on node {node} (no Running pod labelled app.kubernetes.io/name=faultline-daemon with an IP in {namespace})"
    )]
    NoDaemon { node: String, namespace: String },
    #[error("daemon on node {node} ({addr}): unreachable: {reason}")]
    Unreachable {
        node: String,
        addr: SocketAddr,
        reason: String,
    },
    /// The daemon answered with a JSON-RPC error.
    #[error("daemon on node {node}: {method}: {message} (code {code})")]
    Refused {
        node: String,
        method: String,
        code: i64,
        message: String,
    },
    #[error("listing daemon pods: {0}")]
    List(String),
}

impl DaemonCallError {
    /// The daemon says the fault is not there (already recovered, expired, daemon restarted).
    pub fn unknown_fault(&self) -> bool {
        matches!(self, DaemonCallError::Refused { code: -32004, .. })
    }
    /// The daemon says the target is gone.
    pub fn target_gone(&self) -> bool {
        matches!(self, DaemonCallError::Refused { code: -32001, .. })
    }
    /// Worth retrying later (the daemon or its node is not there right now).
    pub fn transient(&self) -> bool {
        matches!(
            self,
            DaemonCallError::NoDaemon { .. }
                | DaemonCallError::Unreachable { .. }
                | DaemonCallError::List(_)
        ) || matches!(self, DaemonCallError::Refused { code: -32002, .. })
    }
}

/// How to reach and trust the daemons.
#[derive(Clone)]
pub struct DaemonTls {
    pub ca_pem: Vec<u8>,
    pub identity_pem: Vec<u8>,
    pub server_name: String,
}

/// Calls to the daemons, with a client per daemon address.
pub struct Daemons {
    client: Client,
    namespace: String,
    port: u16,
    tls: DaemonTls,
    metrics: Arc<Metrics>,
    clients: Mutex<BTreeMap<SocketAddr, reqwest::Client>>,
    /// node → daemon address, refreshed when older than a few seconds or when a call fails.
    nodes: Mutex<(Option<Instant>, BTreeMap<String, IpAddr>)>,
    /// One refresh at a time: the calls of a pass that all find the map old wait for one list.
    refreshing: tokio::sync::Mutex<()>,
}

const NODE_MAP_TTL: Duration = Duration::from_secs(5);
/// A request of one call; a batch gets [`PER_BATCHED_CALL`] more per call after the first
/// (the daemon's own limit per call).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const PER_BATCHED_CALL: Duration = Duration::from_secs(10);

impl Daemons {
    pub fn new(
        client: Client,
        namespace: String,
        port: u16,
        tls: DaemonTls,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            namespace,
            port,
            tls,
            metrics,
            clients: Mutex::new(BTreeMap::new()),
            nodes: Mutex::new((None, BTreeMap::new())),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The node map, listed again unless another call listed it after `asked`.
    async fn refresh(&self, asked: Instant) -> Result<BTreeMap<String, IpAddr>, DaemonCallError> {
        let _one = self.refreshing.lock().await;
        {
            let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            if nodes.0.is_some_and(|t| t >= asked) {
                return Ok(nodes.1.clone());
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=faultline-daemon"))
            .await
            .map_err(|e| DaemonCallError::List(e.to_string()))?;
        let mut map = BTreeMap::new();
        for pod in list {
            let status = pod.status.unwrap_or_default();
            let (Some(node), Some(ip)) = (pod.spec.and_then(|s| s.node_name), status.pod_ip) else {
                continue;
            };
            if status.phase.as_deref() != Some("Running") {
                continue;
            }
            if let Ok(ip) = ip.parse() {
                map.insert(node, ip);
            }
        }
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = (Some(Instant::now()), map.clone());
        Ok(map)
    }

    async fn address(&self, node: &str, fresh: bool) -> Result<SocketAddr, DaemonCallError> {
        let cached = {
            let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            let young = nodes.0.is_some_and(|t| t.elapsed() < NODE_MAP_TTL);
            (young && !fresh).then(|| nodes.1.get(node).copied())
        };
        let ip = match cached {
            Some(Some(ip)) => ip,
            _ => self
                .refresh(Instant::now())
                .await?
                .get(node)
                .copied()
                .ok_or_else(|| DaemonCallError::NoDaemon {
                    node: node.to_owned(),
                    namespace: self.namespace.clone(),
                })?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }

    fn http(&self, addr: SocketAddr) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&addr) {
            return Ok(c.clone());
        }
        let ca = reqwest::Certificate::from_pem(&self.tls.ca_pem).map_err(|e| e.to_string())?;
        let identity =
            reqwest::Identity::from_pem(&self.tls.identity_pem).map_err(|e| e.to_string())?;
        let c = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .resolve(&self.tls.server_name, addr)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| e.to_string())?;
        clients.insert(addr, c.clone());
        Ok(c)
    }

    /// `method(params)` on the daemon of `node`; the result or the daemon's error.
    pub async fn call(
        &self,
        node: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, DaemonCallError> {
        let mut answers = self.call_batch(node, vec![(method, params)]).await;
        answers.pop().unwrap_or_else(|| {
            Err(DaemonCallError::Refused {
                node: node.to_owned(),
                method: method.to_owned(),
                code: -32603,
                message: "no answer".to_owned(),
            })
        })
    }

    /// Several calls on the daemon of `node` in one JSON-RPC 2.0 batch (one request, one TLS
    /// round trip); one result per call, in order. A single call goes alone.
    pub async fn call_batch(
        &self,
        node: &str,
        calls: Vec<(&str, Value)>,
    ) -> Vec<Result<Value, DaemonCallError>> {
        if calls.is_empty() {
            return Vec::new();
        }
        let started = Instant::now();
        let body = if let [(method, params)] = calls.as_slice() {
            json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params})
        } else {
            Value::Array(
                calls
                    .iter()
                    .enumerate()
                    .map(|(id, (method, params))| {
                        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                    })
                    .collect(),
            )
        };
        // The daemon runs a batch's calls one after another, each within its own 10 s.
        let timeout = CALL_TIMEOUT + PER_BATCHED_CALL * (calls.len() as u32 - 1);
        let mut answer = self.post(node, &body, false, timeout).await;
        // A stale address (daemon pod replaced): look it up again and send once more — only
        // when nothing was sent (the connection could not be made), never after a timeout,
        // which would repeat calls that are not idempotent (container.kill).
        if let Err((_, true)) = answer {
            answer = self.post(node, &body, true, timeout).await;
        }
        let results = match answer.map_err(|(e, _)| e) {
            Ok(answer) => split_answers(node, &calls, answer),
            Err(e) => calls.iter().map(|_| Err(e.clone())).collect(),
        };
        let elapsed = started.elapsed();
        for ((method, _), result) in calls.iter().zip(&results) {
            self.metrics.daemon_call(method, result.is_ok(), elapsed);
        }
        results
    }

    /// POSTs one JSON-RPC body to the daemon of `node`; its answer as JSON, or the error and
    /// whether nothing reached the daemon (worth sending again to a fresh address).
    async fn post(
        &self,
        node: &str,
        body: &Value,
        fresh: bool,
        timeout: Duration,
    ) -> Result<Value, (DaemonCallError, bool)> {
        let addr = self.address(node, fresh).await.map_err(|e| (e, false))?;
        let unreachable = |reason: String| DaemonCallError::Unreachable {
            node: node.to_owned(),
            addr,
            reason,
        };
        let http = self.http(addr).map_err(|e| (unreachable(e), false))?;
        let url = format!("https://{}:{}/", self.tls.server_name, addr.port());
        let sent = |e: reqwest::Error| (unreachable(error_text(&e)), e.is_connect());
        http.post(url)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(sent)?
            .json()
            .await
            .map_err(|e| (unreachable(error_text(&e)), false))
    }
}

/// One JSON-RPC response (`{"result"}` or `{"error"}`) as a call's result.
fn one_answer(node: &str, method: &str, answer: &Value) -> Result<Value, DaemonCallError> {
    if let Some(err) = answer.get("error") {
        return Err(DaemonCallError::Refused {
            node: node.to_owned(),
            method: method.to_owned(),
            code: err["code"].as_i64().unwrap_or(0),
            message: err["message"].as_str().unwrap_or("error").to_owned(),
        });
    }
    Ok(answer.get("result").cloned().unwrap_or(Value::Null))
}

/// The answers of a batch matched to its calls by id; a call without an answer is an error, and
/// an answer that is not an array (the whole batch refused) is every call's.
fn split_answers(
    node: &str,
    calls: &[(&str, Value)],
    answer: Value,
) -> Vec<Result<Value, DaemonCallError>> {
    let by_id: BTreeMap<u64, Value> = match answer {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|a| Some((a.get("id")?.as_u64()?, a)))
            .collect(),
        single if calls.len() == 1 || single.get("id").is_none_or(Value::is_null) => {
            return calls
                .iter()
                .map(|(method, _)| one_answer(node, method, &single))
                .collect();
        }
        single => single
            .get("id")
            .and_then(Value::as_u64)
            .map(|id| (id, single))
            .into_iter()
            .collect(),
    };
    calls
        .iter()
        .enumerate()
        .map(|(id, (method, _))| match by_id.get(&(id as u64)) {
            Some(a) => one_answer(node, method, a),
            None => Err(DaemonCallError::Refused {
                node: node.to_owned(),
                method: (*method).to_owned(),
                code: -32603,
                message: "the daemon's batch answer has no response for this call".to_owned(),
            }),
        })
        .collect()
}

fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    faultline_api::report::error_text(err)
}
