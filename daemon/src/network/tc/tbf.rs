//! tbf's `TCA_OPTIONS`: a nested attribute list, encoded as iproute2 7.1's `tbf_parse_opt()`
//! (tc/q_tbf.c) does:
//!
//! | attribute | sent when | payload |
//! |---|---|---|
//! | `TCA_TBF_PARMS` | always | `struct tc_tbf_qopt` |
//! | `TCA_TBF_BURST` | always (burst < 2³²) | `u32` bytes |
//! | `TCA_TBF_RATE64` | rate ≥ 2³² B/s | `u64` bytes/s |
//! | `TCA_TBF_RTAB` | always | 256 × `u32` ticks |
//! | `TCA_TBF_PRATE64` | peakrate ≥ 2³² B/s | `u64` bytes/s |
//! | `TCA_TBF_PBURST` | peakrate set | `u32` mtu bytes |
//! | `TCA_TBF_PTAB` | peakrate set | 256 × `u32` ticks |
//!
//! What the kernel actually uses (`tbf_change()`, net/sched/sch_tbf.c): the rates (RATE64/PRATE64
//! over the 32-bit `tc_ratespec.rate`), `limit`, and BURST/PBURST, from which it recomputes the
//! bucket sizes in nanoseconds, ignoring `buffer`/`mtu` ticks. The rate tables are only looked at
//! when `tc_ratespec.linklayer` is `TC_LINKLAYER_UNAWARE` (old tc); tc sets ETHERNET. We still
//! compute the tick fields and both 1 KiB tables exactly as tc does, so the message is
//! byte-identical to tc's and any kernel that does read them gets what tc would have sent.
//! tc computes them from the *32-bit* rate (saturated at `~0U` for ≥ 2³² B/s), and so do we.

use netlink_packet_core::DefaultNla;
use netlink_packet_route::tc::TcOption;
use thiserror::Error;

use super::psched::{Psched, TIME_UNITS_PER_SEC};

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RTAB: u16 = 2;
const TCA_TBF_PTAB: u16 = 3;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_PRATE64: u16 = 5;
const TCA_TBF_BURST: u16 = 6;
const TCA_TBF_PBURST: u16 = 7;

/// `enum link_layer` in tc/tc_core.h; tc always assumes Ethernet (no ATM cell tax).
const LINKLAYER_ETHERNET: u8 = 1;
/// tc_core.c uses an MTU of 2047 for the rate table's cell size when none is given.
const DEFAULT_RTAB_MTU: u32 = 2047;

/// How much tbf may queue: in bytes, or as the time a packet may wait (tc's `latency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TbfLimit {
    Bytes(u32),
    /// Microseconds (tc's time unit). tc converts: `rate × latency + burst`, or the smaller
    /// `peakrate × latency + mtu` when a peakrate is set, in `double`, truncated.
    LatencyMicros(u32),
}

/// tbf parameters. From `faultline_api::convert::network::TbfParams`: `rate_bytes_per_sec`,
/// `burst_bytes`, `peakrate_bytes_per_sec`, `minburst_bytes` → `mtu_bytes`, and
/// `limit_bytes` → `TbfLimit::Bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TbfOptions {
    pub rate_bytes_per_sec: u64,
    /// Bucket size (tc's `burst`/`buffer`/`maxburst`).
    pub burst_bytes: u32,
    pub limit: TbfLimit,
    pub peakrate_bytes_per_sec: Option<u64>,
    /// tc's `mtu`/`minburst`: the peak bucket. Also sets the rate tables' cell size.
    pub mtu_bytes: Option<u32>,
}

/// Combinations `tc` refuses to encode; refused here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TbfError {
    #[error("tbf: rate must be positive")]
    ZeroRate,
    #[error("tbf: burst must be positive")]
    ZeroBurst,
    #[error("tbf: limit (or latency) must be positive")]
    ZeroLimit,
    #[error("tbf: a peakrate needs an mtu (minburst)")]
    PeakrateWithoutMtu,
    #[error("tbf: peakrate must be positive")]
    ZeroPeakrate,
    #[error("tbf: burst of {burst} bytes takes too long at this rate (u32 ticks overflow)")]
    BurstOutOfRange { burst: u32 },
    #[error("tbf: the limit derived from the latency exceeds 2^32 bytes")]
    LimitOutOfRange,
}

