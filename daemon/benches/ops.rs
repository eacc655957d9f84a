//! `cargo bench -p faultline-daemon`: the node daemon's operations against a real containerd,
//! each next to a reference measured in the same run, in alternating order (issue 16; method
//! of MEASURE.md; `## Daemon` of docs/benchmarks.md).
//!
//! - `container.kill` (call → the task's pid is gone: exited or a zombie) against `ctr task
//!   kill -s SIGKILL`, each on a fresh `sleep 1000` busybox container (started untimed).
//! - `stress.start` (call → the container's cgroup used ≥ 5 ms more CPU than when the call was
//!   sent, polled every ms) against stress-ng spawned by the bench into the same cgroups the way
//!   the daemon does it; then `stress.stop` (call → no process carrying the fault's mark is
//!   left) against killing that stress-ng's process group, same end condition.
//! - In the same rounds, what `stress.start` does besides starting stress-ng, each on its own:
//!   the argument check (`stress-ng --dry-run`) and the journal's cost per fault, in process
//!   (`faultline_daemon::journal`): write + remove of one entry, and the write + update + remove
//!   a stress fault makes, every step fsync'd.
//!
//! Env: `FAULTLINE_BENCH_ROUNDS` (100), `FAULTLINE_BENCH_DOCS` (a markdown file whose `## Daemon`
//! section is replaced with the results). Needs root, containerd, runc, a static busybox and
//! stress-ng (`cargo xtask bench daemon` installs them); without them it says why and exits 0.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use faultline_api::rpc::daemon::{FaultId, Target};
use faultline_daemon::journal::Journal;
use faultline_daemon::process::ProcessRef;
use faultline_daemon::record::{Entry, Record};
use faultline_e2e::containerd::{Containerd, alive_pid, cgroup_dirs};
use faultline_e2e::unique_name;
use serde_json::json;

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{CpuUsage, Daemon, kill_marked, spawn_stress_ng};

/// CPU the container's cgroup must have used since the call for the load to count as visible.
const LOAD_VISIBLE: Duration = Duration::from_millis(5);
/// Untimed rounds of every operation before the timed ones.
const WARM_UP: usize = 3;
/// stress-ng's arguments, for the daemon (`stressors.cpu.workers = 1`) and the reference.
const STRESS_ARGS: [&str; 2] = ["--cpu", "1"];

/// Nearest-rank percentiles of a set of durations.
#[derive(Debug, Clone, Copy)]
struct Stats {
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut v = samples.to_vec();
        v.sort();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Stats {
            p50: rank(0.50),
            p99: rank(0.99),
        }
    }
}

/// The target's and the reference's samples of one operation.
#[derive(Default)]
struct Pair {
    /// Call → end condition.
    ours: Vec<Duration>,
    reference: Vec<Duration>,
    /// Call → the call answered (the daemon's JSON-RPC answer).
    ours_answered: Vec<Duration>,
}

/// Runs `call` on another thread while this one polls `done` every `every`: the call's value,
/// when it answered and when `done` first held, both counted from the start of the call.
fn timed<T: Send>(
    call: impl FnOnce() -> Result<T, String> + Send,
    mut done: impl FnMut() -> bool,
    every: Duration,
) -> Result<(T, Duration, Duration), String> {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        scope.spawn(move || {
            let value = call();
            let _ = tx.send((value, start.elapsed()));
        });
        let (mut answer, mut done_at) = (None, None);
        let deadline = start + Duration::from_secs(60);
        loop {
            if done_at.is_none() && done() {
                done_at = Some(start.elapsed());
            }
            if answer.is_none()
                && let Ok((value, at)) = rx.try_recv()
            {
                answer = Some((value?, at));
            }
            if let Some(done_at) = done_at
                && let Some((value, answered)) = answer.take()
            {
                return Ok((value, answered, done_at));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not done within 60 s (answered: {}, end condition held: {})",
                    answer.is_some(),
                    done_at.is_some()
                ));
            }
            std::thread::sleep(every);
        }
    })
}

