//! `/validate` and `/default` for the chaos kinds of `chaos.faultline.dev`.
//!
//! Dispatch is on `request.kind` (group + kind), never on the resource plural. The spec rules
//! are `faultline_api`'s (the same the controller and the daemon apply); this module adds the
//! [`Policy`]: the kill switch, protected namespaces, namespace opt-in, `maxDuration`,
//! `maxTargets` and `allowedActions`, all applied to every namespace the experiment can touch
//! (`selector.namespaces`, the keys of `selector.pods`, NetworkChaos `target`). A denial lists
//! every violation, each with its JSON path — also when the object has the wrong shape: a new
//! object is read with [`faultline_api::read`], which reports every missing field, wrong type,
//! unknown value and unknown field together with the spec rules of the rest, and the policy is
//! applied to what could be read ([`policy_check`]). What Faultline admits but reads its own
//! way comes back as admission warnings ([`warnings`]).

mod policy_check;
mod warnings;

use std::collections::BTreeSet;

use faultline_api::validate::Violation;
use faultline_api::{AnyChaos, Reading};
use kube::core::admission::{AdmissionResponse, Operation};

use crate::Verdict;
use crate::policy::{NamespaceLabels, Policy};
use crate::review::{Review, kind_label};

pub use policy_check::policy_denials;

/// One reason to deny: where, why, and the rule id for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// JSON path (`spec.duration`), or `(policy)` for whole-object rules.
    pub path: String,
    /// Stable kebab-case rule id (`policy-max-duration`, or the api crate's rule name).
    pub rule: &'static str,
    /// The sentence shown to the user.
    pub message: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl From<Violation> for Denial {
    fn from(v: Violation) -> Self {
        Denial {
            rule: v.rule.name(),
            message: v.rule.to_string(),
            path: v.path,
        }
    }
}

/// The rules the webhook itself applies (the spec rules are `faultline_api::validate::Rule`).
/// Their kebab-case names are the `rule` label of `faultline_webhook_denials_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRule {
    /// `request.object` (or `oldObject`) is absent.
    MissingObject,
    /// The object does not deserialize as its kind.
    Malformed,
    /// A kind this webhook does not know.
    UnknownKind,
    /// A known kind sent to the wrong endpoint.
    UnsupportedKind,
    /// An UPDATE that changes `spec`.
    SpecImmutable,
    /// Policy `halt`.
    PolicyHalt,
    /// A target namespace the policy protects.
    PolicyProtectedNamespace,
    /// A target namespace without `faultline.dev/chaos=enabled`.
    PolicyNamespaceNotOptedIn,
    /// Namespace labels are not known yet.
    PolicyNamespaceLabelsUnknown,
    /// An action the policy does not allow in a namespace.
    PolicyActionNotAllowed,
    /// No duration, or one longer than `maxDuration`.
    PolicyMaxDuration,
    /// More targets than `maxTargets`.
    PolicyMaxTargets,
    /// The webhook failed to build its answer (a bug, reported rather than hidden).
    Internal,
}

impl WebhookRule {
    /// Every rule, for docs and tests.
    pub const ALL: [WebhookRule; 13] = [
        WebhookRule::MissingObject,
        WebhookRule::Malformed,
        WebhookRule::UnknownKind,
        WebhookRule::UnsupportedKind,
        WebhookRule::SpecImmutable,
        WebhookRule::PolicyHalt,
        WebhookRule::PolicyProtectedNamespace,
        WebhookRule::PolicyNamespaceNotOptedIn,
        WebhookRule::PolicyNamespaceLabelsUnknown,
        WebhookRule::PolicyActionNotAllowed,
        WebhookRule::PolicyMaxDuration,
        WebhookRule::PolicyMaxTargets,
        WebhookRule::Internal,
    ];

    /// The stable kebab-case id.
    pub fn name(self) -> &'static str {
        match self {
            WebhookRule::MissingObject => "missing-object",
            WebhookRule::Malformed => "malformed",
            WebhookRule::UnknownKind => "unknown-kind",
            WebhookRule::UnsupportedKind => "unsupported-kind",
            WebhookRule::SpecImmutable => "spec-immutable",
            WebhookRule::PolicyHalt => "policy-halt",
            WebhookRule::PolicyProtectedNamespace => "policy-protected-namespace",
            WebhookRule::PolicyNamespaceNotOptedIn => "policy-namespace-not-opted-in",
            WebhookRule::PolicyNamespaceLabelsUnknown => "policy-namespace-labels-unknown",
            WebhookRule::PolicyActionNotAllowed => "policy-action-not-allowed",
            WebhookRule::PolicyMaxDuration => "policy-max-duration",
            WebhookRule::PolicyMaxTargets => "policy-max-targets",
            WebhookRule::Internal => "internal",
        }
    }
}

