//! Starting and stopping a control plane: PKI, etcd, kube-apiserver, kubeconfig, state file,
//! watchdog.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::build::{Tools, read};

/// The admin user of the kubeconfig (client certificate CN) and its group (O).
pub const ADMIN_USER: &str = "faultline-admin";
/// `system:masters` is bound to `cluster-admin` by the API server's bootstrap RBAC policy.
pub const ADMIN_GROUP: &str = "system:masters";

/// Files of the control plane's PKI directory; [`Pki`] names them.
pub const PKI_FILES: [&str; 5] = ["ca.crt", "tls.crt", "tls.key", "client.crt", "client.key"];

/// The state file of a running control plane, in its directory.
pub const STATE_FILE: &str = "state";

/// How long [`start`] waits for `/readyz` (overridden by `$FAULTLINE_CLUSTER_READY_SECS`).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The PKI a control plane runs with, all in one directory: the CA (`ca.crt`), the API server's
/// serving pair for `localhost`/`127.0.0.1` (`tls.*`), the admin's client pair
/// (`client.*`: CN [`ADMIN_USER`], O [`ADMIN_GROUP`]) and the service-account key pair
/// (`sa.key`, `sa.key.pub`).
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory.
    pub dir: PathBuf,
}

impl Pki {
    /// A file of the PKI.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The service-account signing key (private).
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// Its public key, which the API server checks tokens with.
    pub fn sa_public_key(&self) -> PathBuf {
        self.dir.join("sa.key.pub")
    }
}

/// Writes the PKI with the `faultline-certs` binary (`cargo run -p faultline-certs`): what
/// `cargo xtask cluster up` uses; the harness calls the library instead.
pub fn pki_with_cli(root: &Path, pki: &Pki) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let certs = |args: &[&str]| {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(root)
            .args(["run", "--quiet", "-p", "faultline-certs", "--"])
            .args(args)
            .stdout(Stdio::null());
        let status = cmd
            .status()
            .map_err(|e| format!("cargo run -p faultline-certs: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("faultline-certs {}: {status}", args.join(" ")))
        }
    };
    let dir = pki.dir.to_string_lossy();
    certs(&[
        "generate",
        "--out",
        &dir,
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--client-name",
        ADMIN_USER,
        "--client-org",
        ADMIN_GROUP,
        "--days",
        "30",
    ])?;
    certs(&["key", "--out", &pki.sa_key().to_string_lossy()])
}

/// A started control plane. Dropping it stops nothing: call [`stop`] (the harness does at exit)
/// or `cargo xtask cluster down`.
#[derive(Debug)]
pub struct ControlPlane {
    /// Its directory: PKI, kubeconfig, logs, state file.
    pub dir: PathBuf,
    /// The etcd data directory (a fresh temporary directory).
    pub etcd_data: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The processes, etcd first.
    pub processes: Vec<Child>,
}

/// A free TCP port on 127.0.0.1 (free when asked; [`start`] retries if it is taken meanwhile).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Starts etcd and kube-apiserver in `dir` (created; must not hold a running control plane),
/// with the PKI that `write_pki` writes, and waits until `/readyz` answers `ok`. The processes
/// get their own process group, so a terminal's Ctrl-C does not half-stop them.
pub fn start(
    tools: &Tools,
    dir: &Path,
    write_pki: &dyn Fn(&Pki) -> Result<(), String>,
) -> Result<ControlPlane, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let pki = Pki {
        dir: dir.join("pki"),
    };
    fs::create_dir_all(&pki.dir).map_err(|e| format!("{}: {e}", pki.dir.display()))?;
    write_pki(&pki)?;
    for name in PKI_FILES.iter().chain(&["sa.key", "sa.key.pub"]) {
        if !pki.file(name).is_file() {
            return Err(format!("the PKI has no {}", pki.file(name).display()));
        }
    }
    let timeout = env::var("FAULTLINE_CLUSTER_READY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READY_TIMEOUT, Duration::from_secs);
    // A port found free can be taken before the server binds it: try again with new ports.
    let mut last = String::new();
    for _attempt in 0..3 {
        let etcd_data = temp_dir("faultline-etcd")?;
        match start_once(tools, &dir, &pki, &etcd_data, timeout) {
            Ok(plane) => return Ok(plane),
            Err((mut processes, why, retry)) => {
                stop_children(&mut processes);
                let _ = fs::remove_dir_all(&etcd_data);
                if !retry {
                    return Err(why);
                }
                last = why;
            }
        }
    }
    Err(last)
}

type StartError = (Vec<Child>, String, bool);

