//! Prometheus metrics and the per-op counters `status()` reports.
//!
//! One registry per process ([`Metrics`]); every per-operation family is labelled with the mount
//! (`mount="data"`), and each mount records through its own [`MountMetrics`]: the hot path
//! touches only pre-resolved handles — one counter and one histogram per op, looked up once when
//! the mount is set up — so recording an op is two atomic adds and a histogram observe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::inject::{Op, Plan};

/// How an operation ended. An errno a fault rule injected is counted apart from the errors the
/// source filesystem returns (ENOENT for a lookup of an absent name, ENODATA for a missing
/// xattr): those are normal traffic, and mixing them in would make a fault's effect unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failed,
    Injected,
}

impl Outcome {
    pub(crate) fn of<T, E>(result: &Result<T, E>, plan: &Plan) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            // A plan with an errno fails the op before it reaches the source.
            Err(_) if plan.errno.is_some() => Outcome::Injected,
            Err(_) => Outcome::Failed,
        }
    }
}

/// One op's counters as `status` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpCounts {
    pub op: &'static str,
    pub count: u64,
    /// Errors the source returned.
    pub errors: u64,
    /// Ops failed by an injected errno.
    pub injected: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    mount: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    mount: String,
    rule: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MountLabels {
    mount: String,
}

fn op_histogram() -> Histogram {
    // 10 µs .. ~10 s
    Histogram::new(exponential_buckets(0.000_01, 4.0, 11))
}