impl TbfOptions {
    /// The attributes nested in tbf's `TCA_OPTIONS`, in tc's order.
    pub fn encode(&self, psched: Psched) -> Result<Vec<TcOption>, TbfError> {
        let o = self;
        if o.rate_bytes_per_sec == 0 {
            return Err(TbfError::ZeroRate);
        }
        if o.burst_bytes == 0 {
            return Err(TbfError::ZeroBurst);
        }
        let peak = match (o.peakrate_bytes_per_sec, o.mtu_bytes) {
            (Some(0), _) => return Err(TbfError::ZeroPeakrate),
            (Some(_), None | Some(0)) => return Err(TbfError::PeakrateWithoutMtu),
            (Some(rate), Some(mtu)) => Some((rate, mtu)),
            (None, _) => None,
        };
        let mtu = o.mtu_bytes.unwrap_or(0);
        let limit = match o.limit {
            TbfLimit::Bytes(0) | TbfLimit::LatencyMicros(0) => return Err(TbfError::ZeroLimit),
            TbfLimit::Bytes(bytes) => bytes,
            TbfLimit::LatencyMicros(us) => limit_from_latency(o, peak, us)?,
        };

        let rate32 = saturate(o.rate_bytes_per_sec);
        let (rate_spec, rtab) = rate_table(rate32, mtu, psched);
        let buffer = psched.xmittime(u64::from(rate32), u64::from(o.burst_bytes));
        if buffer == u32::MAX {
            return Err(TbfError::BurstOutOfRange {
                burst: o.burst_bytes,
            });
        }
        // Without a peakrate tc leaves the whole peak tc_ratespec and `mtu` zero.
        let (peak_spec, ptab, mtu_ticks) = match peak {
            Some((prate, pmtu)) => {
                let prate32 = saturate(prate);
                let (spec, table) = rate_table(prate32, pmtu, psched);
                let ticks = psched.xmittime(u64::from(prate32), u64::from(pmtu));
                (spec, Some(table), ticks)
            }
            None => ([0; 12], None, 0),
        };

        // struct tc_tbf_qopt { rate, peakrate, limit, buffer, mtu }
        let mut parms = Vec::with_capacity(36);
        parms.extend_from_slice(&rate_spec);
        parms.extend_from_slice(&peak_spec);
        for word in [limit, buffer, mtu_ticks] {
            parms.extend_from_slice(&word.to_ne_bytes());
        }

        let mut attrs = vec![
            opt(TCA_TBF_PARMS, parms),
            opt(TCA_TBF_BURST, o.burst_bytes.to_ne_bytes().to_vec()),
        ];
        if needs_64_bits(o.rate_bytes_per_sec) {
            attrs.push(opt(TCA_TBF_RATE64, rate64_bytes(o.rate_bytes_per_sec)));
        }
        attrs.push(opt(TCA_TBF_RTAB, rtab));
        if let (Some((prate, pmtu)), Some(ptab)) = (peak, ptab) {
            if needs_64_bits(prate) {
                attrs.push(opt(TCA_TBF_PRATE64, rate64_bytes(prate)));
            }
            attrs.push(opt(TCA_TBF_PBURST, pmtu.to_ne_bytes().to_vec()));
            attrs.push(opt(TCA_TBF_PTAB, ptab));
        }
        Ok(attrs)
    }
}

/// `opt.limit = lim` in tbf_parse_opt(): `rate × latency / 1e6 + burst`, or the peak bucket's
/// equivalent when smaller, computed in `double` and truncated.
fn limit_from_latency(o: &TbfOptions, peak: Option<(u64, u32)>, us: u32) -> Result<u32, TbfError> {
    let latency = f64::from(us);
    let mut lim =
        o.rate_bytes_per_sec as f64 * latency / TIME_UNITS_PER_SEC + f64::from(o.burst_bytes);
    if let Some((prate, pmtu)) = peak {
        let lim2 = prate as f64 * latency / TIME_UNITS_PER_SEC + f64::from(pmtu);
        if lim2 < lim {
            lim = lim2;
        }
    }
    if lim >= 4_294_967_296.0 {
        return Err(TbfError::LimitOutOfRange);
    }
    Ok(lim as u32)
}

