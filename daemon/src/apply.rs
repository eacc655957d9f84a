//! The methods' work: each apply validates, resolves its target and acts, through
//! [`Daemon::apply_exclusive`] and [`Daemon::applied`] (`lifecycle`); [`Daemon::undo`]
//! (`faults`) recovers any journaled fault from its record alone.

use std::sync::Arc;

use faultline_api::convert::stress::{StressPlan, stress_plan};
use faultline_api::rpc::daemon::{
    FaultId, FaultKind, IoApplyParams, IoRecoverParams, KillParams, NetworkApplyParams,
    PodFailureParams, StressStartParams, Target,
};
use faultline_api::stress_chaos::StressChaosSpec;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{ApplyError, DaemonError};
use crate::faults::recover;
use crate::lifecycle::{Ttl, ttl};
use crate::metrics::Reason;
use crate::netns::run_in;
use crate::record::{Entry, Record};
use crate::{Daemon, cgroup, io_relay, network, pod_failure, stress};

impl Daemon {
    pub(crate) async fn container_pid(&self, target: &Target) -> Result<u32, DaemonError> {
        Ok(self.resolve(target).await?.pid)
    }

    /// `container.kill`: through containerd's task API for a container, `kill(2)` for a pid.
    pub(crate) async fn container_kill(&self, p: &KillParams) -> Result<(), DaemonError> {
        let signal = match p.signal.as_deref() {
            None => Signal::SIGKILL,
            Some(name) => crate::process::parse_signal(name)
                .map_err(|reason| DaemonError::invalid("signal", reason, "invalid-signal"))?,
        };
        match &p.target {
            Target::Container { container_id } => {
                let id = crate::containerd::container_id(container_id)?;
                self.runtime().await?.kill(id, signal as i32, false).await?;
            }
            Target::Pid { .. } => {
                let process = self.resolve(&p.target).await?;
                kill(Pid::from_raw(process.pid as i32), signal).map_err(|e| {
                    DaemonError::Failed {
                        what: format!("kill process {} with {signal}", process.pid),
                        reason: e.desc().to_owned(),
                    }
                })?;
            }
        }
        tracing::info!(target = %crate::error::describe(&p.target), %signal, "signal sent");
        Ok(())
    }

    fn stress_plan(
        &self,
        p: &StressStartParams,
        dirs: &[std::path::PathBuf],
    ) -> Result<StressPlan, DaemonError> {
        if p.stressors.is_none()
            && p.stressng_stressors
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
        {
            return Err(DaemonError::invalid(
                "stressors",
                "one of stressors or stressngStressors is required",
                "required",
            ));
        }
        let spec = StressChaosSpec {
            // Only the stressors matter to the conversion; the selection is the controller's.
            scope: faultline_api::selector::PodSelector {
                // The conversion validates the whole spec; the selection is the controller's, so
                // any valid selector will do (an empty one is refused).
                selector: faultline_api::selector::PodSelectorSpec {
                    namespaces: vec!["daemon".into()],
                    ..Default::default()
                },
                mode: faultline_api::selector::SelectorMode::All,
                value: None,
            },
            container_names: Vec::new(),
            stressors: p.stressors.clone(),
            stressng_stressors: p.stressng_stressors.clone(),
            duration: None,
        };
        let memory = cgroup::memory_limit(dirs)
            .or_else(|| cgroup::host_memory(std::path::Path::new("/proc/meminfo")))
            .unwrap_or(0);
        stress_plan(&spec, memory).map_err(|violations| {
            DaemonError::InvalidParams(
                violations
                    .iter()
                    .map(|v| faultline_rpc::errors::Violation {
                        field: v.path.trim_start_matches("spec.").to_owned(),
                        reason: v.rule.to_string(),
                        rule: v.rule.name(),
                    })
                    .collect(),
            )
        })
    }

