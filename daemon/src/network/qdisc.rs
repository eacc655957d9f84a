//! Our qdiscs on one device: a fixed, recognisable handle for each, so recovery removes exactly
//! ours and never a qdisc someone else put there.
//!
//! | shaping | root | child |
//! |---|---|---|
//! | netem only | netem `fa18:` | – |
//! | bandwidth only | tbf `fa17:` | – |
//! | both | tbf `fa17:` | netem `fa18:` at `fa17:1` |
//!
//! With both, packets queue in netem (delay, loss, …) and tbf releases netem's output at the
//! capped rate: the cap applies to what leaves the device, delayed or not.
//!
//! Before installing, the device's root qdisc is read: a default one (handle 0, e.g. `noqueue`
//! or `pfifo_fast`, which the kernel restores when ours is deleted) or ours is fine; any other
//! is someone else's and the fault is refused rather than replacing it. A change of shaping
//! deletes our root and adds the new one; an empty shaping leaves the device's default.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcMessage};

use super::ack::{AckError, Connection, Nack};
use super::compose::Shaping;
use super::tc::{
    EncodeError, Psched, Qdisc, QdiscAddr, TC_H_ROOT, TbfLimit, TbfOptions, add_qdisc, del_qdisc,
    handle, to_bytes,
};

pub(crate) const TBF_HANDLE: u32 = handle(0xfa17, 0);
pub(crate) const NETEM_HANDLE: u32 = handle(0xfa18, 0);

/// Why the device's qdiscs could not be set.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QdiscError {
    #[error("netem qdisc is not available in this kernel (CONFIG_NET_SCH_NETEM)")]
    NetemUnavailable,
    #[error("tbf qdisc is not available in this kernel (CONFIG_NET_SCH_TBF)")]
    TbfUnavailable,
    #[error(
        "device {device} has a root qdisc `{kind}` with handle {handle:x}: that qdisc is not \
         Faultline's, and it is not replaced"
    )]
    Foreign {
        device: String,
        kind: String,
        handle: u32,
    },
    #[error("device {device}: {what}: {source}")]
    Netlink {
        device: String,
        what: &'static str,
        #[source]
        source: AckError,
    },
    #[error("device {device}: {0}", device = .1)]
    Encode(#[source] EncodeError, String),
}

impl QdiscError {
    /// The kernel lacks a qdisc kind this node cannot provide: not worth retrying.
    pub(crate) fn unavailable(&self) -> bool {
        matches!(
            self,
            QdiscError::NetemUnavailable | QdiscError::TbfUnavailable
        )
    }
}

/// The handle and kind of `ifindex`'s root qdisc, if the device has one.
fn root_qdisc(
    conn: &Connection,
    ifindex: u32,
    seq: u32,
) -> Result<Option<(u32, String)>, AckError> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default())),
    );
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    for m in conn.dump(&bytes, seq)? {
        let RouteNetlinkMessage::NewQueueDiscipline(tc) = m else {
            continue;
        };
        if tc.header.index as u32 == ifindex && u32::from(tc.header.parent) == TC_H_ROOT {
            let kind = tc
                .attributes
                .iter()
                .find_map(|a| match a {
                    TcAttribute::Kind(k) => Some(k.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            return Ok(Some((u32::from(tc.header.handle), kind)));
        }
    }
    Ok(None)
}

/// A sequence of netlink requests on one connection.
struct Session<'a> {
    conn: &'a Connection,
    device: &'a str,
    ifindex: u32,
    seq: u32,
}

impl Session<'_> {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn netlink(&self, what: &'static str) -> impl FnOnce(AckError) -> QdiscError + '_ {
        move |source| QdiscError::Netlink {
            device: self.device.to_owned(),
            what,
            source,
        }
    }

    fn add(
        &mut self,
        parent: u32,
        handle: u32,
        qdisc: Qdisc,
        psched: Psched,
    ) -> Result<(), QdiscError> {
        let addr = QdiscAddr {
            ifindex: self.ifindex,
            parent,
            handle,
        };
        let mut msg = add_qdisc(addr, &qdisc, psched)
            .map_err(|e| QdiscError::Encode(e, self.device.to_owned()))?;
        let seq = self.next_seq();
        match self.conn.request(&to_bytes(&mut msg, seq), seq) {
            Ok(()) => Ok(()),
            // ENOENT for an add: the kernel does not know the kind (our parents exist: the root,
            // or the tbf added just before).
            Err(AckError::Nack(Nack { errno, .. })) if errno == libc::ENOENT => Err(match qdisc {
                Qdisc::Netem(_) => QdiscError::NetemUnavailable,
                Qdisc::Tbf(_) => QdiscError::TbfUnavailable,
            }),
            Err(e) => Err(self.netlink(match qdisc {
                Qdisc::Netem(_) => "add netem",
                Qdisc::Tbf(_) => "add tbf",
            })(e)),
        }
    }

    fn delete_root(&mut self, handle: u32) -> Result<(), QdiscError> {
        let addr = QdiscAddr {
            ifindex: self.ifindex,
            parent: TC_H_ROOT,
            handle,
        };
        let mut msg = del_qdisc(addr).map_err(|e| QdiscError::Encode(e, self.device.to_owned()))?;
        let seq = self.next_seq();
        self.conn
            .request(&to_bytes(&mut msg, seq), seq)
            .map_err(self.netlink("delete our root qdisc"))
    }
}

fn tbf_options(t: &faultline_api::convert::network::TbfParams) -> TbfOptions {
    TbfOptions {
        rate_bytes_per_sec: t.rate_bytes_per_sec,
        burst_bytes: t.burst_bytes,
        limit: TbfLimit::Bytes(t.limit_bytes),
        peakrate_bytes_per_sec: t.peakrate_bytes_per_sec,
        mtu_bytes: t.minburst_bytes,
    }
}

/// Makes `device`'s qdiscs carry `shaping` (nothing of ours when it is empty). On an error
/// nothing of ours is left on the device.
pub(crate) fn install(
    conn: &Connection,
    device: &str,
    ifindex: u32,
    shaping: &Shaping,
    psched: Psched,
) -> Result<(), QdiscError> {
    let mut s = Session {
        conn,
        device,
        ifindex,
        seq: 0,
    };
    let seq = s.next_seq();
    let root = root_qdisc(conn, ifindex, seq).map_err(s.netlink("read the root qdisc"))?;
    match root {
        Some((h, _)) if h == TBF_HANDLE || h == NETEM_HANDLE => s.delete_root(h)?,
        Some((h, kind)) if h != 0 && !shaping.is_empty() => {
            return Err(QdiscError::Foreign {
                device: device.to_owned(),
                kind,
                handle: h,
            });
        }
        _ => {}
    }
    match (&shaping.bandwidth, &shaping.netem) {
        (None, None) => Ok(()),
        (Some(t), None) => s.add(TC_H_ROOT, TBF_HANDLE, Qdisc::Tbf(tbf_options(t)), psched),
        (None, Some(n)) => s.add(TC_H_ROOT, NETEM_HANDLE, Qdisc::Netem(*n), psched),
        (Some(t), Some(n)) => {
            s.add(TC_H_ROOT, TBF_HANDLE, Qdisc::Tbf(tbf_options(t)), psched)?;
            let child = s.add(handle(0xfa17, 1), NETEM_HANDLE, Qdisc::Netem(*n), psched);
            if child.is_err() {
                // Nothing half-applied: the tbf goes too.
                let _ = s.delete_root(TBF_HANDLE);
            }
            child
        }
    }
}
