//! NetworkChaos: netem (delay, loss, duplicate, corrupt, rate), tbf bandwidth caps, partitions.

use crate::duration::parse_duration;
use crate::quantity::parse_rate;
use crate::selector::PodSelector;
use crate::status::ChaosStatus;
use crate::validate::{self, Findings, Rule, Violation, child, in_range, index};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "chaos.faultline.dev",
    version = "v1alpha1",
    kind = "NetworkChaos",
    plural = "networkchaos",
    namespaced,
    status = "ChaosStatus",
    category = "chaos",
    doc = "Delay, drop, duplicate, corrupt or throttle the selected pods' traffic, or cut them off.",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".spec.duration"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
/// Delay, drop, duplicate, corrupt or throttle the selected pods' traffic, or cut them off.
pub struct NetworkChaosSpec {
    #[serde(flatten)]
    pub scope: PodSelector,
    pub action: NetworkChaosAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelaySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<DuplicateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<CorruptSpec>,
    /// netem rate limit (action `netem` or `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// tbf bandwidth cap (action `bandwidth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    /// Traffic to (`to`), from (`from`) or both ways between the pods and `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The peers whose traffic is affected; absent = all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PodSelector>,
    /// IPs, CIDRs or host names outside the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_targets: Vec<String>,
    /// Interface inside the pod (default `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Interface inside the target pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkChaosAction {
    Netem,
    Delay,
    Loss,
    Duplicate,
    Corrupt,
    Bandwidth,
    Partition,
    /// netem rate limit (Chaos Mesh accepts it as its own action too).
    Rate,
}

