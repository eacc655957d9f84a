//! The real `faultline-daemon` binary for integration tests: started on loopback ports with
//! its own state dir (and certificates for mutual TLS), called over HTTP JSON-RPC, killed with
//! SIGKILL and restarted on the same state dir.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Skips (prints why and returns false) outside CI when not root; fails in CI.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        !faultline_e2e::on_ci(),
        "{test}: needs root (CI runs as root)"
    );
    eprintln!("SKIP {test}: needs root");
    false
}

/// A loopback port nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// How to start the daemon.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub containerd_socket: Option<PathBuf>,
    /// `$KUBECONFIG` of the daemon (pod failure).
    pub kubeconfig: Option<PathBuf>,
    /// Serve mutual TLS too (certificates made in the state dir's parent).
    pub tls: bool,
    pub extra_args: Vec<String>,
}

/// Options for a daemon of the test containerd `c`. The daemon reaches its socket through a
/// symlink: the harness's clean-up kills every process whose command line names the
/// containerd's directory, and the daemon must outlive the containerd in some tests. Keep the
/// returned directory alive as long as the daemon.
pub fn containerd_options(
    c: &faultline_e2e::containerd::Containerd,
) -> (Options, tempfile::TempDir) {
    let link_dir = tempfile::tempdir().expect("tempdir");
    let link = link_dir.path().join("containerd.sock");
    std::os::unix::fs::symlink(c.socket(), &link).expect("symlink");
    let opts = Options {
        containerd_socket: Some(link),
        ..Default::default()
    };
    (opts, link_dir)
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub insecure: SocketAddr,
    pub metrics: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub certs: Option<faultline_certs::Bundle>,
    opts: Options,
    log: PathBuf,
    http: reqwest::Client,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_faultline-daemon"))
}

impl Daemon {
    pub async fn start(opts: Options) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let certs = opts.tls.then(|| {
            let mut o = faultline_certs::GenerateOptions::new(vec!["localhost".into()]);
            o.ips = vec!["127.0.0.1".parse().unwrap()];
            let bundle = faultline_certs::generate(&o).expect("certs");
            faultline_certs::write_bundle(&bundle, &dir.path().join("certs")).expect("write certs");
            bundle
        });
        let mut d = Daemon {
            child: None,
            state_dir,
            insecure: free_addr(),
            metrics: free_addr(),
            tls: opts.tls.then(free_addr),
            certs,
            log: dir.path().join("daemon.log"),
            dir,
            opts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        };
        d.spawn().await;
        d
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.arg("--insecure-listen")
            .arg(self.insecure.to_string())
            .arg("--metrics-listen")
            .arg(self.metrics.to_string())
            .arg("--state-dir")
            .arg(&self.state_dir);
        if let Some(addr) = self.tls {
            let certs = self.dir.path().join("certs");
            cmd.arg("--listen")
                .arg(addr.to_string())
                .arg("--tls-cert")
                .arg(certs.join("tls.crt"))
                .arg("--tls-key")
                .arg(certs.join("tls.key"))
                .arg("--client-ca")
                .arg(certs.join("ca.crt"));
        }
        if let Some(s) = &self.opts.containerd_socket {
            cmd.arg("--containerd-socket").arg(s);
        } else {
            // Never reach a containerd of the host by accident.
            cmd.arg("--containerd-socket")
                .arg(self.dir.path().join("no-containerd.sock"));
        }
        match &self.opts.kubeconfig {
            Some(k) => cmd.env("KUBECONFIG", k),
            None => cmd.env("KUBECONFIG", self.dir.path().join("no-kubeconfig")),
        };
        cmd.args(&self.opts.extra_args)
            .env("RUST_LOG", "info,faultline_daemon=debug")
            .env_remove("KUBERNETES_SERVICE_HOST");
        cmd
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn faultline-daemon");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{}/healthz", self.metrics);
        loop {
            if let Ok(resp) = self.http.get(&url).send().await
                && resp.status().is_success()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("faultline-daemon exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "faultline-daemon not ready in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A JSON-RPC call on the plain-HTTP listener: the result, or the error object.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp: Value = self
            .http
            .post(format!("http://{}/", self.insecure))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", self.log()))
            .json()
            .await
            .expect("JSON answer");
        match resp.get("error") {
            Some(err) => Err(err.clone()),
            None => Ok(resp["result"].clone()),
        }
    }

    /// [`Daemon::call`] that must succeed.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params.clone())
            .await
            .unwrap_or_else(|e| panic!("{method} {params}: {e}\n{}", self.log()))
    }

    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// SIGKILL: no shutdown, no recovery — what a crash looks like.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit (the daemon recovers every fault first).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().expect("wait")
    }

    /// Starts again on the same state dir and ports.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// The journal entries on disk (set-aside `.corrupt` files are not entries).
    pub fn journal(&self) -> Vec<String> {
        journal_files(&self.state_dir)
    }
}

pub fn journal_files(state_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state_dir.join("journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            faultline_e2e::stop_child(&mut c, Duration::from_secs(10));
        }
    }
}

impl Daemon {
    /// Waits until `check` holds, up to `timeout`; the failure shows the daemon's log.
    pub async fn eventually(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until `check` holds, up to `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
