//! The policy rules of a new experiment (DESIGN.md §3), applied to every namespace it can touch.

use std::collections::BTreeSet;

use faultline_api::{AnyChaos, Reading, SelectorMode, TargetCount};

use super::{Denial, WebhookRule, denial};
use crate::policy::{CHAOS_LABEL, CHAOS_LABEL_VALUE, NamespaceLabels, Policy, action_allowed};

/// The namespaces each selector can reach, with the JSON path naming each one. A selector with
/// neither `namespaces` nor `pods` reaches the object's own namespace.
pub(super) fn target_namespaces(chaos: &AnyChaos, own: &str) -> Vec<(String, String)> {
    chaos
        .selectors()
        .into_iter()
        .flat_map(|(path, selector)| selector.namespace_fields(&path, own))
        .collect()
}

/// Policy rules for a new experiment; `Err` = the namespace labels are not known.
pub fn policy_denials(
    chaos: &AnyChaos,
    own_namespace: &str,
    policy: &Policy,
    namespaces: &dyn NamespaceLabels,
) -> Vec<Denial> {
    let mut out = Vec::new();
    if policy.halt {
        out.push(denial(
            "(policy)",
            WebhookRule::PolicyHalt,
            "policy halt is true (the kill switch): every new experiment is denied",
        ));
    }
    let targets = target_namespaces(chaos, own_namespace);
    let mut seen = BTreeSet::new();
    let mut unknown: Option<String> = None;
    for (path, ns) in &targets {
        if policy.is_protected(ns) {
            out.push(denial(
                path.clone(),
                WebhookRule::PolicyProtectedNamespace,
                format!("namespace {ns:?} is protected by policy and cannot be a chaos target"),
            ));
            continue;
        }
        if policy.require_namespace_opt_in && seen.insert(ns.clone()) {
            match namespaces.chaos_enabled(ns) {
                Ok(true) => {}
                Ok(false) => out.push(denial(
                    path.clone(),
                    WebhookRule::PolicyNamespaceNotOptedIn,
                    format!(
                        "namespace {ns:?} is not labelled {CHAOS_LABEL}={CHAOS_LABEL_VALUE} (policy requireNamespaceOptIn)"
                    ),
                )),
                Err(why) => {
                    unknown.get_or_insert(why);
                }
            }
        }
        if let Some(patterns) = policy.allowed_patterns(ns)
            && !action_allowed(patterns, chaos.kind(), chaos.action())
        {
            out.push(denial(
                path.clone(),
                WebhookRule::PolicyActionNotAllowed,
                format!(
                    "{} is not allowed in namespace {ns:?} (policy allowedActions: [{}])",
                    chaos.policy_action(),
                    patterns.join(", ")
                ),
            ));
        }
    }
    if let Some(why) = unknown {
        out.push(denial(
            "(policy)",
            WebhookRule::PolicyNamespaceLabelsUnknown,
            format!(
                "namespace labels are not known yet ({why}); chaos experiments are denied until the webhook can read Namespaces (policy requireNamespaceOptIn)"
            ),
        ));
    }
    if let Some(max) = policy.max_duration()
        && chaos.lasts()
    {
        match (chaos.duration_field(), chaos.duration()) {
            (None, _) => out.push(denial(
                "spec.duration",
                WebhookRule::PolicyMaxDuration,
                format!(
                    "is required: {} lasts until recovered and policy maxDuration is {}",
                    chaos.policy_action(),
                    faultline_api::duration::format_duration(max)
                ),
            )),
            // Present but unparsable: the spec rules report it.
            (Some(_), None) => {}
            (Some(raw), Some(d)) if d.is_zero() => out.push(denial(
                "spec.duration",
                WebhookRule::PolicyMaxDuration,
                format!("{raw:?} must be longer than zero (policy maxDuration)"),
            )),
            (Some(raw), Some(d)) if d > max => out.push(denial(
                "spec.duration",
                WebhookRule::PolicyMaxDuration,
                format!(
                    "{raw:?} is longer than policy maxDuration {}",
                    faultline_api::duration::format_duration(max)
                ),
            )),
            _ => {}
        }
    }
    for (path, selector) in chaos.selectors() {
        match selector.target_count() {
            Some(TargetCount::Pods(n)) => {
                if let Some(max) = policy.max_targets.pods
                    && n > max
                    && selector.mode != SelectorMode::One
                {
                    out.push(denial(
                        format!("{path}.value"),
                        WebhookRule::PolicyMaxTargets,
                        format!("{n} pods is more than policy maxTargets.pods {max}"),
                    ));
                }
            }
            Some(TargetCount::Percent(p)) => {
                if let Some(max) = policy.max_targets.percent
                    && p > max
                {
                    out.push(denial(
                        format!("{path}.value"),
                        WebhookRule::PolicyMaxTargets,
                        format!("{p}% is more than policy maxTargets.percent {max}%"),
                    ));
                }
            }
            Some(TargetCount::Unbounded) | None => {}
        }
    }
    out
}

/// Whether a policy denial computed on a leniently read object stands: not when it is about a
/// field that could not be read (a placeholder stood in for it), nor — for the rules keyed by
/// the action (`allowedActions`, `maxDuration`'s "lasts") — when the action could not be read.
/// Whole-object rules (`(policy)`: halt, unknown labels) always stand.
pub(super) fn stands(reading: &Reading, d: &Denial) -> bool {
    if d.path.starts_with('(') {
        return true;
    }
    let keyed_by_action = d.rule == WebhookRule::PolicyActionNotAllowed.name()
        || d.rule == WebhookRule::PolicyMaxDuration.name();
    reading.readable(&d.path) && (!keyed_by_action || reading.readable("spec.action"))
}
