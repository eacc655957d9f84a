//! The containerd harness against the real containerd, runc and kernel: containers run in
//! their own cgroups, their CPU time is read from there, a killed task is seen to exit, and a
//! dropped instance leaves no containerd, shim, container process, mount or directory.

use std::path::Path;
use std::time::{Duration, Instant};

use faultline_e2e::containerd::{
    Containerd, alive_pid, cgroup_cpu_usage_ns, cgroup_dirs, processes_mentioning, start_or_skip,
};
use faultline_e2e::unique_name;

/// The CPU cgroup directory of `pid` (the one its usage is read from).
fn cpu_cgroup(pid: u32) -> std::path::PathBuf {
    cgroup_dirs(pid)
        .unwrap_or_else(|e| panic!("cgroups of {pid}: {e}"))
        .into_iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "cpuacct"))
        .or_else(|| {
            cgroup_dirs(pid)
                .ok()?
                .into_iter()
                .find(|(c, _)| c.is_empty())
        })
        .unwrap_or_else(|| panic!("no CPU cgroup for {pid}"))
        .1
}

/// What a dropped instance must not leave: a process naming its directory (containerd's
/// `--config`, the shims' `-address`), one of `pids`, a mount under it, the directory.
fn assert_nothing_left(dir: &Path, pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let needle = dir.to_string_lossy().into_owned();
    loop {
        let left = processes_mentioning(&needle);
        let alive: Vec<u32> = pids.iter().copied().filter(|p| alive_pid(*p)).collect();
        if left.is_empty() && alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running: processes naming {needle}: {left:?}; of {pids:?}: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&needle), "a mount is left under {needle}");
    assert!(!dir.exists(), "{needle} is left");
}

#[test]
fn containers_run_in_their_own_cgroups_and_nothing_is_left() {
    let Some(containerd) = start_or_skip("containerd_harness") else {
        return;
    };
    assert_eq!(containerd.namespace(), "k8s.io");
    assert!(containerd.socket().starts_with(containerd.dir()));

    let sleeper = containerd
        .run(&unique_name("sleep"), &["sleep", "1000"])
        .expect("run sleep");
    assert_eq!(
        sleeper.container_id(),
        format!("containerd://{}", sleeper.id)
    );
    assert!(sleeper.is_running(), "status {:?}", sleeper.status());
    let pid = sleeper.pid();
    assert!(alive_pid(pid), "pid {pid} of the sleeper is not alive");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert_eq!(cmdline, b"sleep\x001000\x00");
    let own = cpu_cgroup(pid);
    assert_ne!(
        own,
        cpu_cgroup(std::process::id()),
        "not in a cgroup of its own"
    );
    assert!(
        own.ends_with(&sleeper.id),
        "{} is not the container's",
        own.display()
    );
    let idle_before = cgroup_cpu_usage_ns(pid).expect("sleeper CPU usage");

    let spinner = containerd
        .run(&unique_name("spin"), &["sh", "-c", "while :; do :; done"])
        .expect("run the busy loop");
    let before = cgroup_cpu_usage_ns(spinner.pid()).expect("spinner CPU usage");
    std::thread::sleep(Duration::from_secs(1));
    // Two cores shared with other builds: a loaded machine may give the loop less than a core,
    // so allow it more time to show several hundred ms rather than fail on load.
    let started = Instant::now();
    let mut used = 0;
    while started.elapsed() < Duration::from_secs(10) {
        used = cgroup_cpu_usage_ns(spinner.pid()).expect("spinner CPU usage") - before;
        if used >= 300_000_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "busy loop: {} ms of CPU in {:.1} s",
        used / 1_000_000,
        1.0 + started.elapsed().as_secs_f64()
    );
    assert!(used >= 300_000_000, "the busy loop used only {used} ns");
    let idle = cgroup_cpu_usage_ns(pid).expect("sleeper CPU usage") - idle_before;
    assert!(idle < 50_000_000, "the sleeper's cgroup counted {idle} ns");

    containerd
        .ctr(&["task", "kill", "-s", "SIGKILL", &spinner.id])
        .expect("ctr task kill");
    spinner
        .wait_exited(Duration::from_secs(10))
        .expect("the killed container exits");
    assert!(!spinner.is_running());
    assert!(!alive_pid(spinner.pid()));
    assert!(
        sleeper.is_running(),
        "killing one container stopped the other"
    );

    let dir = containerd.dir().to_path_buf();
    let shims = processes_mentioning(&containerd.socket().to_string_lossy());
    assert!(!shims.is_empty(), "no shim names the socket");
    let mut pids = vec![containerd.pid(), sleeper.pid()];
    pids.extend(shims);
    drop(containerd);
    assert_nothing_left(&dir, &pids);
}

#[test]
fn shims_that_outlive_containerd_are_killed_with_their_containers() {
    let Some(containerd) = start_or_skip("containerd_crashed") else {
        return;
    };
    let sleeper = containerd
        .run(&unique_name("orphan"), &["sleep", "1000"])
        .expect("run sleep");
    let cgroup = cpu_cgroup(sleeper.pid());
    let shims = processes_mentioning(&containerd.socket().to_string_lossy());
    assert!(!shims.is_empty(), "no shim names the socket");
    // containerd dies without cleaning up: its shim and container go on running.
    // SAFETY: kill has no memory preconditions; containerd is our child, not reaped yet.
    unsafe { libc::kill(containerd.pid() as libc::pid_t, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        alive_pid(sleeper.pid()),
        "the container died with containerd"
    );

    let dir = containerd.dir().to_path_buf();
    let mut pids = vec![sleeper.pid()];
    pids.extend(shims);
    drop(containerd);
    assert_nothing_left(&dir, &pids);
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
}

#[test]
fn instances_of_one_process_are_independent() {
    let Some(first) = start_or_skip("containerd_two_instances") else {
        return;
    };
    let second = Containerd::start().expect("a second containerd");
    assert_ne!(first.socket(), second.socket());
    assert!(
        first.log().contains("successfully booted"),
        "{}",
        first.log()
    );
    let id = unique_name("same");
    let (a, b) = (
        first.run(&id, &["sleep", "1000"]),
        second.run(&unique_name("other"), &["true"]),
    );
    let (a, b) = (a.expect("run in the first"), b.expect("run in the second"));
    b.wait_exited(Duration::from_secs(10))
        .expect("`true` exits");
    assert!(a.is_running());
    // Each instance lists only its own containers.
    let listed = second
        .ctr(&["containers", "ls", "-q"])
        .expect("ctr containers ls");
    assert!(!listed.contains(&id), "{listed}");
}
