//! Network faults inside the target's network namespace (DESIGN.md §5 `network.apply`):
//! netem and tbf through rtnetlink, partitions through iptables.
//!
//! - [`tc`]: the netlink encoding of netem and tbf, byte for byte what iproute2 7.1's `tc`
//!   sends (golden fixtures in `daemon/tests/fixtures/tc`); [`ack`]: request → ACK/errno.
//! - [`compose`]: several faults on one device merged into one shaping (pure).
//! - [`qdisc`]: our qdiscs on a device under fixed handles; [`device`]: which device.
//! - [`partition`]: iptables chains tagged with the fault id.
//!
//! All netlink and iptables work runs on a thread that entered the pod's network namespace
//! ([`crate::netns`]) — never on a Tokio worker.

pub(crate) mod ack;
pub(crate) mod compose;
pub(crate) mod device;
pub(crate) mod partition;
pub(crate) mod qdisc;
pub mod tc;

use faultline_api::convert::network::{NetemParams, NetworkFault, TbfParams, network_fault};
use faultline_api::network_chaos::{Direction, NetworkChaosAction, NetworkChaosSpec};
use faultline_api::rpc::daemon::NetworkApplyParams;
use faultline_rpc::errors::Violation;
use serde::{Deserialize, Serialize};

use self::compose::Shaping;
use self::device::DeviceError;
use self::partition::{PartitionError, Peer};
use self::qdisc::QdiscError;
use crate::error::ApplyError;

/// A partition as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartitionRecord {
    pub direction: Direction,
    pub targets: Vec<String>,
}

/// One `network.apply`, converted: the shaping it adds and the partition it sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkRequest {
    pub(crate) shaping: Shaping,
    pub(crate) partition: Option<PartitionRecord>,
}

fn spec(action: NetworkChaosAction) -> NetworkChaosSpec {
    NetworkChaosSpec {
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
        action,
        delay: None,
        loss: None,
        duplicate: None,
        corrupt: None,
        rate: None,
        bandwidth: None,
        direction: None,
        target: None,
        external_targets: Vec::new(),
        device: None,
        target_device: None,
        duration: None,
    }
}

/// `spec.delay.latency` (the api's path) → `netem.delay.latency` (the call's).
fn violations(prefix: &str, found: Vec<faultline_api::validate::Violation>) -> Vec<Violation> {
    found
        .into_iter()
        .map(|v| Violation {
            field: match v.path.strip_prefix("spec.") {
                Some(rest) if prefix.is_empty() => rest.to_owned(),
                Some(rest) => format!("{prefix}.{rest}"),
                None => prefix.to_owned(),
            },
            reason: v.rule.to_string(),
            rule: v.rule.name(),
        })
        .collect()
}

/// Validates and converts the params with the same code the webhook and controller use
/// (`faultline_api::convert::network`), so the daemon applies exactly the kernel values the
/// spec was admitted with.
pub(crate) fn convert(p: &NetworkApplyParams) -> Result<NetworkRequest, Vec<Violation>> {
    let mut found = Vec::new();
    let mut shaping = Shaping::default();
    if let Some(n) = &p.netem {
        let mut s = spec(NetworkChaosAction::Netem);
        s.delay = n.delay.clone();
        s.loss = n.loss.clone();
        s.duplicate = n.duplicate.clone();
        s.corrupt = n.corrupt.clone();
        s.rate = n.rate.clone();
        match network_fault(&s) {
            Ok(NetworkFault::Netem(params)) => shaping.netem = Some(params),
            Ok(_) => {}
            Err(v) => found.extend(violations("netem", v)),
        }
    }
    if let Some(b) = &p.bandwidth {
        let mut s = spec(NetworkChaosAction::Bandwidth);
        s.bandwidth = Some(b.clone());
        match network_fault(&s) {
            Ok(NetworkFault::Bandwidth(params)) => shaping.bandwidth = Some(params),
            Ok(_) => {}
            Err(v) => found.extend(violations("", v)),
        }
    }
    let partition = p.partition.as_ref().map(|part| {
        if part.targets.is_empty() {
            found.push(Violation {
                field: "partition.targets".into(),
                reason: "at least one peer IP or CIDR is required".into(),
                rule: "required",
            });
        }
        for (i, t) in part.targets.iter().enumerate() {
            if let Err(err) = Peer::parse(t) {
                found.push(Violation {
                    field: format!("partition.targets[{i}]"),
                    reason: err.to_string(),
                    rule: "invalid-cidr",
                });
            }
        }
        PartitionRecord {
            direction: part.direction,
            targets: part.targets.clone(),
        }
    });
    if p.netem.is_none() && p.bandwidth.is_none() && p.partition.is_none() {
        found.push(Violation {
            field: "netem".into(),
            reason: "one of netem, bandwidth or partition is required".into(),
            rule: "required",
        });
    }
    if !found.is_empty() {
        return Err(found);
    }
    Ok(NetworkRequest { shaping, partition })
}

