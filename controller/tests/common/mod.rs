//! A small real world for the controller: the real API server (`faultline_e2e`), a real
//! containerd with real containers, a node stand-in binding API pods to those containers, a
//! real `faultline-daemon` on its own loopback address (127.0.0.N, reported as its pod's
//! `podIP`), and the real `faultline-controller` watching the test's namespace.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faultline_e2e::TestEnv;
use faultline_e2e::containerd::{Container, Containerd};
use faultline_e2e::node::{NodeStandIn, PodReport};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

pub const DAEMON_NAME: &str = "faultline-daemon.faultline-system.svc";

fn port_on(ip: Ipv4Addr) -> u16 {
    TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A distinct 127.0.0.N per test process and call.
fn loopback() -> Ipv4Addr {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        (pid % 200) as u8 + 20,
        (pid / 200 % 250) as u8,
        n.wrapping_add(2),
    )
}

fn spawn(binary: &Path, args: &[String], env: &[(&str, &Path)], log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log");
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .env(
            "RUST_LOG",
            "info,faultline_controller=debug,faultline_daemon=debug",
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()))
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        faultline_e2e::stop_child(&mut c, Duration::from_secs(10));
    }
}

/// Everything one test runs against.
pub struct World {
    pub env: TestEnv,
    pub containerd: Containerd,
    pub node: NodeStandIn,
    pub dir: tempfile::TempDir,
    pub certs: faultline_certs::Bundle,
    pub daemon_ip: Ipv4Addr,
    pub daemon_port: u16,
    daemon: Option<Child>,
    /// Running controllers (replicas), oldest first, with their log numbers.
    controllers: Vec<(usize, Option<Child>)>,
    started_controllers: usize,
    pub policy: PathBuf,
    /// This test's stand-in for `faultline-system` (tests share one API server).
    pub daemon_namespace: String,
}

