//! `faultline-sidecar`: parses flags and calls [`faultline_sidecar::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// FUSE passthrough with live-controlled I/O faults (JSON-RPC 2.0).
#[derive(Debug, Parser)]
#[command(name = "faultline-sidecar", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory to expose (the real data).
    #[arg(long, env = "FAULTLINE_SOURCE")]
    source: Option<PathBuf>,
    /// Where to mount the fault filesystem.
    #[arg(long, env = "FAULTLINE_MOUNTPOINT")]
    mountpoint: Option<PathBuf>,
    /// JSON-RPC (HTTP + WebSocket), GET /ready and GET /metrics.
    #[arg(long, default_value = "127.0.0.1:65533", env = "FAULTLINE_RPC_LISTEN")]
    rpc_listen: SocketAddr,
    /// Also serve JSON-RPC on this Unix socket.
    #[arg(long)]
    rpc_socket: Option<PathBuf>,
    /// Serve /metrics on a separate plain-HTTP address too.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Initial rules: a JSON array of rules or {"rules": [...]}.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Seed for the random source (percent, weighted errnos, mistakes) — repeatable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// /dev/fuse reader threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Entry/attribute cache TTL in milliseconds for paths no rule touches.
    #[arg(long, default_value_t = 1000)]
    cache_ttl_ms: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 when the sidecar's mount is live (GET /ready), 1 otherwise.
    Probe {
        #[arg(long, default_value = "127.0.0.1:65533", env = "FAULTLINE_RPC_LISTEN")]
        rpc_listen: SocketAddr,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Probe {
        rpc_listen,
        timeout_ms,
    }) = cli.command
    {
        return match faultline_sidecar::rpc::probe(rpc_listen, Duration::from_millis(timeout_ms)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("faultline-sidecar probe: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_logs(cli.log_format);
    let (Some(source), Some(mountpoint)) = (cli.source, cli.mountpoint) else {
        eprintln!("faultline-sidecar: --source and --mountpoint are required");
        return ExitCode::from(2);
    };
    let cfg = faultline_sidecar::Config {
        source,
        mountpoint,
        rpc_listen: Some(cli.rpc_listen),
        rpc_socket: cli.rpc_socket,
        metrics_listen: cli.metrics_listen,
        rules_file: cli.rules,
        seed: cli.seed,
        threads: cli.threads,
        ttl: Duration::from_millis(cli.cache_ttl_ms),
        unmount_timeout: Duration::from_millis(800),
    };
    match faultline_sidecar::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "faultline-sidecar failed");
            eprintln!("faultline-sidecar: {err:#}");
            ExitCode::FAILURE
        }
    }
}
