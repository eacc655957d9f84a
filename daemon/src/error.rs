//! Every way a call can fail, and how each reads as a JSON-RPC error: the message names the
//! target and the reason; `data` has them as fields (`{"reason", "target"?, "faultId"?}`).
//!
//! | code | meaning |
//! | --- | --- |
//! | -32602 | invalid params (`data.violations`: every bad field with its path) |
//! | -32001 | the target does not exist (no such process, container or pod) |
//! | -32002 | the container runtime or the Kubernetes API is unreachable; the daemon is shutting down |
//! | -32003 | the fault could not be applied or recovered (nothing is left half-applied) |
//! | -32004 | no fault with this id |
//! | -32005 | not available on this node (stress-ng missing, kernel lacks a qdisc) |

use faultline_api::rpc::daemon::{FaultId, Target};
use faultline_rpc::errors::{Violation, invalid_params};
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::json;

use crate::cgroup::CgroupError;
use crate::containerd::RuntimeError;
use crate::io_relay::RelayError;
use crate::journal::JournalError;
use crate::netns::NetnsError;
use crate::pod_failure::PodFailureError;
use crate::process::ProcessError;
use crate::stress::StressError;

pub(crate) const TARGET_NOT_FOUND: i32 = -32001;
pub(crate) const UNREACHABLE: i32 = -32002;
pub(crate) const FAULT_FAILED: i32 = -32003;
pub(crate) const UNKNOWN_FAULT: i32 = -32004;
pub(crate) const NOT_AVAILABLE: i32 = -32005;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DaemonError {
    #[error("invalid params")]
    InvalidParams(Vec<Violation>),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Stress(#[from] StressError),
    #[error(transparent)]
    PodFailure(#[from] PodFailureError),
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("no fault {0} on this node")]
    UnknownFault(FaultId),
    #[error("{0}")]
    NotAvailable(String),
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    #[error("the daemon is shutting down (recovering every fault of this node); try again later")]
    ShuttingDown,
    #[error("fault {0}: its apply failed and what it left is being recovered; try again later")]
    Recovering(FaultId),
}

impl DaemonError {
    /// One invalid field.
    pub(crate) fn invalid(
        field: impl Into<String>,
        reason: impl Into<String>,
        rule: &'static str,
    ) -> Self {
        DaemonError::InvalidParams(vec![Violation {
            field: field.into(),
            reason: reason.into(),
            rule,
        }])
    }

    fn code(&self) -> i32 {
        match self {
            DaemonError::InvalidParams(_) => faultline_rpc::errors::INVALID_PARAMS,
            DaemonError::Runtime(RuntimeError::NotFound { .. })
            | DaemonError::Process(ProcessError::NoSuchProcess { .. })
            | DaemonError::PodFailure(PodFailureError::NotFound { .. })
            | DaemonError::Netns(NetnsError::Gone { .. })
            | DaemonError::Relay(RelayError::Netns(NetnsError::Gone { .. })) => TARGET_NOT_FOUND,
            DaemonError::Runtime(
                RuntimeError::UnsupportedRuntime { .. } | RuntimeError::BadContainerId { .. },
            ) => faultline_rpc::errors::INVALID_PARAMS,
            DaemonError::Runtime(
                RuntimeError::NoSocket { .. } | RuntimeError::Unreachable { .. },
            )
            | DaemonError::PodFailure(PodFailureError::NoClient(_))
            | DaemonError::ShuttingDown
            | DaemonError::Recovering(_) => UNREACHABLE,
            DaemonError::Stress(StressError::BadArguments { .. }) => {
                faultline_rpc::errors::INVALID_PARAMS
            }
            DaemonError::Stress(StressError::NotInstalled { .. })
            | DaemonError::NotAvailable(_) => NOT_AVAILABLE,
            DaemonError::Network(crate::network::NetworkError::Qdisc(q)) if q.unavailable() => {
                NOT_AVAILABLE
            }
            DaemonError::UnknownFault(_) => UNKNOWN_FAULT,
            _ => FAULT_FAILED,
        }
    }

    /// As a JSON-RPC error of a call about `target`.
    pub(crate) fn to_rpc(&self, target: Option<&Target>) -> ErrorObjectOwned {
        match self {
            DaemonError::InvalidParams(v) => return invalid_params(v),
            DaemonError::Runtime(
                RuntimeError::UnsupportedRuntime { .. } | RuntimeError::BadContainerId { .. },
            ) => {
                return invalid_params(&[Violation {
                    field: "target.containerId".into(),
                    reason: self.to_string(),
                    rule: "unsupported-runtime",
                }]);
            }
            DaemonError::Stress(StressError::BadArguments { .. }) => {
                return invalid_params(&[Violation {
                    field: "stressors".into(),
                    reason: self.to_string(),
                    rule: "stress-ng-refused",
                }]);
            }
            DaemonError::Relay(RelayError::Refused { message, data, .. }) => {
                // The sidecar's own -32602 names the rule fields; pass it on as it is.
                return ErrorObjectOwned::owned(
                    faultline_rpc::errors::INVALID_PARAMS,
                    format!("the sidecar refused the rules: {message}"),
                    data.clone(),
                );
            }
            _ => {}
        }
        let reason = faultline_api::report::error_text(self);
        let message = match target {
            Some(t) => format!("{}: {reason}", describe(t)),
            None => reason.clone(),
        };
        let mut data = json!({"reason": reason});
        if let Some(t) = target {
            data["target"] = serde_json::to_value(t).unwrap_or_default();
        }
        if let DaemonError::UnknownFault(id) = self {
            data["faultId"] = json!(id);
        }
        ErrorObjectOwned::owned(self.code(), message, Some(data))
    }
}

/// A failed apply: the error the client gets, and whether the apply took back everything it
/// did. When it could not, the fault keeps its journal entry and is recovered in the
/// background: something applied must never be left without an entry to recover it from.
#[derive(Debug)]
pub(crate) struct ApplyError<E = DaemonError> {
    pub(crate) error: E,
    pub(crate) undone: bool,
}

impl<E> ApplyError<E> {
    /// Nothing of the apply is left.
    pub(crate) fn undone(error: impl Into<E>) -> Self {
        Self {
            error: error.into(),
            undone: true,
        }
    }

    /// Something of the apply may be left (its clean-up failed, or it cannot tell).
    pub(crate) fn left_behind(error: impl Into<E>) -> Self {
        Self {
            error: error.into(),
            undone: false,
        }
    }

    /// The same failure with its error converted.
    pub(crate) fn widen<F: From<E>>(self) -> ApplyError<F> {
        ApplyError {
            error: self.error.into(),
            undone: self.undone,
        }
    }
}

/// `container containerd://…` or `process 42`.
pub(crate) fn describe(target: &Target) -> String {
    match target {
        Target::Container { container_id } => format!("container {container_id}"),
        Target::Pid { pid } => format!("process {pid}"),
    }
}
