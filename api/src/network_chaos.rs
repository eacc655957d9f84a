//! NetworkChaos: netem (delay, loss, duplicate, corrupt, rate), tbf bandwidth caps, partitions.

use crate::selector::PodSelector;
use crate::status::ChaosStatus;
use crate::validate::{self, Findings, Rule, Violation, child, index};
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
    /// Every violation of the spec, with its field path.
    pub fn validate(&self) -> Vec<Violation> {
        self.checked().1
    }

    /// The tc values parsed while validating, and the violations. The conversion to qdisc
    /// parameters uses these values, so it never parses a field a second time.
    pub(crate) fn checked(&self) -> (crate::convert::tc_values::TcValues, Vec<Violation>) {
        let mut f = Findings::default();
        self.scope.validate_at("spec", &mut f);
        let action = self.action.as_str();
        let because = |field: &str| format!("for action `{action}` ({field})");
        use NetworkChaosAction as A;

        let tc = crate::convert::tc_values::check(self, &mut f);

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
        (tc, f.into_vec())
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
