//! Pure netlink encoding of the qdiscs Faultline installs (netem, tbf), byte-compatible with
//! what iproute2 7.1's `tc` sends (proved by `daemon/tests/tc_golden` against captured requests).
//!
//! `netlink-packet-route` 0.34 has no netem or tbf option types, so the options are built here
//! and carried as raw attributes: netem's `TCA_OPTIONS` as one opaque attribute (its payload is
//! a struct followed by attributes, not an attribute list), tbf's as a list of
//! `TcOption::Other`. No I/O: the caller supplies the ifindex, the handles and the psched clock
//! ([`Psched`], parsed from `/proc/net/psched`), and sends the bytes or the message (e.g. with
//! rtnetlink's `Handle::request`).

mod netem;
mod psched;
mod tbf;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcHeader, TcMessage};
use thiserror::Error;

pub use netem::{NetemError, NetemParams};
pub use psched::{Psched, PschedError};
pub use tbf::{TbfError, TbfLimit, TbfOptions};

/// `TCA_OPTIONS` from `enum TCA_*` in linux/rtnetlink.h.
const TCA_OPTIONS: u16 = 2;

/// `TC_H_ROOT`: the parent of a device's root qdisc.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;

/// `TC_H_MAKE(major << 16, minor)`: tc's `10:` is `handle(0x10, 0)`, `10:1` is `handle(0x10, 1)`.
pub const fn handle(major: u16, minor: u16) -> u32 {
    ((major as u32) << 16) | minor as u32
}

/// Where a qdisc sits: the device, its parent (`TC_H_ROOT` or a class `major:minor`) and its
/// own handle (`major:0`; 0 lets the kernel pick one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QdiscAddr {
    pub ifindex: u32,
    pub parent: u32,
    pub handle: u32,
}

/// A qdisc to add, with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qdisc {
    Netem(NetemParams),
    Tbf(TbfOptions),
}

impl Qdisc {
    /// The `TCA_KIND` string the kernel looks the qdisc up by.
    pub fn kind(&self) -> &'static str {
        match self {
            Qdisc::Netem(_) => "netem",
            Qdisc::Tbf(_) => "tbf",
        }
    }
}

/// Why a qdisc could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error(transparent)]
    Netem(#[from] NetemError),
    #[error(transparent)]
    Tbf(#[from] TbfError),
    #[error("ifindex {0} does not fit tcmsg's signed tcm_ifindex")]
    IfIndex(u32),
}

/// The request `tc qdisc add dev … parent|root handle … <kind> <options>` sends:
/// `RTM_NEWQDISC` with `NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE` (tc_qdisc.c
/// passes EXCL|CREATE for `add`, libnetlink's `rtnl_talk` adds ACK), then `TCA_KIND` and
/// `TCA_OPTIONS`. EXCL makes the kernel answer `EEXIST` rather than change a qdisc that is
/// already there, so an add never silently rewrites someone else's qdisc.
pub fn add_qdisc(
    addr: QdiscAddr,
    qdisc: &Qdisc,
    psched: Psched,
) -> Result<NetlinkMessage<RouteNetlinkMessage>, EncodeError> {
    let options = match qdisc {
        Qdisc::Netem(netem) => {
            TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, netem::encode(netem)?))
        }
        Qdisc::Tbf(tbf) => TcAttribute::Options(tbf.encode(psched)?),
    };
    let attributes = vec![TcAttribute::Kind(qdisc.kind().to_owned()), options];
    let tc = TcMessage::from_parts(header(addr)?, attributes);
    Ok(message(
        RouteNetlinkMessage::NewQueueDiscipline(tc),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
    ))
}

