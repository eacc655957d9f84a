//! The injected sidecar as the API server stores it, run for real. The webhook injects a pod with
//! three volumes through the real API server; the test takes the stored pod's one
//! `faultline-sidecar` container — its command, its args, its six volume mounts — and runs the
//! real `faultline-sidecar` binary with exactly those args, each of the container's mount paths
//! mapped to a directory of its own (`/faultline/source/<V>` → `<dir>/faultline/source/<V>`).
//! RPC calls then name each volume the way an IOChaos does, by the path where the app container
//! mounts it (`subPath` included), and the faults land on that volume only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faultline_e2e::webhook::{self, INJECTION_LABEL, Options, Webhook};
use faultline_e2e::{on_ci, root, setup};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// Why a FUSE mount cannot be made here (not root, no `/dev/fuse`).
fn fuse_missing() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root");
    }
    (!Path::new("/dev/fuse").exists()).then_some("/dev/fuse missing")
}

/// One JSON-RPC call over plain HTTP/1.1; the whole answer.
fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{method}: {out:?}: {e}"))
}

fn ready(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = write!(
        s,
        "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// The sidecar process with its mounts; stopped (SIGTERM) and every mount detached on drop.
struct Running {
    child: Child,
    mountpoints: Vec<PathBuf>,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        for m in &self.mountpoints {
            if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: plain syscall on a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*path.to_string_lossy()))
}

/// Runs `container` as the pod would, with every path it mounts moved under `dir` and its RPC
/// port moved to `addr`.
fn run_as_stored(container: &Container, dir: &Path, addr: SocketAddr) -> Running {
    let moved = |path: &str| dir.join(path.trim_start_matches('/'));
    let mut mountpoints = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        std::fs::create_dir_all(moved(&m.mount_path)).expect("mkdir");
        if m.mount_propagation.as_deref() == Some("Bidirectional") {
            mountpoints.push(moved(&m.mount_path));
        }
    }
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| {
            let a = a.replace("127.0.0.1:65533", &addr.to_string());
            a.replace("/faultline/", &format!("{}/faultline/", dir.display()))
        })
        .collect();
    let command = container.command.as_ref().expect("command");
    assert_eq!(command, &["faultline-sidecar"]);
    let bin = faultline_e2e::binary("faultline-sidecar", "faultline-sidecar").expect("build");
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sidecar.log")).expect("log"))
        .spawn()
        .expect("spawn the sidecar");
    let mut running = Running {
        child,
        mountpoints,
        dir: dir.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready(addr) {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!(
                "the sidecar exited with {status} (args {args:?}):\n{}",
                std::fs::read_to_string(dir.join("sidecar.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the sidecar is not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_sidecar_serves_every_volume_of_the_pod() {
    if let Some(why) = fuse_missing() {
        assert!(!on_ci(), "CI is set and the sidecar cannot mount: {why}");
        eprintln!("SKIP the_stored_sidecar_serves_every_volume_of_the_pod: {why}");
        return;
    }
    let Some(env) = setup("injection_runs").await else {
        return;
    };
    env.label_namespace(&env.namespace, &[INJECTION_LABEL])
        .await;
    let hook = Webhook::start(&env, &Options::default()).await;
    hook.register(&env).await;
    webhook::wait_for_injection(&env, &env.namespace).await;

    let text = std::fs::read_to_string(root().join("webhook/tests/fixtures/three-volumes.yaml"))
        .expect("fixture");
    let mut pod: Pod = serde_yaml::from_str(&text).expect("pod");
    pod.metadata.namespace = Some(env.namespace.clone());
    let pods = Api::<Pod>::namespaced(env.client.clone(), &env.namespace);
    let stored = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let spec = stored.spec.expect("spec");
    let sidecars: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter(|c| c.name.starts_with("faultline-sidecar"))
        .collect();
    assert_eq!(sidecars.len(), 1, "one sidecar per pod");
    // Six mounts of ours (each volume at its source path, each fuse volume at its mountpoint);
    // the API server adds its ServiceAccount token to every container, the sidecar included.
    let ours: Vec<&str> = sidecars[0]
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.mount_path.starts_with("/faultline/"))
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        ours,
        [
            "data",
            "faultline-fuse-data",
            "logs",
            "faultline-fuse-logs",
            "cache",
            "faultline-fuse-cache"
        ]
    );

    let dir = std::env::temp_dir().join(faultline_e2e::unique_name("injection"));
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let running = tokio::task::block_in_place(|| run_as_stored(sidecars[0], &dir, addr));
    let source = |v: &str| dir.join("faultline/source").join(v);
    let mnt = |v: &str| dir.join("faultline/mnt").join(v);

    let status = rpc(addr, "status", json!({}))["result"].clone();
    let names: Vec<&str> = status["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["data", "logs", "cache"], "{status}");
    assert_eq!(
        status["mounts"][1]["appPaths"],
        json!([{"path": "/var/log/shop", "subPath": "api"}, {"path": "/logs"}])
    );

    // The api container writes /var/log/shop/app.log, which is logs/api/app.log in the volume:
    // an IOChaos with volumePath /var/log/shop and path /var/log/shop/app.log says "app.log".
    std::fs::create_dir_all(source("logs").join("api")).expect("mkdir");
    std::fs::write(source("logs").join("api/app.log"), b"log").expect("write");
    std::fs::write(source("data").join("shop.db"), b"db").expect("write");
    let added = rpc(
        addr,
        "rules.add",
        json!({"rule": {"type": "fault", "path": "app.log", "faults": [{"errno": "EIO"}]}, "mount": "/var/log/shop"}),
    );
    assert_eq!(added["result"]["mount"], "logs", "{added}");
    let eio = std::fs::read(mnt("logs").join("api/app.log"))
        .err()
        .and_then(|e| e.raw_os_error());
    assert_eq!(eio, Some(libc::EIO));
    assert_eq!(
        std::fs::read(mnt("data").join("shop.db")).expect("data"),
        b"db"
    );
    // Where the api container mounts `data` (the migrate init container too) names `data`.
    let added = rpc(
        addr,
        "rules.add",
        json!({"rule": {"type": "latency", "latency": "1ms"}, "mount": "/var/lib/shop"}),
    );
    assert_eq!(added["result"]["mount"], "data", "{added}");
    // A path no injected volume is mounted at (a configMap's) is refused, naming `mount`.
    let refused = rpc(
        addr,
        "rules.add",
        json!({"rule": {"type": "latency", "latency": "1ms"}, "mount": "/etc/shop"}),
    );
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(refused["error"]["data"]["field"], "mount", "{refused}");

    let points: Vec<PathBuf> = running.mountpoints.clone();
    assert_eq!(points.len(), 3);
    assert!(points.iter().all(|p| mounted(p)));
    drop(running);
    assert!(points.iter().all(|p| !mounted(p)), "SIGTERM unmounts all");
}
