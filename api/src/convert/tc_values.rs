//! The tc fields of a NetworkChaos, parsed once into kernel units while they are validated.
//!
//! [`check`] is the only place these strings are parsed: `NetworkChaosSpec::validate` records
//! its violations, and [`super::network::network_fault`] builds the qdisc parameters from the
//! values it returns. A block (delay, loss, …) is `Some` only when every field of it parsed, so
//! the conversion never sees a half-checked block and never needs a default of its own; an
//! absent optional field (jitter, a correlation) means zero, as it does for `tc`.

use std::time::Duration;

use crate::duration::parse_duration;
use crate::network_chaos::NetworkChaosSpec;
use crate::quantity::parse_rate;
use crate::validate::{Findings, Rule, parse_percent};

use super::network::{TbfParams, probability};

/// A netem delay in kernel units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DelayValues {
    pub latency_ns: u64,
    pub jitter_ns: u64,
    pub correlation: u32,
    pub reorder: Option<ReorderValues>,
}

/// netem reordering: probability, correlation, gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReorderValues {
    pub probability: u32,
    pub correlation: u32,
    pub gap: u32,
}

/// A netem probability and its correlation (loss, duplicate, corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chance {
    pub probability: u32,
    pub correlation: u32,
}

/// Every tc block of the spec that parsed completely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TcValues {
    pub delay: Option<DelayValues>,
    pub loss: Option<Chance>,
    pub duplicate: Option<Chance>,
    pub corrupt: Option<Chance>,
    /// netem rate, bytes per second.
    pub rate: Option<u64>,
    pub bandwidth: Option<TbfParams>,
}

fn required(because: String) -> Rule {
    Rule::Required { because }
}

/// A required string field: empty → a `required` violation.
fn non_empty<'a>(f: &mut Findings, path: &str, value: &'a str, because: &str) -> Option<&'a str> {
    if value.trim().is_empty() {
        f.push(path, required(because.to_owned()));
        None
    } else {
        Some(value)
    }
}

/// A percentage → netem's u32 probability.
fn percent(f: &mut Findings, path: &str, value: &str) -> Option<u32> {
    match parse_percent(value) {
        Ok(micro) => Some(probability(micro)),
        Err(rule) => {
            f.push(path, rule);
            None
        }
    }
}

/// An optional percentage: absent is 0.
fn optional_percent(f: &mut Findings, path: &str, value: Option<&String>) -> Option<u32> {
    value.map_or(Some(0), |v| percent(f, path, v))
}

/// A duration → nanoseconds (zero allowed: netem accepts a zero delay).
fn nanos(f: &mut Findings, path: &str, value: &str) -> Option<(u64, Duration)> {
    let d = parse_duration(value)
        .map_err(|err| f.push(path, Rule::InvalidDuration(err)))
        .ok()?;
    match u64::try_from(d.as_nanos()) {
        Ok(ns) => Some((ns, d)),
        Err(_) => {
            f.push(
                path,
                Rule::OutOfRange {
                    value: i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
                    min: 0,
                    max: u64::MAX.into(),
                },
            );
            None
        }
    }
}

fn rate(f: &mut Findings, path: &str, value: &str) -> Option<u64> {
    parse_rate(value)
        .map_err(|reason| {
            f.push(
                path,
                Rule::InvalidRate {
                    value: value.to_owned(),
                    reason: reason.to_string(),
                },
            );
        })
        .ok()
}

/// An integer that must fit in `min..=u32::MAX`.
fn u32_from(f: &mut Findings, path: &str, value: i64, min: u32) -> Option<u32> {
    match u32::try_from(value) {
        Ok(v) if v >= min => Some(v),
        _ => {
            f.push(
                path,
                Rule::OutOfRange {
                    value: value.into(),
                    min: min.into(),
                    max: u32::MAX.into(),
                },
            );
            None
        }
    }
}

