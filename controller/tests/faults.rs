//! Faults through the whole chain — chaos object, controller, daemon, kernel or sidecar — on
//! real containers: a NetworkChaos bandwidth cap lands as a tbf qdisc in the container's own
//! network namespace and leaves with the experiment; an IOChaos fault reaches the pod's real
//! fault sidecar and fails real reads through its FUSE mount; a target pod deleted mid-run
//! counts as recovered and its fault on the node is recovered too.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{World, stress_processes};
use faultline_controller::plan::fault_id;
use faultline_e2e::unique_name;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

/// `tc qdisc show dev <dev>` inside the network namespace of process `pid`.
fn qdiscs(pid: u32, dev: &str) -> String {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "tc",
            "qdisc",
            "show",
            "dev",
            dev,
        ])
        .output()
        .expect("nsenter tc");
    assert!(
        out.status.success(),
        "tc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_bandwidth_cap_lands_in_the_containers_network_namespace_and_leaves() {
    let Some(w) = World::start("ctl-net").await else {
        return;
    };
    let c = w.sleeping_pod("web-0", "web").await;
    assert!(!qdiscs(c.pid(), "lo").contains("tbf"));
    // `device: lo`: the container's namespace has no other link.
    w.create(
        "NetworkChaos",
        "cap",
        json!({"action": "bandwidth", "mode": "all", "selector": {"labelSelectors": {"app": "web"}},
               "bandwidth": {"rate": "1mbps", "limit": 20971520, "buffer": 10000},
               "device": "lo", "duration": "8s"}),
        json!({}),
    )
    .await;
    w.until_condition(
        "NetworkChaos",
        "cap",
        "AllInjected",
        Duration::from_secs(30),
    )
    .await;
    let during = qdiscs(c.pid(), "lo");
    assert!(
        during.contains("tbf") && during.contains("rate 8Mbit"),
        "{during}"
    );
    w.until_condition(
        "NetworkChaos",
        "cap",
        "AllRecovered",
        Duration::from_secs(30),
    )
    .await;
    let after = qdiscs(c.pid(), "lo");
    assert!(!after.contains("tbf"), "{after}");
}

/// A real `faultline-sidecar` serving `src` at `mnt` as volume `data` (the app mounts it at
/// `/var/lib/db`), listening for rules on 127.0.0.1:65533 in the container's network namespace,
/// as the injected sidecar of the pod would.
struct Sidecar {
    child: Child,
    mnt: std::path::PathBuf,
}

