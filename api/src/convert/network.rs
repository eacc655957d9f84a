//! NetworkChaos → netem / tbf / partition parameters in the kernel's integer units.
//!
//! netem probabilities are `u32` scaled so that `u32::MAX` is 100% (as `tc` computes them:
//! `rint(percent / 100 * UINT32_MAX)`), delays are nanoseconds (`TCA_NETEM_LATENCY64`), rates are
//! bytes per second (`TCA_NETEM_RATE64`, `TCA_TBF_RATE64`). No floats: percentages are parsed as
//! exact decimals.
//!
//! As in Chaos Mesh, every netem action (`netem`, `delay`, `loss`, `duplicate`, `corrupt`,
//! `rate`) applies every netem block the spec has; `bandwidth` uses only its own block.
//!
//! Peers (`externalTargets`, and what a partition cuts off) are [`Peer`]s: an IP network or a
//! host name, with an optional port, parsed once here so the daemon never reads spec strings.

use crate::network_chaos::{Direction, NetworkChaosAction, NetworkChaosSpec, is_netem};
use crate::peer::Peer;
use crate::validate::{Rule, Violation};
use serde::{Deserialize, Serialize};

/// `tc`'s default netem queue limit, in packets.
pub const DEFAULT_NETEM_LIMIT: u32 = 1000;

/// netem parameters, ready for `struct tc_netem_qopt` and its attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetemParams {
    pub latency_ns: u64,
    pub jitter_ns: u64,
    pub delay_correlation: u32,
    pub loss: u32,
    pub loss_correlation: u32,
    pub duplicate: u32,
    pub duplicate_correlation: u32,
    pub reorder: u32,
    pub reorder_correlation: u32,
    /// Reorder every `gap`-th packet; 0 when reorder is off.
    pub gap: u32,
    pub corrupt: u32,
    pub corrupt_correlation: u32,
    /// netem rate in bytes per second; 0 = no rate limit.
    pub rate_bytes_per_sec: u64,
    pub limit_packets: u32,
}

/// tbf parameters: rate and peakrate in bytes per second, sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TbfParams {
    pub rate_bytes_per_sec: u64,
    pub limit_bytes: u32,
    pub burst_bytes: u32,
    pub peakrate_bytes_per_sec: Option<u64>,
    pub minburst_bytes: Option<u32>,
}

/// What the daemon installs for one NetworkChaos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum NetworkFault {
    Netem(NetemParams),
    Bandwidth(TbfParams),
    /// Drop traffic between the pods and `peers`.
    ///
    /// `peers` are the spec's `externalTargets`, parsed (networks with host bits cleared, names
    /// lower case, each with its optional port). Before calling the daemon the controller
    /// resolves each [`crate::peer::PeerHost::Name`] to its addresses (same port) and adds the
    /// `target` pods' IPs (`Peer::from(ip)`). A partition with neither `target` nor
    /// `externalTargets` cuts the pods off from everything, as in Chaos Mesh: `peers` are then
    /// `0.0.0.0/0` and `::/0` ([`Peer::everything`]).
    Partition {
        direction: Direction,
        peers: Vec<Peer>,
    },
}

/// A percentage in millionths (0..=100_000_000) → netem's u32 probability, computed exactly as
/// iproute2's `tc` does (`get_percent()`: `rint(strtod(s) / 100. * UINT32_MAX)` in `double`,
/// ties to even), so the daemon sends the kernel the same value `tc` would. `micro / 1e6` is
/// the double `strtod` gives for the decimal text (both are the correctly rounded value of the
/// same number); exact integer arithmetic would differ from tc at 30 % and 70 %.
pub fn probability(micro_percent: u64) -> u32 {
    let percent = micro_percent.min(100_000_000) as f64 / 1e6;
    (percent / 100. * f64::from(u32::MAX)).round_ties_even() as u32
}

