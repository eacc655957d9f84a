//! # faultline-sidecar
//!
//! A FUSE passthrough of each `--mount` source at its mountpoint, injecting I/O faults that are
//! changed live over JSON-RPC 2.0 (DESIGN.md §4). One process serves every injected volume of a
//! pod — one FUSE session per mount, each on its own threads, behind one RPC endpoint — next to
//! an application (the webhook injects it, §7), or standalone on any Linux host.
//!
//! ```text
//! faultline-sidecar --mount /faultline/source/data:/faultline/mnt/data:data \
//!                   --mount /faultline/source/logs:/faultline/mnt/logs:logs \
//!                   [--app-mount data=/var/lib/db ...] [--rpc-listen 127.0.0.1:65533]
//!                   [--rpc-socket PATH [--rpc-socket-mode 0600]] [--rules rules.json] [--seed N]
//!                   [--metrics-listen ADDR]
//! faultline-sidecar --source /data-src --mountpoint /data ...  # the one-mount form
//! faultline-sidecar probe [--rpc-listen 127.0.0.1:65533]      # exit 0 when every mount is live
//! faultline-sidecar rules add|list|remove|clear [--mount M] … # the RPC methods from a shell
//! faultline-sidecar status [--mount M] [-o json]
//! ```
//!
//! ## Layout
//! - [`sys`]: `*at` syscall wrappers on `O_PATH` descriptors, returning `Result<T, Errno>`.
//! - [`inode`]: node ids ⇄ source `(dev, ino)` with kernel lookup counts and `forget`.
//! - [`fs`]: the `fuser::Filesystem` — thin op shells over helpers; the fault [`inject::Plan`] of
//!   each op is applied around the helper (delay on the [`delay`] scheduler, errno, attribute override,
//!   data corruption).
//! - [`inject`]: one [`inject::Injector`] per rule type (latency, fault, attrOverride, mistake).
//! - [`rules`]: the immutable rule snapshot (arc-swap), generations, ttl reaper, hit counts.
//! - [`volume`]: the mounts — flags, per-mount state, which mount an RPC `mount` param names.
//! - [`app`]: the state behind the RPC methods: rule changes addressed to a mount.
//! - [`rpc`]: jsonrpsee methods with strict params, `GET /ready`, `GET /metrics`; listeners
//!   kept off the network (loopback only, socket mode 0600).
//! - [`mount`]: stale/busy mountpoint handling, the multi-threaded session, clean unmount.
//! - [`passthrough`]: `--io-mode exact|fast`; under `fast`, which opens the kernel serves by
//!   FUSE passthrough, the per-inode backing ids, and the handles a later rule cannot reach.
//! - [`client`], [`cli`]: the `rules …` and `status` subcommands.
//!
//! Each mount has its own filesystem, inode table, rule store, delay scheduler and FUSE session
//! with its own `/dev/fuse` reader threads, so a delay or a hung source on one volume never
//! stalls another.
//!
//! ## Rules
//! `{"id"?, "type": "latency|fault|attrOverride|mistake", "path"?: glob relative to the mount root
//! (`**` crosses directories, `*` does not), "methods"?: [..], "percent"?: 0..100, "latency"?,
//! "faults"?: [{"errno", "weight"}], "attr"?: {..}, "mistake"?: {"filling", "maxOccurrences",
//! "maxLength"}, "ttl"?}` — the types, the strict reader (unknown fields are errors) and the
//! validation come from `faultline_api::iorule`, shared with the webhook and the controller.
//!
//! ## Caching
//! Inodes no rule can touch are cached by the kernel (entry/attr TTL, `KEEP_CACHE`), so reads
//! of them run at page-cache speed. Files a read-affecting rule matches are opened `direct_io`;
//! when a rule arrives, the kernel's data, attributes and dentries of matching known inodes are
//! invalidated before the RPC returns; reads through handles opened earlier invalidate what
//! they bring into the cache. So a 100 % read fault is never hidden by the page cache. See
//! `docs/sidecar.md` for the trade-offs.

