//! NetworkChaos: netem (delay, loss, duplicate, corrupt, rate), tbf bandwidth caps, partitions.
//! The types (and so the CRD schema) are here, validation in `check`.

mod check;

use crate::selector::PodSelector;
use crate::status::ChaosStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) use check::is_netem;

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
#[schemars(transform = crate::schema::spec_extras)]
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
    /// Peers outside the cluster: IPs, CIDRs or host names, each with an optional port
    /// (`1.1.1.1:80`, `10.0.0.0/8:22`, `example.com:443`, `[fd00::1]:80`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_targets: Vec<String>,
    /// Interface inside the pod (default `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Interface inside the target pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_device: Option<String>,
    /// How long the fault lasts (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::DURATION))]
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
#[schemars(transform = crate::schema::delay_required)]
pub struct DelaySpec {
    /// The delay to add, a Go duration, e.g. `100ms`.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::DURATION))]
    pub latency: String,
    /// Percent 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub correlation: Option<String>,
    /// Random variation of the delay, a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::DURATION))]
    pub jitter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<ReorderSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::reorder_required)]
pub struct ReorderSpec {
    /// Percent of packets sent at once (not delayed).
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub reorder: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub correlation: Option<String>,
    /// Reorder every `gap`-th packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4_294_967_295_i64))]
    pub gap: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::loss_required)]
pub struct LossSpec {
    /// Percent of packets dropped.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub loss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::duplicate_required)]
pub struct DuplicateSpec {
    /// Percent of packets sent twice.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub duplicate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::corrupt_required)]
pub struct CorruptSpec {
    /// Percent of packets with a flipped bit.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub corrupt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::schema::PERCENT))]
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::rate_required)]
pub struct RateSpec {
    /// tc rate, a whole number and a unit, e.g. `1mbit`.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::RATE))]
    pub rate: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::bandwidth_required)]
pub struct BandwidthSpec {
    /// tc rate, a whole number and a unit, e.g. `1mbps`.
    #[serde(default)]
    #[schemars(regex(pattern = crate::schema::RATE))]
    pub rate: String,
    /// Bytes that may wait in the queue, ≥ 1.
    #[serde(default)]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub limit: i64,
    /// Bucket size in bytes (burst), ≥ 1.
    #[serde(default)]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub buffer: i64,
    /// Maximum depletion rate of the bucket, in bits per second as tc reads a bare number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8))]
    pub peakrate: Option<u64>,
    /// Size of the peakrate bucket in bytes (usually the MTU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    pub minburst: Option<i64>,
}
