//! # faultline-webhook
//!
//! The admission webhook of Faultline (DESIGN.md §3, §7): one HTTPS server answering
//! `admission.k8s.io/v1` AdmissionReviews.
//!
//! | endpoint | admits | does |
//! | --- | --- | --- |
//! | `POST /validate` | chaos objects, CREATE and UPDATE | spec rules of `faultline-api` + the [`policy`]; UPDATE may not change `spec` |
//! | `POST /default` | chaos objects, CREATE | `apply_defaults` as a JSON Patch |
//! | `POST /inject` | Pods, CREATE | the FUSE sidecar of DESIGN.md §7 as a JSON Patch ([`inject`]) |
//! | `GET /healthz`, `GET /readyz` | | liveness / readiness |
//!
//! Prometheus metrics are served in plain HTTP on `--metrics-listen` (`metrics.rs`).
//!
//! ## Layout
//! The axum server ([`server`]) is a thin shell: it decodes the body ([`review::decode`]; a body
//! that is not an AdmissionReview gets HTTP 400 with a JSON error), calls a pure handler and
//! encodes its [`Verdict`]. The handlers are pure functions, unit-tested without HTTP:
//! * [`admission::validate`]`(&Review, &Policy, &dyn NamespaceLabels) -> Verdict`
//! * [`admission::default`]`(&Review) -> Verdict`
//! * [`inject::handle`]`(&Review, &Template, &dyn NamespaceLabels) -> Verdict` (opt-in checked by
//!   `opt_in::refusal`)
//!
//! Patches are built by diffing the typed object before and after the change (`patch::diff`,
//! aligned on `name` in lists so an insertion is one `add`, never a rewrite of its neighbours).
//!
//! ## Files and reloads
//! `--tls-cert`/`--tls-key`, `--policy` and `--injection` are polled for changes (mtime, size,
//! inode: this also sees a Kubernetes Secret/ConfigMap volume's symlink swap) and reloaded in
//! place; a file that fails to load keeps the previous version in force and is logged. New TLS
//! handshakes get the new certificate, open connections keep theirs.
//!
//! ## Namespace labels
//! With `requireNamespaceOptIn: true` the webhook keeps a cached watch of Namespaces (kube
//! reflector, in-cluster config). Until that cache is synced — or when the API cannot be reached
//! — chaos CREATEs are denied with a message saying so, pods are admitted without a sidecar
//! (with a warning), and `/readyz` answers 503 saying why.
//!
//! See `docs/webhook.md` for flags, the policy file, the injection shape and design choices.

pub mod admission;
pub mod inject;
pub(crate) mod metrics;
pub(crate) mod namespace_cache;
pub(crate) mod opt_in;
pub(crate) mod patch;
pub mod policy;
pub mod review;
pub mod server;

use kube::core::admission::AdmissionResponse;

/// Field path and message of a YAML error, without serde_yaml's own copy of the path.
pub(crate) fn yaml_error(e: &serde_path_to_error::Error<serde_yaml::Error>) -> (String, String) {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    let message = inner
        .strip_prefix(&format!("{path}: "))
        .map_or_else(|| inner.clone(), str::to_owned);
    (path, message)
}

/// What a handler decided: the response plus what the metrics need.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The AdmissionResponse (uid echoed).
    pub response: AdmissionResponse,
    /// `group/Kind` of the admitted object (metrics label).
    pub kind: String,
    /// allowed / patched / denied.
    pub outcome: Outcome,
    /// Stable ids of the rules behind a denial (one per violation).
    pub denied_rules: Vec<&'static str>,
    /// Volumes injected (not counted for dry runs).
    pub injected_volumes: usize,
    /// Injection mode, when something was injected.
    pub mode: Option<inject::Mode>,
}

/// The three results of admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed unchanged.
    Allowed,
    /// Allowed with a JSON Patch.
    Patched,
    /// Denied.
    Denied,
}

impl Outcome {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
        }
    }
}

impl Verdict {
    fn new(response: AdmissionResponse, kind: String, outcome: Outcome) -> Self {
        Verdict {
            response,
            kind,
            outcome,
            denied_rules: Vec::new(),
            injected_volumes: 0,
            mode: None,
        }
    }

    /// Allowed unchanged.
    pub fn allowed(response: AdmissionResponse, kind: String) -> Self {
        Self::new(response, kind, Outcome::Allowed)
    }

    /// Allowed with the patch already in `response`.
    pub fn patched(response: AdmissionResponse, kind: String) -> Self {
        Self::new(response, kind, Outcome::Patched)
    }

    /// Denied (the reason is already in `response`).
    pub fn denied(response: AdmissionResponse, kind: String, rules: Vec<&'static str>) -> Self {
        let mut v = Self::new(response, kind, Outcome::Denied);
        v.denied_rules = rules;
        v
    }
}
