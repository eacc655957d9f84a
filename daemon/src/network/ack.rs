//! A blocking request → ACK exchange on a NETLINK_ROUTE socket, enough to send the messages of
//! [`super::tc`] and learn the kernel's errno. The socket belongs to the network namespace of
//! the thread that opened it, so open it on the thread that entered the target's namespace.
//!
//! Errors keep the kernel's errno as a number so callers branch on it (`ENOENT` from an add =
//! unknown qdisc kind when the parent is the root) instead of comparing strings. With extended
//! ACKs enabled the kernel's explanation (`NLMSGERR_ATTR_MSG`, e.g. "Specified qdisc kind is
//! unknown.") is kept for logs only.

use std::io;

use netlink_packet_core::{NLM_F_ACK_TLVS, NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use thiserror::Error;

/// `NLMSGERR_ATTR_MSG` in linux/netlink.h.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;

/// The kernel refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("kernel refused the request: errno {errno}{}", .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
pub(crate) struct Nack {
    /// Positive errno (`ENOENT` = 2, `EINVAL` = 22, …).
    pub(crate) errno: i32,
    /// The extended-ACK message, if the kernel sent one. For humans only.
    pub(crate) message: Option<String>,
}

/// What went wrong in an exchange.
#[derive(Debug, Error)]
pub(crate) enum AckError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Nack(#[from] Nack),
    #[error("undecodable netlink reply: {0}")]
    Decode(String),
}

/// A NETLINK_ROUTE socket with extended and capped ACKs (the kernel echoes only our header).
pub(crate) struct Connection {
    socket: Socket,
}

impl Connection {
    pub(crate) fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.set_ext_ack(true)?;
        socket.set_cap_ack(true)?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Connection { socket })
    }

    /// Sends `bytes` and hands every reply message carrying sequence number `seq` to `on`,
    /// until `on` returns a result.
    fn exchange<T>(
        &self,
        bytes: &[u8],
        seq: u32,
        mut on: impl FnMut(NetlinkMessage<RouteNetlinkMessage>) -> Option<Result<T, AckError>>,
    ) -> Result<T, AckError> {
        self.socket.send(bytes, 0)?;
        loop {
            let (reply, _) = self.socket.recv_from_full()?;
            let mut rest = &reply[..];
            while !rest.is_empty() {
                let len = NetlinkBuffer::new_checked(rest)
                    .map_err(|e| AckError::Decode(e.to_string()))?
                    .length() as usize;
                let aligned = len.next_multiple_of(4).min(rest.len());
                let (one, tail) = rest.split_at(aligned);
                rest = tail;
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&one[..len])
                    .map_err(|e| AckError::Decode(e.to_string()))?;
                if msg.header.sequence_number != seq {
                    continue;
                }
                if let Some(done) = on(msg) {
                    return done;
                }
            }
        }
    }

    /// Sends a dump request and collects every message of the answer up to `NLMSG_DONE`.
    pub(crate) fn dump(
        &self,
        bytes: &[u8],
        seq: u32,
    ) -> Result<Vec<RouteNetlinkMessage>, AckError> {
        let mut out = Vec::new();
        self.exchange(bytes, seq, |msg| match msg.payload {
            NetlinkPayload::InnerMessage(m) => {
                out.push(m);
                None
            }
            NetlinkPayload::Done(_) => Some(Ok(())),
            NetlinkPayload::Error(err) => err.code.map(|code| {
                Err(Nack {
                    errno: -code.get(),
                    message: None,
                }
                .into())
            }),
            _ => None,
        })?;
        Ok(out)
    }

    /// Sends one request (bytes from [`super::tc::to_bytes`] with sequence number `seq`) and
    /// waits for the `NLMSG_ERROR` that acknowledges it.
    pub(crate) fn request(&self, bytes: &[u8], seq: u32) -> Result<(), AckError> {
        self.exchange(bytes, seq, |msg| {
            let NetlinkPayload::Error(err) = msg.payload else {
                return None;
            };
            Some(match err.code {
                None => Ok(()),
                Some(code) => Err(Nack {
                    errno: -code.get(),
                    message: (msg.header.flags & NLM_F_ACK_TLVS != 0)
                        .then(|| ext_ack_message(&err.header))
                        .flatten(),
                }
                .into()),
            })
        })
    }
}

/// With `NETLINK_CAP_ACK` the error payload after the errno is our `nlmsghdr` followed by
/// `NLMSGERR_ATTR_*` attributes; returns the text of `NLMSGERR_ATTR_MSG`.
fn ext_ack_message(after_errno: &[u8]) -> Option<String> {
    let mut tlvs = after_errno.get(NLMSG_HDRLEN..)?;
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]);
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = &tlvs[len.next_multiple_of(4).min(tlvs.len())..];
    }
    None
}
