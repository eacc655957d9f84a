//! `capabilities()`: what this node can do, probed once at start.

use std::collections::BTreeMap;

use faultline_api::rpc::daemon::{Capabilities, CgroupLayout, Runtime};

use crate::containerd::Containerd;

/// Probes the node: containerd (when reachable), the cgroup layout, the qdisc kinds the
/// kernel accepts, stress-ng.
pub(crate) async fn probe(
    runtime: Option<&Containerd>,
    cgroup: CgroupLayout,
    stress_ng: bool,
) -> Capabilities {
    let qdiscs: BTreeMap<String, bool> = crate::qdisc_probe::probe_all().await;
    Capabilities {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        runtime: runtime.map(|c| Runtime {
            kind: "containerd".into(),
            version: c.version.clone(),
            socket: c.socket.display().to_string(),
        }),
        cgroup,
        qdiscs,
        stress_ng,
    }
}
