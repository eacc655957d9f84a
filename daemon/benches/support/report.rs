//! The `## Daemon` section of docs/benchmarks.md, from the bench's samples.

use std::path::Path;
use std::time::Duration;

use super::{LOAD_VISIBLE, Pair, STRESS_ARGS, Stats, Stress, WARM_UP};

/// Everything the section shows.
pub(crate) struct Figures<'a> {
    pub(crate) rounds: usize,
    /// The profile the bench and the daemon binary were built with.
    pub(crate) profile: &'static str,
    /// containerd's version, as `ctr version` says it.
    pub(crate) containerd: String,
    /// Where the journal was measured.
    pub(crate) journal_fs: String,
    /// The 1-minute load average when the bench started and when it ended.
    pub(crate) load: (String, String),
    pub(crate) kill: &'a Pair,
    pub(crate) stress: &'a Stress,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn ratio(ours: Duration, reference: Duration) -> f64 {
    ours.as_secs_f64() / reference.as_secs_f64().max(1e-9)
}

/// `dir`'s filesystem (mount point and type, from mountinfo) and whether `/var/lib`, where a
/// node keeps the daemon's state dir, is on the same one.
pub(crate) fn filesystem_note(dir: &Path) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mount_of = |path: &Path| -> Option<(String, String)> {
        mountinfo
            .lines()
            .filter_map(|line| {
                let (pre, post) = line.split_once(" - ")?;
                let point = pre.split(' ').nth(4)?.replace("\\040", " ");
                let fstype = post.split(' ').next()?;
                path.starts_with(&point)
                    .then(|| (point.clone(), fstype.to_owned()))
            })
            .max_by_key(|(point, _)| point.len())
    };
    let Some((point, fstype)) = mount_of(dir) else {
        return format!("`{}`", dir.display());
    };
    let same = mount_of(Path::new("/var/lib")).is_some_and(|(p, _)| p == point);
    let top = dir.components().take(2).collect::<std::path::PathBuf>();
    format!(
        "a temporary directory under `{}` ({fstype} mounted on `{point}`{}), as the bench \
         daemon's state dir",
        top.display(),
        if same {
            ", the filesystem of `/var/lib` here"
        } else {
            ""
        }
    )
}

pub(crate) fn section(f: &Figures) -> String {
    let (kill_ours, kill_ref) = (Stats::of(&f.kill.ours), Stats::of(&f.kill.reference));
    let kill_answer = Stats::of(&f.kill.ours_answered);
    let s = f.stress;
    let (start_ours, start_ref) = (Stats::of(&s.start.ours), Stats::of(&s.start.reference));
    let start_answer = Stats::of(&s.start.ours_answered);
    let (stop_ours, stop_ref) = (Stats::of(&s.stop.ours), Stats::of(&s.stop.reference));
    let dry_run = Stats::of(&s.dry_run);
    let (single, per_stress) = (Stats::of(&s.journal_single), Stats::of(&s.journal_stress));
    let share = |d: Duration| 100.0 * ratio(d, start_ours.p50);
    let args = STRESS_ARGS.join(" ");
    let visible = LOAD_VISIBLE.as_millis();
    let mut md = String::from("## Daemon\n\n");
    md.push_str(&format!(
        "`cargo bench -p faultline-daemon` ({}), **{} build** of the bench and of \
         `faultline-daemon` (plain-HTTP JSON-RPC on loopback, one connection per call), a private \
         containerd {} with busybox containers (`faultline_e2e::containerd`), cgroup {}, 2 shared \
         cores (load average {} at the start, {} at the end). {} timed rounds after {WARM_UP} \
         untimed ones; in each, \
         the daemon and its reference run one after the other, alternating which goes first. \
         p50/p99 are nearest-rank over the rounds; ratio = daemon p50 / reference p50 (below 1: \
         the daemon is faster).\n\n",
        faultline_e2e::bench::today(),
        f.profile,
        f.containerd,
        cgroup_layout(),
        f.load.0,
        f.load.1,
        f.rounds,
    ));
    md.push_str(
        "| operation → end condition | daemon p50 | daemon p99 | reference (same run) | \
         reference p50 | reference p99 | p50 ratio | target |\n\
         |---|---:|---:|---|---:|---:|---:|---|\n",
    );
    md.push_str(&format!(
        "| `container.kill` (SIGKILL) → the task's pid exited (zombie or gone), fresh `sleep` \
         container each | {} | {} | `ctr task kill -s SIGKILL` (containerd's CLI) | {} | {} | \
         {:.2} | p50 < 100 ms: {} |\n",
        ms(kill_ours.p50),
        ms(kill_ours.p99),
        ms(kill_ref.p50),
        ms(kill_ref.p99),
        ratio(kill_ours.p50, kill_ref.p50),
        met(kill_ours.p50, 100),
    ));
    md.push_str(&format!(
        "| `stress.start` (`stressors.cpu.workers: 1` = `stress-ng {args}`) → the container's \
         cgroup used ≥ {visible} ms more CPU than when the call was sent (polled every ms) | {} \
         | {} | `stress-ng {args}` spawned by the bench into the same cgroups as the daemon does \
         it (own process group, `cgroup.procs` written between fork and exec) | {} | {} | {:.2} \
         | p50 < 200 ms: {} |\n",
        ms(start_ours.p50),
        ms(start_ours.p99),
        ms(start_ref.p50),
        ms(start_ref.p99),
        ratio(start_ours.p50, start_ref.p50),
        met(start_ours.p50, 200),
    ));
    md.push_str(&format!(
        "| `stress.stop` → no process left with `FAULTLINE_FAULT_ID=<faultId>` in its \
         environment | {} | {} | SIGKILL to that stress-ng's process group, then to any process \
         still marked | {} | {} | {:.2} | — |\n\n",
        ms(stop_ours.p50),
        ms(stop_ours.p99),
        ms(stop_ref.p50),
        ms(stop_ref.p99),
        ratio(stop_ours.p50, stop_ref.p50),
    ));
    md.push_str(&format!(
        "Journal cost per fault, in process (`faultline_daemon::journal::Journal`, each write = \
         temporary file + fsync + rename + fsync of the directory, each remove = unlink + fsync \
         of the directory), in the rounds of `stress.start` above (after its two targets), in \
         {}:\n\n\
         | journal work per fault | p50 | p99 | share of the daemon's `stress.start` p50 |\n\
         |---|---:|---:|---:|\n\
         | write + remove of one entry | {} | {} | {:.1} % |\n\
         | write + update + remove (what a stress fault costs: its entry, then the entry with \
         stress-ng's pid, then removal) | {} | {} | {:.1} % |\n\n",
        f.journal_fs,
        ms(single.p50),
        ms(single.p99),
        share(single.p50),
        ms(per_stress.p50),
        ms(per_stress.p99),
        share(per_stress.p50),
    ));
    md.push_str(&format!(
        "When the daemon answered: `container.kill` p50 {} (p99 {}); `stress.start` p50 {} \
         (p99 {}). `stress-ng --dry-run {args}` on its own — the argument check `stress.start` \
         runs before starting stress-ng — p50 {} (p99 {}), {:.0} % of the daemon's \
         `stress.start` p50.\n\n",
        ms(kill_answer.p50),
        ms(kill_answer.p99),
        ms(start_answer.p50),
        ms(start_answer.p99),
        ms(dry_run.p50),
        ms(dry_run.p99),
        share(dry_run.p50),
    ));
    md.push_str(&reading(f));
    md
}