impl World {
    /// `None` when the prerequisites are missing outside CI (printed).
    pub async fn start(test: &str) -> Option<World> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                !faultline_e2e::on_ci(),
                "{test}: needs root (CI runs as root)"
            );
            eprintln!("SKIP {test}: needs root");
            return None;
        }
        let containerd = faultline_e2e::containerd::start_or_skip(test)?;
        let env = faultline_e2e::setup(test).await?;
        env.install_crds().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = faultline_certs::GenerateOptions::new(vec![DAEMON_NAME.into()]);
        opts.ips = vec![];
        let certs = faultline_certs::generate(&opts).expect("certs");
        faultline_certs::write_bundle(&certs, &dir.path().join("certs")).expect("write certs");
        // Its own policy: no namespace opt-in needed, nothing protected beyond the defaults.
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, "requireNamespaceOptIn: false\nmaxDuration: null\n").unwrap();
        let node_name = faultline_e2e::unique_name(&format!("{test}-node"));
        let node = NodeStandIn::register(&env.client, &node_name, IpAddr::V4(Ipv4Addr::LOCALHOST))
            .await
            .expect("node");
        let daemon_namespace = env.extra_namespace("flsys", &[]).await;
        let daemon_ip = loopback();
        let daemon_port = port_on(daemon_ip);
        let mut world = World {
            env,
            containerd,
            node,
            dir,
            certs,
            daemon_ip,
            daemon_port,
            daemon: None,
            controllers: Vec::new(),
            started_controllers: 0,
            policy,
            daemon_namespace,
        };
        world.register_daemon_pod().await;
        world.start_daemon().await;
        world.start_controller().await;
        Some(world)
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    async fn register_daemon_pod(&self) {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), &self.daemon_namespace);
        let name = format!("daemon-{}", self.node.name);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "faultline-daemon"}},
            "spec": {"containers": [{"name": "daemon", "image": "faultline/daemon:test"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("daemon pod");
        let report = PodReport {
            pod_ip: IpAddr::V4(self.daemon_ip),
            container_ids: BTreeMap::new(),
        };
        self.node
            .run_pod(&self.daemon_namespace, &name, &report)
            .await
            .expect("daemon pod running");
    }

    /// The daemon reaches containerd through a symlink (the harness's clean-up kills processes
    /// whose command line names the containerd directory).
    pub async fn start_daemon(&mut self) {
        let link = self.dir.path().join("containerd.sock");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(self.containerd.socket(), &link).unwrap();
        let certs = self.certs_dir();
        let args: Vec<String> = vec![
            "--listen".into(),
            SocketAddr::new(IpAddr::V4(self.daemon_ip), self.daemon_port).to_string(),
            "--tls-cert".into(),
            certs.join("tls.crt").display().to_string(),
            "--tls-key".into(),
            certs.join("tls.key").display().to_string(),
            "--client-ca".into(),
            certs.join("ca.crt").display().to_string(),
            "--state-dir".into(),
            self.dir.path().join("daemon-state").display().to_string(),
            "--containerd-socket".into(),
            link.display().to_string(),
        ];
        let binary =
            faultline_e2e::binary("faultline-daemon", "faultline-daemon").expect("daemon binary");
        self.daemon = Some(spawn(
            &binary,
            &args,
            &[("KUBECONFIG", &self.env.kubeconfig)],
            &self.dir.path().join("daemon.log"),
        ));
        let addr = SocketAddr::new(IpAddr::V4(self.daemon_ip), self.daemon_port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "daemon not listening:\n{}",
                self.daemon_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop_daemon(&mut self) {
        stop(&mut self.daemon);
    }

    pub async fn start_controller(&mut self) {
        let certs = self.certs_dir();
        let metrics = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_on(Ipv4Addr::LOCALHOST),
        );
        let args: Vec<String> = vec![
            "--policy".into(),
            self.policy.display().to_string(),
            "--policy-poll-secs".into(),
            "1".into(),
            "--watch-namespace".into(),
            self.env.namespace.clone(),
            "--daemon-namespace".into(),
            self.daemon_namespace.clone(),
            "--lease-namespace".into(),
            self.env.namespace.clone(),
            "--daemon-port".into(),
            self.daemon_port.to_string(),
            "--client-cert".into(),
            certs.join("client.crt").display().to_string(),
            "--client-key".into(),
            certs.join("client.key").display().to_string(),
            "--daemon-ca".into(),
            certs.join("ca.crt").display().to_string(),
            "--metrics-listen".into(),
            metrics.to_string(),
        ];
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_faultline-controller"));
        let n = self.started_controllers;
        self.started_controllers += 1;
        let log = self.dir.path().join(format!("controller-{n}.log"));
        let child = spawn(
            &binary,
            &args,
            &[("KUBECONFIG", &self.env.kubeconfig)],
            &log,
        );
        self.controllers.push((n, Some(child)));
    }

    /// Stops the oldest running controller (SIGTERM).
    pub fn stop_controller(&mut self) {
        if !self.controllers.is_empty() {
            let (_, mut child) = self.controllers.remove(0);
            stop(&mut child);
        }
    }

    /// Kills the controller whose log says it leads (SIGKILL: no release of the Lease).
    pub fn kill_leader(&mut self) -> usize {
        let at = self
            .controllers
            .iter()
            .position(|(n, _)| self.log_of(*n).contains("leading: reconciling"))
            .expect("a leader");
        let (n, child) = self.controllers.remove(at);
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
        n
    }

    pub fn log_of(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("controller-{n}.log")))
            .unwrap_or_default()
    }

    /// How many running controllers say they lead.
    pub fn leaders(&self) -> usize {
        self.controllers
            .iter()
            .filter(|(n, _)| self.log_of(*n).contains("leading: reconciling"))
            .count()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn controller_log(&self) -> String {
        (0..self.started_controllers)
            .map(|n| format!("--- controller {n} ---\n{}", self.log_of(n)))
            .collect()
    }

    /// A pod `name` labelled `app: <app>` in the test namespace, running container `c` (a real
    /// containerd container) as its only container `app`.
    pub async fn pod(&self, name: &str, app: &str, c: &Container) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.env.client.clone(), &self.env.namespace);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": "busybox:test"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod");
        let report = PodReport {
            pod_ip: IpAddr::V4(Ipv4Addr::new(10, 99, 0, 7)),
            container_ids: BTreeMap::from([("app".to_owned(), c.container_id())]),
        };
        self.node
            .run_pod(&self.env.namespace, name, &report)
            .await
            .expect("pod running")
    }

    /// A real container running `sleep 1000`, bound to API pod `name` labelled `app: <app>`.
    pub async fn sleeping_pod(&self, name: &str, app: &str) -> Container {
        let c = self
            .containerd
            .run(&faultline_e2e::unique_name(name), &["sleep", "1000"])
            .unwrap_or_else(|e| panic!("container for pod {name}: {e}"));
        self.pod(name, app, &c).await;
        c
    }

    /// Waits until condition `type_` of `kind/name` is True, up to `timeout`.
    pub async fn until_condition(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        timeout: Duration,
    ) -> Value {
        self.until(kind, name, type_, timeout, |o| condition(o, type_))
            .await
    }

    /// StressChaos `name`: one cpu worker in every `app=cart` pod for `duration`; returns the
    /// object once `AllInjected`.
    pub async fn cpu_burn(&self, name: &str, duration: &str) -> Value {
        self.create(
            "StressChaos",
            name,
            json!({"mode": "all", "selector": {"labelSelectors": {"app": "cart"}}, "duration": duration,
                   "stressors": {"cpu": {"workers": 1}}}),
            json!({}),
        )
        .await;
        self.until_condition("StressChaos", name, "AllInjected", Duration::from_secs(30))
            .await
    }

    /// Deletes `kind/name` and waits until it is gone (its finalizer removed), up to `timeout`.
    pub async fn delete_until_gone(&self, kind: &str, name: &str, timeout: Duration) {
        self.api(kind)
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {kind}/{name}: {e}"));
        self.until(kind, name, "gone", timeout, Value::is_null)
            .await;
    }

    /// A chaos object of `kind` from `spec`.
    pub async fn create(
        &self,
        kind: &str,
        name: &str,
        spec: Value,
        annotations: Value,
    ) -> DynamicObject {
        let api = faultline_e2e::chaos_api(&self.env.client, &self.env.namespace, kind);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "chaos.faultline.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "annotations": annotations},
            "spec": spec
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {kind}/{name}: {e}"))
    }

    /// `(reason, note)` of the Events about the object `name` in the test's namespace.
    pub async fn events_of(&self, name: &str) -> Vec<(String, String)> {
        use k8s_openapi::api::events::v1::Event;
        let api: Api<Event> = Api::namespaced(self.env.client.clone(), &self.env.namespace);
        api.list(&Default::default())
            .await
            .expect("list Events")
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    pub fn api(&self, kind: &str) -> Api<DynamicObject> {
        faultline_e2e::chaos_api(&self.env.client, &self.env.namespace, kind)
    }

    /// Waits until `check(object)` holds, up to `timeout`; the failure shows both logs.
    pub async fn until(
        &self,
        kind: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let api = self.api(kind);
        let deadline = Instant::now() + timeout;
        loop {
            let obj = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .map(|o| serde_json::to_value(o).unwrap())
                .unwrap_or(Value::Null);
            if check(&obj) {
                return obj;
            }
            if Instant::now() > deadline {
                panic!(
                    "{kind}/{name}: {what} not within {timeout:?}\nobject: {obj:#}\n--- controller ---\n{}\n--- daemon ---\n{}",
                    self.controller_log(),
                    self.daemon_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The status condition `type_` is True.
pub fn condition(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

impl Drop for World {
    fn drop(&mut self) {
        for (_, c) in &mut self.controllers {
            stop(c);
        }
        stop(&mut self.daemon);
    }
}

/// Processes carrying the mark of fault `fault_id`.
pub fn stress_processes(fault_id: &str) -> usize {
    let wanted = format!("FAULTLINE_FAULT_ID={fault_id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        })
        .count()
}
