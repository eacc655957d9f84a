//! `cargo xtask <task>`: the project's own commands, built with nothing but cargo and std.
//!
//! - `test`  — installs what the suite needs when missing (Debian/Ubuntu packages via apt-get when
//!   root; cargo tools via `cargo install`), then `cargo fmt --check`, `cargo clippy -D warnings`
//!   and the whole workspace suite (cargo-nextest if present, else `cargo test`), with one
//!   control plane (`cluster`) for the end-to-end tests, built with Go when missing.
//! - `crds`  — regenerates `manifests/crds/*.yaml` from the Rust types.
//! - `bench <crate>` — installs the tools that crate's benchmark needs and runs
//!   `cargo bench -p faultline-<crate>`.
//!
//! Arguments are checked before anything is installed; `--help` on any task prints its help
//! and does nothing else.
//! - `deps`  — only the installation step of `test`.
//! - `cluster build|up|down|env` — a real kube-apiserver + etcd on loopback (`xtask::cluster`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use xtask::cluster;

mod checks;
mod libfuse;

/// A system tool the suite or the build needs, and the Debian package that brings it.
struct SystemTool {
    binary: &'static str,
    package: &'static str,
    why: &'static str,
}

const TEST_TOOLS: &[SystemTool] = &[
    SystemTool {
        binary: "protoc",
        package: "protobuf-compiler",
        why: "building containerd-client",
    },
    SystemTool {
        binary: "fusermount3",
        package: "fuse3",
        why: "FUSE mounts of the sidecar",
    },
    SystemTool {
        binary: "containerd",
        package: "containerd",
        why: "container tests of the daemon",
    },
    SystemTool {
        binary: "runc",
        package: "runc",
        why: "container tests of the daemon",
    },
    SystemTool {
        binary: "busybox",
        package: "busybox-static",
        why: "the rootfs of the daemon's test containers (static: no libc inside)",
    },
    SystemTool {
        binary: "stress-ng",
        package: "stress-ng",
        why: "stress tests",
    },
    SystemTool {
        binary: "ip",
        package: "iproute2",
        why: "network namespace and tc tests",
    },
    SystemTool {
        binary: "iptables",
        package: "iptables",
        why: "the daemon's partition faults",
    },
    SystemTool {
        binary: "fio",
        package: "fio",
        why: "sidecar benchmarks and I/O tests",
    },
];

/// What each benchmark needs besides cargo (the webhook bench drives its own load generator).
/// The sidecar bench also builds libfuse's `passthrough_hp` (`libfuse.rs`) as its reference.
const SIDECAR_BENCH_TOOLS: &[SystemTool] = &[
    SystemTool {
        binary: "fio",
        package: "fio",
        why: "sidecar benchmarks",
    },
    SystemTool {
        binary: "curl",
        package: "curl",
        why: "fetching the libfuse source for passthrough_hp",
    },
    SystemTool {
        binary: "meson",
        package: "meson",
        why: "building passthrough_hp",
    },
    SystemTool {
        binary: "ninja",
        package: "ninja-build",
        why: "building passthrough_hp",
    },
    SystemTool {
        binary: "g++",
        package: "g++",
        why: "building passthrough_hp (C++)",
    },
    SystemTool {
        binary: "pkg-config",
        package: "pkg-config",
        why: "building passthrough_hp",
    },
];

/// The daemon bench runs a private containerd with busybox containers (`faultline_e2e::containerd`)
/// and stress-ng in them.
const DAEMON_BENCH_TOOLS: &[SystemTool] = &[
    SystemTool {
        binary: "containerd",
        package: "containerd",
        why: "the daemon bench's containers",
    },
    SystemTool {
        binary: "runc",
        package: "runc",
        why: "the daemon bench's containers",
    },
    SystemTool {
        binary: "stress-ng",
        package: "stress-ng",
        why: "the daemon bench's stress.start",
    },
    SystemTool {
        binary: "busybox",
        package: "busybox-static",
        why: "the rootfs of the daemon bench's containers (static: no libc inside)",
    },
];