/// The request `tc qdisc del dev … parent|root handle …` sends: `RTM_DELQDISC`,
/// `NLM_F_REQUEST | NLM_F_ACK`, no attributes. With a non-zero handle the kernel deletes only
/// the qdisc with exactly that handle at that parent, which is what lets recovery remove ours
/// and nothing else. Observed: `EINVAL` ("Invalid handle") when the qdisc there is not ours —
/// including when ours is already gone — and `ENOENT` when the parent itself does not exist.
pub fn del_qdisc(addr: QdiscAddr) -> Result<NetlinkMessage<RouteNetlinkMessage>, EncodeError> {
    let tc = TcMessage::from_parts(header(addr)?, Vec::new());
    Ok(message(
        RouteNetlinkMessage::DelQueueDiscipline(tc),
        NLM_F_REQUEST | NLM_F_ACK,
    ))
}

/// A kind-only add (no `TCA_OPTIONS`) at the root of `ifindex` with handle 0, used to ask the
/// kernel whether it knows `kind`. `qdisc_create()` answers `ENOENT` for an unknown kind (after
/// trying to load `sch_<kind>`), while netem's and tbf's `init()` answer `EINVAL` when the
/// options are missing — so nothing is ever created. Send it on a device whose root qdisc is the
/// default (e.g. `lo`): if a qdisc of the same kind is already the root, the request is a
/// "change" that EXCL forbids and the kernel answers `EEXIST` — which also means "known". So:
/// ENOENT = unknown kind, anything else = available. CREATE is essential: without it
/// `tc_modify_qdisc()` answers ENOENT ("Qdisc not found") for every kind.
pub fn probe_kind(
    ifindex: u32,
    kind: &str,
) -> Result<NetlinkMessage<RouteNetlinkMessage>, EncodeError> {
    let addr = QdiscAddr {
        ifindex,
        parent: TC_H_ROOT,
        handle: 0,
    };
    let tc = TcMessage::from_parts(header(addr)?, vec![TcAttribute::Kind(kind.to_owned())]);
    Ok(message(
        RouteNetlinkMessage::NewQueueDiscipline(tc),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
    ))
}

/// Serializes `msg` with sequence number `seq` and port id 0 (tc also sends 0: the kernel
/// routes replies by the socket, not by this field).
pub fn to_bytes(msg: &mut NetlinkMessage<RouteNetlinkMessage>, seq: u32) -> Vec<u8> {
    msg.header.sequence_number = seq;
    msg.header.port_number = 0;
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    bytes
}

fn header(addr: QdiscAddr) -> Result<TcHeader, EncodeError> {
    let index = i32::try_from(addr.ifindex).map_err(|_| EncodeError::IfIndex(addr.ifindex))?;
    Ok(TcHeader {
        index,
        parent: TcHandle::from(addr.parent),
        handle: TcHandle::from(addr.handle),
        ..TcHeader::default()
    })
}

fn message(payload: RouteNetlinkMessage, flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    msg.finalize();
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_is_kind_only() {
        let mut msg = probe_kind(1, "tbf").unwrap();
        let bytes = to_bytes(&mut msg, 7);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &44u32.to_ne_bytes()[..], &36u16.to_ne_bytes(), &0x0605u16.to_ne_bytes(), // len, RTM_NEWQDISC, flags
            &7u32.to_ne_bytes(), &[0; 4],                                         // seq, pid
            &[0, 0, 0, 0], &1i32.to_ne_bytes(), &[0; 4], &u32::MAX.to_ne_bytes(), &[0; 4], // tcmsg
            &8u16.to_ne_bytes(), &1u16.to_ne_bytes(), b"tbf\0",                  // TCA_KIND
        ].concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn handles_are_major_minor() {
        assert_eq!(handle(0x10, 0), 0x0010_0000);
        assert_eq!(handle(0xfa17, 1), 0xfa17_0001);
    }

    #[test]
    fn ifindex_must_fit_i32() {
        let addr = QdiscAddr {
            ifindex: u32::MAX,
            parent: TC_H_ROOT,
            handle: 0,
        };
        assert_eq!(del_qdisc(addr).unwrap_err(), EncodeError::IfIndex(u32::MAX));
    }
}
