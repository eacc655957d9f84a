//! `io.apply` / `io.recover` of the real daemon, relayed to a real `faultline-sidecar` that
//! runs in a network namespace of its own ("the pod"), listening on 127.0.0.1 there — out of
//! reach of the host's loopback — with its FUSE mount live: the rules reach it under
//! `<faultId>.<n>`, fail real reads, and leave exactly when they are recovered, refused or
//! crashed on. Needs root (network namespaces, FUSE); every namespace, process and mount is
//! removed by guards, also when a test fails.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Options, root_or_skip};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

/// The port the daemon looks for the sidecar on by default.
const SIDECAR_PORT: u16 = 65533;

fn eio_rule() -> Value {
    json!({"type": "fault", "path": "**/*.db", "faults": [{"errno": "EIO", "weight": 1}], "percent": 100})
}

fn latency_rule() -> Value {
    json!({"type": "latency", "latency": "10ms"})
}

/// Root, and the sidecar binary; `None` (skip, printed) outside CI when either is missing.
fn prerequisites(test: &str) -> Option<PathBuf> {
    if !root_or_skip(test) {
        return None;
    }
    let missing = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing".to_owned())
    } else if !Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Some("`ip` (iproute2) is not installed".to_owned())
    } else {
        None
    };
    if let Some(why) = missing {
        assert!(!faultline_e2e::on_ci(), "{test}: {why} (CI=true)");
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    match faultline_e2e::binary("faultline-sidecar", "faultline-sidecar") {
        Ok(bin) => Some(bin),
        Err(why) => panic!("{test}: building faultline-sidecar: {why}"),
    }
}

/// Runs a command that must succeed; its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace with `lo` up; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "flio-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// `ip netns exec <ns> <program>`: the program itself (ip execs it) in the namespace.
    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A TCP listener on 127.0.0.1:`port` inside the namespace (bound from a thread that
    /// entered it and then ends; the socket stays in the namespace).
    fn listen(&self, port: u16) -> tokio::net::TcpListener {
        let ns = std::fs::File::open(self.path()).expect("open the netns");
        let listener = std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .join()
        .expect("netns thread");
        tokio::net::TcpListener::from_std(listener).expect("tokio listener")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("ip netns del {}: {out:?}", self.name);
        }
    }
}

