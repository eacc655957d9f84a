//! Partitions: packet filtering inside the target's network namespace with iptables (and
//! ip6tables for IPv6 peers), as Chaos Mesh does — present on every node, namespaced per pod,
//! and what operators already read. Commands run with argument vectors, never through a shell,
//! on the thread that entered the namespace (a child process inherits its namespace).
//!
//! Everything of one fault is tagged with its fault id: two chains, `FL-<hash>-O` (peers
//! matched by destination, jumped to from `OUTPUT` for direction `to`/`both`) and
//! `FL-<hash>-I` (by source, from `INPUT` for `from`/`both`), where `<hash>` is 16 hex of the
//! fault id's SHA-256, and the jump rules carry the comment `faultline <faultId>`. Recovery deletes the jumps, flushes and deletes the chains,
//! checking with `-C`/`-S` rather than reading error messages, so it is idempotent and leaves
//! nothing behind (Chaos Mesh #4336 left rules and ipsets).

use std::process::Command;

use faultline_api::network_chaos::Direction;
use faultline_api::peer::IpNet;

use crate::error::ApplyError;

/// Why a partition could not be set or removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PartitionError {
    #[error(
        "`{0}` is not an IP address or CIDR, with an optional port (`10.0.0.0/8:22`, `[fd00::/64]:80`)"
    )]
    BadTarget(String),
    #[error("{program} {args}: {reason}")]
    Command {
        program: &'static str,
        args: String,
        reason: String,
    },
}

/// A peer as iptables matches it: a network, and a port when the partition is narrowed to one
/// (`10.0.0.0/8:22`; TCP and UDP alike, as Chaos Mesh does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) net: IpNet,
    pub(crate) port: Option<u16>,
}

impl Peer {
    /// `ip[/prefix][:port]` or `[ipv6[/prefix]]:port` (`faultline_api::peer`'s canonical forms);
    /// a host name is refused: the controller resolves names before calling.
    pub(crate) fn parse(text: &str) -> Result<Self, PartitionError> {
        let bad = || PartitionError::BadTarget(text.to_owned());
        let peer: faultline_api::peer::Peer = text.parse().map_err(|_| bad())?;
        let net = peer.net().ok_or_else(bad)?;
        Ok(Peer {
            net,
            port: peer.port,
        })
    }

    fn program(&self) -> &'static str {
        if self.net.addr().is_ipv4() {
            "iptables"
        } else {
            "ip6tables"
        }
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.net.addr(), self.net.prefix())
    }

    /// The match arguments of this peer for `flag` (`-d`/`-s`): one rule per protocol when a
    /// port narrows it.
    fn matches(&self, flag: &str) -> Vec<Vec<String>> {
        let base = vec![flag.to_owned(), self.cidr()];
        match self.port {
            None => vec![base],
            Some(port) => ["tcp", "udp"]
                .into_iter()
                .map(|proto| {
                    let dir = if flag == "-d" { "--dport" } else { "--sport" };
                    let mut v = base.clone();
                    v.extend(["-p".into(), proto.into(), dir.into(), port.to_string()]);
                    v
                })
                .collect(),
        }
    }
}

/// The chain names of a fault: `FL-` + 16 hex of the fault id's SHA-256 + `-O`/`-I` (21
/// characters; iptables allows 28, and client-chosen fault ids may be up to 63). The jump rules'
/// comment carries the full fault id.
pub(crate) fn chains(fault_id: &str) -> [(String, &'static str, &'static str); 2] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(fault_id.as_bytes());
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    [
        (format!("FL-{short}-O"), "OUTPUT", "-d"),
        (format!("FL-{short}-I"), "INPUT", "-s"),
    ]
}

fn run(program: &'static str, args: &[&str]) -> Result<bool, PartitionError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| PartitionError::Command {
            program,
            args: args.join(" "),
            reason: e.to_string(),
        })?;
    Ok(out.status.success())
}

