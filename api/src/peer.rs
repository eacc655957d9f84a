//! Network peers of a NetworkChaos: an IP address or network, or a DNS name, with an optional
//! port — what `externalTargets` entries say and what a partition reaches.
//!
//! The text forms are Chaos Mesh's (`host:port` split as Go's `net.SplitHostPort` does):
//!
//! | written | host | port |
//! | --- | --- | --- |
//! | `8.8.8.8`, `8.8.0.0/16`, `fd00::1`, `fd00::/64` | address or network | every port |
//! | `1.1.1.1:80`, `10.0.0.0/8:22` | IPv4 address or network | 80, 22 |
//! | `[fd00::1]:80`, `[fd00::/64]:80` | IPv6 address or network (brackets needed with a port) | 80 |
//! | `example.com`, `example.com:443` | a name the controller resolves | every port, 443 |
//!
//! A bare IPv6 text is always an address (`fd00::1:80` is the address `fd00::1:80`, as in Go).
//! [`Peer`]'s `Display` is the canonical form the daemon receives: networks with their prefix
//! and host bits cleared (`1.1.1.1/32`, `10.0.0.0/8:22`, `fd00::1/128`, `[fd00::/64]:80`), names
//! lower case without a trailing dot. `FromStr` reads every form above, the canonical one too.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IP network: an address and a prefix length, host bits cleared (`10.0.0.0/8`,
/// `1.1.1.1/32`, `fd00::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr` with `prefix` bits (host bits are cleared); `None` when the prefix
    /// is longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
            _ => return None,
        };
        Some(IpNet { addr, prefix })
    }

    /// One address: `/32` or `/128`.
    pub fn host(addr: IpAddr) -> IpNet {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Every address of its family: `0.0.0.0/0` or `::/0`.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The host part of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerHost {
    /// An address (as a `/32` or `/128` network) or a network.
    Net(IpNet),
    /// A DNS name, lower case, without a trailing dot; the controller resolves it (A and AAAA)
    /// and sends the daemon one [`PeerHost::Net`] per address, with the same port.
    Name(String),
}

/// One peer: a host and, optionally, the one port the fault is narrowed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub host: PeerHost,
    /// 1..=65535; `None` = every port.
    pub port: Option<u16>,
}

impl Peer {
    /// Every IPv4 and every IPv6 address, every port: what a partition with no peer cuts off.
    pub fn everything() -> [Peer; 2] {
        [
            Peer::from(IpNet::host(IpAddr::from([0, 0, 0, 0]))).with_prefix(0),
            Peer::from(IpNet::host(IpAddr::from([0u16; 8]))).with_prefix(0),
        ]
    }

    /// This peer narrowed to `port`.
    pub fn with_port(mut self, port: u16) -> Peer {
        self.port = Some(port);
        self
    }

    fn with_prefix(mut self, prefix: u8) -> Peer {
        if let PeerHost::Net(net) = &self.host
            && let Some(wider) = IpNet::new(net.addr, prefix)
        {
            self.host = PeerHost::Net(wider);
        }
        self
    }

    /// The network, unless this is a name still to be resolved.
    pub fn net(&self) -> Option<IpNet> {
        match &self.host {
            PeerHost::Net(net) => Some(*net),
            PeerHost::Name(_) => None,
        }
    }
}

impl From<IpNet> for Peer {
    fn from(net: IpNet) -> Self {
        Peer {
            host: PeerHost::Net(net),
            port: None,
        }
    }
}

impl From<IpAddr> for Peer {
    fn from(addr: IpAddr) -> Self {
        Peer::from(IpNet::host(addr))
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (PeerHost::Net(net), Some(port)) if net.addr.is_ipv6() => write!(f, "[{net}]:{port}"),
            (PeerHost::Net(net), Some(port)) => write!(f, "{net}:{port}"),
            (PeerHost::Net(net), None) => write!(f, "{net}"),
            (PeerHost::Name(name), Some(port)) => write!(f, "{name}:{port}"),
            (PeerHost::Name(name), None) => f.write_str(name),
        }
    }
}

/// Why a text is not a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("is empty")]
    Empty,
    #[error("port `{0}` must be a number from 1 to 65535")]
    Port(String),
    #[error("`[...]` is only for an IPv6 address with a port, e.g. `[fd00::1]:80`")]
    Brackets,
    #[error("prefix `/{prefix}` is longer than the address ({max} bits)")]
    Prefix { prefix: String, max: u8 },
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("`{0}` looks like an IPv4 address but is not one")]
    NotIpv4(String),
    #[error(
        "`{0}` is not a host name: dot-separated labels of letters, digits and '-', each at most 63 characters, 253 in all"
    )]
    Name(String),
}

fn port(text: &str) -> Result<u16, PeerError> {
    let bad = || PeerError::Port(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(bad()),
    }
}

