//! NetworkChaos → netem / tbf / partition parameters in the kernel's integer units.
//!
//! netem probabilities are `u32` scaled so that `u32::MAX` is 100% (as `tc` computes them:
//! `rint(percent / 100 * UINT32_MAX)`), delays are nanoseconds (`TCA_NETEM_LATENCY64`), rates are
//! bytes per second (`TCA_NETEM_RATE64`, `TCA_TBF_RATE64`). No floats: percentages are parsed as
//! exact decimals.

use crate::network_chaos::{Direction, NetworkChaosAction, NetworkChaosSpec};
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
    /// Drop traffic between the pods and the peers; the controller resolves pod targets to IPs
    /// and adds them to `external_targets`.
    Partition {
        direction: Direction,
        external_targets: Vec<String>,
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
    let (tc, violations) = spec.checked();
    if !violations.is_empty() {
        return Err(violations);
    }
    use NetworkChaosAction as A;
    let fault = match spec.action {
        A::Partition => NetworkFault::Partition {
            direction: spec.direction.unwrap_or(Direction::To),
            external_targets: spec.external_targets.clone(),
        },
        A::Bandwidth => NetworkFault::Bandwidth(tc.bandwidth.ok_or_else(|| {
            vec![Violation::new(
                "spec.bandwidth",
                Rule::Required {
                    because: "for action `bandwidth` (the cap)".into(),
                },
            )]
        })?),
        action => {
            let wants = |a: A| action == A::Netem || action == a;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> NetworkChaosSpec {
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
                      "reorder": {"reorder": "10", "correlation": "50"}},
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
        assert_eq!(p.loss, 0, "action delay ignores the loss block");
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
    fn partition() {
        let s = spec(
            json!({"mode": "all", "action": "partition", "direction": "both", "externalTargets": ["10.0.0.0/8"]}),
        );
        assert_eq!(
            network_fault(&s).unwrap(),
            NetworkFault::Partition {
                direction: Direction::Both,
                external_targets: vec!["10.0.0.0/8".into()]
            }
        );
    }
}
