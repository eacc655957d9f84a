//! `faultline-sidecar`: parses flags and calls [`faultline_sidecar::run`], or one of the
//! client subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use faultline_sidecar::cli;
use faultline_sidecar::volume::{AppMount, MountSpec};

/// FUSE passthrough with live-controlled I/O faults (JSON-RPC 2.0).
#[derive(Debug, Parser)]
#[command(name = "faultline-sidecar", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A directory to serve and where: SOURCE:MOUNTPOINT[:NAME], NAME being the volume name
    /// (repeatable: one FUSE session per mount, one process, one RPC endpoint).
    #[arg(long = "mount", value_name = "SOURCE:MOUNTPOINT[:NAME]", conflicts_with_all = ["source", "mountpoint"])]
    mounts: Vec<MountSpec>,
    /// Where an app container mounts a volume: NAME=PATH, or NAME/SUBPATH=PATH for a subPath
    /// mount (repeatable); RPC calls may then name the mount by PATH (an IOChaos volumePath).
    #[arg(long = "app-mount", value_name = "NAME[/SUBPATH]=PATH")]
    app_mounts: Vec<AppMount>,
    /// Directory to expose (the real data): the one-mount form, with --mountpoint.
    #[arg(long, env = "FAULTLINE_SOURCE")]
    source: Option<PathBuf>,
    /// Where to mount the fault filesystem: the one-mount form, with --source.
    #[arg(long, env = "FAULTLINE_MOUNTPOINT")]
    mountpoint: Option<PathBuf>,
    /// JSON-RPC (HTTP + WebSocket), GET /ready and GET /metrics: host:port, loopback only.
    #[arg(long, default_value = "127.0.0.1:65533", env = "FAULTLINE_RPC_LISTEN")]
    rpc_listen: String,
    /// Accept a non-loopback --rpc-listen: whoever can connect controls the faults.
    #[arg(long)]
    rpc_listen_allow_non_loopback: bool,
    /// Also serve JSON-RPC on this Unix socket.
    #[arg(long)]
    rpc_socket: Option<PathBuf>,
    /// Permission bits of the --rpc-socket file, in octal.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    rpc_socket_mode: u32,
    /// Serve /metrics on a separate plain-HTTP address too.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Initial rules: a JSON array of rules, or {"rules": [...], "mount": "..."} (repeatable:
    /// one file per mount).
    #[arg(long)]
    rules: Vec<PathBuf>,
    /// Seed for the random source (percent, weighted errnos, mistakes) — repeatable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// /dev/fuse reader threads of each mount.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Entry/attribute cache TTL in milliseconds for paths no rule touches. Rule changes
    /// invalidate what they touch at once, so the TTL only bounds how late changes made to
    /// the source *behind* the mount are seen.
    #[arg(long, default_value_t = 10_000)]
    cache_ttl_ms: u64,
    /// How files are served: `exact` (every read and write reaches the rules, also on files
    /// opened before a rule arrives) or `fast` (files no rule matches at open go through kernel
    /// FUSE passthrough at near-raw speed; a rule arriving later cannot reach those open
    /// handles until they are closed — counted and logged). See docs/sidecar.md.
    #[arg(long, default_value = "exact", env = "FAULTLINE_IO_MODE")]
    io_mode: faultline_sidecar::passthrough::IoMode,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    faultline_api::iorule::parse_mode(text).map_err(|reason| format!("`{text}` {reason}"))
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
        /// The sidecar's JSON-RPC address (host:port).
        #[arg(long, default_value = "127.0.0.1:65533", env = "FAULTLINE_RPC_LISTEN")]
        rpc_listen: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Add, list, remove or clear the fault rules of a running sidecar.
    #[command(subcommand)]
    Rules(cli::RulesCommand),
    /// Show a running sidecar's mount, rules and per-operation counters.
    Status(cli::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Probe {
            rpc_listen,
            timeout_ms,
        }) => {
            return match faultline_sidecar::rpc::probe(
                &rpc_listen,
                Duration::from_millis(timeout_ms),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("faultline-sidecar probe: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Rules(cmd)) => return cli::rules(cmd),
        Some(Command::Status(args)) => return cli::status(args),
        None => {}
    }
    faultline_sidecar::logs::init(matches!(cli.log_format, LogFormat::Json));
    let mounts = match (cli.source, cli.mountpoint) {
        (Some(source), Some(mountpoint)) => vec![MountSpec {
            source,
            mountpoint,
            name: None,
        }],
        (None, None) if !cli.mounts.is_empty() => cli.mounts,
        _ => {
            eprintln!(
                "faultline-sidecar: give --mount SOURCE:MOUNTPOINT[:NAME] (repeatable), or both --source and --mountpoint"
            );
            return ExitCode::from(2);
        }
    };
    let cfg = faultline_sidecar::Config {
        mounts,
        app_mounts: cli.app_mounts,
        rpc_listen: Some(cli.rpc_listen),
        rpc_listen_allow_non_loopback: cli.rpc_listen_allow_non_loopback,
        rpc_socket: cli.rpc_socket,
        rpc_socket_mode: cli.rpc_socket_mode,
        metrics_listen: cli.metrics_listen,
        rules_files: cli.rules,
        seed: cli.seed,
        threads: cli.threads,
        ttl: Duration::from_millis(cli.cache_ttl_ms),
        io_mode: cli.io_mode,
        unmount_timeout: Duration::from_millis(800),
    };
    match faultline_sidecar::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        // Once on stderr: as a log record for collectors of JSON logs, else as plain words.
        Err(err) if matches!(cli.log_format, LogFormat::Json) => {
            tracing::error!(
                error = faultline_api::report::error_text(err.as_ref()),
                "faultline-sidecar failed"
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!(
                "faultline-sidecar: {}",
                faultline_api::report::error_text(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
