//! Several NetworkChaos on one device compose instead of the last silently winning (Chaos Mesh
//! #3631, #3634). A device carries at most one netem and one tbf of ours, so the active faults'
//! parameters are merged into one shaping — field group by field group, each from the fault
//! that asks for the most of it:
//!
//! | group | comes from | why |
//! |---|---|---|
//! | delay (latency, jitter, correlation, reorder, gap) | the largest latency | a delay's jitter and reorder only make sense with its own latency |
//! | loss (+ correlation) | the largest probability | |
//! | duplicate (+ correlation) | the largest probability | |
//! | corrupt (+ correlation) | the largest probability | |
//! | netem rate | the smallest non-zero rate | |
//! | netem limit | the largest | a limit is a queue size, never a fault in itself |
//! | bandwidth (tbf: rate, burst, limit, peakrate, minburst) | the smallest rate | the whole block, so burst and limit stay consistent with their rate |
//!
//! Ties go to the fault applied first. Recovering one fault recomputes the merge from the faults
//! still active, so each experiment's part is removed exactly and the others' come back. Pure:
//! the daemon passes the active faults in the order they were applied.

use faultline_api::convert::network::{NetemParams, TbfParams};
use serde::{Deserialize, Serialize};

/// The shaping of one device: what its netem and tbf carry (either may be absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Shaping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) netem: Option<NetemParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bandwidth: Option<TbfParams>,
}

impl Shaping {
    pub(crate) fn is_empty(&self) -> bool {
        self.netem.is_none() && self.bandwidth.is_none()
    }
}

/// The first item with the largest `key` (ties: the earliest).
fn first_max<T: Copy, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Option<T> {
    let mut best: Option<(T, K)> = None;
    for item in items {
        let k = key(item);
        if best.as_ref().is_none_or(|(_, b)| k > *b) {
            best = Some((*item, k));
        }
    }
    best.map(|(item, _)| item)
}

/// The merged shaping of `faults` (in the order they were applied).
pub(crate) fn compose(faults: &[Shaping]) -> Shaping {
    let netems: Vec<NetemParams> = faults.iter().filter_map(|f| f.netem).collect();
    let netem = (!netems.is_empty()).then(|| {
        let mut n = NetemParams::default();
        if let Some(d) = first_max(&netems, |p| p.latency_ns).filter(|d| d.latency_ns > 0) {
            n.latency_ns = d.latency_ns;
            n.jitter_ns = d.jitter_ns;
            n.delay_correlation = d.delay_correlation;
            n.reorder = d.reorder;
            n.reorder_correlation = d.reorder_correlation;
            n.gap = d.gap;
        }
        if let Some(l) = first_max(&netems, |p| p.loss).filter(|l| l.loss > 0) {
            n.loss = l.loss;
            n.loss_correlation = l.loss_correlation;
        }
        if let Some(d) = first_max(&netems, |p| p.duplicate).filter(|d| d.duplicate > 0) {
            n.duplicate = d.duplicate;
            n.duplicate_correlation = d.duplicate_correlation;
        }
        if let Some(c) = first_max(&netems, |p| p.corrupt).filter(|c| c.corrupt > 0) {
            n.corrupt = c.corrupt;
            n.corrupt_correlation = c.corrupt_correlation;
        }
        n.rate_bytes_per_sec = netems
            .iter()
            .map(|p| p.rate_bytes_per_sec)
            .filter(|r| *r > 0)
            .min()
            .unwrap_or(0);
        n.limit_packets = netems.iter().map(|p| p.limit_packets).max().unwrap_or(0);
        n
    });
    let tbfs: Vec<TbfParams> = faults.iter().filter_map(|f| f.bandwidth).collect();
    let bandwidth = first_max(&tbfs, |t| std::cmp::Reverse(t.rate_bytes_per_sec));
    Shaping { netem, bandwidth }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netem(f: impl FnOnce(&mut NetemParams)) -> Shaping {
        let mut n = NetemParams {
            limit_packets: 1000,
            ..Default::default()
        };
        f(&mut n);
        Shaping {
            netem: Some(n),
            bandwidth: None,
        }
    }

    fn tbf(rate: u64) -> Shaping {
        Shaping {
            netem: None,
            bandwidth: Some(TbfParams {
                rate_bytes_per_sec: rate,
                limit_bytes: 20_000,
                burst_bytes: 10_000,
                peakrate_bytes_per_sec: None,
                minburst_bytes: None,
            }),
        }
    }

    #[test]
    fn different_fields_add_up() {
        let delay = netem(|n| {
            n.latency_ns = 100_000_000;
            n.jitter_ns = 10_000_000;
        });
        let loss = netem(|n| n.loss = 1 << 30);
        let cap = tbf(125_000);
        let all = compose(&[delay, loss, cap]);
        let n = all.netem.unwrap();
        assert_eq!(
            (n.latency_ns, n.jitter_ns, n.loss),
            (100_000_000, 10_000_000, 1 << 30)
        );
        assert_eq!(all.bandwidth, cap.bandwidth);
        // Recovering the delay leaves exactly the loss and the cap.
        let rest = compose(&[loss, cap]);
        assert_eq!(rest.netem, loss.netem);
        assert_eq!(rest.bandwidth, cap.bandwidth);
        assert!(compose(&[]).is_empty());
    }

    #[test]
    fn the_same_field_takes_the_most() {
        let small = netem(|n| {
            n.latency_ns = 10;
            n.jitter_ns = 5;
            n.loss = 7;
        });
        let large = netem(|n| {
            n.latency_ns = 50;
            n.loss = 3;
            n.limit_packets = 5000;
        });
        for order in [[small, large], [large, small]] {
            let n = compose(&order).netem.unwrap();
            // The delay group comes whole from the largest latency: its jitter (0), not the
            // other's.
            assert_eq!((n.latency_ns, n.jitter_ns), (50, 0));
            assert_eq!(n.loss, 7);
            assert_eq!(n.limit_packets, 5000);
        }
        assert_eq!(
            compose(&[tbf(1_000), tbf(500), tbf(800)]).bandwidth,
            tbf(500).bandwidth
        );
        // netem rate: the smallest that is set.
        let r1 = netem(|n| n.rate_bytes_per_sec = 900);
        let r2 = netem(|n| n.rate_bytes_per_sec = 300);
        let none = netem(|n| n.loss = 1);
        assert_eq!(
            compose(&[r1, none, r2]).netem.unwrap().rate_bytes_per_sec,
            300
        );
    }
}
