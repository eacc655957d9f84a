//! `faultline-webhook`: see the crate documentation of `faultline_webhook`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Faultline admission webhook: validates and defaults chaos experiments, injects the FUSE
/// fault sidecar into pods.
#[derive(Debug, Parser)]
#[command(name = "faultline-webhook", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve /validate, /default, /inject, /healthz and /readyz over HTTPS.
    Serve {
        /// HTTPS listen address (HOST:PORT; a host name such as localhost is resolved).
        #[arg(long, default_value = "0.0.0.0:9443", env = "FAULTLINE_WEBHOOK_LISTEN", value_parser = socket_addr)]
        listen: SocketAddr,
        /// PEM certificate (chain); reloaded when it changes.
        #[arg(long, default_value = "/etc/faultline/tls/tls.crt")]
        tls_cert: PathBuf,
        /// PEM private key; reloaded when it changes.
        #[arg(long, default_value = "/etc/faultline/tls/tls.key")]
        tls_key: PathBuf,
        /// Plain-HTTP address of /metrics (HOST:PORT).
        #[arg(long, default_value = "0.0.0.0:9090", value_parser = socket_addr)]
        metrics_listen: SocketAddr,
        /// Policy file (YAML); absent = the defaults in docs/webhook.md. Reloaded when it changes.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Injection template (YAML); absent = the defaults in docs/webhook.md. Reloaded when it changes.
        #[arg(long)]
        injection: Option<PathBuf>,
        /// How often the certificate, policy and template files are checked for changes, in seconds.
        #[arg(long, default_value_t = 2)]
        reload_interval_secs: u64,
        /// Log format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
}

/// `HOST:PORT` with HOST an IP address or a name resolved here (the first address wins).
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn main() -> ExitCode {
    let Command::Serve {
        listen,
        tls_cert,
        tls_key,
        metrics_listen,
        policy,
        injection,
        reload_interval_secs,
        log_format,
    } = Cli::parse().command;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        // Colour only on a terminal: escape codes in a log file or `kubectl logs` are noise.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    let config = faultline_webhook::server::Config {
        listen,
        tls_cert,
        tls_key,
        metrics_listen,
        policy,
        injection,
        reload_interval: Duration::from_secs(reload_interval_secs.max(1)),
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| Ok(runtime.block_on(faultline_webhook::server::run(config))?));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Once, with its causes, and no backtrace: a start-up error is the user's to fix.
            eprintln!("error: {}", faultline_api::report::error_text(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
