//! Which qdisc kinds the kernel accepts, tried in a throwaway network namespace.
//!
//! A dedicated thread leaves the daemon's network namespace for a new, empty one
//! (`unshare(CLONE_NEWNET)`), asks the kernel over rtnetlink to add a root qdisc of each kind
//! on its loopback device with no options, and ends — the namespace, and anything added in
//! it, goes with it. The kernel answers `ENOENT` for a kind it does not know (module absent,
//! e.g. `CONFIG_NET_SCH_NETEM` off) and something else (success, or `EINVAL` for the missing
//! options) for one it has: decided by errno, never by message text.

use std::collections::BTreeMap;

use nix::sched::{CloneFlags, unshare};

use crate::network::ack::{AckError, Connection, Nack};
use crate::network::tc::{QdiscAddr, TC_H_ROOT, del_qdisc, probe_kind, to_bytes};

/// The kinds `capabilities()` reports.
pub(crate) const KINDS: &[&str] = &["netem", "tbf"];

/// The loopback device of a new namespace.
const LO_INDEX: u32 = 1;

fn probe_blocking() -> std::io::Result<BTreeMap<String, bool>> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let conn = Connection::open()?;
    let mut kinds = BTreeMap::new();
    for (seq, kind) in (1..).zip(KINDS) {
        let mut msg = probe_kind(LO_INDEX, kind).map_err(std::io::Error::other)?;
        let available = match conn.request(&to_bytes(&mut msg, seq), seq) {
            Ok(()) => true,
            Err(AckError::Nack(Nack { errno, .. })) => errno != libc::ENOENT,
            Err(AckError::Io(e)) => return Err(e),
            Err(AckError::Decode(e)) => return Err(std::io::Error::other(e)),
        };
        kinds.insert((*kind).to_owned(), available);
        if available {
            // A kind-only add normally creates nothing (EINVAL for the missing options); if a
            // kernel did create one, take it off before the next kind is tried.
            let addr = QdiscAddr {
                ifindex: LO_INDEX,
                parent: TC_H_ROOT,
                handle: 0,
            };
            if let Ok(mut del) = del_qdisc(addr) {
                let _ = conn.request(&to_bytes(&mut del, seq + 100), seq + 100);
            }
        }
    }
    Ok(kinds)
}

/// Probes every kind of [`KINDS`]; a probe that cannot run (no CAP_NET_ADMIN) reports every
/// kind unavailable and says why in the log.
pub(crate) async fn probe_all() -> BTreeMap<String, bool> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("faultline-qdisc-probe".into())
        .spawn(move || {
            // This thread's namespace is a new one; it ends here and is never reused.
            let _ = tx.send(probe_blocking());
        });
    let result = match spawned {
        Ok(_) => rx
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("probe thread died"))),
        Err(e) => Err(e),
    };
    match result {
        Ok(kinds) => kinds,
        Err(err) => {
            tracing::warn!(%err, "qdisc probe could not run; reporting no qdisc kinds");
            KINDS.iter().map(|k| ((*k).to_owned(), false)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel has tbf and no netem (the machine's documented facts); as root the probe
    /// must see exactly that.
    #[tokio::test]
    async fn this_kernel_has_tbf_and_no_netem() {
        if !nix::unistd::geteuid().is_root() {
            assert!(!faultline_e2e::on_ci(), "CI runs as root");
            eprintln!("SKIP this_kernel_has_tbf_and_no_netem: needs root");
            return;
        }
        let kinds = probe_all().await;
        assert_eq!(kinds.get("tbf"), Some(&true), "{kinds:?}");
        let netem_module = std::path::Path::new("/sys/module/sch_netem").exists();
        assert_eq!(kinds.get("netem"), Some(&netem_module), "{kinds:?}");
    }
}
