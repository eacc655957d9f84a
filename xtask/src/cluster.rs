//! A real Kubernetes control plane on loopback: `kube-apiserver`, `etcd` and `kubectl` built from
//! the Go module in `tests/cluster/`, started with certificates from `faultline-certs`.
//!
//! `cargo xtask cluster build|up|down|env` is the command line over this module; the end-to-end
//! harness (`tests/`, crate `faultline-e2e`) starts its control planes through [`start`] too, so
//! both run the same binaries with the same flags. Only std: xtask is what installs everything
//! else.
//!
//! - [`build`]: `go build` of the three binaries into a cache directory named after the hash of
//!   `tests/cluster/go.sum` (`$FAULTLINE_CLUSTER_CACHE`, else `$XDG_CACHE_HOME/faultline/cluster`,
//!   else `~/.cache/faultline/cluster`), so they are rebuilt only when the pins change. The
//!   version string is set with `-ldflags -X` from the `k8s.io/kubernetes` requirement of
//!   `go.mod`, so `/version` tells the truth.
//! - [`start`]: etcd (data in a fresh temporary directory, `--unsafe-no-fsync`) and
//!   kube-apiserver on free loopback ports, client-certificate auth for an admin in
//!   `system:masters`, a service-account signing key, `--allow-privileged=true`, RBAC; waits for
//!   `/readyz` and writes a kubeconfig and a state file (PIDs, directories).
//! - [`stop`] / [`down`]: stop exactly the processes the state file names (checked against their
//!   command line, so a reused PID is never signalled) and remove the directories.

mod build;
mod plane;
mod watchdog;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use build::{
    BINARIES, Tools, build, cache_key, cache_root, find_go, installed, kubernetes_version,
    module_dir, version_ldflags,
};
pub use plane::{
    ADMIN_GROUP, ADMIN_USER, ControlPlane, PKI_FILES, Pki, STATE_FILE, State, down, free_port,
    is_up, kubeconfig_text, pki_with_cli, start, stop,
};
pub use watchdog::{Watchdog, watchdog};

/// `cargo xtask cluster …`, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Task {
    /// Build the binaries (if the cache has none for this `go.sum`).
    Build,
    /// Build if needed, start, print `export KUBECONFIG=…`.
    Up(PathBuf),
    /// Stop what `up` started in the directory and remove it.
    Down(PathBuf),
    /// Print the exports for a control plane that is up.
    Env(PathBuf),
    /// Print this help text.
    Help(&'static str),
}

/// Help of `cargo xtask cluster`.
pub const HELP: &str = "usage: cargo xtask cluster <build|up|down|env> [--dir DIR]\n\n\
     A real Kubernetes control plane on loopback, for tests and demos: kube-apiserver and etcd\n\
     (and kubectl) built from the Go module in tests/cluster (needs Go: `go` on PATH or\n\
     /usr/local/go/bin/go).\n\n  \
     build   go build the three binaries into ~/.cache/faultline/cluster/<version>-<go.sum hash>\n          \
     (or $FAULTLINE_CLUSTER_CACHE); nothing to do when they are there\n  \
     up      build if needed, start etcd and kube-apiserver on free 127.0.0.1 ports, wait for\n          \
     /readyz, write DIR/kubeconfig (admin in system:masters), apply manifests/crds/ and print\n          \
     the exports (KUBECONFIG, FAULTLINE_CLUSTER, PATH with the built kubectl first)\n  \
     down    stop exactly the processes `up` started (PIDs from DIR/state) and remove DIR\n  \
     env     print the exports for the control plane in DIR: eval \"$(cargo xtask cluster env)\"\n\n\
     DIR defaults to target/faultline-cluster.";

/// Parses the arguments after `cluster`; nothing is done here.
pub fn parse(args: &[String], default_dir: &Path) -> Result<Task, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Task::Help(HELP));
    }
    let Some((action, rest)) = args.split_first() else {
        return Err(format!(
            "cluster needs an action: build, up, down or env\n\n{HELP}"
        ));
    };
    let mut dir = default_dir.to_owned();
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--dir" if action != "build" => {
                dir = rest
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| "--dir needs a directory".to_owned())?;
            }
            other => {
                return Err(format!(
                    "`cluster {action}` does not take `{other}`\n\n{HELP}"
                ));
            }
        }
    }
    match action.as_str() {
        "build" => Ok(Task::Build),
        "up" => Ok(Task::Up(dir)),
        "down" => Ok(Task::Down(dir)),
        "env" => Ok(Task::Env(dir)),
        other => Err(format!(
            "unknown cluster action `{other}`: build, up, down or env\n\n{HELP}"
        )),
    }
}

/// The exports that point kubectl, kube clients and the e2e harness at the control plane, and
/// put the built binaries (kubectl) first on `PATH`.
pub fn exports(dir: &Path, state: &State) -> String {
    let mut text = format!(
        "export KUBECONFIG={}\nexport FAULTLINE_CLUSTER={}\n",
        state.kubeconfig.display(),
        dir.display()
    );
    if let Some(bin) = state.processes.first().and_then(|(_, b)| b.parent()) {
        text.push_str(&format!("export PATH=\"{}:$PATH\"\n", bin.display()));
    }
    text
}

