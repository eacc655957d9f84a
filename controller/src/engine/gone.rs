//! Targets whose pod is gone (deleted mid-run, or evicted): they count as recovered, and never
//! hold up the experiment or its deletion. What may outlive the pod on its node — the daemon's
//! journal entry, stress-ng, I/O rules — gets one best-effort recovery call by fault id
//! ([`Chaos::recover_gone`](crate::kinds::Chaos::recover_gone)) — for every target not
//! recovered yet: one that was injected, also one whose last renewal failed, and one whose
//! inject may have gone out unanswered (`Pending`, `Failed`). If that call fails too (the node or its
//! daemon went with the pod), the record says so, and the fault's ttl (every lasting fault is
//! sent with one) ends it there.

use faultline_api::status::{RecordPhase, TargetRecord};

use super::Pass;
use super::dispatch::send_all;
use super::step::Send;
use crate::plan::fault_id;

const GONE: &str = "the target pod is gone";

/// The records of `gone` targets, recovered.
pub(super) async fn recover(pass: &Pass<'_>, gone: Vec<&TargetRecord>) -> Vec<TargetRecord> {
    let mut calls = Vec::new();
    for (i, r) in gone.iter().enumerate() {
        if let (true, Some(node), Some((method, params))) = (
            r.phase != RecordPhase::Recovered,
            &r.node,
            (pass.recover_gone)(&r.id, &fault_id(pass.uid, &r.id)),
        ) {
            calls.push((
                i,
                Send::Daemon {
                    node: node.clone(),
                    method,
                    params,
                    recover: true,
                    no_daemon_is_done: false,
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
                        "{GONE}; recovering on its node failed ({why}): its ttl ends it there"
                    ),
                });
            }
            r
        })
        .collect()
}
