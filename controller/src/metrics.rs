//! Prometheus metrics on `--metrics-listen` (`/metrics`):
//! `faultline_controller_experiments{kind, phase}`, `faultline_controller_targets_total{kind,
//! outcome}` (injected, recovered, failed), `faultline_controller_daemon_call_duration_seconds
//! {method, outcome}`, `faultline_controller_reconciles_total{kind, result}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: &'static str,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    experiments: Family<PhaseLabels, Gauge>,
    targets: Family<OutcomeLabels, Counter>,
    reconciles: Family<OutcomeLabels, Counter>,
    calls: Family<CallLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("faultline_controller");
        let experiments = Family::<PhaseLabels, Gauge>::default();
        let targets = Family::<OutcomeLabels, Counter>::default();
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let calls = Family::<CallLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "experiments",
            "Experiments by kind and phase",
            experiments.clone(),
        );
        registry.register(
            "targets",
            "Targets injected, recovered or failed",
            targets.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "daemon_call_duration_seconds",
            "Calls to node daemons",
            calls.clone(),
        );
        Self {
            registry,
            experiments,
            targets,
            reconciles,
            calls,
        }
    }

    /// An experiment of `kind` moved from phase `from` to `to` (`None` = not counted yet / gone).
    pub fn phase(&self, kind: &'static str, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        if let Some(f) = from {
            self.experiments
                .get_or_create(&PhaseLabels {
                    kind,
                    phase: f.to_owned(),
                })
                .dec();
        }
        if let Some(t) = to {
            self.experiments
                .get_or_create(&PhaseLabels {
                    kind,
                    phase: t.to_owned(),
                })
                .inc();
        }
    }

    pub fn target(&self, kind: &'static str, outcome: &'static str) {
        self.targets
            .get_or_create(&OutcomeLabels { kind, outcome })
            .inc();
    }

    pub fn reconcile(&self, kind: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&OutcomeLabels { kind, outcome })
            .inc();
    }

    pub fn daemon_call(&self, method: &str, ok: bool, took: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                outcome: if ok { "ok" } else { "error" },
            })
            .observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