fn must(program: &'static str, args: &[&str]) -> Result<(), PartitionError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| PartitionError::Command {
            program,
            args: args.join(" "),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(PartitionError::Command {
        program,
        args: args.join(" "),
        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Drops traffic to and/or from `peers` (in the calling thread's namespace). On an error,
/// whatever was added is removed; the failure says whether that worked.
pub(crate) fn apply(
    fault_id: &str,
    direction: Direction,
    peers: &[Peer],
) -> Result<(), ApplyError<PartitionError>> {
    add(fault_id, direction, peers).map_err(|err| match remove(fault_id) {
        Ok(()) => ApplyError::undone(err),
        Err(_) => ApplyError::left_behind(err),
    })
}

fn add(fault_id: &str, direction: Direction, peers: &[Peer]) -> Result<(), PartitionError> {
    let comment = format!("faultline {fault_id}");
    let wanted = |hook: &str| match direction {
        Direction::To => hook == "OUTPUT",
        Direction::From => hook == "INPUT",
        Direction::Both => true,
    };
    for program in ["iptables", "ip6tables"] {
        let mine: Vec<&Peer> = peers.iter().filter(|p| p.program() == program).collect();
        if mine.is_empty() {
            continue;
        }
        for (chain, hook, flag) in chains(fault_id) {
            if !wanted(hook) {
                continue;
            }
            must(program, &["-w", "-N", &chain])?;
            for peer in &mine {
                for m in peer.matches(flag) {
                    let mut args: Vec<&str> = vec!["-w", "-A", &chain];
                    args.extend(m.iter().map(String::as_str));
                    args.extend(["-j", "DROP"]);
                    must(program, &args)?;
                }
            }
            must(
                program,
                &[
                    "-w",
                    "-I",
                    hook,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    &chain,
                ],
            )?;
        }
    }
    Ok(())
}

/// Removes every rule and chain of the fault (what exists of it; idempotent).
pub(crate) fn remove(fault_id: &str) -> Result<(), PartitionError> {
    let comment = format!("faultline {fault_id}");
    for program in ["iptables", "ip6tables"] {
        for (chain, hook, _) in chains(fault_id) {
            let jump = [
                "-m",
                "comment",
                "--comment",
                comment.as_str(),
                "-j",
                chain.as_str(),
            ];
            let check: Vec<&str> = ["-w", "-C", hook].iter().copied().chain(jump).collect();
            while run(program, &check)? {
                let delete: Vec<&str> = ["-w", "-D", hook].iter().copied().chain(jump).collect();
                must(program, &delete)?;
            }
            if run(program, &["-w", "-S", &chain])? {
                must(program, &["-w", "-F", &chain])?;
                must(program, &["-w", "-X", &chain])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_chain_names() {
        assert_eq!(Peer::parse("10.0.0.2").unwrap().cidr(), "10.0.0.2/32");
        assert_eq!(Peer::parse("10.0.0.0/8").unwrap().cidr(), "10.0.0.0/8");
        assert_eq!(Peer::parse("fd00::/64").unwrap().program(), "ip6tables");
        let ported = Peer::parse("10.0.0.0/8:22").unwrap();
        assert_eq!(ported.port, Some(22));
        assert_eq!(
            ported.matches("-d"),
            [
                ["-d", "10.0.0.0/8", "-p", "tcp", "--dport", "22"],
                ["-d", "10.0.0.0/8", "-p", "udp", "--dport", "22"]
            ]
        );
        assert_eq!(Peer::parse("[fd00::/64]:80").unwrap().port, Some(80));
        for bad in ["10.0.0.0/33", "example.com", "", "1.2.3.4/x", "10.0.0.1:0"] {
            assert!(Peer::parse(bad).is_err(), "{bad}");
        }
        let [(o, ..), (i, ..)] = chains("net-0123456789abcdef");
        assert!(
            o.starts_with("FL-") && o.ends_with("-O") && i.ends_with("-I"),
            "{o} {i}"
        );
        assert_eq!(o.len(), 21);
        let long = "x".repeat(63);
        assert!(chains(&long)[0].0.len() <= 28);
        assert_ne!(chains("a")[0].0, chains("b")[0].0);
    }
}
