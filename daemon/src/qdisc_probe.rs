//! Which qdisc kinds the kernel accepts, tried in a throwaway network namespace.
//!
//! A dedicated thread leaves the daemon's network namespace for a new, empty one
//! (`unshare(CLONE_NEWNET)`), asks the kernel over rtnetlink to add a root qdisc of each kind
//! on its loopback device with no options, and ends — the namespace, and anything added in
//! it, goes with it. The kernel answers `ENOENT` for a kind it does not know (module absent,
//! e.g. `CONFIG_NET_SCH_NETEM` off) and something else (success, or `EINVAL` for the missing
//! options) for one it has: decided by errno, never by message text.

use std::collections::BTreeMap;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::{CloneFlags, unshare};

/// The kinds `capabilities()` reports.
pub const KINDS: &[&str] = &["netem", "tbf"];

/// The loopback device of a new namespace.
const LO_INDEX: i32 = 1;

/// What the kernel said to "add a root qdisc of `kind`": `Ok(())` or the errno.
fn try_add(socket: &Socket, kind: &str, seq: u32) -> std::io::Result<Result<(), i32>> {
    let mut tc = TcMessage::default();
    tc.header.index = LO_INDEX;
    tc.header.parent = TcHandle::ROOT;
    tc.attributes.push(TcAttribute::Kind(kind.to_owned()));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::NewQueueDiscipline(tc)),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        if reply.header.sequence_number != seq {
            continue;
        }
        if let NetlinkPayload::Error(err) = reply.payload {
            return Ok(match err.code {
                None => Ok(()),
                Some(code) => Err(-code.get()),
            });
        }
    }
}

fn probe_blocking() -> std::io::Result<BTreeMap<String, bool>> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut kinds = BTreeMap::new();
    for (seq, kind) in (1..).zip(KINDS) {
        let available = match try_add(&socket, kind, seq)? {
            Ok(()) => true,
            Err(errno) => errno != libc::ENOENT,
        };
        kinds.insert((*kind).to_owned(), available);
        if available {
            // The next kind is tried on the same device: take this one off (the namespace
            // is thrown away anyway).
            let _ = delete_root(&socket, seq + 100);
        }
    }
    Ok(kinds)
}

fn delete_root(socket: &Socket, seq: u32) -> std::io::Result<()> {
    let mut tc = TcMessage::default();
    tc.header.index = LO_INDEX;
    tc.header.parent = TcHandle::ROOT;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::DelQueueDiscipline(tc)),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let _ = socket.recv_from_full()?;
    Ok(())
}

/// Probes every kind of [`KINDS`]; a probe that cannot run (no CAP_NET_ADMIN) reports every
/// kind unavailable and says why in the log.
pub async fn probe_all() -> BTreeMap<String, bool> {
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
