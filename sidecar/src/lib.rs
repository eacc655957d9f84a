//! # faultline-sidecar
//!
//! A FUSE passthrough of `--source` mounted at `--mountpoint`, injecting I/O faults that are
//! changed live over JSON-RPC 2.0 (DESIGN.md §4). It runs next to an application in a pod (the
//! webhook injects it, §7) or standalone on any Linux host.
//!
//! ```text
//! faultline-sidecar --source /data-src --mountpoint /data [--rpc-listen 127.0.0.1:65533]
//!                   [--rpc-socket PATH [--rpc-socket-mode 0600]] [--rules rules.json] [--seed N]
//!                   [--metrics-listen ADDR]
//! faultline-sidecar probe [--rpc-listen 127.0.0.1:65533]      # exit 0 when the mount is live
//! faultline-sidecar rules add|list|remove|clear …             # the RPC methods from a shell
//! faultline-sidecar status [-o json]
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
//! - [`rpc`]: jsonrpsee methods with strict params, `GET /ready`, `GET /metrics`; listeners
//!   kept off the network (loopback only, socket mode 0600).
//! - [`mount`]: stale/busy mountpoint handling, the multi-threaded session, clean unmount.
//! - [`client`], [`cli`]: the `rules …` and `status` subcommands.
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
pub mod cli;
pub(crate) mod client;
pub(crate) mod delay;
pub(crate) mod fs;
pub(crate) mod inject;
pub(crate) mod inode;
pub mod logs;
pub(crate) mod metrics;
pub(crate) mod mount;
pub mod rpc;
pub(crate) mod rules;
pub(crate) mod sync;
pub(crate) mod sys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use faultline_api::iorule::{IoRule, Reader, read_rules};
use faultline_api::rpc::sidecar::Status;
use serde_json::Value;

use crate::delay::Shutdown;
use crate::fs::{FsOptions, Inner, PassthroughFs};
use crate::metrics::Metrics;
use crate::rules::RuleStore;

/// Everything `run` needs (the binary's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// `host:port`; must resolve to loopback addresses unless `rpc_listen_allow_non_loopback`.
    pub rpc_listen: Option<String>,
    pub rpc_listen_allow_non_loopback: bool,
    pub rpc_socket: Option<PathBuf>,
    /// Permission bits of the `rpc_socket` file.
    pub rpc_socket_mode: u32,
    pub metrics_listen: Option<SocketAddr>,
    pub rules_file: Option<PathBuf>,
    pub seed: Option<u64>,
    pub threads: usize,
    pub ttl: Duration,
    /// How long an unmount may take at shutdown before the connection is aborted.
    pub unmount_timeout: Duration,
}

/// Shared state of the RPC side.
pub(crate) struct App {
    pub rules: Arc<RuleStore>,
    pub metrics: Arc<Metrics>,
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    pub mounted: AtomicBool,
    pub shutdown: Arc<Shutdown>,
    pub fs: OnceLock<Arc<Inner>>,
    pub started: Instant,
}

impl App {
    /// The RPC side's state before anything is mounted (`fs` is set once the filesystem exists).
    pub(crate) fn new(
        rules: Arc<RuleStore>,
        metrics: Arc<Metrics>,
        source: PathBuf,
        mountpoint: PathBuf,
        shutdown: Arc<Shutdown>,
    ) -> Self {
        App {
            rules,
            metrics,
            source,
            mountpoint,
            mounted: AtomicBool::new(false),
            shutdown,
            fs: OnceLock::new(),
            started: Instant::now(),
        }
    }

    /// Ok when the FUSE mount is up and answering (a `statfs` through it reaches us).
    pub(crate) fn mount_live(&self) -> Result<(), String> {
        if self.shutdown.is_set() {
            return Err("shutting down".into());
        }
        if !self.mounted.load(Ordering::Acquire) {
            return Err("not mounted".into());
        }
        let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        match sys::statfs_type(&c) {
            Ok(t) if t == sys::FUSE_SUPER_MAGIC => Ok(()),
            Ok(t) => Err(format!(
                "{} is not a FUSE mount (f_type {t:#x})",
                self.mountpoint.display()
            )),
            Err(e) => Err(format!("statfs({}): {e:?}", self.mountpoint.display())),
        }
    }

