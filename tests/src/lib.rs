//! # faultline-e2e
//!
//! The harness of Faultline's tests against a real Kubernetes API server: `kube-apiserver` and
//! `etcd` built from the Go module in `tests/cluster` (`cargo xtask cluster build`), started
//! through the same code as `cargo xtask cluster up` (`xtask::cluster`).
//!
//! - **One control plane per test binary**, started by the first test that asks ([`setup`]) and
//!   stopped when the process exits — also when tests panicked (an `atexit` hook) and when the
//!   process is killed (a watchdog process that holds a pipe to this one). Nothing is left: no
//!   etcd or kube-apiserver process, no port, no directory.
//! - When `FAULTLINE_CLUSTER` names the directory of a running control plane (`cargo xtask
//!   cluster up`; `cargo xtask test` sets it), every test binary uses that one instead: under
//!   cargo-nextest each test is its own process, and one control plane for the whole run is
//!   what keeps that fast.
//! - **A fresh namespace per test** ([`TestEnv::namespace`]), with the `default` ServiceAccount
//!   that the (absent) controller-manager would create, and a label that scopes the test's
//!   webhook configurations to the test's own namespaces.
//! - [`TestEnv`] hands each test a `kube::Client` (one per test: a client belongs to the tokio
//!   runtime that made it) and the admin kubeconfig path, for `kubectl`.
//! - [`node::NodeStandIn`] registers a Node and reports pod status as a kubelet would.
//! - [`webhook::Webhook`] runs the real `faultline-webhook` binary and registers it.
//! - [`containerd::Containerd`] runs a private containerd with busybox containers.
//! - [`binary`] builds a workspace binary once per process.
//! - [`bench`] writes a benchmark's section of `docs/benchmarks.md`.
//!
//! A control plane that cannot start (binaries not built, no Go) makes [`setup`] return `None`
//! after printing why, so the test skips — except with `CI=true`, where it panics: on CI a test
//! that cannot run is a failure.

pub mod bench;
pub mod containerd;
pub mod node;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use xtask::cluster::{self, ControlPlane, Pki, State, Watchdog};

/// The label every test namespace carries, with the namespace's own name as its value; webhook
/// configurations of a test select it, so they never touch another test's objects.
pub const TEST_LABEL: &str = "e2e.faultline.dev/test";

/// The checkout this crate is in.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Whether this is a CI run (`CI=true`): a test that cannot run fails instead of skipping.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Stops a child process: SIGTERM (so it can clean up), then SIGKILL if it has not exited
/// within `grace`; reaps it either way.
pub fn stop_child(child: &mut std::process::Child, grace: std::time::Duration) {
    // SAFETY: kill has no memory preconditions; the child is not reaped yet, so the pid is ours.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Binary `bin` of workspace package `package`, built once per process with `cargo build -p
/// <package> --bin <bin>` (a no-op when it is up to date); the path comes from cargo's JSON
/// messages, so it follows `CARGO_TARGET_DIR` and profiles. Builds run one at a time: cargo
/// would serialize them on its build lock anyway.
pub fn binary(package: &str, bin: &str) -> Result<PathBuf, String> {
    type Built = HashMap<(String, String), Result<PathBuf, String>>;
    static BUILT: Mutex<Option<Built>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = (package.to_owned(), bin.to_owned());
    if let Some(found) = built.get_or_insert_default().get(&key) {
        return found.clone();
    }
    let found = build_binary(package, bin);
    built.get_or_insert_default().insert(key, found.clone());
    found
}

fn build_binary(package: &str, bin: &str) -> Result<PathBuf, String> {
    let command = format!("cargo build -p {package} --bin {bin}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--message-format=json")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{command}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{command}: {}:\n{stderr}", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|msg| {
            let target = msg.get("target")?;
            let is_bin = target.get("kind")?.as_array()?.iter().any(|k| k == "bin");
            let exe = msg.get("executable")?.as_str()?;
            (is_bin && target.get("name")? == bin).then(|| PathBuf::from(exe))
        })
        .ok_or_else(|| format!("{command}: cargo named no executable `{bin}`\n{stderr}"))
}