fn denial(path: impl Into<String>, rule: WebhookRule, message: impl Into<String>) -> Denial {
    Denial {
        path: path.into(),
        rule: rule.name(),
        message: message.into(),
    }
}

fn is_chaos(review: &Review) -> bool {
    review.request.kind.group == faultline_api::GROUP
}

fn object_name(review: &Review, chaos: &AnyChaos) -> String {
    let meta = chaos.metadata();
    let ns = review
        .request
        .namespace
        .as_deref()
        .or(meta.namespace.as_deref())
        .unwrap_or("default");
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) if !name.is_empty() => format!("{ns}/{name}"),
        (_, Some(prefix)) => format!("{ns}/{prefix}*"),
        _ => format!("{ns}/{}", review.request.name),
    }
}

/// The namespace the experiment lives in: the request's (always set by kube-apiserver for
/// namespaced kinds), else the object's, else `default`.
fn own_namespace(review: &Review, chaos: &AnyChaos) -> String {
    review
        .request
        .namespace
        .clone()
        .or_else(|| chaos.metadata().namespace.clone())
        .unwrap_or_else(|| "default".to_owned())
}

/// The denial for a non-chaos object sent to a chaos endpoint.
fn unsupported_kind(endpoint: &str, kind: &str) -> Denial {
    denial(
        "request.kind",
        WebhookRule::UnsupportedKind,
        format!(
            "{endpoint} admits only {} kinds, got {kind}",
            faultline_api::GROUP
        ),
    )
}

fn deny_one(response: AdmissionResponse, kind: String, d: Denial) -> Verdict {
    Verdict::denied(response.deny(d.to_string()), kind, vec![d.rule])
}

/// The object of the request as JSON.
fn object_json(
    object: Option<&serde_json::value::RawValue>,
    field: &str,
) -> Result<serde_json::Value, Denial> {
    let Some(object) = object else {
        return Err(denial(
            format!("request.{field}"),
            WebhookRule::MissingObject,
            "is missing",
        ));
    };
    serde_json::from_str(object.get()).map_err(|e| {
        denial(
            format!("request.{field}"),
            WebhookRule::Malformed,
            e.to_string(),
        )
    })
}

/// Reads a new object leniently as the chaos kind it claims to be: every violation, and the
/// object as far as it could be read.
fn read(review: &Review) -> Result<(Reading, AnyChaos), Denial> {
    let value = object_json(review.object.as_deref(), "object")?;
    let reading = faultline_api::read(&review.request.kind.kind, &value)
        .map_err(|e| denial("request.kind", WebhookRule::UnknownKind, e.to_string()))?;
    match reading.chaos.clone() {
        Some(chaos) => Ok((reading, chaos)),
        // Not even the metadata could be read: the violations say why.
        None => Err(reading.violations.first().cloned().map_or_else(
            || denial("request.object", WebhookRule::Malformed, "cannot be read"),
            |v| Denial {
                rule: WebhookRule::Malformed.name(),
                ..Denial::from(v)
            },
        )),
    }
}

/// Parses the object of the request as the chaos kind it claims to be.
fn parse(
    review: &Review,
    object: Option<&serde_json::value::RawValue>,
    field: &str,
) -> Result<AnyChaos, Denial> {
    let Some(object) = object else {
        return Err(denial(
            format!("request.{field}"),
            WebhookRule::MissingObject,
            "is missing",
        ));
    };
    let value: serde_json::Value = serde_json::from_str(object.get()).map_err(|e| {
        denial(
            format!("request.{field}"),
            WebhookRule::Malformed,
            e.to_string(),
        )
    })?;
    AnyChaos::from_value(&review.request.kind.kind, value).map_err(|e| match e {
        faultline_api::ParseError::UnknownKind(_) => {
            denial("request.kind", WebhookRule::UnknownKind, e.to_string())
        }
        faultline_api::ParseError::Invalid { path, message } => {
            denial(path, WebhookRule::Malformed, message)
        }
    })
}