/// `kubectl apply` of `manifests/crds/`, then waits until they are established and their
/// schemas are published.
fn apply_crds(root: &Path, tools: &Tools, kubeconfig: &Path) -> Result<(), String> {
    let crds = root.join("manifests/crds");
    for args in [
        vec!["apply", "-f"],
        vec!["wait", "--for=condition=Established", "--timeout=60s", "-f"],
    ] {
        let out = Command::new(&tools.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(&args)
            .arg(&crds)
            .output()
            .map_err(|e| format!("{}: {e}", tools.kubectl.display()))?;
        if !out.status.success() {
            return Err(format!(
                "kubectl {} {}: {}",
                args.join(" "),
                crds.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    // Established is not yet served in OpenAPI: the schemas are published a moment later, and
    // `kubectl explain` (which `up` promises works) reads that document.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = Command::new(&tools.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "get",
                "--raw",
                "/openapi/v3/apis/chaos.faultline.dev/v1alpha1",
            ])
            .output()
            .map_err(|e| format!("{}: {e}", tools.kubectl.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success()
            && ["IOChaos", "NetworkChaos", "PodChaos", "StressChaos"]
                .iter()
                .all(|kind| text.contains(&format!(".{kind}\"")))
        {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(
                "the chaos kinds were not in /openapi/v3 60 s after they were established".into(),
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Runs a parsed task from the checkout at `root`.
pub fn run(root: &Path, task: Task) -> Result<(), String> {
    match task {
        Task::Help(text) => println!("{text}"),
        Task::Build => {
            build(root)?;
        }
        Task::Up(dir) => {
            if is_up(&dir) {
                return Err(format!(
                    "a control plane is already up in {} (cargo xtask cluster down first)",
                    dir.display()
                ));
            }
            if dir.join(STATE_FILE).exists() {
                // Left by an `up` whose processes are gone: clear it.
                let _ = down(&dir);
            }
            let tools = build(root)?;
            println!(
                "xtask: starting etcd and kube-apiserver in {}",
                dir.display()
            );
            let started = Instant::now();
            let mut plane = start(&tools, &dir, &|pki| pki_with_cli(root, pki))?;
            if let Err(why) = apply_crds(root, &tools, &plane.kubeconfig) {
                let _ = stop(&mut plane);
                return Err(format!("the CRDs of manifests/crds: {why}"));
            }
            println!(
                "xtask: kube-apiserver {} ready in {:.1} s (logs in {}); stop it with \
                 `cargo xtask cluster down`",
                plane.server,
                started.elapsed().as_secs_f64(),
                plane.dir.display()
            );
            print!("{}", exports(&plane.dir, &State::load(&plane.dir)?));
        }
        Task::Down(dir) => {
            if !dir.join(STATE_FILE).exists() {
                println!("xtask: no control plane in {}", dir.display());
                return Ok(());
            }
            let stopped = down(&dir)?;
            println!(
                "xtask: stopped {} and removed {}",
                if stopped.is_empty() {
                    "nothing (its processes were gone)".to_owned()
                } else {
                    stopped.join(", ")
                },
                dir.display()
            );
        }
        Task::Env(dir) => {
            if !is_up(&dir) {
                return Err(format!(
                    "no control plane is up in {} (cargo xtask cluster up)",
                    dir.display()
                ));
            }
            print!("{}", exports(&dir, &State::load(&dir)?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }
    #[test]
    fn exports_name_the_kubeconfig_the_dir_and_the_binaries() {
        let state = State {
            server: "https://127.0.0.1:1".into(),
            kubeconfig: "/d/kubeconfig".into(),
            etcd_data: "/e".into(),
            processes: vec![(1, "/c/bin/etcd".into())],
        };
        assert_eq!(
            exports(Path::new("/d"), &state),
            "export KUBECONFIG=/d/kubeconfig\nexport FAULTLINE_CLUSTER=/d\n\
             export PATH=\"/c/bin:$PATH\"\n"
        );
    }

    #[test]
    fn cluster_arguments_are_checked_before_anything_runs() {
        let default = Path::new("/t/faultline-cluster");
        assert_eq!(parse(&args("build"), default), Ok(Task::Build));
        assert_eq!(parse(&args("up"), default), Ok(Task::Up(default.into())));
        assert_eq!(
            parse(&args("down --dir /x"), default),
            Ok(Task::Down("/x".into()))
        );
        assert_eq!(parse(&args("env"), default), Ok(Task::Env(default.into())));
        for (line, want) in [
            ("", "cluster needs an action"),
            ("start", "unknown cluster action `start`"),
            ("up --dir", "--dir needs a directory"),
            ("up --force", "`cluster up` does not take `--force`"),
            ("build --dir /x", "`cluster build` does not take `--dir`"),
        ] {
            match parse(&args(line), default) {
                Err(err) => assert!(err.contains(want), "{line}: {err}"),
                Ok(task) => panic!("{line}: accepted as {task:?}"),
            }
        }
        for line in ["--help", "up -h", "down --dir /x --help", "build --help"] {
            assert_eq!(parse(&args(line), default), Ok(Task::Help(HELP)), "{line}");
        }
    }
}