    /// `stress.start`.
    pub(crate) async fn stress_start(
        self: &Arc<Self>,
        p: StressStartParams,
    ) -> Result<FaultId, DaemonError> {
        let ttl = ttl("ttl", p.ttl.as_deref())?;
        let requested = p.fault_id.clone();
        self.apply_exclusive(
            requested.as_ref(),
            FaultKind::Stress,
            ttl,
            |d, id, ttl| async move { d.stress_apply(p, id, ttl).await },
        )
        .await
    }

    async fn stress_apply(
        self: Arc<Self>,
        p: StressStartParams,
        id: FaultId,
        ttl: Option<Ttl>,
    ) -> Result<FaultId, DaemonError> {
        let Some(stress_ng) = self.settings.stress_ng.clone() else {
            return Err(DaemonError::NotAvailable(
                "stress-ng is not installed on this node".into(),
            ));
        };
        let target = self.resolve(&p.target).await?;
        let dirs = cgroup::dirs_of(target.pid, &self.hierarchies)?;
        let plan = self.stress_plan(&p, &dirs)?;
        stress::check_args(&stress_ng, &plan).await?;
        let entry = Entry::new(
            id.clone(),
            Some(p.target.clone()),
            ttl.as_ref().map(|t| t.1.clone()),
            Record::Stress {
                target: target.clone(),
                stress_ng: None,
            },
        );
        let mut updated = entry.clone();
        let act = async {
            let started = match stress::start(&stress_ng, &plan, target.pid, &dirs, &id.0) {
                Ok(started) => started,
                // stress-ng may be running with its pid unknown (it was spawned, then could
                // not be looked up): kill whatever carries the fault's mark.
                Err(err) => {
                    return Err(match stress::stop(&id.0, None).await {
                        Ok(()) => ApplyError::undone(err),
                        Err(_) => ApplyError::left_behind(err),
                    });
                }
            };
            tracing::info!(fault_id = %id, pid = started.pid, args = %plan.args.join(" "), cgroups = ?dirs, "stress-ng started in the target's cgroups");
            updated.record = Record::Stress {
                target: target.clone(),
                stress_ng: Some(started),
            };
            Ok(Some(updated))
        };
        self.applied(entry, ttl.map(|t| t.0), act).await
    }

    /// `podFailure.apply`.
    pub(crate) async fn pod_failure_apply(
        self: &Arc<Self>,
        p: PodFailureParams,
    ) -> Result<FaultId, DaemonError> {
        let ttl = ttl("ttl", p.ttl.as_deref())?;
        let requested = p.fault_id.clone();
        self.apply_exclusive(
            requested.as_ref(),
            FaultKind::PodFailure,
            ttl,
            |d, id, ttl| async move { d.pod_failure_held(p, id, ttl).await },
        )
        .await
    }

    async fn pod_failure_held(
        self: Arc<Self>,
        p: PodFailureParams,
        id: FaultId,
        ttl: Option<Ttl>,
    ) -> Result<FaultId, DaemonError> {
        let client = self.kube().await?;
        let pause = p
            .pause_image
            .clone()
            .unwrap_or_else(|| self.settings.pause_image.clone());
        let entry = Entry::new(
            id.clone(),
            None,
            ttl.as_ref().map(|t| t.1.clone()),
            Record::PodFailure {
                namespace: p.namespace.clone(),
                pod: p.pod.clone(),
            },
        );
        let act = async {
            // One replace carrying the pod's resourceVersion: refused, it did not happen; with
            // no answer (or a 5xx) it may have, and the fault stays journaled to be recovered.
            pod_failure::apply(&client, &p.namespace, &p.pod, &id, &pause)
                .await
                .map_err(|e| {
                    if e.may_have_applied() {
                        ApplyError::left_behind(e)
                    } else {
                        ApplyError::undone(e)
                    }
                })?;
            Ok(None)
        };
        self.applied(entry, ttl.map(|t| t.0), act).await
    }