// What `main.rs`, the tests and the bench use is `pub`; everything else is crate-private, so the
// compiler reports what nothing uses.
pub(crate) mod app;
pub mod cli;
pub(crate) mod client;
pub(crate) mod delay;
pub(crate) mod fs;
pub(crate) mod inject;
pub(crate) mod inode;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod mount;
pub mod passthrough;
pub mod rpc;
pub(crate) mod rules;
pub(crate) mod sync;
pub(crate) mod sys;
pub mod volume;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use faultline_api::iorule::{IoRule, Reader, read_rules};
use faultline_api::rpc::sidecar::AppPath;
use serde_json::Value;

use crate::app::App;
use crate::delay::Shutdown;
use crate::fs::{FsOptions, PassthroughFs};
use crate::metrics::Metrics;
use crate::mount::Mounted;
use crate::rules::{RuleStore, Sequence};
use crate::volume::{AppMount, MountSpec, Volume};

/// Everything `run` needs (the binary's flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// What to mount where (at least one).
    pub mounts: Vec<MountSpec>,
    /// Where app containers mount the volumes (more names for `mount` in RPC calls).
    pub app_mounts: Vec<AppMount>,
    /// `host:port`; must resolve to loopback addresses unless `rpc_listen_allow_non_loopback`.
    pub rpc_listen: Option<String>,
    pub rpc_listen_allow_non_loopback: bool,
    pub rpc_socket: Option<PathBuf>,
    /// Permission bits of the `rpc_socket` file.
    pub rpc_socket_mode: u32,
    pub metrics_listen: Option<SocketAddr>,
    /// Initial rules, one file per mount (see [`load_rules_file`]).
    pub rules_files: Vec<PathBuf>,
    pub seed: Option<u64>,
    /// `/dev/fuse` reader threads of each mount.
    pub threads: usize,
    pub ttl: Duration,
    /// `exact` or `fast` (kernel passthrough for files no rule matches at open).
    pub io_mode: passthrough::IoMode,
    /// How long an unmount may take at shutdown before the connection is aborted.
    pub unmount_timeout: Duration,
}

/// Reads a rules file: a JSON array of rules, or `{"rules": [...], "mount"?: "..."}`, as
/// strictly as `rules.set` reads its params (every problem listed, unknown fields refused).
/// Returns the mount it names (if any) and the rules.
pub(crate) fn load_rules_file(path: &Path) -> anyhow::Result<(Option<String>, Vec<IoRule>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read rules file {}", path.display()))?;
    // serde_json's message ends with the position: "… at line 3 column 7".
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("rules file {} is not valid JSON", path.display()))?;
    let mut reader = Reader::new();
    let (list, mount) = match &value {
        Value::Object(_) => {
            let m = reader.object(
                &value,
                "",
                "an object like {\"rules\": [...], \"mount\": \"data\"}",
                &["rules", "mount"],
            );
            let list = m.and_then(|m| m.get("rules")).cloned();
            let mount = m.and_then(|m| reader.string(m, "", "mount"));
            (list.unwrap_or(Value::Array(vec![])), mount)
        }
        other => (other.clone(), None),
    };
    match read_rules(&mut reader, &list, "rules") {
        Some(rules) if reader.errors().is_empty() => Ok((mount, rules)),
        _ => {
            let lines: Vec<String> = reader.errors().iter().map(|e| format!("  {e}")).collect();
            anyhow::bail!("rules file {}:\n{}", path.display(), lines.join("\n"))
        }
    }
}

