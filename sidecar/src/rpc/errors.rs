//! The sidecar's errors as JSON-RPC error objects (the shapes are `faultline_rpc::errors`'):
//! a rule's field errors as -32602 with every violation, an unknown rule id as -32602 on `id`,
//! a `mount` that names no single mount as -32602 on `mount` (listing the mounts).

use faultline_api::iorule::FieldError;
use faultline_rpc::errors::{Violation, invalid_params as invalid};
use jsonrpsee::types::ErrorObjectOwned;

use crate::app::ChangeError;
use crate::rules::RuleError;
use crate::volume::MountError;

fn violation(e: &FieldError) -> Violation {
    Violation {
        field: e.path.clone(),
        reason: e.problem.to_string(),
        rule: e.problem.name(),
    }
}

pub(crate) fn invalid_params(errors: &[FieldError]) -> ErrorObjectOwned {
    invalid(&errors.iter().map(violation).collect::<Vec<_>>())
}

pub(crate) fn rule_error(err: RuleError) -> ErrorObjectOwned {
    match &err {
        RuleError::Invalid(errors) => invalid_params(errors),
        RuleError::NotFound { .. } => invalid(&[Violation {
            field: "id".into(),
            reason: err.to_string(),
            rule: "not-found",
        }]),
    }
}

pub(crate) fn mount_error(err: MountError) -> ErrorObjectOwned {
    invalid(&[err.violation()])
}

pub(crate) fn change_error(err: ChangeError) -> ErrorObjectOwned {
    match err {
        ChangeError::Mount(err) => mount_error(err),
        ChangeError::Rule(err) => rule_error(err),
    }
}