/// The 32-bit `tc_ratespec.rate`: tc stores `~0U` once the rate needs RATE64 (≥ 2³² B/s).
fn saturate(rate: u64) -> u32 {
    u32::try_from(rate).unwrap_or(u32::MAX)
}

/// `rate64 >= (1ULL << 32)` in q_tbf.c: only then are RATE64/PRATE64 sent.
fn needs_64_bits(rate: u64) -> bool {
    rate >= 1 << 32
}

fn rate64_bytes(rate: u64) -> Vec<u8> {
    rate.to_ne_bytes().to_vec()
}

fn opt(kind: u16, value: Vec<u8>) -> TcOption {
    TcOption::Other(DefaultNla::new(kind, value))
}

/// `tc_calc_rtable()`: the encoded `struct tc_ratespec` and the 256-entry table of transmit
/// times for sizes `(i + 1) << cell_log`, where `cell_log` is the smallest shift that fits the
/// MTU (2047 when none) into 256 cells. mpu and overhead are 0, linklayer Ethernet.
fn rate_table(rate: u32, mtu: u32, psched: Psched) -> ([u8; 12], Vec<u8>) {
    let mtu = if mtu == 0 { DEFAULT_RTAB_MTU } else { mtu };
    let mut cell_log = 0u32;
    while (mtu >> cell_log) > 255 {
        cell_log += 1;
    }
    let table = (0..256u64)
        .flat_map(|i| {
            let size = (i + 1) << cell_log;
            psched.xmittime(u64::from(rate), size).to_ne_bytes()
        })
        .collect();
    // struct tc_ratespec { u8 cell_log; u8 linklayer; u16 overhead; s16 cell_align; u16 mpu;
    //                      u32 rate } — cell_align is always -1 after tc_calc_rtable().
    let mut spec = [0u8; 12];
    spec[0] = cell_log as u8;
    spec[1] = LINKLAYER_ETHERNET;
    spec[4..6].copy_from_slice(&(-1i16).to_ne_bytes());
    spec[8..12].copy_from_slice(&rate.to_ne_bytes());
    (spec, table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Nla;

    fn base() -> TbfOptions {
        TbfOptions {
            rate_bytes_per_sec: 125_000,
            burst_bytes: 10_000,
            limit: TbfLimit::Bytes(20_000),
            peakrate_bytes_per_sec: None,
            mtu_bytes: None,
        }
    }

    fn kinds(attrs: &[TcOption]) -> Vec<u16> {
        attrs.iter().map(Nla::kind).collect()
    }

    #[test]
    fn plain_rate_sends_parms_burst_rtab() {
        let attrs = base().encode(Psched::LINUX).unwrap();
        assert_eq!(kinds(&attrs), [TCA_TBF_PARMS, TCA_TBF_BURST, TCA_TBF_RTAB]);
    }

    #[test]
    fn peakrate_needs_mtu() {
        let o = TbfOptions {
            peakrate_bytes_per_sec: Some(250_000),
            ..base()
        };
        assert_eq!(o.encode(Psched::LINUX), Err(TbfError::PeakrateWithoutMtu));
    }

    #[test]
    fn huge_rates_use_64_bit_attributes() {
        let o = TbfOptions {
            rate_bytes_per_sec: 1 << 33,
            peakrate_bytes_per_sec: Some(1 << 34),
            mtu_bytes: Some(1500),
            ..base()
        };
        let attrs = o.encode(Psched::LINUX).unwrap();
        assert_eq!(
            kinds(&attrs),
            [
                TCA_TBF_PARMS,
                TCA_TBF_BURST,
                TCA_TBF_RATE64,
                TCA_TBF_RTAB,
                TCA_TBF_PRATE64,
                TCA_TBF_PBURST,
                TCA_TBF_PTAB
            ]
        );
    }

    #[test]
    fn latency_limit_takes_the_smaller_bucket() {
        let o = TbfOptions {
            limit: TbfLimit::LatencyMicros(50_000),
            peakrate_bytes_per_sec: Some(250_000),
            mtu_bytes: Some(1500),
            ..base()
        };
        // rate: 125000 × 0.05 + 10000 = 16250; peak: 250000 × 0.05 + 1500 = 14000.
        assert_eq!(
            limit_from_latency(&o, Some((250_000, 1500)), 50_000),
            Ok(14_000)
        );
    }
}