/// The mounts' run-time state, built from the checked flags (nothing mounted yet).
fn volumes(
    cfg: &Config,
    metrics: &Metrics,
    sequence: &Arc<Sequence>,
) -> anyhow::Result<Vec<Arc<Volume>>> {
    let mut out = Vec::with_capacity(cfg.mounts.len());
    for (i, spec) in cfg.mounts.iter().enumerate() {
        let source = std::fs::canonicalize(&spec.source)
            .with_context(|| format!("source directory {}", spec.source.display()))?;
        // Absolute, but not canonicalised: a stale mount there would fail the lookup with ENOTCONN.
        let mountpoint: PathBuf = std::path::absolute(&spec.mountpoint)
            .with_context(|| format!("mountpoint {}", spec.mountpoint.display()))?
            .components()
            .collect();
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| mountpoint.display().to_string());
        let app_paths = cfg
            .app_mounts
            .iter()
            .filter(|a| spec.name.as_ref() == Some(&a.mount))
            .map(|a| AppPath {
                path: a.path.clone(),
                sub_path: a.sub_path.clone(),
            })
            .collect();
        let mount_metrics = Arc::new(metrics.mount(&name));
        // One seed, a distinct sequence per mount: repeatable, and independent of the traffic
        // on the other mounts.
        let seed = cfg.seed.map(|s| s.wrapping_add(i as u64));
        let rules = Arc::new(RuleStore::new(
            &name,
            seed,
            mount_metrics.clone(),
            sequence.clone(),
        ));
        out.push(Arc::new(Volume::new(
            name,
            source,
            mountpoint,
            app_paths,
            rules,
            mount_metrics,
        )));
    }
    Ok(out)
}

