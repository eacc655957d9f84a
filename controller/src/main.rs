//! `faultline-controller`: see the library docs and `docs/controller.md`.

use clap::Parser;

/// Faultline's controller: turns PodChaos, NetworkChaos, StressChaos and IOChaos objects into
/// faults on pods through the node daemons, and recovers them.
#[derive(Debug, Parser)]
#[command(name = "faultline-controller", version)]
struct Cli {
    #[command(flatten)]
    config: faultline_controller::Config,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    faultline_controller::logs_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("faultline-controller: tokio runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(faultline_controller::run(cli.config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("faultline-controller: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