fn delay(f: &mut Findings, spec: &NetworkChaosSpec) -> Option<DelayValues> {
    let delay = spec.delay.as_ref()?;
    let latency = non_empty(
        f,
        "spec.delay.latency",
        &delay.latency,
        "(the delay to add)",
    )
    .and_then(|l| nanos(f, "spec.delay.latency", l));
    let jitter = match &delay.jitter {
        Some(j) => nanos(f, "spec.delay.jitter", j).map(|(ns, _)| ns),
        None => Some(0),
    };
    let correlation = optional_percent(f, "spec.delay.correlation", delay.correlation.as_ref());
    let reorder = match &delay.reorder {
        None => Some(None),
        Some(r) => {
            let probability = non_empty(
                f,
                "spec.delay.reorder.reorder",
                &r.reorder,
                "for reordering (the percent of packets to reorder)",
            )
            .and_then(|p| percent(f, "spec.delay.reorder.reorder", p));
            let correlation =
                optional_percent(f, "spec.delay.reorder.correlation", r.correlation.as_ref());
            // Chaos Mesh requires it (its CRD does); tc would read no gap as 1.
            let gap = match r.gap {
                Some(g) => u32_from(f, "spec.delay.reorder.gap", g, 0),
                None => {
                    f.push(
                        "spec.delay.reorder.gap",
                        required(
                            "for reordering (reorder every gap-th packet; tc's 1 is every packet)"
                                .into(),
                        ),
                    );
                    None
                }
            };
            if latency.is_some_and(|(_, d)| d.is_zero()) {
                f.push("spec.delay.reorder", Rule::ReorderWithoutLatency);
                None
            } else {
                match (probability, correlation, gap) {
                    (Some(probability), Some(correlation), Some(gap)) => {
                        Some(Some(ReorderValues {
                            probability,
                            correlation,
                            // tc turns reordering with no gap into gap 1.
                            gap: if probability > 0 { gap.max(1) } else { gap },
                        }))
                    }
                    _ => None,
                }
            }
        }
    };
    Some(DelayValues {
        latency_ns: latency?.0,
        jitter_ns: jitter?,
        correlation: correlation?,
        reorder: reorder?,
    })
}

fn chance(
    f: &mut Findings,
    name: &str,
    value: &str,
    correlation: Option<&String>,
) -> Option<Chance> {
    let path = format!("spec.{name}.{name}");
    let because = format!("when `{name}` is set (the percent of packets)");
    let probability = non_empty(f, &path, value, &because).and_then(|v| percent(f, &path, v));
    let correlation = optional_percent(f, &format!("spec.{name}.correlation"), correlation);
    Some(Chance {
        probability: probability?,
        correlation: correlation?,
    })
}

fn bandwidth(f: &mut Findings, spec: &NetworkChaosSpec) -> Option<TbfParams> {
    let bw = spec.bandwidth.as_ref()?;
    let rate = non_empty(f, "spec.bandwidth.rate", &bw.rate, "for a bandwidth cap")
        .and_then(|r| rate(f, "spec.bandwidth.rate", r));
    let limit = u32_from(f, "spec.bandwidth.limit", bw.limit, 1);
    let buffer = u32_from(f, "spec.bandwidth.buffer", bw.buffer, 1);
    let peakrate = match bw.peakrate {
        // tc reads a bare peakrate as bits per second.
        Some(bits) if (8..=u64::MAX / 2).contains(&bits) => Some(Some(bits / 8)),
        Some(bits) => {
            f.push(
                "spec.bandwidth.peakrate",
                Rule::OutOfRange {
                    value: bits.into(),
                    min: 8,
                    max: (u64::MAX / 2).into(),
                },
            );
            None
        }
        None => Some(None),
    };
    let minburst = match bw.minburst {
        Some(m) => u32_from(f, "spec.bandwidth.minburst", m, 1).map(Some),
        None => Some(None),
    };
    Some(TbfParams {
        rate_bytes_per_sec: rate?,
        limit_bytes: limit?,
        burst_bytes: buffer?,
        peakrate_bytes_per_sec: peakrate?,
        minburst_bytes: minburst?,
    })
}

/// Parses and checks every tc block of `spec`, recording each violation in `f`.
pub(crate) fn check(spec: &NetworkChaosSpec, f: &mut Findings) -> TcValues {
    let delay = delay(f, spec);
    let mut chances = [("loss", None), ("duplicate", None), ("corrupt", None)];
    for (name, slot) in &mut chances {
        let block = match *name {
            "loss" => spec
                .loss
                .as_ref()
                .map(|l| (&l.loss, l.correlation.as_ref())),
            "duplicate" => spec
                .duplicate
                .as_ref()
                .map(|d| (&d.duplicate, d.correlation.as_ref())),
            _ => spec
                .corrupt
                .as_ref()
                .map(|c| (&c.corrupt, c.correlation.as_ref())),
        };
        if let Some((value, correlation)) = block {
            *slot = chance(f, name, value, correlation);
        }
    }
    let [(_, loss), (_, duplicate), (_, corrupt)] = chances;
    let rate = spec.rate.as_ref().and_then(|r| {
        non_empty(f, "spec.rate.rate", &r.rate, "when `rate` is set")
            .and_then(|v| rate(f, "spec.rate.rate", v))
    });
    let bandwidth = bandwidth(f, spec);
    TcValues {
        delay,
        loss,
        duplicate,
        corrupt,
        rate,
        bandwidth,
    }
}