/// The ttl reapers of every mount's rules, stopped and joined on drop (also on an error return).
struct Reapers {
    volumes: Vec<Arc<Volume>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Reapers {
    fn start(volumes: &[Arc<Volume>]) -> anyhow::Result<Self> {
        let mut reapers = Reapers {
            volumes: volumes.to_vec(),
            threads: Vec::new(),
        };
        for v in volumes {
            let thread = v.rules.spawn_reaper().context("spawn ttl reaper thread")?;
            reapers.threads.push(thread);
        }
        Ok(reapers)
    }
}

impl Drop for Reapers {
    fn drop(&mut self) {
        for v in &self.volumes {
            v.rules.stop_reaper();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Unmounts every mount at once (each within `timeout`); every failure is reported.
fn unmount_all(mounted: Vec<(Arc<Volume>, Mounted)>, timeout: Duration) -> anyhow::Result<()> {
    for (v, _) in &mounted {
        v.mounted.store(false, Ordering::Release);
    }
    let failures: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = mounted
            .into_iter()
            .map(|(v, m)| scope.spawn(move || (v, m.unmount(timeout))))
            .collect();
        running
            .into_iter()
            .filter_map(|t| match t.join() {
                Ok((_, Ok(()))) => None,
                Ok((v, Err(err))) => Some(format!("unmount {}: {err}", v.mountpoint.display())),
                Err(_) => Some("an unmount thread panicked".into()),
            })
            .collect()
    });
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failures.join("; "))
    }
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Mounts every mount, serves RPC, and runs until SIGTERM/SIGINT (or until a mount disappears).
pub fn run(cfg: Config) -> anyhow::Result<()> {
    volume::check(&cfg.mounts, &cfg.app_mounts)?;
    // Listeners first: a refused address fails before anything is mounted, and the socket is
    // bound while no other thread creates files (its umask trick is process-wide).
    let listeners = rpc::Listeners::bind(
        cfg.rpc_listen.as_deref(),
        cfg.rpc_listen_allow_non_loopback,
        cfg.rpc_socket.as_deref().map(|p| (p, cfg.rpc_socket_mode)),
    )?;
    let metrics = Arc::new(Metrics::new());
    let sequence = Arc::new(Sequence::default());
    let shutdown = Arc::new(Shutdown::default());
    let app = Arc::new(App::new(
        volumes(&cfg, &metrics, &sequence)?,
        metrics,
        sequence,
        shutdown.clone(),
    ));
    for path in &cfg.rules_files {
        let (mount, specs) = load_rules_file(path)?;
        let n = specs.len();
        app.set_rules(mount.as_deref(), specs)
            .map_err(|e| anyhow::anyhow!("rules file {}: {e}", path.display()))?;
        tracing::info!(rules = n, file = %path.display(), "initial rules loaded");
    }
    let reapers = Reapers::start(&app.volumes)?;
    let mut filesystems = Vec::with_capacity(app.volumes.len());
    for v in &app.volumes {
        let fs = PassthroughFs::new(
            &v.source,
            v.rules.clone(),
            v.metrics.clone(),
            shutdown.clone(),
            FsOptions {
                ttl: cfg.ttl,
                io_mode: cfg.io_mode,
            },
        )?;
        let _ = v.fs.set(fs.inner().clone());
        filesystems.push(fs);
    }
    // Every mountpoint is checked (and a stale mount of a crashed instance detached) before
    // the first mount: a busy one refuses the start with nothing mounted.
    for v in &app.volumes {
        if mount::prepare_mountpoint(&v.mountpoint)? == mount::Prepared::StaleDetached {
            tracing::info!(mount = %v.name, mountpoint = %v.mountpoint.display(), "replaced a stale mount");
        }
    }
    let mut mounted: Vec<(Arc<Volume>, Mounted)> = Vec::with_capacity(app.volumes.len());
    for (v, fs) in app.volumes.iter().zip(filesystems) {
        match mount::mount(fs, &v.name, &v.source, &v.mountpoint, cfg.threads) {
            Ok(m) => {
                v.mounted.store(true, Ordering::Release);
                mounted.push((v.clone(), m));
            }
            Err(err) => {
                shutdown.trigger();
                if let Err(undo) = unmount_all(mounted, cfg.unmount_timeout) {
                    tracing::warn!(%undo, "unmounting after a failed start");
                }
                return Err(err.into());
            }
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rpc")
        .build()
        .context("start tokio runtime")?;
    let outcome: anyhow::Result<()> = rt.block_on(async {
        let server = rpc::start(app.clone(), listeners).await?;
        let metrics_task = match cfg.metrics_listen {
            Some(addr) => Some(rpc::start_metrics(app.clone(), addr).await?),
            None => None,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let result = loop {
            tokio::select! {
                sig = wait_for_signal() => {
                    let sig = sig?;
                    tracing::info!(signal = %sig, "shutting down");
                    break Ok(());
                }
                _ = tick.tick() => {
                    if let Some((v, _)) = mounted.iter().find(|(_, m)| m.session_ended()) {
                        break Err(anyhow::anyhow!(
                            "the FUSE session of mount {} ({}) ended (unmounted from outside?)",
                            v.name,
                            v.mountpoint.display()
                        ));
                    }
                }
            }
        };
        server.stop().await;
        if let Some(t) = metrics_task {
            t.abort();
        }
        result
    });
    shutdown.trigger();
    let unmounted = unmount_all(mounted, cfg.unmount_timeout);
    drop(reapers);
    if let Some(sock) = &cfg.rpc_socket {
        let _ = std::fs::remove_file(sock);
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    outcome?;
    unmounted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_files_are_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rules.json");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write(r#"{"rules": [{"type": "fault", "faults": [{"errno": "EIO"}]}]}"#);
        assert_eq!(load_rules_file(&file).unwrap().1[0].faults[0].errno, 5);
        write(r#"{"mount": "/var/lib/db", "rules": []}"#);
        assert_eq!(
            load_rules_file(&file).unwrap(),
            (Some("/var/lib/db".to_owned()), vec![])
        );
        write(r#"[{"type": "fault", "pth": "x", "faults": [{"errno": 5}]}, {"type": "latency"}]"#);
        let err = load_rules_file(&file).unwrap_err().to_string();
        assert!(
            err.ends_with(":\n  rules[0].pth: unknown field (accepted: id, type, path, methods, percent, latency, faults, attr, mistake, ttl)\n  rules[1].latency: is required for a rule of type `latency` (the delay)"),
            "{err}"
        );
        write(r#"{"rules": [], "rule": {}}"#);
        let err = load_rules_file(&file).unwrap_err().to_string();
        assert!(
            err.ends_with("  rule: unknown field (accepted: rules, mount)"),
            "{err}"
        );
        write("[\n  {\"type\": }\n]");
        let err = format!("{:#}", load_rules_file(&file).unwrap_err());
        assert!(
            err.contains("is not valid JSON: expected value at line 2 column 12"),
            "{err}"
        );
    }
}
