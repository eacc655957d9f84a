//! Sidecar opt-in (DESIGN.md §7): a pod gets the privileged fault-filesystem sidecar only when
//! it carries `faultline.dev/inject: "true"` and its namespace `faultline.dev/injection:
//! enabled`. The webhook checks this itself, whatever selectors the webhook configuration was
//! written with: a configuration without them must not put a privileged container into every
//! pod of the cluster.
//!
//! The namespace label is checked whenever the namespace cache is watching (it is when the
//! policy requires namespace opt-in, which is the default). When it watches but cannot answer
//! (not synced, API unreachable), the pod is not injected: an unknown opt-in is no opt-in.
//! With `requireNamespaceOptIn: false` (DESIGN.md §7: then, without an API, it cannot) only the
//! pod label and the protected namespaces are checked; the webhook says so at start.

use k8s_openapi::api::core::v1::Pod;

use crate::policy::{
    INJECTION_LABEL, INJECTION_LABEL_VALUE, NamespaceLabels, POD_INJECT_LABEL,
    POD_INJECT_LABEL_VALUE, Policy,
};

/// Why a pod is left without a sidecar: the text is the admission warning the client sees.
/// A protected namespace (`kube-system`, …, and the policy's `protectedNamespaces`) never gets
/// the privileged sidecar, whatever its labels and whether or not labels are watched.
pub(crate) fn refusal(
    pod: &Pod,
    namespace: &str,
    namespaces: &dyn NamespaceLabels,
    policy: &Policy,
) -> Option<String> {
    if policy.is_protected(namespace) {
        return Some(format!(
            "faultline: no sidecar injected: namespace {namespace:?} is protected by policy"
        ));
    }
    let label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_INJECT_LABEL));
    if label.map(String::as_str) != Some(POD_INJECT_LABEL_VALUE) {
        let found = label.map_or_else(|| "it has none".to_owned(), |v| format!("it is {v:?}"));
        return Some(format!(
            "faultline: no sidecar injected: the pod is not labelled {POD_INJECT_LABEL}: \"{POD_INJECT_LABEL_VALUE}\" ({found})"
        ));
    }
    if !namespaces.watched() {
        return None;
    }
    match namespaces.injection_enabled(namespace) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "faultline: no sidecar injected: namespace {namespace:?} is not labelled {INJECTION_LABEL}={INJECTION_LABEL_VALUE}"
        )),
        Err(why) => Some(format!(
            "faultline: no sidecar injected: the labels of namespace {namespace:?} are not known yet ({why})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::Unknown;

    fn pod(label: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        if let Some(v) = label {
            pod.metadata.labels = Some(BTreeMap::from([(
                POD_INJECT_LABEL.to_owned(),
                v.to_owned(),
            )]));
        }
        pod
    }

    fn namespaces(value: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        BTreeMap::from([(
            "shop".to_owned(),
            BTreeMap::from([(INJECTION_LABEL.to_owned(), value.to_owned())]),
        )])
    }

    #[test]
    fn only_a_labelled_pod_in_a_labelled_namespace_is_injected() {
        let enabled = namespaces("enabled");
        assert_eq!(
            refusal(&pod(Some("true")), "shop", &enabled, &Policy::default()),
            None
        );
        for label in [None, Some("false"), Some("True"), Some("yes"), Some("")] {
            let why = refusal(&pod(label), "shop", &enabled, &Policy::default()).expect("refused");
            assert!(why.contains("not labelled faultline.dev/inject"), "{why}");
        }
        let why = refusal(
            &pod(Some("true")),
            "shop",
            &namespaces("disabled"),
            &Policy::default(),
        )
        .expect("refused");
        assert!(why.contains("namespace \"shop\" is not labelled"), "{why}");
        let why =
            refusal(&pod(Some("true")), "other", &enabled, &Policy::default()).expect("refused");
        assert!(why.contains("namespace \"other\""), "{why}");
    }

    /// Not even an opted-in pod in a labelled namespace gets the sidecar in a protected one.
    #[test]
    fn protected_namespaces_are_never_injected() {
        let mut policy = Policy::default();
        policy.protected_namespaces = vec!["payments".into()];
        for ns in ["kube-system", "faultline-system", "payments"] {
            let labelled = BTreeMap::from([(
                ns.to_owned(),
                BTreeMap::from([(INJECTION_LABEL.to_owned(), "enabled".to_owned())]),
            )]);
            let why = refusal(&pod(Some("true")), ns, &labelled, &policy).expect("refused");
            assert!(why.contains("is protected by policy"), "{why}");
        }
    }

    #[test]
    fn unknown_namespace_labels_mean_no_injection() {
        let why = refusal(
            &pod(Some("true")),
            "shop",
            &Unknown("the API cannot be read".into()),
            &Policy::default(),
        )
        .expect("refused");
        assert!(
            why.contains("not known yet (the API cannot be read)"),
            "{why}"
        );
    }
}