/// The crates with benchmarks, and the system tools each needs.
const BENCHES: &[(&str, &[SystemTool])] = &[
    ("sidecar", SIDECAR_BENCH_TOOLS),
    ("webhook", &[]),
    ("daemon", DAEMON_BENCH_TOOLS),
    ("controller", &[]),
];

/// Cargo-installed tools: (binary, crate, version, why).
const CARGO_TOOLS: &[(&str, &str, &str, &str)] = &[(
    "pjdfstest",
    "pjdfstest",
    "0.2.2",
    "the POSIX suite run against the sidecar's FUSE mount",
)];

/// A task and its arguments, checked before anything is installed or run.
enum Task {
    Test(Vec<String>),
    Deps,
    Crds,
    Bench {
        krate: &'static str,
        tools: &'static [SystemTool],
        args: Vec<String>,
    },
    Cluster(cluster::Task),
    Help(&'static str),
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = parse(&args).and_then(|task| match task {
        Task::Help(text) => {
            println!("{text}");
            Ok(())
        }
        Task::Test(extra) => test(&extra),
        Task::Deps => install_system(TEST_TOOLS).and_then(|()| install_cargo_tools()),
        Task::Crds => crds(),
        Task::Bench { krate, tools, args } => bench(krate, tools, &args),
        Task::Cluster(task) => cluster::run(&root(), task),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

const TEST_HELP: &str = "usage: cargo xtask test [ARGS...]\n\n\
     Installs what the suite needs when missing (as root on Debian/Ubuntu: apt-get packages\n\
     protobuf-compiler fuse3 containerd runc busybox-static stress-ng iproute2 iptables fio;\n\
     cargo install pjdfstest),\n\
     then runs cargo fmt --check, cargo clippy -D warnings, the doctests, pjdfstest on a raw\n\
     directory vs a sidecar mount, and every test of the workspace. ARGS go to cargo nextest run\n\
     (or cargo test). The end-to-end tests (tests/) share one kube-apiserver + etcd, built from\n\
     tests/cluster with Go when missing (cargo xtask cluster build) and stopped after the suite.\n\
     With CI=true a test whose prerequisite is missing fails instead of skipping.";
const DEPS_HELP: &str = "usage: cargo xtask deps\n\n\
     Only the installation step of `cargo xtask test`.";
const CRDS_HELP: &str = "usage: cargo xtask crds\n\n\
     Regenerates manifests/crds/*.yaml from the Rust types of faultline-api.";
const BENCH_HELP: &str = "usage: cargo xtask bench <sidecar|webhook|daemon|controller> [ARGS...]\n\n\
     Runs `cargo bench -p faultline-<crate>` (ARGS go to cargo bench) and writes its table into\n\
     docs/benchmarks.md. The sidecar bench needs fio and builds libfuse's passthrough_hp as its\n\
     reference (3.17.2 from Debian's source, SHA-256 checked; FAULTLINE_BENCH_PASSTHROUGH_HP=<binary>\n\
     skips that); the daemon bench needs root, containerd, runc, stress-ng and a static busybox\n\
     (installed when missing, as root); the controller bench runs the local control plane\n\
     (tests/cluster) with 5,000 pods on 100 node stand-ins.";

/// Parses the command line completely: a bad task or argument is reported before anything is
/// installed, and `--help` anywhere prints the task's help and does nothing else.
fn parse(args: &[String]) -> Result<Task, String> {
    let wants_help = |rest: &[String]| rest.iter().any(|a| a == "-h" || a == "--help");
    let no_args = |task: &str, rest: &[String]| match rest.first() {
        Some(arg) => Err(format!(
            "`{task}` takes no arguments, got `{arg}`\n\n{}",
            usage()
        )),
        None => Ok(()),
    };
    let Some((task, rest)) = args.split_first() else {
        return Ok(Task::Help(usage()));
    };
    match task.as_str() {
        "-h" | "--help" | "help" => Ok(Task::Help(usage())),
        "test" if wants_help(rest) => Ok(Task::Help(TEST_HELP)),
        "test" => Ok(Task::Test(rest.to_vec())),
        "deps" if wants_help(rest) => Ok(Task::Help(DEPS_HELP)),
        "deps" => no_args("deps", rest).map(|()| Task::Deps),
        "crds" if wants_help(rest) => Ok(Task::Help(CRDS_HELP)),
        "crds" => no_args("crds", rest).map(|()| Task::Crds),
        "bench" if wants_help(rest) => Ok(Task::Help(BENCH_HELP)),
        "bench" => {
            let names = BENCHES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ");
            let (name, args) = rest.split_first().ok_or_else(|| {
                format!("bench needs a crate name: one of {names}\n\n{BENCH_HELP}")
            })?;
            let (krate, tools) = BENCHES
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| format!("no benchmarks for `{name}`: choose one of {names}"))?;
            Ok(Task::Bench {
                krate,
                tools,
                args: args.to_vec(),
            })
        }
        "cluster" => match cluster::parse(rest, &root().join("target/faultline-cluster"))? {
            cluster::Task::Help(text) => Ok(Task::Help(text)),
            task => Ok(Task::Cluster(task)),
        },
        other => Err(format!("unknown task `{other}`\n\n{}", usage())),
    }
}

fn usage() -> &'static str {
    "usage: cargo xtask <task> [--help]\n\n\
     tasks:\n  \
     test [ARGS...]     install missing test dependencies, then fmt check, clippy, and the whole suite\n                     (ARGS go to nextest/cargo test)\n  \
     deps               only install the test dependencies\n  \
     crds               regenerate manifests/crds/*.yaml from the Rust types\n  \
     bench <crate>      run the benchmarks of faultline-<crate> (sidecar, webhook, daemon, controller)\n  \
     cluster <action>   build|up|down|env: a real kube-apiserver + etcd on 127.0.0.1 for tests and demos"
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    println!("xtask: {what}");
    let status = cmd
        .status()
        .map_err(|err| format!("{what}: cannot start: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

fn on_path(binary: &str) -> bool {
    env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(binary).is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs the Debian packages of the missing tools. Without root or apt-get it says what is
/// missing and carries on: the tests that need a tool skip with a printed reason.
fn install_system(tools: &[SystemTool]) -> Result<(), String> {
    let missing: Vec<&SystemTool> = tools.iter().filter(|t| !on_path(t.binary)).collect();
    if missing.is_empty() {
        println!(
            "xtask: system tools present: {}",
            tools
                .iter()
                .map(|t| t.binary)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    for tool in &missing {
        println!(
            "xtask: missing `{}` (package {}) for {}",
            tool.binary, tool.package, tool.why
        );
    }
    if !is_root() || !on_path("apt-get") {
        println!(
            "xtask: not root or no apt-get: not installing; tests that need these tools will skip and say so"
        );
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    let mut update = Command::new("apt-get");
    update
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(update, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(install, &format!("apt-get install {}", packages.join(" ")))
}

fn install_cargo_tools() -> Result<(), String> {
    for (binary, krate, version, why) in CARGO_TOOLS {
        if on_path(binary) {
            continue;
        }
        let mut cmd = cargo();
        cmd.args(["install", "--locked", krate, "--version", version]);
        run(cmd, &format!("cargo install {krate}@{version} (for {why})"))?;
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<(), String> {
    install_system(TEST_TOOLS)?;
    install_cargo_tools()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt, "cargo fmt --check")?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy, "cargo clippy --workspace --all-targets -D warnings")?;
    checks::run(&root(), cargo())?;
    // The workspace suite runs last, so its summary is the run's closing line; every step runs
    // even when an earlier one failed, and the failures are listed at the end.
    let mut failures = Vec::new();
    let nextest = on_path("cargo-nextest");
    if nextest {
        // nextest does not run doctests.
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--doc", "--quiet"]);
        failures.extend(run(doc, "cargo test --doc").err());
    }
    failures.extend(posix_suite().err());
    let control_plane = SuiteControlPlane::start(&mut failures);
    let mut suite = cargo();
    suite.envs(control_plane.env.iter().map(|(k, v)| (k, v)));
    if nextest {
        suite
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(extra);
        failures.extend(run(suite, "cargo nextest run --workspace").err());
    } else {
        suite
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(extra);
        failures.extend(run(suite, "cargo test --workspace").err());
    }
    failures.extend(control_plane.stop().err());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// The control plane the suite's end-to-end tests (`tests/`, faultline-e2e) share: its binaries
/// built when missing, started before the suite (`FAULTLINE_CLUSTER` tells the tests where), and
/// stopped after it. When it cannot start, the tests skip with the reason
/// (`FAULTLINE_CLUSTER_UNAVAILABLE`) — and with CI=true the run fails, naming it.
struct SuiteControlPlane {
    plane: Option<(cluster::ControlPlane, cluster::Watchdog)>,
    env: Vec<(String, String)>,
}

impl SuiteControlPlane {
    fn start(failures: &mut Vec<String>) -> Self {
        let unavailable = |why: String, failures: &mut Vec<String>| {
            if on_ci() {
                failures.push(format!("control plane for the e2e tests: {why}"));
            } else {
                println!("xtask: no control plane, the e2e tests will skip: {why}");
            }
            Self {
                plane: None,
                env: vec![("FAULTLINE_CLUSTER_UNAVAILABLE".into(), why)],
            }
        };
        let tools = match cluster::build(&root()) {
            Ok(tools) => tools,
            Err(why) => return unavailable(why, failures),
        };
        let mut webhook = cargo();
        webhook.args(["build", "--quiet", "-p", "faultline-webhook"]);
        webhook.args(["--bin", "faultline-webhook"]);
        if let Err(why) = run(webhook, "cargo build faultline-webhook (for the e2e tests)") {
            failures.push(why);
        }
        let dir = target_dir().join("faultline-cluster-test");
        if dir.join(cluster::STATE_FILE).exists() {
            // Left by a run that was killed before its watchdog could clean up.
            let _ = cluster::down(&dir);
        }
        println!("xtask: starting the e2e control plane in {}", dir.display());
        let started = std::time::Instant::now();
        let plane = match cluster::start(&tools, &dir, &|pki| cluster::pki_with_cli(&root(), pki)) {
            Ok(plane) => plane,
            Err(why) => return unavailable(why, failures),
        };
        let watchdog = match cluster::watchdog(&plane) {
            Ok(w) => w,
            Err(why) => {
                let mut plane = plane;
                let _ = cluster::stop(&mut plane);
                return unavailable(why, failures);
            }
        };
        println!(
            "xtask: kube-apiserver {} ready in {:.1} s",
            plane.server,
            started.elapsed().as_secs_f64()
        );
        let env = vec![
            ("FAULTLINE_CLUSTER".into(), plane.dir.display().to_string()),
            (
                "FAULTLINE_WEBHOOK_BIN".into(),
                target_dir()
                    .join("debug/faultline-webhook")
                    .display()
                    .to_string(),
            ),
        ];
        Self {
            plane: Some((plane, watchdog)),
            env,
        }
    }

    fn stop(self) -> Result<(), String> {
        let Some((mut plane, watchdog)) = self.plane else {
            return Ok(());
        };
        let result = cluster::stop(&mut plane);
        watchdog.disarm();
        result.map_err(|why| format!("stopping the e2e control plane: {why}"))
    }
}

fn on_ci() -> bool {
    env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// pjdfstest on a raw directory and through a sidecar mount: every test that passes on raw must
/// pass through the mount (`sidecar/tests/pjdfstest.sh`, which skips with a reason without root
/// or /dev/fuse). The debug binary is enough: this checks behaviour, not speed.
fn posix_suite() -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "--quiet",
        "-p",
        "faultline-sidecar",
        "--bin",
        "faultline-sidecar",
    ]);
    run(build, "cargo build faultline-sidecar (for pjdfstest)")?;
    let binary = target_dir().join("debug/faultline-sidecar");
    let script = root().join("sidecar/tests/pjdfstest.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&binary).current_dir(root());
    // No re-run: a test that fails through the mount is a bug to find, not a flake to retry.
    run(cmd, "pjdfstest: raw directory vs sidecar mount")
}

fn crds() -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "faultline-api",
        "--example",
        "crdgen",
        "--",
    ])
    .arg(root().join("manifests/crds"));
    run(cmd, "generate manifests/crds")
}

fn bench(krate: &str, tools: &[SystemTool], args: &[String]) -> Result<(), String> {
    install_system(tools)?;
    let mut cmd = cargo();
    if krate == "sidecar" && env::var_os("FAULTLINE_BENCH_PASSTHROUGH_HP").is_none() {
        // Without its reference the bench still runs and its table says what was not measured
        // (as when the tools above could not be installed).
        match libfuse::passthrough_hp(&target_dir()) {
            Ok(hp) => {
                cmd.env("FAULTLINE_BENCH_PASSTHROUGH_HP", hp)
                    .env("FAULTLINE_BENCH_PASSTHROUGH_HP_VERSION", libfuse::VERSION);
            }
            Err(err) => eprintln!("xtask: passthrough_hp not built, so not measured: {err}"),
        }
    }
    cmd.args(["bench", "-p", &format!("faultline-{krate}")])
        .args(args)
        // Benches that write a table put it in this file (their own section only).
        .env("FAULTLINE_BENCH_DOCS", root().join("docs/benchmarks.md"));
    run(cmd, &format!("cargo bench -p faultline-{krate}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_runs() {
        for (line, want) in [
            (
                "bench foo",
                "no benchmarks for `foo`: choose one of sidecar, webhook, daemon, controller",
            ),
            ("bench", "bench needs a crate name"),
            ("deploy", "unknown task `deploy`"),
            ("crds extra", "`crds` takes no arguments, got `extra`"),
            ("deps --yes", "`deps` takes no arguments"),
            ("cluster", "cluster needs an action"),
            ("cluster stop", "unknown cluster action `stop`"),
        ] {
            match parse(&args(line)) {
                Err(err) => assert!(err.contains(want), "{line}: {err}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
    }

    #[test]
    fn help_anywhere_only_prints_help() {
        for (line, want) in [
            ("", "usage: cargo xtask <task>"),
            ("--help", "usage: cargo xtask <task>"),
            ("test --help", "usage: cargo xtask test"),
            ("test -- --help", "usage: cargo xtask test"),
            ("deps -h", "usage: cargo xtask deps"),
            ("crds --help", "usage: cargo xtask crds"),
            ("bench --help", "usage: cargo xtask bench"),
            ("bench sidecar --help", "usage: cargo xtask bench"),
            ("cluster --help", "usage: cargo xtask cluster"),
            ("cluster up --help", "usage: cargo xtask cluster"),
        ] {
            match parse(&args(line)) {
                Ok(Task::Help(text)) => assert!(text.starts_with(want), "{line}: {text}"),
                _ => panic!("{line}: not help"),
            }
        }
    }

    #[test]
    fn the_webhook_bench_installs_nothing() {
        match parse(&args("bench webhook")) {
            Ok(Task::Bench { krate, tools, .. }) => {
                assert_eq!(krate, "webhook");
                assert!(tools.is_empty());
            }
            _ => panic!("bench webhook"),
        }
    }

    #[test]
    fn the_daemon_bench_installs_its_containers_and_stress_ng() {
        let Ok(Task::Bench { krate, tools, .. }) = parse(&args("bench daemon")) else {
            panic!("bench daemon");
        };
        assert_eq!(krate, "daemon");
        let packages: Vec<&str> = tools.iter().map(|t| t.package).collect();
        assert_eq!(
            packages,
            ["containerd", "runc", "stress-ng", "busybox-static"]
        );
    }
}