/// The 1-minute load average.
pub(crate) fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_owned()
}

fn cgroup_layout() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "v1 + v2 (hybrid)"
    } else {
        "v1"
    }
}

/// The paragraph under the tables: what the figures say, from the figures.
fn reading(f: &Figures) -> String {
    let p50 = |v: &[Duration]| Stats::of(v).p50;
    let s = f.stress;
    let (kill, kill_ref) = (p50(&f.kill.ours), p50(&f.kill.reference));
    let (start, start_ref) = (p50(&s.start.ours), p50(&s.start.reference));
    let (stop, stop_ref) = (p50(&s.stop.ours), p50(&s.stop.reference));
    let dry_run = p50(&s.dry_run);
    // The update is the one write the stress sequence has more than write + remove.
    let write = p50(&s.journal_stress).saturating_sub(p50(&s.journal_single));
    let lever = if dry_run >= write {
        "the argument check is the larger: checking an argument vector once and remembering it \
         would take most of it off"
    } else {
        "the fsync'd write is the larger, and it is the crash-safety guarantee (journaled before \
         applied); what could go is the argument check, and the update with stress-ng's pid, \
         which delays only the answer"
    };
    format!(
        "Reading: `container.kill` p50 {} (target 100 ms: {}), `stress.start` p50 {} (target \
         200 ms: {}). The kill itself — containerd → shim → `runc kill` — is common to both \
         columns; `ctr` {} because it starts a Go process and dials containerd on every call, \
         where the daemon keeps one gRPC channel. `stress.start` is {} above the bare spawn at \
         p50 (ratio {:.2}): in the same rounds, the argument check (`stress-ng --dry-run`, a \
         second stress-ng start before the real one) took {} on its own and one fsync'd \
         journal write ≈ {} (write + update + remove minus write + remove); the RPC and the \
         target's resolution through containerd come on top (the parts are timed apart, so \
         they need not add up to the gap). Of the two steps before stress-ng starts, {}. \
         fsync's cost follows the other writers of the filesystem (ext4 commits its journal \
         for all of them), so the journal rows describe this run's disk, not a constant. \
         `stress.stop` is at {:.2} × a bare process-group kill: the daemon adds the RPC and a \
         scan of `/proc` for the fault's mark. With {} rounds a p99 is the worst round or \
         nearly: read it as an order of magnitude on this shared machine.\n\n\
         Rerun: `cargo xtask bench daemon` (as root; `FAULTLINE_BENCH_ROUNDS`, default 100).\n",
        ms(kill),
        met(kill, 100),
        ms(start),
        met(start, 200),
        if kill < kill_ref {
            "is slower"
        } else {
            "is not slower here, although it pays more"
        },
        ms(start.saturating_sub(start_ref)),
        ratio(start, start_ref),
        ms(dry_run),
        ms(write),
        lever,
        ratio(stop, stop_ref),
        f.rounds,
    )
}

fn met(p50: Duration, target_ms: u64) -> &'static str {
    if p50 < Duration::from_millis(target_ms) {
        "met"
    } else {
        "**missed**"
    }
}