    /// `podFailure.recover`: one hold (`faultId`) or every hold of this daemon on the pod.
    pub(crate) async fn pod_failure_recover(
        self: &Arc<Self>,
        p: PodFailureParams,
    ) -> Result<(), DaemonError> {
        if p.pause_image.is_some() {
            return Err(DaemonError::invalid(
                "pauseImage",
                "only podFailure.apply takes a pauseImage",
                "unknown-field",
            ));
        }
        let held = self.faults.pod_failures_on(&p.namespace, &p.pod);
        let ids: Vec<FaultId> = match &p.fault_id {
            Some(id) if held.contains(id) => vec![id.clone()],
            Some(id) if self.faults.kind_of(id).is_some() => {
                return Err(DaemonError::invalid(
                    "faultId",
                    format!(
                        "{id} is not a pod-failure hold on {}/{}",
                        p.namespace, p.pod
                    ),
                    "wrong-kind",
                ));
            }
            Some(id) => return Err(DaemonError::UnknownFault(id.clone())),
            None => held,
        };
        for id in ids {
            recover(self, &id, Reason::Request).await?;
        }
        Ok(())
    }

    /// `io.apply`.
    pub(crate) async fn io_apply(
        self: &Arc<Self>,
        p: IoApplyParams,
    ) -> Result<FaultId, DaemonError> {
        if p.rules.is_empty() {
            return Err(DaemonError::invalid(
                "rules",
                "at least one rule is required",
                "required",
            ));
        }
        // Each rule is one call to the sidecar, and a rule id one journal string: a bound on
        // what one call can cost. The controller sends one rule per fault.
        if p.rules.len() > io_relay::MAX_RULES {
            return Err(DaemonError::invalid(
                "rules",
                format!(
                    "{} rules; at most {} per fault",
                    p.rules.len(),
                    io_relay::MAX_RULES
                ),
                "too-many",
            ));
        }
        let violations: Vec<_> = p
            .rules
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                let mut findings = faultline_api::validate::Findings::default();
                r.validate_at(&format!("rules[{i}]"), &mut findings);
                findings.into_vec()
            })
            .map(|v| faultline_rpc::errors::Violation {
                field: v.path.clone(),
                reason: v.rule.to_string(),
                rule: v.rule.name(),
            })
            .collect();
        if !violations.is_empty() {
            return Err(DaemonError::InvalidParams(violations));
        }
        let ttl = ttl("ttl", p.ttl.as_deref())?;
        let requested = p.fault_id.clone();
        self.apply_exclusive(
            requested.as_ref(),
            FaultKind::Io,
            ttl,
            |d, id, ttl| async move { d.io_apply_held(p, id, ttl).await },
        )
        .await
    }

    async fn io_apply_held(
        self: Arc<Self>,
        p: IoApplyParams,
        id: FaultId,
        ttl: Option<Ttl>,
    ) -> Result<FaultId, DaemonError> {
        let netns = self.resolve_netns(&p.target).await?;
        let ids = io_relay::rule_ids(&id.0, p.rules.len());
        let port = self.settings.sidecar_port;
        let entry = Entry::new(
            id.clone(),
            Some(p.target.clone()),
            ttl.as_ref().map(|t| t.1.clone()),
            Record::Io {
                netns: netns.clone(),
                port,
                rule_ids: ids.clone(),
            },
        );
        let act = async {
            io_relay::apply(&netns, port, &p.rules, &ids, p.mount.as_deref())
                .await
                .map_err(ApplyError::widen)?;
            Ok(None)
        };
        self.applied(entry, ttl.map(|t| t.0), act).await
    }

    /// `io.recover`.
    pub(crate) async fn io_recover(
        self: &Arc<Self>,
        p: IoRecoverParams,
    ) -> Result<(), DaemonError> {
        let ids = match p {
            IoRecoverParams::Fault { fault_id } => {
                if self
                    .faults
                    .kind_of(&fault_id)
                    .is_some_and(|k| k != FaultKind::Io)
                {
                    return Err(DaemonError::invalid(
                        "faultId",
                        format!("{fault_id} is not an I/O fault"),
                        "wrong-kind",
                    ));
                }
                vec![fault_id]
            }
            IoRecoverParams::Target { target } => self.faults.ids_on(&target, FaultKind::Io),
        };
        for id in ids {
            recover(self, &id, Reason::Request).await?;
        }
        Ok(())
    }

    /// `network.apply`: the fault's shaping merged with the others on the device, and/or its
    /// partition.
    pub(crate) async fn network_apply(
        self: &Arc<Self>,
        p: NetworkApplyParams,
    ) -> Result<FaultId, DaemonError> {
        let ttl = ttl("ttl", p.ttl.as_deref())?;
        let request = network::convert(&p).map_err(DaemonError::InvalidParams)?;
        let requested = p.fault_id.clone();
        self.apply_exclusive(
            requested.as_ref(),
            FaultKind::Network,
            ttl,
            |d, id, ttl| async move { d.network_apply_held(p, request, id, ttl).await },
        )
        .await
    }

    async fn network_apply_held(
        self: Arc<Self>,
        p: NetworkApplyParams,
        request: network::NetworkRequest,
        id: FaultId,
        ttl: Option<Ttl>,
    ) -> Result<FaultId, DaemonError> {
        let netns = self.resolve_netns(&p.target).await?;
        let inode = std::fs::metadata(netns.proc_path("ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|_| crate::process::ProcessError::NoSuchProcess { pid: netns.pid })?;
        // A partition alone touches no device (its rules are the namespace's), so a pod
        // without a default route can still be partitioned.
        let (device, ifindex) = if request.shaping.is_empty() {
            (String::new(), 0)
        } else {
            let requested = p.device.clone();
            run_in(&netns, move || {
                network::device::resolve(requested.as_deref())
            })
            .await?
            .map_err(|e| DaemonError::invalid("device", e.to_string(), "invalid-device"))?
        };
        let entry = Entry::new(
            id.clone(),
            Some(p.target.clone()),
            ttl.as_ref().map(|t| t.1.clone()),
            Record::Network {
                netns: netns.clone(),
                netns_inode: inode,
                device: device.clone(),
                netem: request.shaping.netem,
                bandwidth: request.shaping.bandwidth,
                partition: request.partition.clone(),
            },
        );
        let (fault, daemon) = (id.clone(), self.clone());
        let act = async move {
            // Network changes one at a time: the merge is read and installed under the lock.
            let _one_at_a_time = daemon.network.lock().await;
            let others = daemon.faults.shapings_on(inode, &device, Some(&fault));
            let before = network::compose::compose(&others);
            let mut all = others;
            all.push(request.shaping);
            let after = network::compose::compose(&all);
            match run_in(&netns, move || {
                network::apply_blocking(
                    &device,
                    ifindex,
                    &before,
                    &after,
                    &fault.0,
                    request.partition.as_ref(),
                )
            })
            .await
            {
                Ok(applied) => applied.map_err(ApplyError::widen)?,
                // The thread died mid-way: what it changed is unknown.
                Err(err @ crate::netns::NetnsError::ThreadDied) => {
                    return Err(ApplyError::left_behind(err));
                }
                // The namespace could not be entered: nothing was changed.
                Err(err) => return Err(ApplyError::undone(err)),
            }
            Ok(None)
        };
        self.applied(entry, ttl.map(|t| t.0), act).await
    }

    /// The Kubernetes client (in-cluster config or `$KUBECONFIG`), made on first use.
    pub(crate) async fn kube(&self) -> Result<kube::Client, DaemonError> {
        self.kube
            .get_or_try_init(|| async {
                kube::Client::try_default().await.map_err(|e| {
                    pod_failure::PodFailureError::NoClient(faultline_api::report::error_text(&e))
                })
            })
            .await
            .cloned()
            .map_err(DaemonError::from)
    }
}