/// `/validate`: spec rules + policy on CREATE, spec immutability on UPDATE.
pub fn validate(review: &Review, policy: &Policy, namespaces: &dyn NamespaceLabels) -> Verdict {
    let req = &review.request;
    let kind = kind_label(review);
    let response = AdmissionResponse::from(req);
    if !is_chaos(review) {
        return deny_one(response, kind.clone(), unsupported_kind("/validate", &kind));
    }
    match req.operation {
        Operation::Create => {}
        Operation::Update => return validate_update(review, response, kind),
        Operation::Delete | Operation::Connect => return Verdict::allowed(response, kind),
    }
    let (reading, chaos) = match read(review) {
        Ok(read) => read,
        Err(d) => return deny_one(response, kind, d),
    };
    let own = own_namespace(review, &chaos);
    let mut denials: Vec<Denial> = reading
        .violations
        .iter()
        .cloned()
        .map(Denial::from)
        .collect();
    denials.extend(
        policy_denials(&chaos, &own, policy, namespaces)
            .into_iter()
            .filter(|d| policy_check::stands(&reading, d)),
    );
    let name = object_name(review, &chaos);
    let mut response = response;
    response
        .audit_annotations
        .insert("experiment".to_owned(), format!("{} {name}", chaos.kind()));
    response.audit_annotations.insert(
        "author".to_owned(),
        req.user_info.username.clone().unwrap_or_default(),
    );
    let targets: BTreeSet<String> = policy_check::target_namespaces(&chaos, &own)
        .into_iter()
        .map(|(_, ns)| ns)
        .collect();
    response.audit_annotations.insert(
        "targets".to_owned(),
        targets.into_iter().collect::<Vec<_>>().join(","),
    );
    response
        .audit_annotations
        .insert("action".to_owned(), chaos.policy_action());
    if denials.is_empty() {
        let w = warnings::warnings(&chaos, &reading.warnings);
        if !w.is_empty() {
            response.warnings = Some(w);
        }
        return Verdict::allowed(response, kind);
    }
    let message = format!(
        "{} {name} denied: {}",
        chaos.kind(),
        denials
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let rules = denials.iter().map(|d| d.rule).collect();
    Verdict::denied(response.deny(message), kind, rules)
}

fn validate_update(review: &Review, response: AdmissionResponse, kind: String) -> Verdict {
    // The same `spec` as sent: allowed without parsing, so an object this version cannot
    // read (made under an older schema) can still be paused, annotated and have its
    // finalizer removed.
    let raw_spec = |raw: Option<&serde_json::value::RawValue>| {
        raw.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
            .and_then(|mut v| v.get_mut("spec").map(serde_json::Value::take))
    };
    let (new_spec, old_spec) = (
        raw_spec(review.object.as_deref()),
        raw_spec(review.old_object.as_deref()),
    );
    if review.object.is_some() && review.old_object.is_some() && new_spec == old_spec {
        return Verdict::allowed(response, kind);
    }
    let chaos = match parse(review, review.object.as_deref(), "object") {
        Ok(c) => c,
        Err(d) => return deny_one(response, kind, d),
    };
    let old = match parse(review, review.old_object.as_deref(), "oldObject") {
        Ok(c) => c,
        Err(d) => return deny_one(response, kind, d),
    };
    // Compare the typed specs: formatting differences of the same values are not changes.
    let spec = |c: &AnyChaos| c.to_value().get("spec").cloned();
    if spec(&chaos) != spec(&old) {
        let d = denial(
            "spec",
            WebhookRule::SpecImmutable,
            format!(
                "cannot be changed once {} {} exists; delete it and create a new experiment (pause, annotations and status may change)",
                chaos.kind(),
                object_name(review, &chaos)
            ),
        );
        return deny_one(response, kind, d);
    }
    Verdict::allowed(response, kind)
}

/// `/default`: fills defaults on CREATE, as a JSON Patch.
pub fn default(review: &Review) -> Verdict {
    let req = &review.request;
    let kind = kind_label(review);
    let response = AdmissionResponse::from(req);
    if !is_chaos(review) {
        return deny_one(response, kind.clone(), unsupported_kind("/default", &kind));
    }
    if req.operation != Operation::Create {
        return Verdict::allowed(response, kind);
    }
    let (reading, chaos) = match read(review) {
        Ok(read) => read,
        Err(d) => return deny_one(response, kind, d),
    };
    // An object that does not read cleanly gets no defaults: `/validate` denies it with every
    // violation, and a patch built from placeholders would only add to the confusion.
    if !reading.unreadable().is_empty() {
        return Verdict::allowed(response, kind);
    }
    let own = own_namespace(review, &chaos);
    let mut defaulted = chaos.clone();
    defaulted.apply_defaults(&own);
    let before = chaos.to_value();
    let after = defaulted.to_value();
    let mut patch = crate::patch::diff(&before, &after);
    if patch.0.is_empty() {
        return Verdict::allowed(response, kind);
    }
    // The typed round trip may serialize differently from what was sent (an omitted empty
    // object, say): make sure the patch applies to the object as received, else diff that.
    if let Some(raw) = review.object_value() {
        let mut probe = raw.clone();
        if json_patch::patch(&mut probe, &patch).is_err() {
            let mut target = raw.clone();
            if let (Some(t), Some(spec)) = (target.as_object_mut(), after.get("spec")) {
                t.insert("spec".to_owned(), spec.clone());
            }
            patch = crate::patch::diff(&raw, &target);
        }
    }
    match response.with_patch(patch) {
        Ok(r) => Verdict::patched(r, kind),
        Err(e) => deny_one(
            AdmissionResponse::from(req),
            kind,
            denial(
                "(internal)",
                WebhookRule::Internal,
                format!("serializing the patch: {e}"),
            ),
        ),
    }
}