/// The control plane the tests of this process use.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its directory (PKI, kubeconfig, logs, state file).
    pub dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// PIDs of etcd and kube-apiserver.
    pub pids: Vec<u32>,
    /// Whether this process started it (and so stops it at exit).
    pub owned: bool,
}

/// The control plane this process started, for the exit hook.
static OWNED: Mutex<Option<(ControlPlane, Watchdog)>> = Mutex::new(None);

extern "C" fn stop_owned_at_exit() {
    let owned = OWNED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((mut plane, watchdog)) = owned {
        if let Err(why) = cluster::stop(&mut plane) {
            eprintln!("faultline-e2e: stopping the control plane: {why}");
        }
        watchdog.disarm();
    }
}

/// Writes the control plane's PKI with the `faultline-certs` library (the same files `cargo
/// xtask cluster up` makes with its binary).
fn write_pki(pki: &Pki) -> Result<(), String> {
    let mut opts = faultline_certs::GenerateOptions::new(vec!["localhost".into()]);
    opts.ips = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    opts.client_name = cluster::ADMIN_USER.into();
    opts.client_organization = cluster::ADMIN_GROUP.into();
    opts.days = 30;
    let err = |e: faultline_certs::CertError| e.to_string();
    let bundle = faultline_certs::generate(&opts).map_err(err)?;
    faultline_certs::write_bundle(&bundle, &pki.dir).map_err(err)?;
    let key = faultline_certs::generate_key().map_err(err)?;
    faultline_certs::write_atomic(&pki.sa_key(), key.private_key.as_bytes(), 0o600).map_err(err)?;
    faultline_certs::write_atomic(&pki.sa_public_key(), key.public_key.as_bytes(), 0o644)
        .map_err(err)
}

fn acquire() -> Result<Cluster, String> {
    if let Ok(reason) = std::env::var("FAULTLINE_CLUSTER_UNAVAILABLE") {
        return Err(reason);
    }
    if let Some(dir) = std::env::var_os("FAULTLINE_CLUSTER").map(PathBuf::from) {
        if !cluster::is_up(&dir) {
            return Err(format!(
                "FAULTLINE_CLUSTER={}: no control plane is up there (cargo xtask cluster up)",
                dir.display()
            ));
        }
        let state =
            State::load(&dir).map_err(|e| format!("FAULTLINE_CLUSTER={}: {e}", dir.display()))?;
        return Ok(Cluster {
            dir,
            kubeconfig: state.kubeconfig,
            server: state.server,
            pids: state.processes.iter().map(|(pid, _)| *pid).collect(),
            owned: false,
        });
    }
    let tools = cluster::installed(&root())?.ok_or(
        "kube-apiserver, etcd and kubectl are not built for this tests/cluster/go.sum: run \
         `cargo xtask cluster build` (needs Go)",
    )?;
    let dir = std::env::temp_dir().join(format!("faultline-e2e-{}", std::process::id()));
    let plane = cluster::start(&tools, &dir, &write_pki)?;
    let watchdog = match cluster::watchdog(&plane) {
        Ok(w) => w,
        Err(why) => {
            let mut plane = plane;
            let _ = cluster::stop(&mut plane);
            return Err(why);
        }
    };
    let found = Cluster {
        dir: plane.dir.clone(),
        kubeconfig: plane.kubeconfig.clone(),
        server: plane.server.clone(),
        pids: plane
            .processes
            .iter()
            .map(std::process::Child::id)
            .collect(),
        owned: true,
    };
    *OWNED.lock().unwrap_or_else(|e| e.into_inner()) = Some((plane, watchdog));
    // SAFETY: registers a plain `extern "C" fn` that takes no arguments and does not unwind.
    unsafe {
        libc::atexit(stop_owned_at_exit);
    }
    Ok(found)
}