/// Why the device could not be changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetworkError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Qdisc(#[from] QdiscError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("{what}: {reason}")]
    Setup { what: &'static str, reason: String },
}

fn connection() -> Result<(ack::Connection, tc::Psched), NetworkError> {
    let conn = ack::Connection::open().map_err(|e| NetworkError::Setup {
        what: "open a NETLINK_ROUTE socket",
        reason: e.to_string(),
    })?;
    // This thread's namespace: /proc/self/net would show the main thread's.
    let psched = std::fs::read_to_string("/proc/thread-self/net/psched")
        .map_err(|e| e.to_string())
        .and_then(|t| tc::Psched::parse(&t).map_err(|e| e.to_string()))
        .map_err(|reason| NetworkError::Setup {
            what: "read /proc/net/psched",
            reason,
        })?;
    Ok((conn, psched))
}

/// In the target's namespace: sets `device`'s shaping from `before` to `after` and adds the
/// partition of `fault_id`. On an error the device is put back to `before` and the fault's
/// rules are removed; the failure says whether that worked.
pub(crate) fn apply_blocking(
    device: &str,
    ifindex: u32,
    before: &Shaping,
    after: &Shaping,
    fault_id: &str,
    partition: Option<&PartitionRecord>,
) -> Result<(), ApplyError<NetworkError>> {
    // Back to `before`, even when it is empty: a failed install may have left part of `after`
    // (a tbf whose netem child was refused).
    let restore = || -> Result<(), NetworkError> {
        let (conn, psched) = connection()?;
        qdisc::install(&conn, device, ifindex, before, psched)?;
        Ok(())
    };
    let failed = |err: NetworkError, restored: Result<(), NetworkError>| match restored {
        Ok(()) => ApplyError::undone(err),
        Err(_) => ApplyError::left_behind(err),
    };
    if before != after {
        let (conn, psched) = connection().map_err(ApplyError::undone)?;
        if let Err(err) = qdisc::install(&conn, device, ifindex, after, psched) {
            return Err(failed(err.into(), restore()));
        }
    }
    if let Some(p) = partition {
        let shaped = before != after;
        let peers: Result<Vec<Peer>, _> = p.targets.iter().map(|t| Peer::parse(t)).collect();
        let added = peers
            .map_err(ApplyError::undone)
            .and_then(|peers| partition::apply(fault_id, p.direction, &peers));
        if let Err(err) = added {
            let restored = if shaped { restore() } else { Ok(()) };
            return Err(match (err.undone, restored) {
                (true, Ok(())) => ApplyError::undone(err.error),
                _ => ApplyError::left_behind(err.error),
            });
        }
    }
    Ok(())
}

/// In the target's namespace: removes the partition of `fault_id` and sets `device`'s shaping
/// to `after` (what the other faults on it still need).
pub(crate) fn recover_blocking(
    device: &str,
    had_partition: bool,
    after: &Shaping,
    fault_id: &str,
) -> Result<(), NetworkError> {
    if had_partition {
        partition::remove(fault_id)?;
    }
    let ifindex = match nix::net::if_::if_nametoindex(device) {
        Ok(i) => i,
        // The device is gone (the pod is being torn down): nothing of ours is left on it.
        Err(_) => return Ok(()),
    };
    let (conn, psched) = connection()?;
    qdisc::install(&conn, device, ifindex, after, psched)?;
    Ok(())
}

/// The shaping a record asked for (netem/tbf of one fault).
pub(crate) fn shaping_of(netem: Option<NetemParams>, bandwidth: Option<TbfParams>) -> Shaping {
    Shaping { netem, bandwidth }
}
