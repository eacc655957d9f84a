//! A private, real containerd with busybox containers, for tests of the node daemon.
//!
//! [`Containerd::start`] runs `containerd` with its own config, root, state and sockets in a
//! temporary directory (CRI disabled: no image is ever pulled, no registry is reachable), and
//! [`Containerd::run`] starts containers on a busybox rootfs through `ctr run --rootfs`. The
//! containers get containerd's default cgroup, `/<namespace>/<id>` in every hierarchy, so ids
//! must be unique on the machine (use [`crate::unique_name`]): two instances share the cgroup
//! tree and the shims' socket directory (`/run/containerd/s`). Each instance builds its own
//! busybox rootfs (a 2 MB copy and symlinks, milliseconds), so it goes away with the instance:
//! a process-wide one would outlive the process, statics are never dropped.
//!
//! Dropping the [`Containerd`] leaves nothing behind: tasks and containers of every namespace are
//! deleted, containerd is stopped, shims that outlived it are killed with their containers (by
//! the `-address` on their command line), leftover cgroups and mounts are removed, then the
//! directory. A test process killed with SIGKILL runs no Drop: its containers keep running
//! (`ps` shows their shims with `-address /tmp/faultline-containerd-<pid>-<n>/…`). Everything
//! here blocks (process calls and short polls); from an async test it is
//! fine to call it directly, the daemon under test being another process.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod host;

pub use host::{
    alive_pid, busybox_rootfs, cgroup_cpu_usage_ns, cgroup_dirs, processes_mentioning,
    static_busybox,
};
use host::{descendants, find_on_path, proc_stat, unix_socket_paths, unmount_under};

/// The namespace the daemon defaults to (`--containerd-namespace k8s.io`), as the kubelet's.
pub const DEFAULT_NAMESPACE: &str = "k8s.io";

/// `PATH` inside the containers: with `--rootfs` there is no image config to supply one, and
/// without it runc cannot find `sleep` ("executable file not found in $PATH").
const CONTAINER_PATH: &str = "PATH=/bin:/sbin:/usr/bin:/usr/sbin";

/// Where containerd 1.6's shims put their sockets, whatever the `state` directory.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// Tools a containerd test needs, with the Debian package that has each.
const TOOLS: [(&str, &str); 4] = [
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("runc", "runc"),
];

/// What is missing here for containerd tests (empty: they can run).
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (containerd and runc need it)".to_owned());
    }
    for (tool, package) in TOOLS {
        if find_on_path(tool).is_none() {
            missing.push(format!("`{tool}` on PATH (Debian package {package})"));
        }
    }
    if let Err(why) = static_busybox() {
        missing.push(why);
    }
    missing
}

/// Starts a [`Containerd`] for `test`. When a prerequisite is missing it prints `SKIP <test>:
/// …` and returns `None`, except on CI (`CI=true` or `1`) where it panics naming what is
/// missing. A containerd that does not start is a failure everywhere.
pub fn start_or_skip(test: &str) -> Option<Containerd> {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        let missing = missing.join("; ");
        assert!(
            !crate::on_ci(),
            "{test}: containerd tests cannot run (CI is set, so this fails): missing {missing}"
        );
        eprintln!("SKIP {test}: containerd tests need {missing}");
        return None;
    }
    Some(Containerd::start().unwrap_or_else(|e| panic!("{test}: {e}")))
}

/// A running containerd of this test process. See the module documentation.
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    namespace: String,
    rootfs: PathBuf,
    child: Option<Child>,
    /// Containers [`Containerd::run`] started: killed by pid if their shim is gone.
    started: Mutex<Vec<Started>>,
}

struct Started {
    pid: u32,
    start_time: u64,
    cgroups: Vec<PathBuf>,
}

impl Containerd {
    /// Starts containerd in namespace [`DEFAULT_NAMESPACE`]; see [`Containerd::start_in`].
    pub fn start() -> Result<Containerd, String> {
        Containerd::start_in(DEFAULT_NAMESPACE)
    }