fn start_once(
    tools: &Tools,
    dir: &Path,
    pki: &Pki,
    etcd_data: &Path,
    timeout: Duration,
) -> Result<ControlPlane, StartError> {
    let fail = |processes, why: String| (processes, why, false);
    let ports = [free_port(), free_port(), free_port()];
    let [etcd_port, peer_port, api_port] = match ports {
        [Ok(a), Ok(b), Ok(c)] => [a, b, c],
        _ => return Err(fail(Vec::new(), "no free loopback ports".into())),
    };
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut processes = Vec::new();
    let etcd = spawn_logged(
        Command::new(&tools.etcd)
            .args(["--name", "faultline", "--data-dir"])
            .arg(etcd_data)
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("faultline={peer_url}")])
            .args(["--unsafe-no-fsync", "--log-level", "warn"]),
        &dir.join("etcd.log"),
    );
    match etcd {
        Ok(child) => processes.push(child),
        Err(why) => return Err(fail(processes, why)),
    }
    let server = format!("https://127.0.0.1:{api_port}");
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let apiserver = spawn_logged(
        Command::new(&tools.kube_apiserver)
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--cert-dir={}", path(dir.join("apiserver"))))
            .arg(format!("--tls-cert-file={}", path(pki.file("tls.crt"))))
            .arg(format!(
                "--tls-private-key-file={}",
                path(pki.file("tls.key"))
            ))
            .arg(format!("--client-ca-file={}", path(pki.file("ca.crt"))))
            .arg(format!(
                "--service-account-key-file={}",
                path(pki.sa_public_key())
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                path(pki.sa_key())
            ))
            .arg(format!("--service-account-issuer={server}"))
            .arg("--service-cluster-ip-range=10.96.0.0/24")
            .arg("--authorization-mode=RBAC")
            .arg("--allow-privileged=true")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false")
            .arg("--v=1"),
        &dir.join("kube-apiserver.log"),
    );
    match apiserver {
        Ok(child) => processes.push(child),
        Err(why) => return Err(fail(processes, why)),
    }
    let kubeconfig = dir.join("kubeconfig");
    if let Err(why) = fs::write(&kubeconfig, kubeconfig_text(&server, pki)) {
        return Err(fail(processes, format!("{}: {why}", kubeconfig.display())));
    }
    let plane = ControlPlane {
        dir: dir.to_owned(),
        etcd_data: etcd_data.to_owned(),
        server,
        kubeconfig,
        processes,
    };
    if let Err(why) = write_state(&plane, tools) {
        return Err(fail(plane.processes, why));
    }
    match wait_ready(&plane, tools, timeout) {
        Ok(()) => Ok(plane),
        Err(why) => {
            let logs = ["etcd.log", "kube-apiserver.log"]
                .iter()
                .map(|name| fs::read_to_string(dir.join(name)).unwrap_or_default())
                .collect::<String>();
            let retry = logs.contains("address already in use");
            Err((plane.processes, why, retry))
        }
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", cmd.get_program().to_string_lossy()))
}

/// The admin kubeconfig (certificate paths, not inline data, so it stays readable).
pub fn kubeconfig_text(server: &str, pki: &Pki) -> String {
    let p = |name: &str| pki.file(name).to_string_lossy().into_owned();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: faultline\n  cluster:\n    \
         server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {ADMIN_USER}\n  \
         user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n\
         - name: faultline\n  context:\n    cluster: faultline\n    user: {ADMIN_USER}\n\
         current-context: faultline\n",
        ca = p("ca.crt"),
        crt = p("client.crt"),
        key = p("client.key"),
    )
}