/// A child process: SIGTERM then SIGKILL on drop, always reaped.
struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Proc { child: Some(child) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok()?
    }

    /// Waits until the process runs `comm` (`ip netns exec` has entered the namespace and
    /// exec'd it).
    fn wait_exec(&mut self, comm: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let path = format!("/proc/{}/comm", self.pid());
        while std::fs::read_to_string(&path).map_or(true, |c| !comm.starts_with(c.trim())) {
            assert!(self.exited().is_none(), "{comm} exited");
            assert!(Instant::now() < deadline, "{comm} not started in 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A "pod": a network namespace with a fault sidecar (FUSE mount over `src/`, JSON-RPC on
/// 127.0.0.1:`port` inside the namespace and on a Unix socket) and optionally an app process.
/// Fields drop in order: processes (the mount goes with the sidecar's private mount
/// namespace), then the network namespace, then the files.
struct Pod {
    app: Option<Proc>,
    sidecar: Proc,
    netns: Netns,
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Pod {
    fn start(bin: &Path, port: u16) -> Pod {
        let dir = tempfile::Builder::new()
            .prefix("faultline-io-relay")
            .tempdir()
            .expect("tempdir");
        let (src, mnt) = (dir.path().join("src"), dir.path().join("mnt"));
        std::fs::create_dir(&src).expect("mkdir src");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        std::fs::write(src.join("x.db"), b"rows").expect("x.db");
        std::fs::write(src.join("notes.txt"), b"notes").expect("notes.txt");
        let log = std::fs::File::create(dir.path().join("sidecar.log")).expect("log");
        let netns = Netns::create();
        let sidecar = Proc::spawn(
            netns
                .exec(bin)
                .arg("--source")
                .arg(&src)
                .arg("--mountpoint")
                .arg(&mnt)
                .arg("--rpc-listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--rpc-socket")
                .arg(dir.path().join("rpc.sock"))
                .env("RUST_LOG", "info")
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        );
        let mut pod = Pod {
            app: None,
            sidecar,
            netns,
            dir,
            bin: bin.to_owned(),
            port,
        };
        pod.wait_ready();
        pod
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = self
                .netns
                .exec(&self.bin)
                .args(["probe", "--rpc-listen", &format!("127.0.0.1:{}", self.port)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run the probe");
            if probe.success() {
                return;
            }
            if let Some(status) = self.sidecar.exited() {
                panic!("the sidecar exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not ready in 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("rpc.sock")
    }

    /// Starts an app process (`sleep`) in the pod's network namespace; its pid.
    fn start_app(&mut self) -> u32 {
        let mut app = Proc::spawn(self.netns.exec("sleep").arg("600"));
        app.wait_exec("sleep");
        let pid = app.pid();
        self.app = Some(app);
        pid
    }

    fn target(&self) -> Value {
        json!({"pid": self.sidecar.pid()})
    }

    /// `faultline-sidecar <args>` against the sidecar's listener inside the namespace.
    fn cli(&self, args: &[&str]) -> String {
        run(self
            .netns
            .exec(&self.bin)
            .args(args)
            .args(["--rpc-listen", &format!("127.0.0.1:{}", self.port)]))
    }

    /// The sidecar's rules: id → rule as it holds it.
    fn rules(&self) -> Vec<(String, Value)> {
        let list: Value =
            serde_json::from_str(&self.cli(&["rules", "list", "-o", "json"])).expect("JSON");
        let mut rules: Vec<(String, Value)> = list["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| (r["id"].as_str().expect("id").to_owned(), r["rule"].clone()))
            .collect();
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        rules
    }

    fn rule_ids(&self) -> Vec<String> {
        self.rules().into_iter().map(|(id, _)| id).collect()
    }

    fn add_rule(&self, rule: &Value) {
        self.cli(&["rules", "add", &rule.to_string()]);
    }

    /// `name` in the FUSE mount, which lives in the sidecar's mount namespace (`ip netns exec`
    /// made one): reached through `/proc/<pid>/root`.
    fn mounted(&self, name: &str) -> PathBuf {
        let mnt = self.dir.path().join("mnt").join(name);
        PathBuf::from(format!("/proc/{}/root", self.sidecar.pid()))
            .join(mnt.strip_prefix("/").expect("absolute"))
    }
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

async fn io_apply(d: &Daemon, target: &Value, rules: Value) -> String {
    let r = d
        .ok("io.apply", json!({"target": target, "rules": rules}))
        .await;
    let id = r["faultId"].as_str().expect("faultId").to_owned();
    assert!(id.starts_with("io-"), "{r}");
    id
}

async fn listed(d: &Daemon) -> Vec<String> {
    let list = d.ok("faults.list", json!({})).await;
    let mut ids: Vec<String> = list["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .map(|f| f["faultId"].as_str().expect("faultId").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Waits until `check` holds, up to `timeout`, polling every 20 ms (blocking checks).
fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn rules_reach_the_sidecar_in_the_pods_namespace_and_fail_real_reads() {
    let Some(bin) = prerequisites("io-apply") else {
        return;
    };
    let pod = Pod::start(&bin, SIDECAR_PORT);
    let d = Daemon::start(Options::default()).await;
    assert_eq!(std::fs::read(pod.mounted("x.db")).expect("x.db"), b"rows");

    let id = io_apply(&d, &pod.target(), json!([eio_rule(), latency_rule()])).await;
    let rules = pod.rules();
    let (r0, r1) = (format!("{id}.0"), format!("{id}.1"));
    assert_eq!(
        rules.iter().map(|r| &r.0).collect::<Vec<_>>(),
        [&r0, &r1],
        "{rules:?}"
    );
    assert_eq!(
        rules[0].1,
        json!({"id": r0, "type": "fault", "path": "**/*.db", "faults": [{"errno": libc::EIO, "weight": 1}], "percent": 100})
    );
    assert_eq!(
        rules[1].1,
        json!({"id": r1, "type": "latency", "latency": "10ms"})
    );
    assert_eq!(listed(&d).await, vec![id.clone()]);
    assert_eq!(d.journal(), vec![format!("{id}.json")]);

    // A real effect through the mount: the .db file fails with EIO, another file reads.
    let err = std::fs::read(pod.mounted("x.db")).expect_err("EIO");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        std::fs::read(pod.mounted("notes.txt")).expect("notes"),
        b"notes"
    );

    // The sidecar is not on the host's loopback: 127.0.0.1:65533 there is refused, or is
    // something that does not have our rules.
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, SIDECAR_PORT));
    if TcpStream::connect_timeout(&host, Duration::from_secs(2)).is_ok() {
        let out = Command::new(&bin)
            .args([
                "rules",
                "list",
                "-o",
                "json",
                "--rpc-listen",
                &host.to_string(),
            ])
            .output()
            .expect("run the CLI");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(&id),
            "the pod's sidecar answered on the host's loopback"
        );
    }

    d.ok("io.recover", json!({"faultId": id})).await;
    assert!(pod.rule_ids().is_empty());
    eventually("x.db reads again", Duration::from_secs(5), || {
        std::fs::read(pod.mounted("x.db")).is_ok_and(|b| b == b"rows")
    });
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
}

#[tokio::test]
async fn recover_removes_exactly_the_faults_rules() {
    let Some(bin) = prerequisites("io-recover") else {
        return;
    };
    let mut pod = Pod::start(&bin, SIDECAR_PORT);
    // The target is the pod's app; the daemon finds the sidecar in its network namespace.
    let app = json!({"pid": pod.start_app()});
    let d = Daemon::start(Options::default()).await;
    pod.add_rule(
        &json!({"id": "someone-else", "type": "latency", "path": "logs/**", "latency": "1ms"}),
    );

    let f1 = io_apply(&d, &app, json!([eio_rule(), latency_rule()])).await;
    let f2 = io_apply(&d, &app, json!([latency_rule()])).await;
    let f3 = io_apply(&d, &app, json!([eio_rule()])).await;
    let (f1_0, f1_1, f2_0, f3_0) = (
        format!("{f1}.0"),
        format!("{f1}.1"),
        format!("{f2}.0"),
        format!("{f3}.0"),
    );
    assert_eq!(
        pod.rule_ids(),
        sorted(&["someone-else", &f1_0, &f1_1, &f2_0, &f3_0])
    );

    // One fault: exactly its rules.
    d.ok("io.recover", json!({"faultId": f1})).await;
    assert_eq!(pod.rule_ids(), sorted(&["someone-else", &f2_0, &f3_0]));
    assert_eq!(listed(&d).await, sorted(&[&f2, &f3]));
    assert_eq!(d.journal().len(), 2);

    // The target: every I/O fault of this daemon on it, and nothing else.
    d.ok("io.recover", json!({"target": app})).await;
    assert_eq!(pod.rule_ids(), vec!["someone-else".to_owned()]);
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
    let err = d
        .call("io.recover", json!({"faultId": f1}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32004, "{err}");
}

/// An I/O fault with a `ttl` leaves by itself: the daemon removes its rules from the sidecar
/// and its journal entry when the ttl ends (a controller that died cannot leave it behind).
#[tokio::test]
async fn a_ttl_removes_the_rules_by_itself() {
    let Some(bin) = prerequisites("io-ttl") else {
        return;
    };
    let mut pod = Pod::start(&bin, SIDECAR_PORT);
    let app = json!({"pid": pod.start_app()});
    let d = Daemon::start(Options::default()).await;
    let r = d
        .ok(
            "io.apply",
            json!({"target": app, "rules": [eio_rule()], "ttl": "2s", "faultId": "io-ttl-1"}),
        )
        .await;
    assert_eq!(r["faultId"], "io-ttl-1");
    assert_eq!(pod.rule_ids(), sorted(&["io-ttl-1.0"]));
    let listed_fault = d.ok("faults.list", json!({})).await;
    assert!(
        listed_fault["faults"][0]["expiresAt"].is_string(),
        "{listed_fault}"
    );
    eventually("the ttl removes the rule", Duration::from_secs(10), || {
        pod.rule_ids().is_empty()
    });
    d.eventually("the journal entry goes", Duration::from_secs(5), || {
        d.journal().is_empty()
    })
    .await;
}

/// Every rule type reaches the sidecar as the caller wrote it: the same rules added directly
/// read back identical (apart from their ids).
#[tokio::test]
async fn every_rule_type_reaches_the_sidecar_unchanged() {
    let Some(bin) = prerequisites("io-rule-types") else {
        return;
    };
    let pod = Pod::start(&bin, SIDECAR_PORT);
    let d = Daemon::start(Options::default()).await;
    let rules = json!([
        {"type": "latency", "path": "logs/**", "methods": ["read", "WRITE"], "percent": 50,
         "latency": "10ms", "ttl": "1h"},
        {"type": "fault", "path": "**/*.db", "methods": ["open"],
         "faults": [{"errno": "ENOSPC", "weight": 3}, {"errno": 5}]},
        {"type": "attrOverride", "path": "etc/*",
         "attr": {"perm": "0400", "size": 7, "mtime": {"sec": 1, "nsec": 2}, "kind": "regularFile"}},
        {"type": "mistake", "path": "data/*",
         "mistake": {"filling": "random", "maxOccurrences": 2, "maxLength": 16}}
    ]);
    let id = io_apply(&d, &pod.target(), rules.clone()).await;
    for (n, rule) in rules.as_array().expect("rules").iter().enumerate() {
        let mut direct = rule.clone();
        direct["id"] = json!(format!("direct.{n}"));
        pod.add_rule(&direct);
    }
    let held = pod.rules();
    let without_id = |id: &str| {
        let mut rule = held
            .iter()
            .find(|r| r.0 == id)
            .unwrap_or_else(|| panic!("{id} not in {held:?}"))
            .1
            .clone();
        rule.as_object_mut().expect("object").remove("id");
        rule
    };
    for n in 0..4 {
        assert_eq!(
            without_id(&format!("{id}.{n}")),
            without_id(&format!("direct.{n}")),
            "rule {n}"
        );
    }
    d.ok("io.recover", json!({"target": pod.target()})).await;
    assert_eq!(
        pod.rule_ids(),
        sorted(&["direct.0", "direct.1", "direct.2", "direct.3"])
    );
    assert!(d.journal().is_empty());
}

/// What the relay in front of the sidecar does to the daemon's first connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Script {
    /// Before the first `rules.add` (`<faultId>.0`) reaches the sidecar, someone else adds a
    /// rule with the id the daemon will give the second rule: the sidecar refuses that one.
    TakeTheSecondId,
    /// The second `rules.add` reaches the sidecar, which adds the rule; its answer is lost (the
    /// connection drops).
    LoseTheSecondAnswer,
}

/// One HTTP/1.1 message (head and a `content-length` body) from `s`, `None` at EOF.
async fn read_message(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(!head.contains("transfer-encoding"), "{head}");
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().expect("content-length"));
            if buf.len() >= end + 4 + len {
                return Some(buf.drain(..end + 4 + len).collect());
            }
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn body(message: &[u8]) -> Value {
    let at = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head");
    serde_json::from_slice(&message[at + 4..]).unwrap_or(Value::Null)
}

/// A relay on 127.0.0.1:`port` in the pod's namespace, in front of the sidecar's Unix socket,
/// playing `script` on the first connection and passing later ones through. Records the
/// JSON-RPC calls it saw.
fn relay(pod: &Pod, port: u16, script: Script) -> Arc<Mutex<Vec<Value>>> {
    let listener = pod.netns.listen(port);
    let socket = pod.socket();
    let (bin, port_in_pod) = (pod.bin.clone(), pod.port);
    let netns = pod.netns.name.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = seen.clone();
    tokio::spawn(async move {
        let mut script = Some(script);
        while let Ok((mut client, _)) = listener.accept().await {
            let (socket, bin, netns, calls) =
                (socket.clone(), bin.clone(), netns.clone(), calls.clone());
            let script = script.take();
            tokio::spawn(async move {
                let mut up = tokio::net::UnixStream::connect(&socket)
                    .await
                    .expect("the sidecar's socket");
                let (mut from_client, mut from_up) = (Vec::new(), Vec::new());
                let mut n = 0;
                while let Some(request) = read_message(&mut client, &mut from_client).await {
                    n += 1;
                    let call = body(&request);
                    calls.lock().unwrap().push(call.clone());
                    if script == Some(Script::TakeTheSecondId) && n == 1 {
                        let first = call["params"]["rule"]["id"].as_str().expect("rule id");
                        let taken = format!("{}.1", first.strip_suffix(".0").expect(".0"));
                        let rule = json!({"id": taken, "type": "latency", "path": "other/**", "latency": "1ms"});
                        let out = tokio::process::Command::new("ip")
                            .args(["netns", "exec", &netns])
                            .arg(&bin)
                            .args(["rules", "add", &rule.to_string()])
                            .args(["--rpc-listen", &format!("127.0.0.1:{port_in_pod}")])
                            .output()
                            .await
                            .expect("rules add");
                        assert!(out.status.success(), "{out:?}");
                    }
                    up.write_all(&request).await.expect("to the sidecar");
                    let answer = read_message(&mut up, &mut from_up)
                        .await
                        .expect("the sidecar's answer");
                    if script == Some(Script::LoseTheSecondAnswer) && n == 2 {
                        return; // both connections drop; the daemon never sees the answer
                    }
                    if client.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

fn free_port_in_pod() -> u16 {
    // Any port works inside a fresh namespace; a free host port is as good as any.
    common::free_addr().port()
}

/// A rule the sidecar refuses (its id is taken by then): -32602 passed on from the sidecar,
/// and the rule the daemon had already added is taken back — no partial fault, no journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_the_sidecar_refuses_leaves_nothing_added() {
    let Some(bin) = prerequisites("io-refused") else {
        return;
    };
    let pod = Pod::start(&bin, SIDECAR_PORT);
    let port = free_port_in_pod();
    let calls = relay(&pod, port, Script::TakeTheSecondId);
    let d = Daemon::start(Options {
        extra_args: vec!["--sidecar-port".into(), port.to_string()],
        ..Default::default()
    })
    .await;

    let err = d
        .call(
            "io.apply",
            json!({"target": pod.target(), "rules": [eio_rule(), latency_rule()]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602, "{err}");
    let message = err["message"].as_str().expect("message");
    assert!(message.contains("refused"), "{err}");
    let first = calls.lock().unwrap()[0]["params"]["rule"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let fault = first.strip_suffix(".0").expect(".0");
    let taken = format!("{fault}.1");
    assert!(err.to_string().contains(&taken), "{err}");

    // Only the other writer's rule is left: the daemon's first rule was removed again.
    assert_eq!(pod.rule_ids(), vec![taken.clone()]);
    let methods: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["method"], c["params"]))
        .collect();
    assert_eq!(methods.len(), 3, "{methods:?}");
    assert!(methods[2].starts_with("\"rules.remove\""), "{methods:?}");
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
    let err = std::fs::read(pod.mounted("x.db"));
    assert!(err.is_ok(), "x.db: {err:?}");
}

/// The connection drops after the sidecar added the second rule but before the daemon saw
/// the answer: the apply fails, and neither rule stays in the sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_apply_leaves_nothing_added() {
    let Some(bin) = prerequisites("io-lost-answer") else {
        return;
    };
    let pod = Pod::start(&bin, SIDECAR_PORT);
    let port = free_port_in_pod();
    let calls = relay(&pod, port, Script::LoseTheSecondAnswer);
    let d = Daemon::start(Options {
        extra_args: vec!["--sidecar-port".into(), port.to_string()],
        ..Default::default()
    })
    .await;

    let err = d
        .call(
            "io.apply",
            json!({"target": pod.target(), "rules": [eio_rule(), latency_rule()]}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32003, "{err}");
    let calls = calls.lock().unwrap().clone();
    let fault = calls[0]["params"]["rule"]["id"]
        .as_str()
        .and_then(|id| id.strip_suffix(".0"))
        .expect("the first rule's id")
        .to_owned();
    // Both rules were added, the second answer lost; then both are taken back (on a new
    // connection: the first one is gone).
    let removed: Vec<&str> = calls
        .iter()
        .filter(|c| c["method"] == "rules.remove")
        .filter_map(|c| c["params"]["id"].as_str())
        .collect();
    assert!(
        removed.contains(&format!("{fault}.0").as_str())
            && removed.contains(&format!("{fault}.1").as_str()),
        "{calls:?}"
    );
    assert!(
        pod.rule_ids().is_empty(),
        "rules left in the sidecar: {:?} (calls {calls:?})",
        pod.rule_ids()
    );
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
}

#[tokio::test]
async fn no_sidecar_in_the_targets_namespace_is_a_clear_error() {
    let Some(_bin) = prerequisites("io-no-sidecar") else {
        return;
    };
    let netns = Netns::create();
    let mut app = Proc::spawn(netns.exec("sleep").arg("600"));
    app.wait_exec("sleep");
    let d = Daemon::start(Options::default()).await;
    let err = d
        .call(
            "io.apply",
            json!({"target": {"pid": app.pid()}, "rules": [eio_rule()]}),
        )
        .await
        .unwrap_err();
    let message = err["message"].as_str().expect("message");
    assert!(message.contains("no fault sidecar"), "{err}");
    assert!(message.contains(&format!("process {}", app.pid())), "{err}");
    assert_eq!(err["code"], -32003, "{err}");
    assert!(listed(&d).await.is_empty());
    assert!(d.journal().is_empty(), "{:?}", d.journal());
    // The daemon keeps serving.
    assert_eq!(d.ok("faults.list", json!({})).await, json!({"faults": []}));
}

/// `kill -9` with rules applied: the next start removes them within 2 s, journal empty.
#[tokio::test]
async fn a_crash_is_recovered_at_the_next_start() {
    let Some(bin) = prerequisites("io-crash") else {
        return;
    };
    let pod = Pod::start(&bin, SIDECAR_PORT);
    let mut d = Daemon::start(Options::default()).await;
    pod.add_rule(
        &json!({"id": "someone-else", "type": "latency", "path": "logs/**", "latency": "1ms"}),
    );
    let id = io_apply(&d, &pod.target(), json!([eio_rule(), latency_rule()])).await;
    d.kill9();
    // The crash left the rules behind, journaled.
    assert_eq!(
        pod.rule_ids(),
        sorted(&[&format!("{id}.0"), &format!("{id}.1"), "someone-else"])
    );
    assert_eq!(d.journal(), vec![format!("{id}.json")]);

    let started = Instant::now();
    d.restart().await;
    let ready = started.elapsed();
    eventually(
        "the rules are gone after the restart",
        Duration::from_secs(10),
        || pod.rule_ids() == ["someone-else"] && d.journal().is_empty(),
    );
    let recovered = started.elapsed();
    eprintln!(
        "io crash recovery: daemon ready {ready:?} after the restart, rules gone and journal \
         empty {recovered:?} after it"
    );
    assert!(
        recovered < Duration::from_secs(2),
        "recovered only after {recovered:?}\n{}",
        d.log()
    );
    // At the first attempt, not a retry.
    assert!(!d.log().contains("recovery failed"), "{}", d.log());
    assert!(std::fs::read(pod.mounted("x.db")).is_ok_and(|b| b == b"rows"));
    assert!(listed(&d).await.is_empty());
}