/// The process's registry and metric families.
pub(crate) struct Metrics {
    registry: Registry,
    ops: Family<OpLabels, Counter>,
    errors: Family<OpLabels, Counter>,
    injected: Family<OpLabels, Counter>,
    latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    faults: Family<FaultLabels, Counter>,
    rules: Family<MountLabels, Gauge>,
    generation: Gauge,
    passthrough: Family<MountLabels, Gauge>,
    bypassed: Family<MountLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("faultline_sidecar");
        let ops = Family::<OpLabels, Counter>::default();
        let errors = Family::<OpLabels, Counter>::default();
        let injected = Family::<OpLabels, Counter>::default();
        let latency =
            Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(op_histogram);
        let faults = Family::<FaultLabels, Counter>::default();
        let rules = Family::<MountLabels, Gauge>::default();
        let generation = Gauge::default();
        let passthrough = Family::<MountLabels, Gauge>::default();
        let bypassed = Family::<MountLabels, Gauge>::default();
        registry.register("ops", "FUSE operations served", ops.clone());
        registry.register(
            "op_errors",
            "FUSE operations the source filesystem answered with an error (injected faults not included)",
            errors.clone(),
        );
        registry.register(
            "op_injected_errors",
            "FUSE operations failed by an injected fault",
            injected.clone(),
        );
        registry.register(
            "op_duration_seconds",
            "Time to serve a FUSE operation, injected delays included",
            latency.clone(),
        );
        registry.register(
            "faults_injected",
            "Rule hits by mount, rule id and type",
            faults.clone(),
        );
        registry.register("rules", "Rules loaded, by mount", rules.clone());
        registry.register(
            "rules_generation",
            "Rule generation (every change on any mount raises it)",
            generation.clone(),
        );
        registry.register(
            "passthrough_handles",
            "Open handles served by kernel FUSE passthrough (--io-mode fast): their reads and writes never reach the daemon",
            passthrough.clone(),
        );
        registry.register(
            "bypassed_handles",
            "Passthrough handles of files a loaded rule touches (reads/writes): the rule cannot apply to them until they are closed",
            bypassed.clone(),
        );
        Self {
            registry,
            ops,
            errors,
            injected,
            latency,
            faults,
            rules,
            generation,
            passthrough,
            bypassed,
        }
    }

    /// The handles of one mount, resolved once.
    pub(crate) fn mount(&self, mount: &str) -> MountMetrics {
        let labels = |op: Op| OpLabels {
            mount: mount.to_owned(),
            op: op.name(),
        };
        let each = |family: &Family<OpLabels, Counter>| -> Vec<Counter> {
            Op::ALL
                .iter()
                .map(|op| family.get_or_create_owned(&labels(*op)))
                .collect()
        };
        MountMetrics {
            mount: mount.to_owned(),
            ops: each(&self.ops),
            errors: each(&self.errors),
            injected: each(&self.injected),
            latency: Op::ALL
                .iter()
                .map(|op| self.latency.get_or_create_owned(&labels(*op)))
                .collect(),
            faults: self.faults.clone(),
            rules: self.rules.get_or_create_owned(&MountLabels {
                mount: mount.to_owned(),
            }),
            generation: self.generation.clone(),
            passthrough: self.passthrough.get_or_create_owned(&MountLabels {
                mount: mount.to_owned(),
            }),
            bypassed: self.bypassed.get_or_create_owned(&MountLabels {
                mount: mount.to_owned(),
            }),
            counts: Op::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            error_counts: Op::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            injected_counts: Op::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One mount's metric handles and the counters its `status` shows.
pub(crate) struct MountMetrics {
    mount: String,
    ops: Vec<Counter>,
    errors: Vec<Counter>,
    injected: Vec<Counter>,
    latency: Vec<Histogram>,
    faults: Family<FaultLabels, Counter>,
    /// Rules loaded on this mount.
    pub rules: Gauge,
    /// The sidecar-wide generation.
    pub generation: Gauge,
    /// Handles open in kernel passthrough.
    pub passthrough: Gauge,
    /// Passthrough handles a loaded rule touches (the rule cannot reach them).
    pub bypassed: Gauge,
    counts: Vec<AtomicU64>,
    error_counts: Vec<AtomicU64>,
    injected_counts: Vec<AtomicU64>,
}

impl std::fmt::Debug for MountMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountMetrics")
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl MountMetrics {
    pub(crate) fn record(&self, op: Op, elapsed: Duration, outcome: Outcome) {
        let i = op.index();
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.ops[i].inc();
        self.latency[i].observe(elapsed.as_secs_f64());
        match outcome {
            Outcome::Ok => {}
            Outcome::Failed => {
                self.error_counts[i].fetch_add(1, Ordering::Relaxed);
                self.errors[i].inc();
            }
            Outcome::Injected => {
                self.injected_counts[i].fetch_add(1, Ordering::Relaxed);
                self.injected[i].inc();
            }
        }
    }

    /// Records an op that started at `start` and ended with `result` under `plan`.
    pub(crate) fn finish<T, E>(&self, op: Op, start: Instant, result: &Result<T, E>, plan: &Plan) {
        self.record(op, start.elapsed(), Outcome::of(result, plan));
    }

    /// The `faults_injected_total` counter of one rule, resolved when the rule is compiled:
    /// the handle shares the family's counter, so a hit costs one atomic add.
    pub(crate) fn fault_counter(&self, rule: &str, kind: &'static str) -> Counter {
        self.faults
            .get_or_create(&FaultLabels {
                mount: self.mount.clone(),
                rule: rule.to_string(),
                kind,
            })
            .clone()
    }

    /// Counters of every op seen at least once.
    pub(crate) fn op_counts(&self) -> Vec<OpCounts> {
        Op::ALL
            .iter()
            .map(|op| {
                let i = op.index();
                OpCounts {
                    op: op.name(),
                    count: self.counts[i].load(Ordering::Relaxed),
                    errors: self.error_counts[i].load(Ordering::Relaxed),
                    injected: self.injected_counts[i].load(Ordering::Relaxed),
                }
            })
            .filter(|c| c.count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_encodes() {
        let metrics = Metrics::new();
        let m = metrics.mount("data");
        let other = metrics.mount("logs");
        other.record(Op::Read, Duration::from_micros(50), Outcome::Ok);
        m.record(Op::Read, Duration::from_micros(50), Outcome::Ok);
        m.record(Op::Read, Duration::from_micros(50), Outcome::Failed);
        m.record(Op::Read, Duration::from_micros(50), Outcome::Injected);
        m.fault_counter("r1", "fault").inc();
        assert_eq!(
            m.op_counts(),
            vec![OpCounts {
                op: "read",
                count: 3,
                errors: 1,
                injected: 1
            }]
        );
        assert_eq!(
            other.op_counts()[0].count,
            1,
            "each mount counts its own ops"
        );
        let text = metrics.encode();
        assert!(
            text.contains("faultline_sidecar_ops_total{mount=\"data\",op=\"read\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("faultline_sidecar_faults_injected_total{mount=\"data\",rule=\"r1\",kind=\"fault\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "faultline_sidecar_op_duration_seconds_count{mount=\"data\",op=\"read\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("faultline_sidecar_op_errors_total{mount=\"data\",op=\"read\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "faultline_sidecar_op_injected_errors_total{mount=\"data\",op=\"read\"} 1"
            ),
            "{text}"
        );
    }
}