fn wait_ready(plane: &ControlPlane, tools: &Tools, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = Command::new(&tools.kubectl)
            .arg("--kubeconfig")
            .arg(&plane.kubeconfig)
            .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: cannot start: {e}", tools.kubectl.display()))?;
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            return Ok(());
        }
        let last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        for (name, pid) in ["etcd", "kube-apiserver"].iter().zip(pids(plane)) {
            if !alive(pid) {
                return Err(format!(
                    "{name} exited during start-up; the end of {}:\n{}",
                    plane.dir.join(format!("{name}.log")).display(),
                    tail(&plane.dir.join(format!("{name}.log")), 20)
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "kube-apiserver not ready after {} s (last answer: {last}); the end of {}:\n{}",
                timeout.as_secs(),
                plane.dir.join("kube-apiserver.log").display(),
                tail(&plane.dir.join("kube-apiserver.log"), 20)
            ));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

pub(super) fn pids(plane: &ControlPlane) -> Vec<u32> {
    plane.processes.iter().map(Child::id).collect()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn temp_dir(prefix: &str) -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = env::temp_dir().join(format!("{prefix}-{}-{nanos:08x}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// What the state file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The etcd data directory.
    pub etcd_data: PathBuf,
    /// (PID, binary) of every process started, etcd first.
    pub processes: Vec<(u32, PathBuf)>,
}

impl State {
    fn render(&self) -> String {
        let mut text = format!(
            "server={}\nkubeconfig={}\netcd_data={}\n",
            self.server,
            self.kubeconfig.display(),
            self.etcd_data.display()
        );
        for (pid, binary) in &self.processes {
            let _ = writeln!(text, "process={pid} {}", binary.display());
        }
        text
    }

    /// Parses a state file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut state = State {
            server: String::new(),
            kubeconfig: PathBuf::new(),
            etcd_data: PathBuf::new(),
            processes: Vec::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("state file: {line:?} is not key=value"))?;
            match key {
                "server" => state.server = value.to_owned(),
                "kubeconfig" => state.kubeconfig = value.into(),
                "etcd_data" => state.etcd_data = value.into(),
                "process" => {
                    let (pid, binary) = value
                        .split_once(' ')
                        .and_then(|(p, b)| Some((p.parse().ok()?, PathBuf::from(b))))
                        .ok_or_else(|| format!("state file: {line:?} is not process=PID PATH"))?;
                    state.processes.push((pid, binary));
                }
                other => return Err(format!("state file: unknown key {other:?}")),
            }
        }
        if state.server.is_empty() || state.kubeconfig.as_os_str().is_empty() {
            return Err("state file: no server or kubeconfig".to_owned());
        }
        Ok(state)
    }

    /// Reads `dir`'s state file.
    pub fn load(dir: &Path) -> Result<Self, String> {
        Self::parse(&read(&dir.join(STATE_FILE))?)
    }
}

fn write_state(plane: &ControlPlane, tools: &Tools) -> Result<(), String> {
    let state = State {
        server: plane.server.clone(),
        kubeconfig: plane.kubeconfig.clone(),
        etcd_data: plane.etcd_data.clone(),
        processes: pids(plane)
            .into_iter()
            .zip([tools.etcd.clone(), tools.kube_apiserver.clone()])
            .collect(),
    };
    let path = plane.dir.join(STATE_FILE);
    fs::write(&path, state.render()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            let after = &stat[stat.rfind(')')? + 1..];
            after
                .split_whitespace()
                .next()
                .map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

/// Whether `pid` runs `binary` (its argv[0]): the state file's PID may have been reused.
fn runs(pid: u32, binary: &Path) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .next()
                .map(|argv0| argv0 == binary.as_os_str().as_encoded_bytes())
        })
        .unwrap_or(false)
}

fn signal(pid: u32, name: &str) {
    // The shell's kill builtin: std cannot signal a process that is not its child.
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -{name} {pid} 2>/dev/null")])
        .status();
}

fn stop_children(children: &mut [Child]) {
    // kube-apiserver first (reverse start order), then etcd; each gets SIGTERM and 10 s.
    for child in children.iter_mut().rev() {
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Stops a control plane this process started and removes its directories.
pub fn stop(plane: &mut ControlPlane) -> Result<(), String> {
    stop_children(&mut plane.processes);
    remove_dirs(&plane.dir, &plane.etcd_data)
}

fn remove_dirs(dir: &Path, etcd_data: &Path) -> Result<(), String> {
    let mut errors = Vec::new();
    for d in [etcd_data, dir] {
        if d.as_os_str().is_empty() {
            continue;
        }
        if let Err(e) = fs::remove_dir_all(d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("{}: {e}", d.display()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Whether a state file in `dir` names a process that still runs.
pub fn is_up(dir: &Path) -> bool {
    State::load(dir).is_ok_and(|s| {
        s.processes
            .iter()
            .any(|(pid, bin)| runs(*pid, bin) && alive(*pid))
    })
}

/// Stops what the state file in `dir` names (exactly those processes: each PID is checked
/// against the binary it was started as) and removes the directories. Returns what it stopped.
pub fn down(dir: &Path) -> Result<Vec<String>, String> {
    let state = State::load(dir)?;
    let mut stopped = Vec::new();
    for (pid, binary) in state.processes.iter().rev() {
        if !runs(*pid, binary) {
            continue;
        }
        signal(*pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(*pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if alive(*pid) && runs(*pid, binary) {
            signal(*pid, "KILL");
        }
        stopped.push(format!(
            "{} (pid {pid})",
            binary.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    remove_dirs(dir, &state.etcd_data)?;
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_refuses_garbage() {
        let state = State {
            server: "https://127.0.0.1:6443".into(),
            kubeconfig: "/tmp/x/kubeconfig".into(),
            etcd_data: "/tmp/etcd".into(),
            processes: vec![(12, "/c/etcd".into()), (13, "/c/kube-apiserver".into())],
        };
        assert_eq!(State::parse(&state.render()).unwrap(), state);
        assert!(State::parse("pid=3\n").is_err());
        assert!(State::parse("process=x /bin/etcd\n").is_err());
        assert!(State::parse("etcd_data=/x\n").is_err());
    }
    #[test]
    fn only_the_recorded_binary_counts_as_ours() {
        let me = std::process::id();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        assert!(alive(me));
        // argv[0] of a test binary is its path as cargo ran it.
        let argv0 = env::args().next().unwrap();
        assert!(runs(me, Path::new(&argv0)));
        assert!(!runs(me, Path::new("/usr/bin/etcd")));
        assert!(!alive(u32::MAX - 1));
        let _ = exe;
    }
}
