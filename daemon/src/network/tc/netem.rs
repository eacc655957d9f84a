//! netem's `TCA_OPTIONS`: `struct tc_netem_qopt` followed by `TCA_NETEM_*` attributes.
//!
//! Unlike most qdiscs, netem's options are not a nested attribute list: the kernel
//! (`netem_change()` → `parse_attr()`) reads a fixed `struct tc_netem_qopt` and then parses
//! attributes starting at `NLA_ALIGN(sizeof(struct tc_netem_qopt))`. The encoding follows
//! iproute2 ≥ 6.9 `netem_parse_opt()` (tc/q_netem.c), attribute for attribute and in its order:
//!
//! | attribute | sent when | payload |
//! |---|---|---|
//! | (qopt) | always | `latency` 0, `limit`, `loss`, `gap`, `duplicate`, `jitter` 0 |
//! | `TCA_NETEM_LATENCY64` | latency or jitter set | `s64` ns |
//! | `TCA_NETEM_JITTER64` | jitter set | `s64` ns |
//! | `TCA_NETEM_CORR` | any correlation set | `struct tc_netem_corr` (delay, loss, dup) |
//! | `TCA_NETEM_REORDER` | reorder set | `struct tc_netem_reorder` |
//! | `TCA_NETEM_CORRUPT` | corrupt set | `struct tc_netem_corrupt` |
//! | `TCA_NETEM_RATE64` | rate ≥ 2³² B/s | `u64` bytes/s |
//! | `TCA_NETEM_RATE` | rate set | `struct tc_netem_rate` (`rate` = `~0` when RATE64 is sent) |
//!
//! Since iproute2 6.9 `tc` leaves the qopt's tick-based `latency`/`jitter` at 0 and sends only the
//! 64-bit nanosecond attributes (kernel ≥ 4.15 reads them and overrides the qopt), so netem needs
//! no psched tick conversion and delays are exact. iproute2 ≤ 6.8 (Debian 12 ships 6.1) put
//! ticks in the qopt and sent no LATENCY64/JITTER64; we do not reproduce that.
//!
//! One deliberate difference from tc: tc only sends `TCA_NETEM_CORR` when a delay, loss, reorder
//! or corrupt correlation was given, so `duplicate 1% 25%` alone silently loses the 25%. We send
//! CORR whenever any correlation is non-zero (covered by the `duplicate_corr_only` fixture test).

use netlink_packet_core::{DefaultNla, Emitable};
use thiserror::Error;

const TCA_NETEM_CORR: u16 = 1;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;

/// `sizeof(struct tc_netem_qopt)`: six `__u32`, already 4-byte aligned.
const QOPT_LEN: usize = 24;

/// netem parameters in kernel units, as the api converts them: probabilities and correlations
/// are `u32` scaled so that `u32::MAX` is 100%; `gap` 0 becomes 1 when reorder is set (as tc
/// does); `limit_packets` 0 would drop everything (tc's default is 1000).
pub use faultline_api::convert::network::NetemParams;

/// Combinations `tc` refuses to encode; refused here too so the kernel never sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NetemError {
    #[error("netem: reordering needs a delay (latency is 0)")]
    ReorderWithoutLatency,
    #[error("netem: gap {gap} is set but the reorder probability is 0")]
    GapWithoutReorder { gap: u32 },
    #[error("netem: {field} of {ns} ns does not fit the kernel's signed 64-bit nanoseconds")]
    TimeTooLarge { field: &'static str, ns: u64 },
}

