//! Targets whose pod is gone (deleted mid-run, or evicted): they count as recovered, and never
//! hold up the experiment or its deletion. What may outlive the pod on its node — the daemon's
//! journal entry, stress-ng, I/O rules — gets one best-effort recovery call by fault id
//! ([`Chaos::RECOVER_GONE`](crate::kinds::Chaos::RECOVER_GONE)); if that fails (the node or
//! its daemon went with the pod), the fault's ttl ends it on the node, and the record says so.

use faultline_api::status::{RecordPhase, TargetRecord};
use serde_json::json;

use super::Pass;
use super::dispatch::send_all;
use super::step::Send;
use crate::plan::fault_id;

const GONE: &str = "the target pod is gone";

/// The records of `gone` targets, recovered.
pub(super) async fn recover(pass: &Pass<'_>, gone: Vec<&TargetRecord>) -> Vec<TargetRecord> {
    let mut calls = Vec::new();
    for (i, r) in gone.iter().enumerate() {
        if let (Some(method), Some(node), RecordPhase::Injected) =
            (pass.recover_gone, &r.node, r.phase)
        {
            let params = json!({"faultId": fault_id(pass.uid, &r.id)});
            calls.push((
                i,
                Send::Daemon {
                    node: node.clone(),
                    method,
                    params,
                    recover: true,
                },
            ));
        }
    }
    let mut failed = vec![None; gone.len()];
    for (i, sent) in send_all(pass.ctx, calls).await {
        failed[i] = sent.err().map(|(_, why)| why);
    }
    gone.into_iter()
        .zip(failed)
        .map(|(r, failed)| {
            let mut r = r.clone();
            if r.phase != RecordPhase::Recovered {
                r.phase = RecordPhase::Recovered;
                r.recovered_at = Some(pass.now.clone());
                r.message = Some(match failed {
                    None => GONE.to_owned(),
                    Some(why) => format!(
                        "{GONE}; recovering on its node failed ({why}): the fault's ttl ends it there"
                    ),
                });
            }
            r
        })
        .collect()
}
