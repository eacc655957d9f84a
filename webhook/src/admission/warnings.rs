//! Admission warnings for an allowed chaos object: what the API crate says Faultline reads its
//! own way (each with its field path), and what the webhook wants every author to know.
//! Each stays under 120 characters: the API server may cut longer warnings.

use faultline_api::{AnyChaos, SelectorMode};

/// The warnings of an admitted experiment: the spec's first (`spec.value: ignored: ...`), then
/// the general ones.
pub(super) fn warnings(chaos: &AnyChaos, spec: &[faultline_api::validate::Warning]) -> Vec<String> {
    let mut w: Vec<String> = spec.iter().map(ToString::to_string).collect();
    match chaos {
        AnyChaos::Network(_) => w.push(
            "network faults affect every container of the pod (they share one network namespace)"
                .to_owned(),
        ),
        AnyChaos::Io(_) => w.push(
            "IOChaos reaches only pods with the Faultline sidecar (label faultline.dev/inject=true, namespace opted in)"
                .to_owned(),
        ),
        _ => {}
    }
    if chaos
        .selectors()
        .iter()
        .any(|(_, s)| s.mode == SelectorMode::All)
    {
        w.push(
            "mode all: maxTargets is enforced by the controller when it selects the pods"
                .to_owned(),
        );
    }
    w
}
