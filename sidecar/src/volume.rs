//! The mounts of one sidecar: what the command line says (`--mount SOURCE:MOUNTPOINT[:NAME]`,
//! `--app-mount NAME[/SUBPATH]=PATH`), each mount's runtime state, and how the `mount` param of
//! the RPC methods names one.
//!
//! A mount is named by its volume name (`NAME`), by its mountpoint, or by a path where an app
//! container mounts the volume (what an IOChaos `volumePath` says). With one mount the name may
//! be left out. A path several volumes are mounted at (two app containers, each mounting a
//! different volume at `/data`) names none of them: the caller must use the volume name.
//!
//! An app container that mounts a volume with a `subPath` sees only that directory: rules
//! addressed by its path are moved under the sub-path ([`under_sub_path`]), so `"path": "x.db"`
//! means the file the app sees at `<its mountPath>/x.db`.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use faultline_api::iorule::IoRule;
use faultline_api::rpc::sidecar::{AppPath, MountStatus, OpCounts};
use faultline_rpc::errors::Violation;

use crate::fs::Inner;
use crate::metrics::MountMetrics;
use crate::rules::RuleStore;
use crate::sys;

/// `--mount SOURCE:MOUNTPOINT[:NAME]`: one directory to serve and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// The volume name (RPC calls may name the mount by it).
    pub name: Option<String>,
}

/// `--app-mount NAME[/SUBPATH]=PATH`: an app container mounts the volume `NAME` (its
/// sub-directory `SUBPATH`) at `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMount {
    pub mount: String,
    pub sub_path: Option<String>,
    pub path: PathBuf,
}

/// A name of a mount: letters, digits, `.`, `_`, `-` (a Kubernetes volume name fits), at most
/// 253 characters, not starting with `/` (paths are the other way to name a mount).
fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 253 || !name.chars().all(ok_char) {
        return Err(format!(
            "the name `{name}` must be 1 to 253 letters, digits, `.`, `_` or `-` (a volume name)"
        ));
    }
    Ok(())
}

impl FromStr for MountSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let usage = "expected SOURCE:MOUNTPOINT or SOURCE:MOUNTPOINT:NAME (paths without `:`; \
                     --source and --mountpoint take any path)";
        let (source, mountpoint, name) = match parts[..] {
            [source, mountpoint] => (source, mountpoint, None),
            [source, mountpoint, name] => (source, mountpoint, Some(name)),
            _ => return Err(format!("`{text}`: {usage}")),
        };
        if source.is_empty() || mountpoint.is_empty() {
            return Err(format!("`{text}`: {usage}"));
        }
        if let Some(name) = name {
            check_name(name).map_err(|e| format!("`{text}`: {e}"))?;
        }
        Ok(MountSpec {
            source: source.into(),
            mountpoint: mountpoint.into(),
            name: name.map(str::to_owned),
        })
    }
}

impl FromStr for AppMount {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected NAME=PATH or NAME/SUBPATH=PATH (the volume, the sub-directory an \
                     app mounts, and the absolute path it mounts it at)";
        let Some((target, path)) = text.split_once('=') else {
            return Err(format!("`{text}`: {usage}"));
        };
        let (mount, sub_path) = match target.split_once('/') {
            Some((mount, sub)) => (mount, Some(sub.trim_matches('/'))),
            None => (target, None),
        };
        check_name(mount).map_err(|e| format!("`{text}`: {e}"))?;
        let sub_path = match sub_path {
            None | Some("") => None,
            Some(sub)
                if Path::new(sub)
                    .components()
                    .any(|c| c == Component::ParentDir) =>
            {
                return Err(format!("`{text}`: the sub-path must not contain `..`"));
            }
            Some(sub) => Some(sub.to_owned()),
        };
        let path = normal_path(path).ok_or_else(|| {
            format!("`{text}`: `{path}` is not an absolute path (where the app mounts the volume)")
        })?;
        Ok(AppMount {
            mount: mount.to_owned(),
            sub_path,
            path,
        })
    }
}

/// `path` without `.` parts, repeated or trailing slashes; `None` unless absolute.
pub(crate) fn normal_path(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return None;
    }
    Some(path.components().collect())
}