/// Converts a NetworkChaos spec. Fails with every violation when the spec is invalid; otherwise
/// builds the parameters from the values validation parsed.
pub fn network_fault(spec: &NetworkChaosSpec) -> Result<NetworkFault, Vec<Violation>> {
    let (tc, findings) = spec.checked(Some(spec.action));
    let violations = findings.into_vec();
    if !violations.is_empty() {
        return Err(violations);
    }
    use NetworkChaosAction as A;
    let fault = match spec.action {
        A::Partition => {
            let mut peers = checked_peers(spec)?;
            if spec.target.is_none() && peers.is_empty() {
                peers = Peer::everything().to_vec();
            }
            NetworkFault::Partition {
                direction: spec.direction.unwrap_or(Direction::To),
                peers,
            }
        }
        A::Bandwidth => NetworkFault::Bandwidth(tc.bandwidth.ok_or_else(|| {
            vec![Violation::new(
                "spec.bandwidth",
                Rule::Required {
                    because: "for action `bandwidth` (the cap)".into(),
                },
            )]
        })?),
        action => {
            let wants = |_: A| is_netem(action);
            let mut p = NetemParams {
                limit_packets: DEFAULT_NETEM_LIMIT,
                ..NetemParams::default()
            };
            if let Some(delay) = tc.delay.filter(|_| wants(A::Delay)) {
                p.latency_ns = delay.latency_ns;
                p.jitter_ns = delay.jitter_ns;
                p.delay_correlation = delay.correlation;
                if let Some(reorder) = delay.reorder {
                    p.reorder = reorder.probability;
                    p.reorder_correlation = reorder.correlation;
                    p.gap = reorder.gap;
                }
            }
            if let Some(loss) = tc.loss.filter(|_| wants(A::Loss)) {
                p.loss = loss.probability;
                p.loss_correlation = loss.correlation;
            }
            if let Some(dup) = tc.duplicate.filter(|_| wants(A::Duplicate)) {
                p.duplicate = dup.probability;
                p.duplicate_correlation = dup.correlation;
            }
            if let Some(corrupt) = tc.corrupt.filter(|_| wants(A::Corrupt)) {
                p.corrupt = corrupt.probability;
                p.corrupt_correlation = corrupt.correlation;
            }
            if let Some(rate) = tc.rate.filter(|_| wants(A::Rate)) {
                p.rate_bytes_per_sec = rate;
            }
            NetworkFault::Netem(p)
        }
    };
    Ok(fault)
}

/// The spec's `externalTargets` as [`Peer`]s, for a partition or to scope a tc action to those
/// peers (Chaos Mesh narrows netem and tbf to them, and to `target`'s pods). Fails with every
/// violation when the spec is invalid.
pub fn external_peers(spec: &NetworkChaosSpec) -> Result<Vec<Peer>, Vec<Violation>> {
    let violations = spec.validate();
    if !violations.is_empty() {
        return Err(violations);
    }
    checked_peers(spec)
}

