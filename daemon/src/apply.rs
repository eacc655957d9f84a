//! The methods' work: each apply journals, acts and arms its ttl; [`Daemon::undo`] recovers
//! any journaled fault from its record alone.

use std::sync::Arc;

use faultline_api::convert::stress::{StressPlan, stress_plan};
use faultline_api::duration::parse_duration;
use faultline_api::rpc::daemon::{
    FaultId, FaultKind, IoApplyParams, IoRecoverParams, KillParams, NetworkApplyParams,
    PodFailureParams, StressStartParams, Target,
};
use faultline_api::stress_chaos::StressChaosSpec;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::DaemonError;
use crate::faults::{recover, recover_later};
use crate::metrics::Reason;
use crate::netns::run_in;
use crate::record::{Entry, Record, new_fault_id};
use crate::{Daemon, cgroup, clock, io_relay, network, pod_failure, stress};

/// A `ttl` as a duration and the RFC 3339 time it ends.
fn ttl(
    field: &str,
    ttl: Option<&str>,
) -> Result<Option<(std::time::Duration, String)>, DaemonError> {
    let Some(text) = ttl else { return Ok(None) };
    let d = parse_duration(text)
        .map_err(|e| DaemonError::invalid(field, e.to_string(), "invalid-duration"))?;
    if d.is_zero() {
        return Err(DaemonError::invalid(
            field,
            "must be longer than 0",
            "invalid-duration",
        ));
    }
    Ok(Some((d, clock::rfc3339(std::time::SystemTime::now() + d))))
}

/// A client-chosen fault id: `[a-z0-9-]`, 1–63 characters (a file name, an environment value
/// and part of an iptables chain name).
fn checked_id(id: &FaultId) -> Result<(), DaemonError> {
    let ok = !id.0.is_empty()
        && id.0.len() <= 63
        && id
            .0
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DaemonError::invalid(
            "faultId",
            format!("`{}` is not 1-63 characters of a-z, 0-9 and -", id.0),
            "invalid-fault-id",
        ))
    }
}

impl Daemon {
    /// The id of a new fault, or — when the client names an active fault of this kind — that
    /// fault with its ttl renewed (`Ok(Err(id))`: nothing else to do).
    fn fault_id(
        self: &Arc<Self>,
        requested: Option<&FaultId>,
        kind: FaultKind,
        ttl: Option<&(std::time::Duration, String)>,
    ) -> Result<Result<FaultId, FaultId>, DaemonError> {
        let Some(id) = requested else {
            return Ok(Ok(new_fault_id(kind)));
        };
        checked_id(id)?;
        match self.faults.kind_of(id) {
            None => Ok(Ok(id.clone())),
            Some(k) if k != kind => Err(DaemonError::invalid(
                "faultId",
                format!("{id} is an active fault of another kind"),
                "wrong-kind",
            )),
            Some(_) => {
                if let Some((delay, expires_at)) = ttl {
                    self.faults.renew(id, expires_at.clone())?;
                    recover_later(self, id.clone(), *delay, Reason::Ttl);
                    tracing::debug!(fault_id = %id, %expires_at, "ttl renewed");
                }
                Ok(Err(id.clone()))
            }
        }
    }