/// What is wrong with a set of mounts (checked before anything is bound or mounted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no mount: give --mount SOURCE:MOUNTPOINT[:NAME] (repeatable) or --source and --mountpoint"
    )]
    NoMount,
    #[error("--mount: the name `{0}` is given to two mounts")]
    DuplicateName(String),
    #[error("--mount: two mounts at {0}")]
    DuplicateMountpoint(PathBuf),
    #[error("--app-mount {mount}=…: no mount is named `{mount}` (names: {names})")]
    UnknownAppMount { mount: String, names: String },
}

/// Checks names, mountpoints and `--app-mount` targets.
pub fn check(mounts: &[MountSpec], app_mounts: &[AppMount]) -> Result<(), ConfigError> {
    if mounts.is_empty() {
        return Err(ConfigError::NoMount);
    }
    let mut names: Vec<&str> = Vec::new();
    let mut points: Vec<PathBuf> = Vec::new();
    for m in mounts {
        if let Some(name) = &m.name {
            if names.contains(&name.as_str()) {
                return Err(ConfigError::DuplicateName(name.clone()));
            }
            names.push(name);
        }
        let point = std::path::absolute(&m.mountpoint)
            .unwrap_or_else(|_| m.mountpoint.clone())
            .components()
            .collect::<PathBuf>();
        if points.contains(&point) {
            return Err(ConfigError::DuplicateMountpoint(point));
        }
        points.push(point);
    }
    for a in app_mounts {
        if !names.contains(&a.mount.as_str()) {
            return Err(ConfigError::UnknownAppMount {
                mount: a.mount.clone(),
                names: if names.is_empty() {
                    "none: name mounts with --mount SOURCE:MOUNTPOINT:NAME".into()
                } else {
                    names.join(", ")
                },
            });
        }
    }
    Ok(())
}

/// One mount at run time: its rules, counters and filesystem.
pub(crate) struct Volume {
    /// The `--mount` name, else the mountpoint.
    pub name: String,
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    pub app_paths: Vec<AppPath>,
    pub rules: Arc<RuleStore>,
    pub metrics: Arc<MountMetrics>,
    pub mounted: AtomicBool,
    /// Set once the filesystem exists.
    pub fs: OnceLock<Arc<Inner>>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl Volume {
    pub(crate) fn new(
        name: String,
        source: PathBuf,
        mountpoint: PathBuf,
        app_paths: Vec<AppPath>,
        rules: Arc<RuleStore>,
        metrics: Arc<MountMetrics>,
    ) -> Self {
        Volume {
            name,
            source,
            mountpoint,
            app_paths,
            rules,
            metrics,
            mounted: AtomicBool::new(false),
            fs: OnceLock::new(),
        }
    }

    /// Ok when the FUSE mount is up and answering (a `statfs` through it reaches the daemon).
    pub(crate) fn live(&self) -> Result<(), String> {
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

    pub(crate) fn status(&self, stopping: bool) -> MountStatus {
        let fs = self.fs.get();
        let mounted = self.mounted.load(Ordering::Acquire);
        MountStatus {
            name: self.name.clone(),
            mounted,
            ready: mounted && !stopping,
            source: self.source.clone(),
            mountpoint: self.mountpoint.clone(),
            app_paths: self.app_paths.clone(),
            generation: self.rules.generation(),
            rules: self.rules.snapshot().rules.len(),
            ops: self
                .metrics
                .op_counts()
                .into_iter()
                .map(|c| {
                    let counts = OpCounts {
                        count: c.count,
                        errors: c.errors,
                        injected: c.injected,
                    };
                    (c.op.to_string(), counts)
                })
                .collect(),
            inodes: fs.map(|f| f.inodes.len()).unwrap_or(0),
            open_handles: fs.map(|f| f.open_handles()).unwrap_or(0),
            delayed_ops: fs.map(|f| f.delayed.load(Ordering::Relaxed)).unwrap_or(0),
            io_mode: fs.map(|f| f.passthrough.mode()),
            passthrough: fs.is_some_and(|f| f.passthrough.enabled()),
            passthrough_handles: fs.map_or(0, |f| gauge(&f.passthrough.handles)),
            bypassed_handles: fs.map_or(0, |f| gauge(&f.passthrough.bypassed)),
        }
    }

    /// `data (at /var/lib/db, /srv)`: the name and the app paths, for error messages.
    fn describe(&self) -> String {
        if self.app_paths.is_empty() {
            return self.name.clone();
        }
        let paths: Vec<String> = self
            .app_paths
            .iter()
            .map(|a| a.path.display().to_string())
            .collect();
        format!("{} (at {})", self.name, paths.join(", "))
    }
}

/// Why the `mount` param names no single mount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MountError {
    #[error(
        "is required: this sidecar serves {count} mounts: {mounts}; name one by its volume name or by the path where the app mounts it"
    )]
    Required { count: usize, mounts: String },
    #[error("no mount is named `{mount}` (mounts: {mounts})")]
    NotFound { mount: String, mounts: String },
    #[error("`{mount}` is where apps mount several volumes ({volumes}): name the volume instead")]
    Ambiguous { mount: String, volumes: String },
}

