//! Prometheus metrics (`/metrics` on `--metrics-listen` and on the RPC listener).
//!
//! - `faultline_daemon_faults_applied_total{kind}`
//! - `faultline_daemon_faults_recovered_total{kind, reason}` — reason `request`, `ttl`,
//!   `startup` (journaled by an earlier run), `recoverAll`
//! - `faultline_daemon_fault_recovery_failures_total{kind}` — each failed attempt (retried)
//! - `faultline_daemon_faults_active{kind}`
//! - `faultline_daemon_journal_unreadable_total` — entries set aside at start
//! - `faultline_daemon_rpc_calls_total{method, outcome}` and
//!   `faultline_daemon_rpc_duration_seconds{method}`

use std::time::Duration;

use faultline_api::rpc::daemon::FaultKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a fault was recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Request,
    Ttl,
    Startup,
    RecoverAll,
    /// The leftovers of an apply that failed and could not undo all it did.
    FailedApply,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Request => "request",
            Reason::Ttl => "ttl",
            Reason::Startup => "startup",
            Reason::RecoverAll => "recoverAll",
            Reason::FailedApply => "failedApply",
        }
    }
}

pub(crate) fn kind_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Network => "network",
        FaultKind::Stress => "stress",
        FaultKind::PodFailure => "podFailure",
        FaultKind::Io => "io",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveredLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// The daemon's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    applied: Family<KindLabels, Counter>,
    recovered: Family<RecoveredLabels, Counter>,
    recovery_failures: Family<KindLabels, Counter>,
    active: Family<KindLabels, Gauge>,
    unreadable: Counter,
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("faultline_daemon");
        let applied = Family::<KindLabels, Counter>::default();
        let recovered = Family::<RecoveredLabels, Counter>::default();
        let recovery_failures = Family::<KindLabels, Counter>::default();
        let active = Family::<KindLabels, Gauge>::default();
        let unreadable = Counter::default();
        let calls = Family::<CallLabels, Counter>::default();
        let durations = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("faults_applied", "Faults applied", applied.clone());
        registry.register(
            "faults_recovered",
            "Faults recovered, by why",
            recovered.clone(),
        );
        registry.register(
            "fault_recovery_failures",
            "Failed recovery attempts (retried)",
            recovery_failures.clone(),
        );
        registry.register("faults_active", "Faults applied now", active.clone());
        registry.register(
            "journal_unreadable",
            "Journal entries that could not be read at start (set aside as .corrupt)",
            unreadable.clone(),
        );
        registry.register("rpc_calls", "JSON-RPC calls by outcome", calls.clone());
        registry.register(
            "rpc_duration_seconds",
            "JSON-RPC call durations",
            durations.clone(),
        );
        Self {
            registry,
            applied,
            recovered,
            recovery_failures,
            active,
            unreadable,
            calls,
            durations,
        }
    }

    pub(crate) fn applied(&self, kind: FaultKind) {
        let kind = kind_name(kind);
        self.applied.get_or_create(&KindLabels { kind }).inc();
        self.active.get_or_create(&KindLabels { kind }).inc();
    }

    pub(crate) fn recovered(&self, kind: FaultKind, reason: Reason) {
        let kind = kind_name(kind);
        self.recovered
            .get_or_create(&RecoveredLabels {
                kind,
                reason: reason.as_str(),
            })
            .inc();
        self.active.get_or_create(&KindLabels { kind }).dec();
    }

    /// A fault journaled by an earlier run, active again until it is recovered.
    pub(crate) fn adopted(&self, kind: FaultKind) {
        self.active
            .get_or_create(&KindLabels {
                kind: kind_name(kind),
            })
            .inc();
    }

    pub(crate) fn recovery_failed(&self, kind: FaultKind) {
        self.recovery_failures
            .get_or_create(&KindLabels {
                kind: kind_name(kind),
            })
            .inc();
    }

    pub(crate) fn unreadable(&self, n: u64) {
        self.unreadable.inc_by(n);
    }

    pub(crate) fn call(&self, method: &str, ok: bool, took: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
        self.durations
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
