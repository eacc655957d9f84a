//! Targets to processes: `{"pid": N}` as it is, `{"containerId": "containerd://<id>"}` through
//! containerd's task API. Either way the result is a [`ProcessRef`] (pid + start time), so a
//! fault recorded now never hits a later process that got the same pid.

use faultline_api::rpc::daemon::Target;

use crate::Daemon;
use crate::containerd::{Containerd, container_id};
use crate::error::DaemonError;
use crate::process::ProcessRef;

impl Daemon {
    /// The containerd connection, made on first use (and again after a failed attempt, so a
    /// containerd that starts after the daemon is found).
    pub(crate) async fn runtime(&self) -> Result<Containerd, DaemonError> {
        let mut slot = self.runtime.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Containerd::connect(
            self.settings.containerd_socket.as_deref(),
            &self.settings.containerd_namespace,
        )
        .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The target's (init) process.
    pub(crate) async fn resolve(&self, target: &Target) -> Result<ProcessRef, DaemonError> {
        let pid = match target {
            Target::Pid { pid } => *pid,
            Target::Container { container_id: cid } => {
                let id = container_id(cid)?;
                self.runtime().await?.task_pid(id).await?
            }
        };
        Ok(ProcessRef::of(pid)?)
    }

    /// A process in the target's network namespace that lives as long as the pod: the pod
    /// sandbox's when the container belongs to one, so a fault on the pod's network survives
    /// (and can be recovered across) restarts of the app container (Chaos Mesh #4827).
    pub(crate) async fn resolve_netns(&self, target: &Target) -> Result<ProcessRef, DaemonError> {
        if let Target::Container { container_id: cid } = target {
            let id = container_id(cid)?;
            let runtime = self.runtime().await?;
            if let Some(sandbox) = runtime.sandbox_id(id).await? {
                match runtime.task_pid(&sandbox).await {
                    Ok(pid) => return Ok(ProcessRef::of(pid)?),
                    Err(err) => {
                        tracing::debug!(container = id, %sandbox, error = %err, "no sandbox task; using the container's");
                    }
                }
            }
        }
        self.resolve(target).await
    }
}