impl MountError {
    pub(crate) fn violation(&self) -> Violation {
        Violation {
            field: "mount".into(),
            reason: self.to_string(),
            rule: match self {
                MountError::Required { .. } => "required",
                MountError::NotFound { .. } => "not-found",
                MountError::Ambiguous { .. } => "ambiguous",
            },
        }
    }
}

/// The mount a call is about, and the sub-path its rules go under.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub volume: Arc<Volume>,
    pub sub_path: Option<String>,
}

fn list(volumes: &[Arc<Volume>]) -> String {
    volumes
        .iter()
        .map(|v| v.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The mount `mount` names (`None`: the only one).
pub(crate) fn resolve(
    volumes: &[Arc<Volume>],
    mount: Option<&str>,
) -> Result<Resolved, MountError> {
    let Some(mount) = mount else {
        return match volumes {
            [only] => Ok(Resolved {
                volume: only.clone(),
                sub_path: None,
            }),
            _ => Err(MountError::Required {
                count: volumes.len(),
                mounts: list(volumes),
            }),
        };
    };
    let not_found = || MountError::NotFound {
        mount: mount.to_owned(),
        mounts: list(volumes),
    };
    let Some(path) = normal_path(mount) else {
        return volumes
            .iter()
            .find(|v| v.name == mount)
            .map(|v| Resolved {
                volume: v.clone(),
                sub_path: None,
            })
            .ok_or_else(not_found);
    };
    // Unnamed mounts are named by their mountpoint, which is a path too.
    let mut found: Vec<Resolved> = Vec::new();
    for v in volumes {
        let at_mountpoint = (v.mountpoint == path).then_some(None);
        let at_app = v
            .app_paths
            .iter()
            .filter(|a| a.path == path)
            .map(|a| a.sub_path.clone());
        for sub_path in at_mountpoint.into_iter().chain(at_app) {
            let same = found
                .iter()
                .any(|r| Arc::ptr_eq(&r.volume, v) && r.sub_path == sub_path);
            if !same {
                found.push(Resolved {
                    volume: v.clone(),
                    sub_path,
                });
            }
        }
    }
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => Err(MountError::Ambiguous {
            mount: mount.to_owned(),
            volumes: found
                .iter()
                .map(|r| match &r.sub_path {
                    Some(sub) => format!("{}/{sub}", r.volume.name),
                    None => r.volume.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `text` with the glob syntax characters escaped (the pattern matches `text` literally).
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']' | '{' | '}' | ',' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A rule written against an app's view of a `subPath` mount, moved under that sub-path: no
/// `path` (every path the app sees) becomes the sub-directory and everything below it, `/` the
/// sub-directory, `x/*.db` `<sub>/x/*.db`.
pub(crate) fn under_sub_path(mut rule: IoRule, sub_path: &str) -> IoRule {
    let base = glob_literal(sub_path.trim_matches('/'));
    rule.path = Some(
        match rule.path.as_deref().map(|p| p.trim_start_matches('/')) {
            None => format!("{{{base},{base}/**}}"),
            Some("") => base,
            Some(p) => format!("{base}/{p}"),
        },
    );
    rule
}

/// A handle gauge's value as a count. Gauges are signed; these count handles and never go below
/// zero unless the bookkeeping is wrong, which tests catch (`debug_assert`) and a release build
/// shows as 0 rather than as a huge count.
fn gauge(g: &prometheus_client::metrics::gauge::Gauge) -> u64 {
    let v = g.get();
    debug_assert!(v >= 0, "handle gauge below zero: {v}");
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests;
