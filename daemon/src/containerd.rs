//! The container runtime: containerd's v1 gRPC API (Version, Containers.Get, Tasks.Get,
//! Tasks.Kill — long-standing calls that containerd 1.6 and later all answer).
//!
//! A pod's container is named as its `containerStatuses[].containerID` says:
//! `containerd://<id>`. Other runtimes' schemes are refused with the list of what is supported.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{GetContainerRequest, GetRequest, KillRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};

/// Where containerd's socket usually is, tried in order when `--containerd-socket` is absent.
pub(crate) const KNOWN_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
    "/run/k0s/containerd.sock",
    "/var/run/containerd/containerd.sock",
];

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// CRI puts the pod sandbox's id in every container's OCI spec under this annotation.
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// Why the runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeError {
    #[error(
        "container id `{id}`: runtime `{scheme}` is not supported; supported: containerd \
         (`containerd://<id>`)"
    )]
    UnsupportedRuntime { id: String, scheme: String },
    #[error("container id `{id}`: expected `containerd://<id>`")]
    BadContainerId { id: String },
    #[error("no containerd socket found (tried {}); pass --containerd-socket", tried.join(", "))]
    NoSocket { tried: Vec<String> },
    #[error("containerd at {}: unreachable: {reason}", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    #[error("container {id}: not found in containerd namespace `{namespace}`")]
    NotFound { id: String, namespace: String },
    #[error("container {id}: {what}: {reason}")]
    Call {
        id: String,
        what: &'static str,
        reason: String,
    },
}

/// The id of `containerd://<id>`; other schemes are refused by name.
pub(crate) fn container_id(target: &str) -> Result<&str, RuntimeError> {
    match target.split_once("://") {
        Some(("containerd", id)) if !id.is_empty() && !id.contains('/') => Ok(id),
        Some(("containerd", _)) => Err(RuntimeError::BadContainerId { id: target.into() }),
        Some((scheme, _)) => Err(RuntimeError::UnsupportedRuntime {
            id: target.into(),
            scheme: scheme.into(),
        }),
        None => Err(RuntimeError::BadContainerId { id: target.into() }),
    }
}

/// A connection to containerd in one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Containerd {
    pub(crate) socket: PathBuf,
    pub(crate) namespace: String,
    pub(crate) version: String,
    channel: Channel,
}

impl Containerd {
    /// Connects to `socket`, or the first of [`KNOWN_SOCKETS`] that exists, and asks its
    /// version (so "reachable" means it answered).
    pub(crate) async fn connect(
        socket: Option<&Path>,
        namespace: &str,
    ) -> Result<Self, RuntimeError> {
        let socket = match socket {
            Some(s) => s.to_path_buf(),
            None => KNOWN_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or_else(|| RuntimeError::NoSocket {
                    tried: KNOWN_SOCKETS.iter().map(|s| s.to_string()).collect(),
                })?,
        };
        let unreachable = |reason: String| RuntimeError::Unreachable {
            socket: socket.clone(),
            reason,
        };
        let channel = tokio::time::timeout(CALL_TIMEOUT, containerd_client::connect(&socket))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(crate::error_chain(&e)))?;
        let version = tokio::time::timeout(
            CALL_TIMEOUT,
            VersionClient::new(channel.clone()).version(()),
        )
        .await
        .map_err(|_| unreachable("version call timed out".into()))?
        .map_err(|s| unreachable(s.message().to_owned()))?
        .into_inner()
        .version;
        Ok(Self {
            socket,
            namespace: namespace.to_owned(),
            version,
            channel,
        })
    }

    fn request<T>(&self, id: &str, message: T) -> Result<Request<T>, RuntimeError> {
        let mut req = Request::new(message);
        req.set_timeout(CALL_TIMEOUT);
        let ns = self.namespace.parse().map_err(|_| RuntimeError::Call {
            id: id.into(),
            what: "namespace",
            reason: format!("`{}` is not a valid gRPC header value", self.namespace),
        })?;
        req.metadata_mut().insert("containerd-namespace", ns);
        Ok(req)
    }

    fn status(&self, id: &str, what: &'static str, status: Status) -> RuntimeError {
        match status.code() {
            Code::NotFound => RuntimeError::NotFound {
                id: id.into(),
                namespace: self.namespace.clone(),
            },
            Code::Unavailable => RuntimeError::Unreachable {
                socket: self.socket.clone(),
                reason: status.message().to_owned(),
            },
            _ => RuntimeError::Call {
                id: id.into(),
                what,
                reason: format!("{:?}: {}", status.code(), status.message()),
            },
        }
    }

    /// The pid of the container's task (its init process).
    pub(crate) async fn task_pid(&self, id: &str) -> Result<u32, RuntimeError> {
        let req = self.request(
            id,
            GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            },
        )?;
        let process = TasksClient::new(self.channel.clone())
            .get(req)
            .await
            .map_err(|s| self.status(id, "get its task", s))?
            .into_inner()
            .process;
        match process {
            Some(p) if p.pid != 0 => Ok(p.pid),
            _ => Err(RuntimeError::Call {
                id: id.into(),
                what: "get its task",
                reason: "the task has no process (not started or already exited)".into(),
            }),
        }
    }

    /// Sends `signal` to the container's task (every process of it with `all`).
    pub(crate) async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let req = self.request(
            id,
            KillRequest {
                container_id: id.into(),
                exec_id: String::new(),
                signal: signal as u32,
                all,
            },
        )?;
        TasksClient::new(self.channel.clone())
            .kill(req)
            .await
            .map_err(|s| self.status(id, "kill its task", s))?;
        Ok(())
    }

    /// The pod sandbox of a CRI container (from its OCI spec's annotations); `None` for a
    /// container that is not part of a pod (or is the sandbox itself).
    pub(crate) async fn sandbox_id(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        let req = self.request(id, GetContainerRequest { id: id.into() })?;
        let container = ContainersClient::new(self.channel.clone())
            .get(req)
            .await
            .map_err(|s| self.status(id, "get the container", s))?
            .into_inner()
            .container;
        let Some(spec) = container.and_then(|c| c.spec) else {
            return Ok(None);
        };
        let spec: serde_json::Value = serde_json::from_slice(&spec.value).unwrap_or_default();
        Ok(spec["annotations"][SANDBOX_ID_ANNOTATION]
            .as_str()
            .filter(|s| !s.is_empty() && *s != id)
            .map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_by_scheme() {
        assert_eq!(container_id("containerd://abc123").unwrap(), "abc123");
        let err = container_id("docker://abc").unwrap_err().to_string();
        assert!(
            err.contains("`docker` is not supported") && err.contains("containerd://"),
            "{err}"
        );
        assert!(container_id("cri-o://x").is_err());
        assert!(matches!(
            container_id("abc"),
            Err(RuntimeError::BadContainerId { .. })
        ));
        assert!(container_id("containerd://").is_err());
        assert!(container_id("containerd://a/b").is_err());
    }
}