impl NetworkChaosAction {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkChaosAction::Netem => "netem",
            NetworkChaosAction::Delay => "delay",
            NetworkChaosAction::Loss => "loss",
            NetworkChaosAction::Duplicate => "duplicate",
            NetworkChaosAction::Corrupt => "corrupt",
            NetworkChaosAction::Bandwidth => "bandwidth",
            NetworkChaosAction::Partition => "partition",
            NetworkChaosAction::Rate => "rate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    To,
    From,
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::To => "to",
            Direction::From => "from",
            Direction::Both => "both",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelaySpec {
    /// Go duration, e.g. `100ms`.
    #[serde(default)]
    pub latency: String,
    /// Percent 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<ReorderSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReorderSpec {
    /// Percent of packets sent at once (not delayed).
    #[serde(default)]
    pub reorder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    /// Reorder every `gap`-th packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LossSpec {
    #[serde(default)]
    pub loss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateSpec {
    #[serde(default)]
    pub duplicate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorruptSpec {
    #[serde(default)]
    pub corrupt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateSpec {
    /// tc rate, e.g. `1mbit`.
    #[serde(default)]
    pub rate: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthSpec {
    /// tc rate, e.g. `1mbps`.
    #[serde(default)]
    pub rate: String,
    /// Bytes that may wait in the queue, ≥ 1.
    #[serde(default)]
    pub limit: i64,
    /// Bucket size in bytes (burst), ≥ 1.
    #[serde(default)]
    pub buffer: i64,
    /// Maximum depletion rate of the bucket, in bits per second as tc reads a bare number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peakrate: Option<u64>,
    /// Size of the peakrate bucket in bytes (usually the MTU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minburst: Option<i64>,
}

fn required(because: String) -> Rule {
    Rule::Required { because }
}

fn check_percent(f: &mut Findings, path: &str, value: &str) {
    f.check(path, validate::parse_percent(value).map(|_| ()));
}

fn check_optional_percent(f: &mut Findings, path: &str, value: Option<&String>) {
    if let Some(value) = value {
        check_percent(f, path, value);
    }
}

fn check_duration(
    f: &mut Findings,
    path: &str,
    value: &str,
    zero_ok: bool,
) -> Option<std::time::Duration> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() && !zero_ok => {
            f.push(path, Rule::ZeroDuration);
            Some(d)
        }
        Ok(d) => Some(d),
        Err(err) => {
            f.push(path, Rule::InvalidDuration(err));
            None
        }
    }
}

fn check_rate(f: &mut Findings, path: &str, value: &str) {
    if let Err(reason) = parse_rate(value) {
        f.push(
            path,
            Rule::InvalidRate {
                value: value.to_string(),
                reason,
            },
        );
    }
}

/// An external target: IP, CIDR or DNS host name.
fn external_target(value: &str) -> Result<(), Rule> {
    let bad = || Rule::InvalidExternalTarget {
        value: value.to_string(),
    };
    if value.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some((ip, prefix)) = value.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return match prefix.parse::<u8>() {
            Ok(p) if p <= max => Ok(()),
            _ => Err(bad()),
        };
    }
    let host = value.strip_suffix('.').unwrap_or(value);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

impl NetworkChaosSpec {
    pub fn validate(&self) -> Vec<Violation> {
        let mut f = Findings::default();
        self.scope.validate_at("spec", &mut f);
        let action = self.action.as_str();
        let because = |field: &str| format!("for action `{action}` ({field})");
        use NetworkChaosAction as A;

        let mut latency = None;
        if let Some(delay) = &self.delay {
            if delay.latency.trim().is_empty() {
                f.push("spec.delay.latency", required(because("the delay to add")));
            } else {
                latency = check_duration(&mut f, "spec.delay.latency", &delay.latency, true);
            }
            if let Some(jitter) = &delay.jitter {
                check_duration(&mut f, "spec.delay.jitter", jitter, true);
            }
            check_optional_percent(&mut f, "spec.delay.correlation", delay.correlation.as_ref());
            if let Some(reorder) = &delay.reorder {
                if reorder.reorder.trim().is_empty() {
                    f.push(
                        "spec.delay.reorder.reorder",
                        required("for reordering (the percent of packets to reorder)".into()),
                    );
                } else {
                    check_percent(&mut f, "spec.delay.reorder.reorder", &reorder.reorder);
                }
                check_optional_percent(
                    &mut f,
                    "spec.delay.reorder.correlation",
                    reorder.correlation.as_ref(),
                );
                if let Some(gap) = reorder.gap {
                    f.check(
                        "spec.delay.reorder.gap",
                        in_range(gap.into(), 0, u32::MAX.into()),
                    );
                }
                if latency.is_some_and(|l| l.is_zero()) {
                    f.push("spec.delay.reorder", Rule::ReorderWithoutLatency);
                }
            }
        }
        for (name, payload) in [
            (
                "loss",
                self.loss
                    .as_ref()
                    .map(|l| (&l.loss, l.correlation.as_ref())),
            ),
            (
                "duplicate",
                self.duplicate
                    .as_ref()
                    .map(|d| (&d.duplicate, d.correlation.as_ref())),
            ),
            (
                "corrupt",
                self.corrupt
                    .as_ref()
                    .map(|c| (&c.corrupt, c.correlation.as_ref())),
            ),
        ] {
            if let Some((value, correlation)) = payload {
                let path = format!("spec.{name}.{name}");
                if value.trim().is_empty() {
                    f.push(
                        path,
                        required(format!("when `{name}` is set (the percent of packets)")),
                    );
                } else {
                    check_percent(&mut f, &path, value);
                }
                check_optional_percent(&mut f, &format!("spec.{name}.correlation"), correlation);
            }
        }
        if let Some(rate) = &self.rate {
            if rate.rate.trim().is_empty() {
                f.push("spec.rate.rate", required("when `rate` is set".into()));
            } else {
                check_rate(&mut f, "spec.rate.rate", &rate.rate);
            }
        }
        if let Some(bw) = &self.bandwidth {
            if bw.rate.trim().is_empty() {
                f.push(
                    "spec.bandwidth.rate",
                    required("for a bandwidth cap".into()),
                );
            } else {
                check_rate(&mut f, "spec.bandwidth.rate", &bw.rate);
            }
            f.check(
                "spec.bandwidth.limit",
                in_range(bw.limit.into(), 1, u32::MAX.into()),
            );
            f.check(
                "spec.bandwidth.buffer",
                in_range(bw.buffer.into(), 1, u32::MAX.into()),
            );
            if let Some(peak) = bw.peakrate {
                f.check(
                    "spec.bandwidth.peakrate",
                    in_range(peak.into(), 8, (u64::MAX / 2).into()),
                );
            }
            if let Some(minburst) = bw.minburst {
                f.check(
                    "spec.bandwidth.minburst",
                    in_range(minburst.into(), 1, u32::MAX.into()),
                );
            }
        }

        match self.action {
            A::Netem
                if self.delay.is_none()
                    && self.loss.is_none()
                    && self.duplicate.is_none()
                    && self.corrupt.is_none()
                    && self.rate.is_none() =>
            {
                f.push("spec", Rule::NetemWithoutEffect)
            }
            A::Delay if self.delay.is_none() => {
                f.push("spec.delay", required(because("the delay")))
            }
            A::Loss if self.loss.is_none() => f.push("spec.loss", required(because("the loss"))),
            A::Duplicate if self.duplicate.is_none() => {
                f.push("spec.duplicate", required(because("the duplication")))
            }
            A::Corrupt if self.corrupt.is_none() => {
                f.push("spec.corrupt", required(because("the corruption")))
            }
            A::Rate if self.rate.is_none() => f.push("spec.rate", required(because("the rate"))),
            A::Bandwidth if self.bandwidth.is_none() => {
                f.push("spec.bandwidth", required(because("the cap")))
            }
            _ => {}
        }
        if self.action != A::Bandwidth && self.bandwidth.is_some() {
            f.push(
                "spec.bandwidth",
                Rule::Forbidden {
                    because: format!("for action `{action}`: use action `bandwidth`"),
                },
            );
        }

        let direction = self.direction.unwrap_or(Direction::To);
        if let Some(target) = &self.target {
            target.validate_at("spec.target", &mut f);
        }
        for (i, ext) in self.external_targets.iter().enumerate() {
            f.check(index("spec.externalTargets", i), external_target(ext));
        }
        if self.action == A::Partition {
            if self.target.is_none() && self.external_targets.is_empty() {
                f.push("spec.target", Rule::PartitionWithoutPeer);
            }
        } else if direction != Direction::To {
            if self.target.is_none() {
                f.push(
                    "spec.direction",
                    Rule::DirectionNeedsTarget {
                        direction: direction.as_str().into(),
                        because:
                            "for tc actions: traffic from the pods is shaped on the target's side"
                                .into(),
                    },
                );
            }
            if !self.external_targets.is_empty() {
                f.push(
                    "spec.externalTargets",
                    Rule::ExternalTargetsNeedDirectionTo {
                        action: action.into(),
                    },
                );
            }
        }
        for (field, device) in [
            ("device", &self.device),
            ("targetDevice", &self.target_device),
        ] {
            if let Some(device) = device {
                f.check(child("spec", field), validate::device_name(device));
            }
        }
        if let Some(duration) = &self.duration {
            crate::iorule::check_positive_duration(&mut f, "spec.duration", duration);
        }
        f.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_targets() {
        for ok in [
            "10.0.0.1",
            "10.0.0.0/8",
            "::1",
            "fd00::/64",
            "example.com",
            "api.example.com.",
        ] {
            assert!(external_target(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "exa mple.com",
            "-x.com",
            "",
            "a..b",
            "1.2.3.4/x",
        ] {
            assert!(external_target(bad).is_err(), "{bad}");
        }
    }
}
