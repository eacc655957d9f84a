//! The `## Controller` section of docs/benchmarks.md.

use std::fmt::Write as _;

use super::{NODES, Run, daemons::ANSWER_AFTER};

fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub(crate) fn section(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Controller\n\n\
         `cargo xtask bench controller` ({}): one NetworkChaos (`delay`, mode `all`) over N pods \
         spread on {NODES} nodes of the local kube-apiserver (node stand-ins report them \
         Running), simulated daemons answering each call after {} ms on {NODES} loopback \
         addresses behind the daemon's real mTLS JSON-RPC stack, and the real \
         `faultline-controller` (release build, default `--kube-qps 50 --kube-burst 100`, \
         `--pod-events-per-pass 100`). \"Recovered after the end\": from `Selected` + \
         `duration` to `AllRecovered`. API requests: the API server's own \
         `apiserver_request_total` over the run, minus the bench's five (two `/metrics` reads, \
         the create, the watch). Daemon calls go as JSON-RPC batches of 10 per node; a \
         lasting fault is re-sent every 30 s to renew its ttl. Target: 5,000 pods → \
         `AllInjected` in < 60 s.\n",
        faultline_e2e::bench::today(),
        ANSWER_AFTER.as_millis()
    );
    out.push_str(
        "| targets | duration | → AllInjected | end → AllRecovered | API requests | per target | daemon calls (apply / recover) |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} s | {} | {} | {} | {:.3} | {} / {} |",
            r.targets,
            r.duration.as_secs(),
            secs(r.to_injected),
            secs(r.to_recovered),
            r.requests,
            r.requests as f64 / r.targets as f64,
            r.daemon_calls.0,
            r.daemon_calls.1
        );
    }
    out
}