/// The control plane of this process: started on first use (blocking), then shared.
pub fn cluster() -> Result<&'static Cluster, String> {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    CLUSTER.get_or_init(acquire).as_ref().map_err(Clone::clone)
}

/// What a test gets: a client, the kubeconfig, and its own namespace.
pub struct TestEnv {
    /// A client for the admin user (system:masters).
    pub client: Client,
    /// The admin kubeconfig, for `kubectl --kubeconfig`.
    pub kubeconfig: PathBuf,
    /// The test's namespace (labelled [`TEST_LABEL`] = its name).
    pub namespace: String,
    /// The control plane.
    pub cluster: &'static Cluster,
}

/// Starts (or joins) the control plane, makes a client and a fresh namespace for `test`.
/// `None` (after printing the reason) when no control plane can run here and this is not CI.
pub async fn setup(test: &str) -> Option<TestEnv> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let found = tokio::task::spawn_blocking(cluster)
        .await
        .unwrap_or_else(|e| Err(format!("starting the control plane panicked: {e}")));
    let cluster = match found {
        Ok(c) => c,
        Err(why) if on_ci() => panic!("{test}: no control plane (CI=true, so this fails): {why}"),
        Err(why) => {
            eprintln!("SKIP {test}: no control plane: {why}");
            return None;
        }
    };
    let client = client_for(&cluster.kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("{test}: a client for {}: {e}", cluster.kubeconfig.display()));
    let namespace = unique_name(test);
    let env = TestEnv {
        client,
        kubeconfig: cluster.kubeconfig.clone(),
        namespace: namespace.clone(),
        cluster,
    };
    env.create_namespace(&namespace, &[]).await;
    Some(env)
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<Client, String> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// `e2e-<test>-<suffix>`: a DNS label (≤ 63 characters) unique in the cluster.
pub fn unique_name(test: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = format!("{:x}{n}", (nanos ^ std::process::id()) & 0xfffff);
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(63 - 5 - suffix.len());
    format!("e2e-{}-{suffix}", base.trim_matches('-'))
}

impl TestEnv {
    /// Creates namespace `name` with `labels` (plus [`TEST_LABEL`] = this test's namespace) and
    /// its `default` ServiceAccount.
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert(TEST_LABEL.to_owned(), self.namespace.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": all}
        }))
        .expect("namespace");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        // The ServiceAccount admission plugin needs it; the controller-manager is not here.
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))
                .expect("service account");
        Api::<ServiceAccount>::namespaced(self.client.clone(), name)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap_or_else(|e| panic!("create {name}/default ServiceAccount: {e}"));
    }

    /// Another namespace for this test (`e2e-<suffix>-<unique>`, labelled [`TEST_LABEL`] = the
    /// test's namespace like the first one), with `labels`.
    pub async fn extra_namespace(&self, suffix: &str, labels: &[(&str, &str)]) -> String {
        let name = unique_name(suffix);
        self.create_namespace(&name, labels).await;
        name
    }

    /// Merges `labels` into the labels of namespace `name`.
    pub async fn label_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        Api::<Namespace>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": labels}})),
            )
            .await
            .unwrap_or_else(|e| panic!("label namespace {name}: {e}"));
    }

    /// Applies `manifests/crds/*.yaml` (server-side apply, so concurrent test processes agree)
    /// and waits until the API server has established them. Returns their names.
    pub async fn install_crds(&self) -> Vec<String> {
        let api = Api::<CustomResourceDefinition>::all(self.client.clone());
        let mut names = Vec::new();
        for (file, crd) in crd_manifests() {
            let name = crd.metadata.name.clone().expect("CRD name");
            api.patch(
                &name,
                &PatchParams::apply("faultline-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("{file}: the API server refused the CRD: {e}"));
            names.push(name);
        }
        for name in &names {
            wait_for(&format!("CRD {name} established"), || async {
                let crd = api.get(name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            })
            .await;
        }
        // Established is not yet served in OpenAPI: the API server publishes a new CRD's schema
        // a moment later (seconds under load), and `kubectl explain` reads that document.
        wait_for("the chaos kinds in /openapi/v3", || async {
            let (ok, out, _) = self.kubectl(
                &[
                    "get",
                    "--raw",
                    "/openapi/v3/apis/chaos.faultline.dev/v1alpha1",
                ],
                None,
            );
            (ok && CHAOS_KINDS
                .iter()
                .all(|kind| out.contains(&format!(".{kind}\""))))
            .then_some(())
        })
        .await;
        names
    }

    /// Runs the built `kubectl` with the admin kubeconfig; returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        kubectl(&self.kubeconfig, args, stdin)
    }
}

/// The four chaos kinds.
pub const CHAOS_KINDS: [&str; 4] = ["IOChaos", "NetworkChaos", "PodChaos", "StressChaos"];

/// The API of a chaos kind (`PodChaos`, …) in `namespace`.
pub fn chaos_api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let plural = kind.to_lowercase();
    let resource = ApiResource {
        group: "chaos.faultline.dev".into(),
        version: "v1alpha1".into(),
        api_version: "chaos.faultline.dev/v1alpha1".into(),
        kind: kind.into(),
        plural,
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The CRDs of `manifests/crds/`, with their file names.
pub fn crd_manifests() -> Vec<(String, CustomResourceDefinition)> {
    let dir = root().join("manifests/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("CRD file");
            let crd =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), crd)
        })
        .collect()
}

