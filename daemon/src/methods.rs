//! The JSON-RPC methods (DESIGN.md §5): params by name, read strictly (an unknown or
//! misspelled field is -32602 naming it, never a default), one call into [`Daemon`], results
//! as the typed wire objects of `faultline_api::rpc::daemon`.

use std::sync::Arc;
use std::time::Instant;

use faultline_api::rpc::daemon::{
    FaultIdParams, FaultIdResult, FaultKind, FaultsList, IoApplyParams, IoRecoverParams,
    KillParams, NetworkApplyParams, PidResult, PodFailureParams, StressStartParams, Target,
    TargetParams,
};
use faultline_rpc::errors::Violation;
use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Daemon;
use crate::error::DaemonError;
use crate::faults::recover;
use crate::metrics::Reason;

/// Every method, for the unknown-method answer.
pub(crate) const METHODS: &[&str] = &[
    "capabilities",
    "container.pid",
    "container.kill",
    "network.apply",
    "network.recover",
    "stress.start",
    "stress.stop",
    "podFailure.apply",
    "podFailure.recover",
    "io.apply",
    "io.recover",
    "faults.list",
    "faults.recoverAll",
];

/// The params of a call as `T`, or -32602 naming the field and what is wrong with it.
fn read<T: DeserializeOwned>(params: &Params<'_>) -> Result<T, DaemonError> {
    let text = params.as_str().unwrap_or("{}");
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let inner = err.into_inner();
        let reason = inner.to_string();
        let reason = reason
            .split(" at line ")
            .next()
            .unwrap_or(&reason)
            .to_owned();
        DaemonError::InvalidParams(vec![Violation {
            field: if field.is_empty() {
                "params".into()
            } else {
                field
            },
            reason,
            rule: "invalid-params",
        }])
    })
}

/// No params (absent, `[]` or `{}`).
fn none(params: &Params<'_>) -> Result<(), DaemonError> {
    match params.as_str().map(serde_json::from_str::<Value>) {
        None => Ok(()),
        Some(Ok(Value::Array(a))) if a.is_empty() => Ok(()),
        Some(Ok(Value::Object(o))) if o.is_empty() => Ok(()),
        _ => Err(DaemonError::invalid(
            "params",
            "this method takes no params",
            "no-params",
        )),
    }
}

/// Records the call's outcome and turns the error into its JSON-RPC form.
fn answer<T>(
    daemon: &Daemon,
    method: &'static str,
    started: Instant,
    target: Option<&Target>,
    result: Result<T, DaemonError>,
) -> Result<T, ErrorObjectOwned> {
    daemon
        .metrics
        .call(method, result.is_ok(), started.elapsed());
    result.map_err(|err| {
        let obj = err.to_rpc(target);
        tracing::warn!(method, code = obj.code(), error = %obj.message(), "call failed");
        obj
    })
}

macro_rules! method {
    ($m:ident, $name:literal, |$p:ident, $d:ident| $target:expr, $body:expr) => {
        $m.register_async_method($name, |params, daemon, _| async move {
            let started = Instant::now();
            let $d: Arc<Daemon> = Arc::clone(&daemon);
            let parsed = read(&params);
            let (target, result) = match parsed {
                Ok($p) => {
                    let target: Option<Target> = $target;
                    (target, $body.await)
                }
                Err(err) => (None, Err(err)),
            };
            answer(&daemon, $name, started, target.as_ref(), result)
        })?;
    };
}

/// `<kind>.stop|recover {"faultId"}`: recovers one fault of `kind`.
fn register_stop(
    m: &mut RpcModule<Arc<Daemon>>,
    name: &'static str,
    kind: FaultKind,
) -> Result<(), RegisterMethodError> {
    m.register_async_method(name, move |params, daemon, _| async move {
        let started = Instant::now();
        let result = match read::<FaultIdParams>(&params) {
            Ok(p)
                if daemon
                    .faults
                    .kind_of(&p.fault_id)
                    .is_some_and(|k| k != kind) =>
            {
                Err(DaemonError::invalid(
                    "faultId",
                    format!("{} is not a fault of this method's kind", p.fault_id),
                    "wrong-kind",
                ))
            }
            Ok(p) => recover(&daemon, &p.fault_id, Reason::Request)
                .await
                .map(|_| json!({})),
            Err(err) => Err(err),
        };
        answer(&daemon, name, started, None, result)
    })?;
    Ok(())
}

/// Builds the RPC methods.
pub(crate) fn module(daemon: Arc<Daemon>) -> Result<RpcModule<Arc<Daemon>>, RegisterMethodError> {
    let mut m = RpcModule::new(daemon);
    m.register_method("capabilities", |params, daemon, _| {
        let started = Instant::now();
        let result = none(&params).map(|()| daemon.capabilities.clone());
        answer(daemon, "capabilities", started, None, result)
    })?;
    method!(
        m,
        "container.pid",
        |p, d| {
            let p: &TargetParams = &p;
            Some(p.target.clone())
        },
        async {
            d.container_pid(&p.target)
                .await
                .map(|pid| PidResult { pid })
        }
    );
    method!(
        m,
        "container.kill",
        |p, d| {
            let p: &KillParams = &p;
            Some(p.target.clone())
        },
        async { d.container_kill(&p).await.map(|()| json!({})) }
    );
    method!(
        m,
        "stress.start",
        |p, d| {
            let p: &StressStartParams = &p;
            Some(p.target.clone())
        },
        async {
            d.stress_start(p)
                .await
                .map(|fault_id| FaultIdResult { fault_id })
        }
    );
    method!(
        m,
        "podFailure.apply",
        |p, d| {
            let _: &PodFailureParams = &p;
            None
        },
        async {
            d.pod_failure_apply(p)
                .await
                .map(|fault_id| FaultIdResult { fault_id })
        }
    );
    method!(
        m,
        "podFailure.recover",
        |p, d| {
            let _: &PodFailureParams = &p;
            None
        },
        async { d.pod_failure_recover(p).await.map(|()| json!({})) }
    );
    method!(
        m,
        "io.apply",
        |p, d| {
            let p: &IoApplyParams = &p;
            Some(p.target.clone())
        },
        async {
            d.io_apply(p)
                .await
                .map(|fault_id| FaultIdResult { fault_id })
        }
    );
    method!(
        m,
        "io.recover",
        |p, d| {
            match &p {
                IoRecoverParams::Target { target } => Some(target.clone()),
                IoRecoverParams::Fault { .. } => None,
            }
        },
        async { d.io_recover(p).await.map(|()| json!({})) }
    );
    register_stop(&mut m, "stress.stop", FaultKind::Stress)?;
    register_stop(&mut m, "network.recover", FaultKind::Network)?;
    method!(
        m,
        "network.apply",
        |p, d| {
            let p: &NetworkApplyParams = &p;
            Some(p.target.clone())
        },
        async {
            d.network_apply(p)
                .await
                .map(|fault_id| FaultIdResult { fault_id })
        }
    );
    m.register_method("faults.list", |params, daemon, _| {
        let started = Instant::now();
        let result = none(&params).map(|()| FaultsList {
            faults: daemon.faults.list(),
        });
        answer(daemon, "faults.list", started, None, result)
    })?;
    m.register_async_method("faults.recoverAll", |params, daemon, _| async move {
        let started = Instant::now();
        let result = match none(&params) {
            Ok(()) => daemon
                .recover_all()
                .await
                .map(|faults| FaultsList { faults }),
            Err(err) => Err(err),
        };
        answer(&daemon, "faults.recoverAll", started, None, result)
    })?;
    Ok(m)
}