/// The payload of netem's `TCA_OPTIONS` attribute (qopt + attributes), host byte order.
pub(super) fn encode(o: &NetemParams) -> Result<Vec<u8>, NetemError> {
    let reorder_set = o.reorder != 0 || o.reorder_correlation != 0;
    if o.reorder != 0 && o.latency_ns == 0 {
        return Err(NetemError::ReorderWithoutLatency);
    }
    if o.reorder == 0 && o.gap != 0 {
        return Err(NetemError::GapWithoutReorder { gap: o.gap });
    }
    // q_netem.c: "if (opt.gap == 0) opt.gap = 1" once a reorder probability is given.
    let gap = if o.reorder != 0 { o.gap.max(1) } else { o.gap };

    let mut qopt = Vec::with_capacity(QOPT_LEN);
    // latency and jitter in ticks stay 0: LATENCY64/JITTER64 carry them (see module doc).
    for field in [0, o.limit_packets, o.loss, gap, o.duplicate, 0] {
        qopt.extend_from_slice(&field.to_ne_bytes());
    }

    let mut attrs = Vec::new();
    if o.latency_ns != 0 || o.jitter_ns != 0 {
        attrs.push(nla(TCA_NETEM_LATENCY64, &s64("latency", o.latency_ns)?));
    }
    if o.jitter_ns != 0 {
        attrs.push(nla(TCA_NETEM_JITTER64, &s64("jitter", o.jitter_ns)?));
    }
    let correlations = [
        o.delay_correlation,
        o.loss_correlation,
        o.duplicate_correlation,
        o.reorder_correlation,
        o.corrupt_correlation,
    ];
    if correlations.iter().any(|&c| c != 0) {
        // struct tc_netem_corr { delay_corr, loss_corr, dup_corr }
        let corr = words(&[
            o.delay_correlation,
            o.loss_correlation,
            o.duplicate_correlation,
        ]);
        attrs.push(nla(TCA_NETEM_CORR, &corr));
    }
    if reorder_set {
        let reorder = words(&[o.reorder, o.reorder_correlation]);
        attrs.push(nla(TCA_NETEM_REORDER, &reorder));
    }
    if o.corrupt != 0 || o.corrupt_correlation != 0 {
        let corrupt = words(&[o.corrupt, o.corrupt_correlation]);
        attrs.push(nla(TCA_NETEM_CORRUPT, &corrupt));
    }
    if o.rate_bytes_per_sec != 0 {
        // Above u32, tc sends RATE64 first and saturates the 32-bit field (~0U).
        let rate32 = match u32::try_from(o.rate_bytes_per_sec) {
            Ok(rate) => rate,
            Err(_) => {
                let rate64 = o.rate_bytes_per_sec.to_ne_bytes();
                attrs.push(nla(TCA_NETEM_RATE64, &rate64));
                u32::MAX
            }
        };
        // struct tc_netem_rate { rate, packet_overhead, cell_size, cell_overhead }
        attrs.push(nla(TCA_NETEM_RATE, &words(&[rate32, 0, 0, 0])));
    }

    let mut payload = qopt;
    let start = payload.len();
    payload.resize(start + attrs.as_slice().buffer_len(), 0);
    attrs.as_slice().emit(&mut payload[start..]);
    Ok(payload)
}

fn nla(kind: u16, value: &[u8]) -> DefaultNla {
    DefaultNla::new(kind, value.to_vec())
}

fn words(fields: &[u32]) -> Vec<u8> {
    fields.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

fn s64(field: &'static str, ns: u64) -> Result<[u8; 8], NetemError> {
    i64::try_from(ns)
        .map(i64::to_ne_bytes)
        .map_err(|_| NetemError::TimeTooLarge { field, ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NetemParams {
        NetemParams {
            limit_packets: 1000,
            ..NetemParams::default()
        }
    }

    #[test]
    fn bare_qopt_without_attributes() {
        let bytes = encode(&base()).unwrap();
        assert_eq!(bytes.len(), QOPT_LEN);
        assert_eq!(&bytes[4..8], &1000u32.to_ne_bytes());
    }

    #[test]
    fn reorder_defaults_gap_to_one_and_needs_latency() {
        let mut o = base();
        o.reorder = 5;
        assert_eq!(encode(&o), Err(NetemError::ReorderWithoutLatency));
        o.latency_ns = 1_000_000;
        let bytes = encode(&o).unwrap();
        assert_eq!(&bytes[12..16], &1u32.to_ne_bytes());
    }

    #[test]
    fn gap_needs_reorder() {
        let o = NetemParams { gap: 3, ..base() };
        assert_eq!(encode(&o), Err(NetemError::GapWithoutReorder { gap: 3 }));
    }

    #[test]
    fn latency_beyond_i64_is_refused() {
        let o = NetemParams {
            latency_ns: u64::MAX,
            ..base()
        };
        assert!(matches!(
            encode(&o),
            Err(NetemError::TimeTooLarge {
                field: "latency",
                ..
            })
        ));
    }
}