    /// Journals a new fault, runs `act`, and on success arms its ttl; on failure the fault is
    /// dropped from the journal (`act` undoes its own partial work).
    async fn applied(
        self: &Arc<Self>,
        entry: Entry,
        ttl: Option<std::time::Duration>,
        act: impl std::future::Future<Output = Result<Option<Entry>, DaemonError>>,
    ) -> Result<FaultId, DaemonError> {
        let id = entry.fault_id.clone();
        let kind = entry.record.kind();
        self.faults.begin(entry)?;
        match act.await {
            Ok(updated) => {
                if let Some(updated) = updated {
                    self.faults.update(updated)?;
                }
                self.metrics.applied(kind);
                if let Some(d) = ttl {
                    recover_later(self, id.clone(), d, Reason::Ttl);
                }
                tracing::info!(fault_id = %id, kind = crate::metrics::kind_name(kind), "fault applied");
                Ok(id)
            }
            Err(err) => {
                // Each apply undoes its own partial work before it fails (stress kills what it
                // started, network restores the device, io takes back the rules it may have
                // added), so the entry can go.
                self.faults.abandon(&id);
                Err(err)
            }
        }
    }

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
        let id = match self.fault_id(p.fault_id.as_ref(), FaultKind::Stress, ttl.as_ref())? {
            Ok(new) => new,
            Err(renewed) => return Ok(renewed),
        };
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
            let started = stress::start(&stress_ng, &plan, target.pid, &dirs, &id.0)?;
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
        let id = match self.fault_id(p.fault_id.as_ref(), FaultKind::PodFailure, ttl.as_ref())? {
            Ok(new) => new,
            Err(held) => return Ok(held),
        };
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
            pod_failure::apply(&client, &p.namespace, &p.pod, &id, &pause).await?;
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
        let id = match self.fault_id(p.fault_id.as_ref(), FaultKind::Io, ttl.as_ref())? {
            Ok(new) => new,
            Err(active) => return Ok(active),
        };
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
            io_relay::apply(&netns, port, &p.rules, &ids, p.mount.as_deref()).await?;
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
        let id = match self.fault_id(p.fault_id.as_ref(), FaultKind::Network, ttl.as_ref())? {
            Ok(new) => new,
            Err(renewed) => return Ok(renewed),
        };
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
            run_in(&netns, move || {
                network::apply_blocking(
                    &device,
                    ifindex,
                    &before,
                    &after,
                    &fault.0,
                    request.partition.as_ref(),
                )
            })
            .await??;
            Ok(None)
        };
        self.applied(entry, ttl.map(|t| t.0), act).await
    }

    /// Recovers a fault from its journal record alone.
    pub(crate) async fn undo(&self, entry: &Entry) -> Result<(), DaemonError> {
        match &entry.record {
            Record::Stress { stress_ng, .. } => {
                stress::stop(&entry.fault_id.0, stress_ng.as_ref()).await?;
            }
            Record::PodFailure { namespace, pod } => {
                let client = self.kube().await?;
                pod_failure::recover(&client, namespace, pod, &entry.fault_id).await?;
            }
            Record::Io {
                netns,
                port,
                rule_ids,
            } => {
                io_relay::recover(netns, *port, rule_ids).await?;
            }
            Record::Network {
                netns,
                netns_inode,
                device,
                partition,
                ..
            } => {
                let _one_at_a_time = self.network.lock().await;
                // The fault is out of the registry already: the merge is of the others.
                let after = network::compose::compose(&self.faults.shapings_on(
                    *netns_inode,
                    device,
                    Some(&entry.fault_id),
                ));
                let (device, had_partition, fault) = (
                    device.clone(),
                    partition.is_some(),
                    entry.fault_id.0.clone(),
                );
                match run_in(netns, move || {
                    network::recover_blocking(&device, had_partition, &after, &fault)
                })
                .await
                {
                    // The pod's namespace is gone, and everything of ours with it.
                    Err(crate::netns::NetnsError::Gone { .. }) => {}
                    other => other??,
                }
            }
        }
        Ok(())
    }

    /// `faults.recoverAll`: every fault; the ones recovered are returned, the first failure
    /// is the error (the others were still attempted).
    pub(crate) async fn recover_all(
        self: &Arc<Self>,
    ) -> Result<Vec<faultline_api::rpc::daemon::FaultEntry>, DaemonError> {
        let mut recovered = Vec::new();
        let mut first_err = None;
        for id in self.faults.ids() {
            match recover(self, &id, Reason::RecoverAll).await {
                Ok(entry) => recovered.push(entry.listed()),
                Err(DaemonError::UnknownFault(_)) => {}
                Err(err) => {
                    first_err.get_or_insert(err);
                }
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(recovered),
        }
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
