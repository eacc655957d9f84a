//! `faultline-webhook`: see the crate documentation of `faultline_webhook`.

use std::net::SocketAddr;
use std::path::PathBuf;
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
        /// HTTPS listen address.
        #[arg(long, default_value = "0.0.0.0:9443", env = "FAULTLINE_WEBHOOK_LISTEN")]
        listen: SocketAddr,
        /// PEM certificate (chain); reloaded when it changes.
        #[arg(long, default_value = "/etc/faultline/tls/tls.crt")]
        tls_cert: PathBuf,
        /// PEM private key; reloaded when it changes.
        #[arg(long, default_value = "/etc/faultline/tls/tls.key")]
        tls_key: PathBuf,
        /// Plain-HTTP address of /metrics.
        #[arg(long, default_value = "0.0.0.0:9090")]
        metrics_listen: SocketAddr,
        /// Policy file (YAML); absent = the defaults of DESIGN.md §3. Reloaded when it changes.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Injection template (YAML); absent = the defaults of DESIGN.md §7. Reloaded when it changes.
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

fn main() -> anyhow::Result<()> {
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
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(faultline_webhook::server::run(config))
}
