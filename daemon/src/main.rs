//! `faultline-daemon`: the node agent. See the library docs and `docs/daemon.md`.

use clap::Parser;

/// Faultline's node agent: applies and recovers faults on this node (container kill, stress,
/// pod failure, I/O rules) over JSON-RPC with mutual TLS; every fault is journaled and
/// recovered after a crash.
#[derive(Debug, Parser)]
#[command(name = "faultline-daemon", version)]
struct Cli {
    #[command(flatten)]
    config: faultline_daemon::Config,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    faultline_daemon::logs_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("faultline-daemon: tokio runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(faultline_daemon::run(cli.config, shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "faultline-daemon stopped");
            eprintln!("faultline-daemon: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