impl Sidecar {
    fn start(w: &World, pid: u32) -> Sidecar {
        let bin = faultline_e2e::binary("faultline-sidecar", "faultline-sidecar")
            .expect("sidecar binary");
        let (src, mnt) = (w.dir.path().join("src"), w.dir.path().join("mnt"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::write(src.join("x.db"), b"rows").unwrap();
        let log = std::fs::File::create(w.dir.path().join("sidecar.log")).unwrap();
        let child = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n"])
            .arg(&bin)
            .arg("--mount")
            .arg(format!("{}:{}:data", src.display(), mnt.display()))
            .args(["--app-mount", "data=/var/lib/db"])
            .args(["--rpc-listen", "127.0.0.1:65533"])
            .arg("--rpc-socket")
            .arg(w.dir.path().join("sidecar.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sidecar");
        let sidecar = Sidecar { child, mnt };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read(sidecar.mnt.join("x.db")).ok().as_deref() != Some(b"rows".as_slice()) {
            assert!(Instant::now() < deadline, "the sidecar's mount is not up");
            std::thread::sleep(Duration::from_millis(50));
        }
        sidecar
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        faultline_e2e::stop_child(&mut self.child, Duration::from_secs(10));
        // The sidecar unmounts on SIGTERM; this is for one that could not.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
    }
}

/// The webhook's annotation for a pod whose sidecar serves volume `data`, mounted by container
/// `app` at `/var/lib/db`.
fn sidecar_status() -> String {
    json!({
        "version": "test", "templateHash": "0", "mode": "native",
        "container": "faultline-sidecar", "rpcPort": 65533,
        "volumes": [{"volume": "data", "fuseVolume": "faultline-fuse-data",
                     "mountpoint": "/faultline/data",
                     "mounts": ["app:/var/lib/db"]}]
    })
    .to_string()
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

#[tokio::test]
async fn an_io_fault_reaches_the_pods_sidecar_and_fails_real_reads() {
    let Some(w) = World::start("ctl-io").await else {
        return;
    };
    let c = w
        .containerd
        .run(&unique_name("ctl-io"), &["sleep", "1000"])
        .unwrap();
    w.pod("db-0", "db", &c).await;
    let sidecar = Sidecar::start(&w, c.pid());
    let pods: Api<Pod> = Api::namespaced(w.env.client.clone(), &w.env.namespace);
    let annotate =
        json!({"metadata": {"annotations": {"faultline.dev/sidecar-status": sidecar_status()}}});
    pods.patch("db-0", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    // A volumePath the sidecar does not serve is the record's error, before any call.
    w.create(
        "IOChaos",
        "wrong",
        json!({"action": "fault", "mode": "all", "selector": {"labelSelectors": {"app": "db"}},
               "volumePath": "/var/lib/other", "path": "/var/lib/other/**/*.db", "errno": 5, "percent": 100,
               "duration": "30s"}),
        json!({}),
    )
    .await;
    let wrong = w
        .until(
            "IOChaos",
            "wrong",
            "a failed record",
            Duration::from_secs(30),
            |o| o["status"]["records"][0]["phase"] == "Failed",
        )
        .await;
    let message = wrong["status"]["records"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.volumePath") && message.contains("/var/lib/other"),
        "{message}"
    );
    w.api("IOChaos")
        .delete("wrong", &DeleteParams::default())
        .await
        .unwrap();

    let file = sidecar.mnt.join("x.db");
    assert_eq!(read(&file).unwrap(), b"rows");
    w.create(
        "IOChaos",
        "eio",
        json!({"action": "fault", "mode": "all", "selector": {"labelSelectors": {"app": "db"}},
               "volumePath": "/var/lib/db", "path": "/var/lib/db/**/*.db", "errno": 5, "percent": 100,
               "duration": "8s"}),
        json!({}),
    )
    .await;
    w.until_condition("IOChaos", "eio", "AllInjected", Duration::from_secs(30))
        .await;
    let err = read(&file).expect_err("EIO while injected");
    assert_eq!(err.raw_os_error(), Some(libc_eio()), "{err}");
    w.until_condition("IOChaos", "eio", "AllRecovered", Duration::from_secs(30))
        .await;
    assert_eq!(
        read(&file).unwrap(),
        b"rows",
        "the rule left with the experiment"
    );
}

fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}

/// StressChaos `burn` (one cpu worker for `duration`) on a new pod `pod`, injected; after
/// `settle`, the pod is deleted without grace. Returns stress-ng's fault id. There is no
/// kubelet: the container outlives its API pod here, so only the controller's recovery call
/// (not the container's end) can stop stress-ng.
async fn burn_then_delete_pod(w: &World, pod: &str, duration: &str, settle: Duration) -> String {
    w.sleeping_pod(pod, "cart").await;
    let obj = w.cpu_burn("burn", duration).await;
    let record = format!("{}/{pod}/app", w.env.namespace);
    let id = fault_id(obj["metadata"]["uid"].as_str().unwrap(), &record);
    assert!(stress_processes(&id) > 0);
    tokio::time::sleep(settle).await;
    let pods: Api<Pod> = Api::namespaced(w.env.client.clone(), &w.env.namespace);
    pods.delete(pod, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    id
}

/// The gone target's record says so, and its stress-ng is stopped.
fn assert_recovered_as_gone(obj: &serde_json::Value, id: &str) {
    let r = &obj["status"]["records"][0];
    assert_eq!(r["phase"], "Recovered");
    assert_eq!(r["message"], "the target pod is gone", "{r:#}");
    assert_eq!(
        stress_processes(id),
        0,
        "stress-ng stopped by the controller"
    );
}

#[tokio::test]
async fn a_target_pod_deleted_mid_run_counts_as_recovered_and_its_fault_goes() {
    let Some(w) = World::start("ctl-gone").await else {
        return;
    };
    let id = burn_then_delete_pod(&w, "cart-9", "8s", Duration::ZERO).await;
    let obj = w
        .until_condition(
            "StressChaos",
            "burn",
            "AllRecovered",
            Duration::from_secs(30),
        )
        .await;
    assert_recovered_as_gone(&obj, &id);
    // The deletion woke the experiment before its 8 s ended (`gone_pods`); it finishes when
    // its duration does.
    w.until(
        "StressChaos",
        "burn",
        "Finished",
        Duration::from_secs(30),
        |o| o["status"]["phase"] == "Finished",
    )
    .await;
}

/// A deleted target pod wakes its experiment (`gone_pods`): the record is recovered and
/// stress-ng stopped long before the next renewal (30 s) or the end of `duration` (5 min).
#[tokio::test]
async fn a_deleted_target_pod_is_recovered_at_once_not_at_the_next_renewal() {
    let Some(w) = World::start("ctl-gone-now").await else {
        return;
    };
    // The 2 s let the passes that echo the controller's own status writes go by, so that
    // nothing but the pod's deletion can wake the experiment before its renewal.
    let id = burn_then_delete_pod(&w, "cart-7", "5m", Duration::from_secs(2)).await;
    let obj = w
        .until(
            "StressChaos",
            "burn",
            "the gone target's record Recovered well before the 30 s renewal",
            Duration::from_secs(15),
            |o| o["status"]["records"][0]["phase"] == "Recovered",
        )
        .await;
    assert_recovered_as_gone(&obj, &id);
    w.delete_until_gone("StressChaos", "burn", Duration::from_secs(30))
        .await;
}