/// Runs the `kubectl` built from `tests/cluster` against `kubeconfig`.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let tools = cluster::installed(&root())
        .ok()
        .flatten()
        .expect("kubectl is built (cargo xtask cluster build)");
    let mut child = std::process::Command::new(&tools.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("kubectl stdin");
    }
    let out = child.wait_with_output().expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `check` every 100 ms until it returns `Some`, for at most 30 s; panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 30 s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that `actual` holds everything `expected` says: every key of an object (recursively),
/// and every element of a list, in order (the list may hold more, e.g. what the API server's
/// defaults and admission plugins added). Returns the JSON path of the first difference.
pub fn contains(actual: &serde_json::Value, expected: &serde_json::Value) -> Result<(), String> {
    contains_at(actual, expected, "")
}

fn contains_at(
    actual: &serde_json::Value,
    expected: &serde_json::Value,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (key, want) in e {
                let here = format!("{path}.{key}");
                match a.get(key) {
                    Some(got) => contains_at(got, want, &here)?,
                    None if want.is_null() => {}
                    None => return Err(format!("{here}: missing, expected {want}")),
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(e)) => {
            let mut from = 0;
            for (i, want) in e.iter().enumerate() {
                let found = a[from..]
                    .iter()
                    .position(|got| contains_at(got, want, "").is_ok());
                match found {
                    Some(offset) => from += offset + 1,
                    None => {
                        return Err(format!(
                            "{path}[{i}]: no element (in order) holds {want}; the list is {}",
                            Value::Array(a.clone())
                        ));
                    }
                }
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!("{path}: {a} where {e} was expected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_dns_labels() {
        let name = unique_name(&"Very_Long::test::name".repeat(6));
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with("e2e-very-long--test--name"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(unique_name("a"), unique_name("a"));
    }

    #[test]
    fn contains_allows_additions_and_names_the_difference() {
        let actual = json!({"a": 1, "b": [{"n": 1, "x": 2}, {"n": 2}, {"n": 3}], "c": "d"});
        assert_eq!(
            contains(&actual, &json!({"b": [{"n": 1}, {"n": 3}]})),
            Ok(())
        );
        assert!(contains(&actual, &json!({"b": [{"n": 3}, {"n": 1}]})).is_err());
        assert_eq!(
            contains(&actual, &json!({"a": 2})),
            Err(".a: 1 where 2 was expected".into())
        );
        assert!(
            contains(&actual, &json!({"z": 1}))
                .unwrap_err()
                .contains(".z: missing")
        );
    }
}