    pub(crate) fn status(&self) -> Status {
        let fs = self.fs.get();
        let mounted = self.mounted.load(Ordering::Acquire);
        Status {
            mounted,
            ready: mounted && !self.shutdown.is_set(),
            source: self.source.clone(),
            mountpoint: self.mountpoint.clone(),
            generation: self.rules.generation(),
            rules: self.rules.snapshot().rules.len(),
            ops: rpc::op_counts(self),
            inodes: fs.map(|f| f.inodes.len()).unwrap_or(0),
            open_handles: fs.map(|f| f.open_handles()).unwrap_or(0),
            delayed_ops: fs.map(|f| f.delayed.load(Ordering::Relaxed)).unwrap_or(0),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }
}

/// Reads a rules file: a JSON array of rules, or `{"rules": [...]}`, as strictly as
/// `rules.set` reads its params (every problem listed, unknown fields refused).
pub(crate) fn load_rules_file(path: &Path) -> anyhow::Result<Vec<IoRule>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read rules file {}", path.display()))?;
    // serde_json's message ends with the position: "… at line 3 column 7".
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("rules file {} is not valid JSON", path.display()))?;
    let mut reader = Reader::new();
    let list = match &value {
        Value::Object(_) => reader
            .object(&value, "", "an object like {\"rules\": [...]}", &["rules"])
            .and_then(|m| m.get("rules"))
            .cloned()
            .unwrap_or(Value::Array(vec![])),
        other => other.clone(),
    };
    match read_rules(&mut reader, &list, "rules") {
        Some(rules) if reader.errors().is_empty() => Ok(rules),
        _ => {
            let lines: Vec<String> = reader.errors().iter().map(|e| format!("  {e}")).collect();
            anyhow::bail!("rules file {}:\n{}", path.display(), lines.join("\n"))
        }
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

/// Mounts, serves RPC, and runs until SIGTERM/SIGINT (or until the mount disappears).
pub fn run(cfg: Config) -> anyhow::Result<()> {
    // Listeners first: a refused address fails before anything is mounted, and the socket is
    // bound while no other thread creates files (its umask trick is process-wide).
    let listeners = rpc::Listeners::bind(
        cfg.rpc_listen.as_deref(),
        cfg.rpc_listen_allow_non_loopback,
        cfg.rpc_socket.as_deref().map(|p| (p, cfg.rpc_socket_mode)),
    )?;
    let metrics = Arc::new(Metrics::new());
    let rules = Arc::new(RuleStore::new(cfg.seed, metrics.clone()));
    if let Some(path) = &cfg.rules_file {
        let specs = load_rules_file(path)?;
        let n = specs.len();
        rules
            .set(specs)
            .map_err(|e| anyhow::anyhow!("rules file {}: {e}", path.display()))?;
        tracing::info!(rules = n, file = %path.display(), "initial rules loaded");
    }
    let reaper = rules.spawn_reaper().context("spawn ttl reaper thread")?;
    let shutdown = Arc::new(Shutdown::default());
    let source = std::fs::canonicalize(&cfg.source)
        .with_context(|| format!("source directory {}", cfg.source.display()))?;
    // Absolute, but not canonicalised: a stale mount there would fail the lookup with ENOTCONN.
    let cfg = Config {
        mountpoint: std::path::absolute(&cfg.mountpoint)
            .with_context(|| format!("mountpoint {}", cfg.mountpoint.display()))?,
        ..cfg
    };
    let fs = PassthroughFs::new(
        &source,
        rules.clone(),
        metrics.clone(),
        shutdown.clone(),
        FsOptions { ttl: cfg.ttl },
    )?;
    let app = Arc::new(App::new(
        rules.clone(),
        metrics,
        source.clone(),
        cfg.mountpoint.clone(),
        shutdown.clone(),
    ));
    let _ = app.fs.set(fs.inner().clone());

    let prepared = mount::prepare_mountpoint(&cfg.mountpoint)?;
    if prepared == mount::Prepared::StaleDetached {
        tracing::info!(mountpoint = %cfg.mountpoint.display(), "replaced a stale mount");
    }
    let mounted = mount::mount(fs, &source, &cfg.mountpoint, cfg.threads)?;
    app.mounted.store(true, Ordering::Release);

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
                    if mounted.session_ended() {
                        break Err(anyhow::anyhow!("the FUSE session ended (unmounted from outside?)"));
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
    app.mounted.store(false, Ordering::Release);
    shutdown.trigger();
    let unmounted = mounted.unmount(cfg.unmount_timeout);
    rules.stop_reaper();
    let _ = reaper.join();
    if let Some(sock) = &cfg.rpc_socket {
        let _ = std::fs::remove_file(sock);
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    outcome?;
    unmounted.with_context(|| format!("unmount {}", cfg.mountpoint.display()))
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
        assert_eq!(load_rules_file(&file).unwrap()[0].faults[0].errno, 5);
        write(r#"[{"type": "fault", "pth": "x", "faults": [{"errno": 5}]}, {"type": "latency"}]"#);
        let err = load_rules_file(&file).unwrap_err().to_string();
        assert!(
            err.ends_with(":\n  rules[0].pth: unknown field (accepted: id, type, path, methods, percent, latency, faults, attr, mistake, ttl)\n  rules[1].latency: is required for a rule of type `latency` (the delay)"),
            "{err}"
        );
        write(r#"{"rules": [], "rule": {}}"#);
        let err = load_rules_file(&file).unwrap_err().to_string();
        assert!(
            err.ends_with("  rule: unknown field (accepted: rules)"),
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