/// Deletes a stopped container's task and the container (untimed clean-up between rounds; the
/// task may take a moment to be reported stopped after its pid died).
fn remove_container(c: &Containerd, id: &str) -> Result<(), String> {
    let mut tries = 0;
    while let Err(why) = c.ctr(&["task", "delete", "-f", id]) {
        tries += 1;
        if tries > 100 {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    c.ctr(&["containers", "delete", id]).map(drop)
}

/// One `container.kill` round for the daemon (`ours`) or for `ctr task kill`: (answered, gone).
fn kill_once(c: &Containerd, d: &Daemon, ours: bool) -> Result<(Duration, Duration), String> {
    let container = c.run(&unique_name("bench-kill"), &["sleep", "1000"])?;
    let pid = container.pid();
    let target = json!({"target": {"containerId": container.container_id()}});
    let poll = Duration::from_micros(100);
    let gone = || !alive_pid(pid);
    let ours_name = if ours { "daemon" } else { "ctr" };
    let fail = |e: String| format!("{ours_name} kill of {} (pid {pid}): {e}", container.id);
    let (_, answered, gone) = if ours {
        timed(|| d.call("container.kill", target).map(drop), gone, poll).map_err(fail)?
    } else {
        timed(|| container.kill("SIGKILL"), gone, poll).map_err(fail)?
    };
    remove_container(c, &container.id)?;
    Ok((answered, gone))
}

fn kill_bench(c: &Containerd, d: &Daemon, rounds: usize) -> Result<Pair, String> {
    let mut pair = Pair::default();
    for round in 0..WARM_UP + rounds {
        for ours in [round % 2 == 0, round % 2 != 0] {
            let (answered, gone) = kill_once(c, d, ours)?;
            if round < WARM_UP {
                continue;
            }
            if ours {
                pair.ours.push(gone);
                pair.ours_answered.push(answered);
            } else {
                pair.reference.push(gone);
            }
        }
    }
    Ok(pair)
}

/// The stress figures: start and stop, and in the same rounds what `stress.start` does besides
/// starting stress-ng — the argument check, the journal — each on its own.
#[derive(Default)]
struct Stress {
    start: Pair,
    stop: Pair,
    dry_run: Vec<Duration>,
    /// Write + remove of one journal entry.
    journal_single: Vec<Duration>,
    /// Write + update + remove: a stress fault's entry, then the entry with stress-ng's pid.
    journal_stress: Vec<Duration>,
}

/// One stress start + stop for the daemon (`ours`) or the reference; (start, answered, stop).
fn stress_once(
    d: &Daemon,
    target: &serde_json::Value,
    usage: &CpuUsage,
    dirs: &[PathBuf],
    ours: bool,
    round: usize,
) -> Result<(Duration, Duration, Duration), String> {
    let before = usage.ns();
    let load = || usage.ns() >= before + LOAD_VISIBLE.as_nanos() as u64;
    let poll = Duration::from_millis(1);
    if ours {
        let params = json!({"target": target, "stressors": {"cpu": {"workers": 1}}});
        let (answer, answered, visible) = timed(|| d.call("stress.start", params), load, poll)?;
        let id = answer["faultId"]
            .as_str()
            .ok_or("stress.start: no faultId")?;
        let stop = || d.call("stress.stop", json!({"faultId": id}));
        let (_, _, stopped) = timed(stop, || daemon::marked(id).is_empty(), poll)?;
        Ok((visible, answered, stopped))
    } else {
        let mark = format!("bench-ref-{round}");
        let spawn = || spawn_stress_ng(&STRESS_ARGS, dirs, &mark);
        let (mut child, answered, visible) = timed(spawn, load, poll)?;
        let pgid = child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the group is our unreaped child's.
        let killpg = || Ok(unsafe { libc::kill(-pgid, libc::SIGKILL) });
        let (_, _, stopped) = timed(killpg, || kill_marked(&mark), poll)?;
        child
            .wait()
            .map_err(|e| format!("wait for stress-ng: {e}"))?;
        Ok((visible, answered, stopped))
    }
}

fn stress_bench(
    c: &Containerd,
    d: &Daemon,
    journal: &Journal,
    rounds: usize,
) -> Result<Stress, String> {
    let container = c.run(&unique_name("bench-stress"), &["sleep", "1000"])?;
    let target = json!({"containerId": container.container_id()});
    let usage = CpuUsage::of(container.pid())?;
    let dirs: Vec<PathBuf> = cgroup_dirs(container.pid())?
        .into_iter()
        .map(|(_, dir)| dir)
        .filter(|dir| dir.is_dir())
        .collect();
    let mut s = Stress::default();
    for round in 0..WARM_UP + rounds {
        let keep = round >= WARM_UP;
        for ours in [round % 2 == 0, round % 2 != 0] {
            let (start, answered, stop) = stress_once(d, &target, &usage, &dirs, ours, round)?;
            if keep && ours {
                s.start.ours.push(start);
                s.start.ours_answered.push(answered);
                s.stop.ours.push(stop);
            } else if keep {
                s.start.reference.push(start);
                s.stop.reference.push(stop);
            }
        }
        // What `stress.start` runs before starting stress-ng: the argument check.
        let t = Instant::now();
        let out = std::process::Command::new("stress-ng")
            .arg("--dry-run")
            .args(STRESS_ARGS)
            .output()
            .map_err(|e| format!("stress-ng --dry-run: {e}"))?;
        if keep && out.status.success() {
            s.dry_run.push(t.elapsed());
        }
        for updated in [round % 2 == 0, round % 2 != 0] {
            let took = journal_once(journal, round, updated)?;
            if keep && updated {
                s.journal_stress.push(took);
            } else if keep {
                s.journal_single.push(took);
            }
        }
    }
    Ok(s)
}

/// The journal's work for one fault, in process, every step fsync'd: write + remove of an
/// entry, or (`updated`) write + update + remove as a stress fault does.
fn journal_once(journal: &Journal, round: usize, updated: bool) -> Result<Duration, String> {
    let target = ProcessRef::of(std::process::id()).map_err(|e| e.to_string())?;
    let entry = |stress_ng: Option<ProcessRef>| {
        Entry::new(
            FaultId(format!("stress-{round:08x}{}", u8::from(updated))),
            Some(Target::Container {
                container_id: "containerd://0123456789abcdef0123456789abcdef".into(),
            }),
            None,
            Record::Stress {
                target: target.clone(),
                stress_ng,
            },
        )
    };
    let mut steps = vec![entry(None)];
    if updated {
        steps.push(entry(Some(target.clone())));
    }
    let t = Instant::now();
    for e in &steps {
        journal.write(e).map_err(|e| e.to_string())?;
    }
    journal
        .remove(&steps[0].fault_id)
        .map_err(|e| e.to_string())?;
    Ok(t.elapsed())
}

/// The server's version from `ctr version`.
fn containerd_version(c: &Containerd) -> String {
    let out = c.ctr(&["version"]).unwrap_or_default();
    let server = out.split("Server:").nth(1).unwrap_or("");
    let version = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"));
    version.map_or_else(|| "(version unknown)".into(), |v| v.trim().to_owned())
}

fn fail(d: &Daemon, what: &str, why: String) -> ! {
    panic!("{what}: {why}\n--- daemon log ---\n{}", d.log())
}

#[path = "support/report.rs"]
mod report;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut missing = faultline_e2e::containerd::missing_prerequisites();
    if std::process::Command::new("stress-ng")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("`stress-ng` on PATH (Debian package stress-ng)".into());
    }
    if !missing.is_empty() {
        println!("daemon bench SKIPPED: needs {}", missing.join("; "));
        return;
    }
    let rounds = std::env::var("FAULTLINE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100);
    let load_at_start = report::load_average();
    let containerd = Containerd::start().unwrap_or_else(|e| panic!("containerd: {e}"));
    let d = Daemon::start(containerd.socket()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("daemon bench: {rounds} rounds of container.kill (daemon, ctr)…");
    let kill =
        kill_bench(&containerd, &d, rounds).unwrap_or_else(|e| fail(&d, "container.kill", e));
    eprintln!("daemon bench: {rounds} rounds of stress.start/stop (daemon, reference), journal…");
    // The journal goes where the daemon's state dir is (a sibling directory).
    let journal_dir = d.state_dir().with_file_name("journal-bench");
    let journal =
        Journal::open(&journal_dir).unwrap_or_else(|e| fail(&d, "journal", e.to_string()));
    let stress =
        stress_bench(&containerd, &d, &journal, rounds).unwrap_or_else(|e| fail(&d, "stress", e));
    let md = report::section(&report::Figures {
        rounds,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        containerd: containerd_version(&containerd),
        journal_fs: report::filesystem_note(&journal_dir),
        load: (load_at_start, report::load_average()),
        kill: &kill,
        stress: &stress,
    });
    drop(d);
    drop(containerd);
    println!("\n{md}");
    if let Ok(path) = std::env::var("FAULTLINE_BENCH_DOCS") {
        if let Err(why) = faultline_e2e::bench::write_section(Path::new(&path), &md) {
            panic!("FAULTLINE_BENCH_DOCS: {why}");
        }
        println!("wrote the ## Daemon section of {path}");
    }
}
