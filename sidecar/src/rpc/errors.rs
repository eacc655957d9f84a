//! JSON-RPC error objects, worded for the person who sent the call: -32602 with every violation
//! and its field path, -32601 with the list of methods, -32700 with the line and column.

use std::future::Future;

use faultline_api::iorule::FieldError;
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, RpcServiceT,
};
use jsonrpsee::types::{ErrorObjectOwned, Request};
use serde_json::{Value, json};

use crate::rules::RuleError;
use faultline_api::rpc::sidecar::METHODS;

pub(crate) const PARSE_ERROR: i32 = -32700;
pub(crate) const METHOD_NOT_FOUND: i32 = -32601;
pub(crate) const INVALID_PARAMS: i32 = -32602;

/// One bad field as the error's `data.violations` lists it.
struct Violation {
    field: String,
    reason: String,
    rule: &'static str,
}

impl From<&FieldError> for Violation {
    fn from(e: &FieldError) -> Self {
        Violation {
            field: e.path.clone(),
            reason: e.problem.to_string(),
            rule: e.problem.name(),
        }
    }
}

/// -32602: the message lists every violation as `field: reason`, and `data` has them as a list
/// (`{"field": <first>, "violations": [{"field", "reason", "rule"}]}`).
fn invalid(violations: Vec<Violation>) -> ErrorObjectOwned {
    let message = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.reason))
        .collect::<Vec<_>>()
        .join("; ");
    let first = violations
        .first()
        .map(|v| v.field.clone())
        .unwrap_or_default();
    let list: Vec<Value> = violations
        .iter()
        .map(|v| json!({"field": v.field, "reason": v.reason, "rule": v.rule}))
        .collect();
    ErrorObjectOwned::owned(
        INVALID_PARAMS,
        format!("invalid params: {message}"),
        Some(json!({"field": first, "violations": list})),
    )
}

pub(crate) fn invalid_params(errors: &[FieldError]) -> ErrorObjectOwned {
    invalid(errors.iter().map(Violation::from).collect())
}

pub(crate) fn rule_error(err: RuleError) -> ErrorObjectOwned {
    match &err {
        RuleError::Invalid(errors) => invalid_params(errors),
        RuleError::NotFound { .. } => invalid(vec![Violation {
            field: "id".into(),
            reason: err.to_string(),
            rule: "not-found",
        }]),
    }
}

pub(crate) fn unknown_method(name: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        METHOD_NOT_FOUND,
        format!("method `{name}` not found; methods: {}", METHODS.join(", ")),
        Some(json!({"method": name, "methods": METHODS})),
    )
}

/// -32700 with where the JSON broke (`data: {"line", "column"}`).
pub(crate) fn parse_error(err: &serde_json::Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        PARSE_ERROR,
        format!("parse error: {err}"),
        Some(json!({"line": err.line(), "column": err.column()})),
    )
}

/// RPC middleware answering calls of unknown methods with [`unknown_method`] (jsonrpsee's own
/// answer is a bare "Method not found"). Applies to HTTP and WebSocket alike.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KnownMethodsLayer;

impl<S> tower::Layer<S> for KnownMethodsLayer {
    type Service = KnownMethods<S>;
    fn layer(&self, inner: S) -> Self::Service {
        KnownMethods { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KnownMethods<S> {
    inner: S,
}

impl<S> RpcServiceT for KnownMethods<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync,
{
    type MethodResponse = MethodResponse;
    type BatchResponse = MethodResponse;
    type NotificationResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let answer = if METHODS.contains(&request.method_name()) {
            Ok(self.inner.call(request))
        } else {
            Err(MethodResponse::error(
                request.id(),
                unknown_method(request.method_name()),
            ))
        };
        async move {
            match answer {
                Ok(call) => call.await,
                Err(response) => response,
            }
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            if let Ok(BatchEntry::Call(request)) = entry
                && !METHODS.contains(&request.method_name())
            {
                let error = unknown_method(request.method_name());
                *entry = Err(BatchEntryErr::new(request.id(), error));
            }
        }
        self.inner.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }
}
