//! JSON-RPC error objects, worded for the person who sent the call: -32602 with every violation
//! and its field path, -32601 with the list of methods, -32700 with the line and column.

use std::future::Future;

use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, MethodResponse, Notification, RpcServiceT,
};
use jsonrpsee::types::{ErrorObjectOwned, Request};
use serde_json::{Value, json};

/// Invalid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// No such method.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// The params are wrong; `data` names the fields.
pub const INVALID_PARAMS: i32 = -32602;

/// One bad field as the error's `data.violations` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field in the params, e.g. `target.containerId`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
    /// A stable name of the rule it broke (`unknown-field`, `not-found`, …).
    pub rule: &'static str,
}

/// -32602: the message lists every violation as `field: reason`, and `data` has them as a list
/// (`{"field": <first>, "violations": [{"field", "reason", "rule"}]}`).
pub fn invalid_params(violations: &[Violation]) -> ErrorObjectOwned {
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

/// -32601 naming the method and listing the ones that exist.
pub fn unknown_method(name: &str, methods: &[&str]) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        METHOD_NOT_FOUND,
        format!("method `{name}` not found; methods: {}", methods.join(", ")),
        Some(json!({"method": name, "methods": methods})),
    )
}

/// -32700 with where the JSON broke (`data: {"line", "column"}`).
pub fn parse_error(err: &serde_json::Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        PARSE_ERROR,
        format!("parse error: {err}"),
        Some(json!({"line": err.line(), "column": err.column()})),
    )
}

/// RPC middleware answering calls of methods not in `methods` with [`unknown_method`]
/// (jsonrpsee's own answer is a bare "Method not found"). Applies to HTTP and WebSocket alike.
#[derive(Debug, Clone, Copy)]
pub struct KnownMethodsLayer {
    methods: &'static [&'static str],
}

impl KnownMethodsLayer {
    /// The middleware for a server whose methods are `methods`.
    pub fn new(methods: &'static [&'static str]) -> Self {
        Self { methods }
    }
}

impl<S> tower::Layer<S> for KnownMethodsLayer {
    type Service = KnownMethods<S>;
    fn layer(&self, inner: S) -> Self::Service {
        KnownMethods {
            inner,
            methods: self.methods,
        }
    }
}

/// The service [`KnownMethodsLayer`] builds.
#[derive(Debug, Clone)]
pub struct KnownMethods<S> {
    inner: S,
    methods: &'static [&'static str],
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
        let answer = if self.methods.contains(&request.method_name()) {
            Ok(self.inner.call(request))
        } else {
            Err(MethodResponse::error(
                request.id(),
                unknown_method(request.method_name(), self.methods),
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
                && !self.methods.contains(&request.method_name())
            {
                let error = unknown_method(request.method_name(), self.methods);
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