/// An address or `address/prefix`.
fn net(text: &str) -> Option<Result<IpNet, PeerError>> {
    let Some((addr, prefix)) = text.split_once('/') else {
        return text.parse::<IpAddr>().ok().map(|a| Ok(IpNet::host(a)));
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return Some(Err(PeerError::Address(addr.to_owned())));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let too_long = || PeerError::Prefix {
        prefix: prefix.to_owned(),
        max,
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return Some(Err(too_long()));
    }
    Some(
        prefix
            .parse::<u8>()
            .ok()
            .and_then(|p| IpNet::new(addr, p))
            .ok_or_else(too_long),
    )
}

fn host(text: &str) -> Result<PeerHost, PeerError> {
    if text.is_empty() {
        return Err(PeerError::Empty);
    }
    if let Some(found) = net(text) {
        return found.map(PeerHost::Net);
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(PeerError::Name(text.to_owned()));
    }
    // A top-level label is never all digits: `10.0.0.256` is a mistyped address, not a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(PeerError::NotIpv4(text.to_owned()));
    }
    Ok(PeerHost::Name(name.to_ascii_lowercase()))
}

impl FromStr for Peer {
    type Err = PeerError;

    fn from_str(text: &str) -> Result<Peer, PeerError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PeerError::Empty);
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or(PeerError::Brackets)?;
            let after = after.strip_prefix(':').ok_or(PeerError::Brackets)?;
            let host = match net(inner) {
                Some(found) => PeerHost::Net(found?),
                None => return Err(PeerError::Address(inner.to_owned())),
            };
            return Ok(Peer {
                host,
                port: Some(port(after)?),
            });
        }
        // One colon: host:port. None, or several (IPv6): the whole text is the host.
        let (host_text, port_text) = match text.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            _ => (text, None),
        };
        Ok(Peer {
            host: host(host_text)?,
            port: port_text.map(port).transpose()?,
        })
    }
}

impl Serialize for Peer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Peer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        text.parse::<Peer>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn chaos_mesh_forms_and_canonical_text() {
        let cases = [
            ("8.8.8.8", "8.8.8.8/32"),
            ("8.8.0.0/16", "8.8.0.0/16"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("1.1.1.1:80", "1.1.1.1/32:80"),
            ("10.0.0.0/8:22", "10.0.0.0/8:22"),
            ("www.google.com", "www.google.com"),
            ("Example.COM.:443", "example.com:443"),
            ("fd00::1", "fd00::1/128"),
            ("fd00::1:80", "fd00::1:80/128"),
            ("fd00::/64", "fd00::/64"),
            ("[fd00::1]:80", "[fd00::1/128]:80"),
            ("[fd00::/64]:80", "[fd00::/64]:80"),
            ("[fd00::1/128]:80", "[fd00::1/128]:80"),
            ("::", "::/128"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("[1.2.3.4]:80", "1.2.3.4/32:80"),
        ];
        for (text, want) in cases {
            assert_eq!(canonical(text), want, "{text}");
            // The canonical text reads back as the same peer.
            assert_eq!(canonical(want), want, "{want}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let cases: [(&str, PeerError); 12] = [
            ("", PeerError::Empty),
            ("1.1.1.1:0", PeerError::Port("0".into())),
            ("1.1.1.1:65536", PeerError::Port("65536".into())),
            ("example.com:", PeerError::Port(String::new())),
            ("example.com:http", PeerError::Port("http".into())),
            ("[fd00::1]", PeerError::Brackets),
            ("[fd00::1", PeerError::Brackets),
            (
                "10.0.0.0/33",
                PeerError::Prefix {
                    prefix: "33".into(),
                    max: 32,
                },
            ),
            (
                "fd00::/129",
                PeerError::Prefix {
                    prefix: "129".into(),
                    max: 128,
                },
            ),
            ("10.0.0.256", PeerError::NotIpv4("10.0.0.256".into())),
            ("exa mple.com", PeerError::Name("exa mple.com".into())),
            (
                "1.2.3.4/x",
                PeerError::Prefix {
                    prefix: "x".into(),
                    max: 32,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Peer>(), Err(want), "{text}");
        }
        for bad in [
            "-x.com",
            "a..b",
            "[::1]:x",
            "x/8",
            "[example.com]:80",
            "a:b:c",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }

    #[test]
    fn everything_and_serde() {
        let [v4, v6] = Peer::everything();
        assert_eq!(v4.to_string(), "0.0.0.0/0");
        assert_eq!(v6.to_string(), "::/0");
        assert!(v4.net().is_some_and(|n| n.is_everything()));
        let json = serde_json::to_value(vec![v4, v6.with_port(53)]).unwrap();
        assert_eq!(json, serde_json::json!(["0.0.0.0/0", "[::/0]:53"]));
        let back: Vec<Peer> = serde_json::from_value(json).unwrap();
        assert_eq!(back[1].port, Some(53));
        let name: Peer = "db.example.com:5432".parse().unwrap();
        assert_eq!(name.net(), None);
        assert_eq!(
            Peer::from("10.0.0.7".parse::<IpAddr>().unwrap())
                .with_port(5432)
                .to_string(),
            "10.0.0.7/32:5432"
        );
    }
}
