//! `faultline-certs`: see the crate documentation of `faultline_certs`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Certificates for Faultline: a CA, the webhook's serving certificate, a client certificate,
/// and the caBundle of webhook configurations.
#[derive(Debug, Parser)]
#[command(name = "faultline-certs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write ca.crt, ca.key, tls.crt, tls.key, client.crt and client.key into --out.
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// DNS names of the serving certificate (at least one; the first is its common name).
        #[arg(long, required = true, num_args = 1..)]
        dns: Vec<String>,
        /// IP addresses of the serving certificate.
        #[arg(long, num_args = 1..)]
        ip: Vec<IpAddr>,
        /// Validity of all three certificates, in days from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Common name of the client certificate.
        #[arg(long, default_value = "faultline-controller")]
        client_name: String,
        /// Organization of the client certificate (Kubernetes reads it as the user's group).
        #[arg(long, default_value = faultline_certs::ORGANIZATION)]
        client_org: String,
        /// Replace a CA that --out already holds (every caBundle that trusts it must then be
        /// updated).
        #[arg(long)]
        force: bool,
    },
    /// Write a new private key (ECDSA P-256, PKCS#8 PEM, mode 0600) with no certificate, and
    /// its public key beside it (FILE.pub), e.g. the key kube-apiserver signs service-account
    /// tokens with.
    Key {
        /// The private key file to write; refused when it or FILE.pub exists.
        #[arg(long)]
        out: PathBuf,
    },
    /// Set clientConfig.caBundle on every webhook of every (Validating|Mutating)WebhookConfiguration
    /// in the given multi-document YAML files, in place.
    CaBundle {
        /// The CA certificate (PEM) to trust.
        #[arg(long)]
        ca: PathBuf,
        /// Manifest files to patch.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // Once, with its causes, and no backtrace: this is a user's error, not a crash.
            eprintln!("error: {}", error_text(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate {
            out,
            dns,
            ip,
            days,
            client_name,
            client_org,
            force,
        } => {
            if !force {
                faultline_certs::refuse_existing_ca(&out)?;
            }
            let opts = faultline_certs::GenerateOptions {
                dns,
                ips: ip,
                days,
                client_name,
                client_organization: client_org,
            };
            let bundle = faultline_certs::generate(&opts)?;
            faultline_certs::write_bundle(&bundle, &out)
                .with_context(|| format!("writing certificates into {}", out.display()))?;
            println!(
                "wrote CA, serving and client certificates to {}",
                out.display()
            );
        }
        Command::Key { out } => {
            let public = faultline_certs::public_key_path(&out);
            for file in [&out, &public] {
                if file.exists() {
                    bail!(
                        "{} exists: a new key would invalidate what the old one signed",
                        file.display()
                    );
                }
            }
            let key = faultline_certs::generate_key()?;
            faultline_certs::write_atomic(&out, key.private_key.as_bytes(), 0o600)?;
            faultline_certs::write_atomic(&public, key.public_key.as_bytes(), 0o644)?;
            println!(
                "wrote a private key to {} and its public key to {}",
                out.display(),
                public.display()
            );
        }
        Command::CaBundle { ca, files } => {
            let results = faultline_certs::ca_bundle_files(&ca, &files)?;
            let mut total = 0;
            for (file, count) in &results {
                println!("{}: caBundle set on {count} webhook(s)", file.display());
                total += count;
            }
            if total == 0 {
                bail!("no webhook configuration found in the given files");
            }
        }
    }
    Ok(())
}

/// The error and its causes, each once: library errors already name their cause in their own
/// text, so a cause the message holds is not repeated.
fn error_text(err: &anyhow::Error) -> String {
    err.chain().skip(1).fold(err.to_string(), |text, cause| {
        let cause = cause.to_string();
        if text.contains(&cause) {
            text
        } else {
            format!("{text}: {cause}")
        }
    })
}