    /// Starts containerd in a new temporary directory and waits (20 s at most) until its socket
    /// answers `ctr version`; containers run in `namespace`.
    pub fn start_in(namespace: &str) -> Result<Containerd, String> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("faultline-containerd-{}-{n}", std::process::id()));
        let socket = dir.join("containerd.sock");
        // sun_path holds 108 bytes with the NUL; the ttrpc socket's name is the longer one.
        if socket.as_os_str().len() + ".ttrpc".len() > 107 {
            return Err(format!("{}: too long for a unix socket", socket.display()));
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut containerd = Containerd {
            rootfs: dir.join("rootfs"),
            dir,
            socket,
            namespace: namespace.to_owned(),
            child: None,
            started: Mutex::new(Vec::new()),
        };
        // From here on, Drop cleans up whatever a failed start left.
        busybox_rootfs(&containerd.rootfs)?;
        let config = containerd.dir.join("config.toml");
        std::fs::write(&config, config_toml(&containerd.dir)?)
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let log_path = containerd.dir.join("containerd.log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Its own process group: a Ctrl-C in the terminal reaches the test, not containerd.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("containerd --config {}: {e}", config.display()))?;
        containerd.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let why_not = match containerd.ctr(&["version"]) {
                Ok(_) => return Ok(containerd),
                Err(e) => e,
            };
            let exited = containerd
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let why = exited.map_or("not answering after 20 s".to_owned(), |s| s.to_string());
                return Err(format!(
                    "containerd --config {}: {why}; last {why_not}\ncontainerd log:\n{}",
                    config.display(),
                    containerd.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its gRPC socket (`--containerd-socket` of the daemon).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The namespace [`Containerd::run`] uses (`--containerd-namespace` of the daemon).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Its temporary directory (config, root, state, logs, rootfs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The busybox rootfs its containers share (writable: `/tmp` is shared too).
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// containerd's pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What containerd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr --address SOCKET -n NAMESPACE ARGS…` and returns its stdout.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        ctr(&self.socket, &self.namespace, args)
    }

    /// Starts container `id` running `args` (`ctr run -d --rootfs`), its output in a log file
    /// ([`Container::log`]). It runs until killed or until this instance is dropped.
    pub fn run(&self, id: &str, args: &[&str]) -> Result<Container, String> {
        let pid_file = self.dir.join("logs").join(format!("{id}.pid"));
        let log = self.dir.join("logs").join(format!("{id}.log"));
        let (pid_arg, log_uri) = (path_str(&pid_file)?, format!("file://{}", path_str(&log)?));
        // runc's state goes under our directory rather than /run/containerd/runc/<namespace>,
        // which every containerd on the machine shares.
        let runc_root = path_str(&self.dir.join("runc"))?;
        let mut full = vec![
            "run",
            "-d",
            "--env",
            CONTAINER_PATH,
            "--pid-file",
            pid_arg.as_str(),
        ];
        full.extend(["--log-uri", &log_uri, "--runc-root", &runc_root, "--rootfs"]);
        let rootfs = path_str(&self.rootfs)?;
        full.extend([rootfs.as_str(), id]);
        full.extend(args);
        self.ctr(&full)?;
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("ctr run {id}: no pid in {}", pid_file.display()))?;
        let start_time = proc_stat(pid).map_or(0, |s| s.start_time);
        let cgroups = cgroup_dirs(pid).unwrap_or_default();
        let dirs = cgroups.into_iter().map(|(_, dir)| dir).collect();
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Started {
                pid,
                start_time,
                cgroups: dirs,
            });
        Ok(Container {
            id: id.to_owned(),
            pid,
            socket: self.socket.clone(),
            namespace: self.namespace.clone(),
            log,
        })
    }

    /// Deletes every task and container in every namespace of this containerd (also those the
    /// daemon under test created); `ctr task delete -f` kills a running task and waits for it.
    fn delete_all(&self) -> Result<(), String> {
        let namespaces = ctr(&self.socket, "default", &["namespaces", "ls", "-q"])?;
        for ns in namespaces.lines().filter(|l| !l.is_empty()) {
            let tasks = ctr(&self.socket, ns, &["task", "ls", "-q"])?;
            for task in tasks.lines().filter(|l| !l.is_empty()) {
                ctr(&self.socket, ns, &["task", "delete", "-f", task])?;
            }
            let containers = ctr(&self.socket, ns, &["containers", "ls", "-q"])?;
            for container in containers.lines().filter(|l| !l.is_empty()) {
                ctr(&self.socket, ns, &["containers", "delete", container])?;
            }
        }
        Ok(())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let alive = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if alive && let Err(why) = self.delete_all() {
            eprintln!("faultline-e2e containerd: deleting containers: {why}");
        }
        if let Some(mut child) = self.child.take() {
            crate::stop_child(&mut child, Duration::from_secs(5));
        }
        // Shims outlive containerd (they are reparented): find this instance's by the
        // `-address` on their command line, and kill them with everything under them.
        let socket = self.socket.to_string_lossy().into_owned();
        let shims = processes_mentioning(&socket);
        let mut doomed = shims.clone();
        let mut sockets = Vec::new();
        for shim in &shims {
            doomed.extend(descendants(*shim));
            sockets.extend(unix_socket_paths(*shim));
        }
        // A container whose shim died was reparented too; the start time guards pid reuse.
        let started = std::mem::take(self.started.get_mut().unwrap_or_else(|e| e.into_inner()));
        doomed.extend(started.iter().filter_map(|s| {
            let same = proc_stat(s.pid).is_some_and(|now| now.start_time == s.start_time);
            same.then_some(s.pid)
        }));
        for pid in &doomed {
            // SAFETY: kill has no memory preconditions; every pid was alive and ours above.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while doomed.iter().any(|pid| alive_pid(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // A shim removes its socket (named by a hash of our socket, ns and id, in a directory
        // every containerd on the machine shares) when it exits, but not when it is killed.
        for socket in sockets.iter().filter(|s| s.starts_with(SHIM_SOCKET_DIR)) {
            let _ = std::fs::remove_file(socket);
        }
        // runc removes a container's cgroups on delete, not when its shim was killed.
        for dir in started.iter().flat_map(|s| &s.cgroups) {
            let _ = std::fs::remove_dir(dir);
        }
        unmount_under(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "faultline-e2e containerd: removing {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// A container started by [`Containerd::run`].
#[derive(Debug, Clone)]
pub struct Container {
    /// Its containerd id.
    pub id: String,
    pid: u32,
    socket: PathBuf,
    namespace: String,
    log: PathBuf,
}

impl Container {
    /// `containerd://<id>`, as a pod's `status.containerStatuses[].containerID` names it.
    pub fn container_id(&self) -> String {
        format!("containerd://{}", self.id)
    }

    /// The task's init pid (in the host's pid namespace).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The task's status as `ctr task ls` says it (`RUNNING`, `STOPPED`, `PAUSED`, …), `None`
    /// when there is no task.
    pub fn status(&self) -> Result<Option<String>, String> {
        let out = ctr(&self.socket, &self.namespace, &["task", "ls"])?;
        Ok(out.lines().skip(1).find_map(|line| {
            let mut cols = line.split_whitespace();
            (cols.next() == Some(self.id.as_str())).then(|| cols.nth(1).unwrap_or("").to_owned())
        }))
    }

    /// Whether the task is running.
    pub fn is_running(&self) -> bool {
        self.status().is_ok_and(|s| s.as_deref() == Some("RUNNING"))
    }

    /// Waits until the task has stopped (or is gone), polling every 50 ms.
    pub fn wait_exited(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.status()? {
                None => return Ok(()),
                Some(s) if s == "STOPPED" => return Ok(()),
                Some(s) if Instant::now() > deadline => {
                    return Err(format!("container {} still {s} after {timeout:?}", self.id));
                }
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `ctr task kill -s SIGNAL <id>` (e.g. `SIGKILL`).
    pub fn kill(&self, signal: &str) -> Result<(), String> {
        ctr(
            &self.socket,
            &self.namespace,
            &["task", "kill", "-s", signal, &self.id],
        )
        .map(drop)
    }

    /// What the container wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn ctr(socket: &Path, namespace: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args([
            "-n",
            namespace,
            "--connect-timeout",
            "2s",
            "--timeout",
            "60s",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ctr {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ctr -n {namespace} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// containerd 1.6's config (version 2) with everything under `dir`.
fn config_toml(dir: &Path) -> Result<String, String> {
    // A JSON string is a valid TOML basic string.
    let q = |name: &str| path_str(&dir.join(name)).map(|p| serde_json::json!(p).to_string());
    Ok(format!(
        "version = 2\nroot = {}\nstate = {}\ntemp = {}\n\
         # No CRI: nothing here pulls images or needs CNI.\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
         [grpc]\n  address = {}\n\n[ttrpc]\n  address = {}\n\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}\n",
        q("root")?,
        q("state")?,
        q("tmp")?,
        q("containerd.sock")?,
        q("containerd.sock.ttrpc")?,
        q("opt")?,
    ))
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: not UTF-8", path.display()))
}
