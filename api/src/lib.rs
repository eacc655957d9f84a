//! # faultline-api
//!
//! The chaos custom resources of `chaos.faultline.dev/v1alpha1` — [`PodChaos`], [`NetworkChaos`],
//! [`StressChaos`], [`IOChaos`] — with the field names and JSON shape of Chaos Mesh v1alpha1, so an
//! existing experiment deserializes after changing `apiVersion`.
//!
//! Everything here is pure: no I/O, no clocks, no randomness.
//!
//! - **Validation** ([`Experiment::validate`]) returns *every* [`validate::Violation`], each with its
//!   JSON path and a typed [`validate::Rule`]. The webhook, the controller and the daemon call the
//!   same functions, so what is admitted is executable. `docs/validation.md` lists every rule.
//!   [`Experiment::warnings`] says what is admitted but read Faultline's way.
//! - **Reading** ([`read()`]) takes untyped JSON (an AdmissionReview's object) and reports every
//!   missing field, wrong type, unknown value and unknown field against the CRD schema, together
//!   with the validation of the rest — serde would stop at the first.
//! - **Peers** ([`peer::Peer`]): `externalTargets` entries (IP, CIDR or name, optional port),
//!   parsed once and carried to the daemon in canonical text.
//! - **Defaulting** ([`Experiment::apply_defaults`]) fills what DESIGN.md §3 `/default` names and
//!   never overrides a value the user wrote.
//! - **Conversions** turn specs into what the node agents execute, in exact integer units:
//!   [`convert::network`] (netem/tbf parameters), [`convert::stress`] (stress-ng arguments) and
//!   [`convert::io`] (sidecar [`iorule::IoRule`]s).
//! - **CRDs**: [`crds()`] returns the CustomResourceDefinitions; `cargo xtask crds` writes them to
//!   `manifests/crds/` and a test fails when those files are stale. Required fields, bounds and
//!   patterns come from the types' schemars attributes ([`schema`]).
//!
//! Without the default `crd` feature only [`duration`], [`iorule`], [`peer`] and [`validate`]
//! remain: what the sidecar needs, without kube.

pub mod duration;
pub mod iomode;
pub mod iorule;
pub mod peer;
pub mod report;
pub mod rpc;
pub mod validate;

#[cfg(feature = "crd")]
pub mod convert;
#[cfg(feature = "crd")]
pub mod experiment;
#[cfg(feature = "crd")]
pub mod io_chaos;
#[cfg(feature = "crd")]
pub mod network_chaos;
#[cfg(feature = "crd")]
pub mod pod_chaos;
#[cfg(feature = "crd")]
pub mod quantity;
#[cfg(feature = "crd")]
pub mod read;
#[cfg(feature = "crd")]
pub mod schema;
#[cfg(feature = "crd")]
pub mod selector;
#[cfg(feature = "crd")]
pub mod status;
#[cfg(feature = "crd")]
pub mod stress_chaos;

#[cfg(feature = "crd")]
pub use experiment::{AnyChaos, Experiment, KINDS, ParseError, parse};
#[cfg(feature = "crd")]
pub use io_chaos::{IOChaos, IOChaosSpec};
#[cfg(feature = "crd")]
pub use network_chaos::{NetworkChaos, NetworkChaosSpec};
#[cfg(feature = "crd")]
pub use pod_chaos::{PodChaos, PodChaosSpec};
#[cfg(feature = "crd")]
pub use read::{Reading, read};
#[cfg(feature = "crd")]
pub use selector::{PodSelector, PodSelectorSpec, SelectorMode, TargetCount};
#[cfg(feature = "crd")]
pub use status::ChaosStatus;
#[cfg(feature = "crd")]
pub use stress_chaos::{StressChaos, StressChaosSpec};

/// API group of every Faultline chaos kind.
pub const GROUP: &str = "chaos.faultline.dev";
/// API version of every Faultline chaos kind.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinitions of the four kinds, in `manifests/crds/` order.
#[cfg(feature = "crd")]
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        PodChaos::crd(),
        NetworkChaos::crd(),
        StressChaos::crd(),
        IOChaos::crd(),
    ]
}

/// The YAML written to `manifests/crds/<plural>.yaml` for `crd`, with a header saying where it
/// comes from.
#[cfg(feature = "crd")]
pub fn crd_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated from the Rust types in api/ by `cargo xtask crds`. Do not edit.\n{}",
        serde_yaml::to_string(crd)?
    ))
}