/// The peers of a spec that validated.
fn checked_peers(spec: &NetworkChaosSpec) -> Result<Vec<Peer>, Vec<Violation>> {
    spec.peers().ok_or_else(|| {
        vec![Violation::new(
            "spec.externalTargets",
            Rule::Required {
                because: "to be valid IPs, CIDRs or host names".into(),
            },
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    /// A spec from JSON, with a selector when the test gives none.
    fn spec(mut value: serde_json::Value) -> NetworkChaosSpec {
        if value.get("selector").is_none() {
            value["selector"] = json!({"namespaces": ["shop"]});
        }
        parse(value).expect("spec parses")
    }

    #[test]
    fn probabilities_match_tc() {
        assert_eq!(probability(0), 0);
        assert_eq!(probability(100_000_000), u32::MAX);
        // tc: rint(0.25 * 4294967295) = 1073741824 (1073741823.75 rounds up)
        assert_eq!(probability(25_000_000), 1_073_741_824);
        assert_eq!(probability(50_000_000), 2_147_483_648);
        assert_eq!(probability(1_000_000), 42_949_673);
    }

    #[test]
    fn delay_in_exact_units() {
        let s = spec(json!({
            "mode": "all", "action": "delay",
            "delay": {"latency": "1.5ms", "jitter": "100us", "correlation": "25",
                      "reorder": {"reorder": "10", "correlation": "50", "gap": 0}},
            "loss": {"loss": "30"}
        }));
        let NetworkFault::Netem(p) = network_fault(&s).unwrap() else {
            panic!("netem expected")
        };
        assert_eq!(p.latency_ns, 1_500_000);
        assert_eq!(p.jitter_ns, 100_000);
        assert_eq!(p.delay_correlation, 1_073_741_824);
        assert_eq!(p.reorder, probability(10_000_000));
        assert_eq!(p.reorder_correlation, 2_147_483_648);
        assert_eq!(p.gap, 1);
        assert_eq!(
            p.loss,
            probability(30_000_000),
            "action delay applies the loss block too, as in Chaos Mesh"
        );
        assert_eq!(p.limit_packets, DEFAULT_NETEM_LIMIT);
    }

    #[test]
    fn netem_combines_everything() {
        let s = spec(json!({
            "mode": "one", "action": "netem",
            "delay": {"latency": "10ms"},
            "loss": {"loss": "0.5", "correlation": "100"},
            "duplicate": {"duplicate": "1"},
            "corrupt": {"corrupt": "2"},
            "rate": {"rate": "8mbit"}
        }));
        let NetworkFault::Netem(p) = network_fault(&s).unwrap() else {
            panic!("netem expected")
        };
        assert_eq!(p.latency_ns, 10_000_000);
        assert_eq!(p.loss, probability(500_000));
        assert_eq!(p.loss_correlation, u32::MAX);
        assert_eq!(p.duplicate, probability(1_000_000));
        assert_eq!(p.corrupt, probability(2_000_000));
        assert_eq!(p.rate_bytes_per_sec, 1_000_000);
    }

    #[test]
    fn bandwidth_to_tbf() {
        let s = spec(json!({
            "mode": "all", "action": "bandwidth",
            "bandwidth": {"rate": "1mbps", "limit": 20000, "buffer": 10000, "peakrate": 2000000, "minburst": 1500}
        }));
        assert_eq!(
            network_fault(&s).unwrap(),
            NetworkFault::Bandwidth(TbfParams {
                rate_bytes_per_sec: 1_000_000,
                limit_bytes: 20_000,
                burst_bytes: 10_000,
                peakrate_bytes_per_sec: Some(250_000),
                minburst_bytes: Some(1500),
            })
        );
    }

    #[test]
    fn invalid_specs_are_refused() {
        let s = spec(json!({"mode": "all", "action": "delay", "delay": {"latency": "10"}}));
        let err = network_fault(&s).unwrap_err();
        assert_eq!(err[0].path, "spec.delay.latency");
    }

    #[test]
    fn partition_carries_structured_peers() {
        let s = spec(json!({
            "mode": "all", "action": "partition", "direction": "both",
            "selector": {"namespaces": ["shop"]},
            "externalTargets": ["10.1.0.0/8", "1.1.1.1:80", "Example.com:443", "[fd00::1]:80"]
        }));
        let NetworkFault::Partition { direction, peers } = network_fault(&s).unwrap() else {
            panic!("partition expected")
        };
        assert_eq!(direction, Direction::Both);
        let text: Vec<String> = peers.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "10.0.0.0/8",
                "1.1.1.1/32:80",
                "example.com:443",
                "[fd00::1/128]:80"
            ]
        );
        assert_eq!(peers[1].port, Some(80));
        assert_eq!(external_peers(&s).unwrap(), peers);
    }

    #[test]
    fn partition_without_peers_cuts_off_everything() {
        let s = spec(
            json!({"mode": "all", "action": "partition", "selector": {"namespaces": ["shop"]}}),
        );
        assert_eq!(
            network_fault(&s).unwrap(),
            NetworkFault::Partition {
                direction: Direction::To,
                peers: Peer::everything().to_vec()
            }
        );
        // With a target, the controller adds its pods; no catch-all.
        let s = spec(
            json!({"mode": "all", "action": "partition", "selector": {"namespaces": ["shop"]},
            "target": {"mode": "all", "selector": {"namespaces": ["db"]}}}),
        );
        assert_eq!(
            network_fault(&s).unwrap(),
            NetworkFault::Partition {
                direction: Direction::To,
                peers: vec![]
            }
        );
    }

    #[test]
    fn the_fault_serializes_peers_as_canonical_text() {
        let s = spec(
            json!({"mode": "all", "action": "partition", "selector": {"namespaces": ["shop"]},
            "externalTargets": ["10.0.0.0/8:22"]}),
        );
        assert_eq!(
            serde_json::to_value(network_fault(&s).unwrap()).unwrap(),
            json!({"kind": "partition", "direction": "to", "peers": ["10.0.0.0/8:22"]})
        );
    }
}
