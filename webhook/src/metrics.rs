//! Prometheus metrics (served in text format on `--metrics-listen` at `/metrics`).
//!
//! | metric | labels |
//! | --- | --- |
//! | `faultline_webhook_requests_total` | `endpoint`, `kind`, `result` (allowed, patched, denied, bad_request) |
//! | `faultline_webhook_request_duration_seconds` | `endpoint` (histogram, 50 µs .. 0.8 s) |
//! | `faultline_webhook_injections_total` | `mode` (volumes injected; dry runs not counted) |
//! | `faultline_webhook_denials_total` | `rule` (one per violation) |
//! | `faultline_webhook_reloads_total` | `file` (tls, policy, injection), `result` (ok, error) |

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Verdict;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    kind: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    file: &'static str,
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

/// The webhook's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    injections: Family<ModeLabels, Counter>,
    denials: Family<RuleLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("faultline_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let injections = Family::<ModeLabels, Counter>::default();
        let denials = Family::<RuleLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests by endpoint, object kind and result",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to decode, decide and encode one admission request",
            latency.clone(),
        );
        registry.register(
            "injections",
            "Volumes put behind the fault filesystem, by sidecar mode",
            injections.clone(),
        );
        registry.register(
            "denials",
            "Denial reasons, one per violation, by rule",
            denials.clone(),
        );
        registry.register(
            "reloads",
            "Reloads of watched files (tls, policy, injection) by result",
            reloads.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            injections,
            denials,
            reloads,
        }
    }

    /// Records an answered admission request.
    pub fn observe(&self, endpoint: &'static str, verdict: &Verdict, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                kind: verdict.kind.clone(),
                result: verdict.outcome.as_str(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
        for rule in &verdict.denied_rules {
            self.denials.get_or_create(&RuleLabels { rule }).inc();
        }
        if verdict.injected_volumes > 0 {
            let mode = verdict.mode.map_or("unknown", |m| m.as_str());
            self.injections
                .get_or_create(&ModeLabels { mode })
                .inc_by(verdict.injected_volumes as u64);
        }
    }

    /// Records a body that was not an AdmissionReview (HTTP 4xx).
    pub fn bad_request(&self, endpoint: &'static str, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                kind: String::new(),
                result: "bad_request",
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a reload attempt of a watched file.
    pub fn reload(&self, file: &'static str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                file,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
