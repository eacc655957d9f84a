//! Building kube-apiserver, etcd and kubectl from `tests/cluster` into the binary cache.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binaries and the Go packages they are built from.
pub const BINARIES: [(&str, &str); 3] = [
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
];

/// The three built binaries.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The cache directory that holds them.
    pub dir: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
}

impl Tools {
    fn in_dir(dir: PathBuf) -> Self {
        Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            dir,
        }
    }

    fn present(&self) -> bool {
        [&self.etcd, &self.kube_apiserver, &self.kubectl]
            .iter()
            .all(|p| p.is_file())
    }
}

/// `tests/cluster` of the checkout at `root`.
pub fn module_dir(root: &Path) -> PathBuf {
    root.join("tests/cluster")
}

/// 64-bit FNV-1a: a stable, dependency-free hash for the cache key (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The cache key: the Kubernetes version and the hash of `go.sum`.
pub fn cache_key(root: &Path) -> Result<String, String> {
    let module = module_dir(root);
    let go_sum = fs::read(module.join("go.sum"))
        .map_err(|e| format!("{}: {e}", module.join("go.sum").display()))?;
    let version = kubernetes_version(&read(&module.join("go.mod"))?)?;
    Ok(format!("{version}-{:016x}", fnv1a(&go_sum)))
}

/// Where built binaries are kept (see the module documentation).
pub fn cache_root() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("FAULTLINE_CLUSTER_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("faultline/cluster"));
    }
    env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/faultline/cluster"))
        .ok_or_else(|| "neither FAULTLINE_CLUSTER_CACHE nor HOME is set".to_owned())
}

/// The binaries for the current `go.sum`, if they are built.
pub fn installed(root: &Path) -> Result<Option<Tools>, String> {
    let tools = Tools::in_dir(cache_root()?.join(cache_key(root)?));
    Ok(tools.present().then_some(tools))
}

/// The `k8s.io/kubernetes` version that `go.mod` requires (`v1.34.4`).
pub fn kubernetes_version(go_mod: &str) -> Result<String, String> {
    go_mod
        .lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("k8s.io/kubernetes"))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
        .filter(|v| v.starts_with('v') && v.split('.').count() == 3)
        .ok_or_else(|| "tests/cluster/go.mod: no `k8s.io/kubernetes vX.Y.Z` requirement".to_owned())
}

/// The `-ldflags` that make `/version` and `kubectl version` true: both version packages
/// (component-base for the servers, client-go for kubectl), `gitTreeState=archive` (built from a
/// module archive, not a git tree), no commit (a module archive does not say which).
pub fn version_ldflags(version: &str, build_date: &str) -> Result<String, String> {
    let bad = || format!("{version:?} is not vMAJOR.MINOR.PATCH");
    let parts: Vec<&str> = version
        .strip_prefix('v')
        .ok_or_else(bad)?
        .split('.')
        .collect();
    let [major, minor, _patch] = parts[..] else {
        return Err(bad());
    };
    if [major, minor]
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let mut flags = String::from("-s -w");
    for package in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (var, value) in [
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "archive"),
            ("gitCommit", ""),
            ("buildDate", build_date),
        ] {
            let _ = write!(flags, " -X {package}.{var}={value}");
        }
    }
    Ok(flags)
}

/// `go` from PATH, else the standard install location `/usr/local/go/bin/go`.
pub fn find_go() -> Option<PathBuf> {
    let on_path = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join("go"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let standard = PathBuf::from("/usr/local/go/bin/go");
        standard.is_file().then_some(standard)
    })
}

/// Builds the binaries when the cache has none for the current `go.sum`; prints progress and
/// the build time. Returns where they are.
pub fn build(root: &Path) -> Result<Tools, String> {
    if let Some(tools) = installed(root)? {
        println!(
            "xtask: cluster binaries up to date in {}",
            tools.dir.display()
        );
        return Ok(tools);
    }
    let go = find_go().ok_or(
        "Go is not installed (no `go` on PATH or in /usr/local/go/bin): it builds kube-apiserver, \
         etcd and kubectl from tests/cluster (install Go 1.24 or newer)",
    )?;
    let module = module_dir(root);
    let version = kubernetes_version(&read(&module.join("go.mod"))?)?;
    let key = cache_key(root)?;
    let cache = cache_root()?;
    let dest = cache.join(&key);
    let staging = cache.join(format!(".{key}.{}", std::process::id()));
    fs::create_dir_all(&staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let ldflags = version_ldflags(&version, &utc_now())?;
    println!(
        "xtask: building Kubernetes {version} (kube-apiserver, kubectl) and etcd with {} into {}",
        go.display(),
        dest.display()
    );
    println!("xtask: (a first build downloads the modules and takes 10-30 minutes on 2 cores)");
    let started = Instant::now();
    for (name, package) in BINARIES {
        let mut cmd = Command::new(&go);
        cmd.current_dir(&module)
            .args(["build", "-trimpath", "-ldflags", &ldflags, "-o"])
            .arg(staging.join(name))
            .arg(package);
        let one = Instant::now();
        run_with_heartbeat(cmd, &format!("go build {name}"))?;
        println!("xtask: built {name} in {}", minutes(one.elapsed()));
    }
    match fs::rename(&staging, &dest) {
        Ok(()) => {}
        // Another build finished first: keep its binaries.
        Err(_) if Tools::in_dir(dest.clone()).present() => {
            let _ = fs::remove_dir_all(&staging);
        }
        Err(e) => return Err(format!("{} -> {}: {e}", staging.display(), dest.display())),
    }
    println!(
        "xtask: cluster binaries built in {} ({})",
        minutes(started.elapsed()),
        dest.display()
    );
    Ok(Tools::in_dir(dest))
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Runs a long command, saying every 30 s that it still runs.
fn run_with_heartbeat(mut cmd: Command, what: &str) -> Result<(), String> {
    println!("xtask: {what}");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let mut next = Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what}: failed ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("{what}: {e}")),
        }
        if started.elapsed() >= next {
            println!("xtask: {what}: still running ({})", minutes(next));
            next += Duration::from_secs(30);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` now (the `buildDate` of `/version`).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_version_comes_from_go_mod() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let go_mod = read(&module_dir(&root).join("go.mod")).expect("tests/cluster/go.mod");
        let version = kubernetes_version(&go_mod).expect("version");
        assert!(version.starts_with("v1."), "{version}");
        let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
        assert!(minor >= 34, "{version}: the issue asks for 1.34 or newer");
        assert_eq!(
            kubernetes_version("require (\n\tk8s.io/kubernetes v1.34.4\n)\n").unwrap(),
            "v1.34.4"
        );
        assert!(kubernetes_version("require k8s.io/api v0.34.4\n").is_err());
    }
    #[test]
    fn every_staging_requirement_is_replaced_by_a_published_version() {
        // A v0.0.0 requirement without a replace is kubernetes issue 79384: go build fails.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let go_mod = read(&module_dir(&root).join("go.mod")).expect("go.mod");
        let version = kubernetes_version(&go_mod).unwrap();
        let staging = version.replacen("v1.", "v0.", 1);
        let replaces: Vec<&str> = go_mod.lines().filter(|l| l.contains("=>")).collect();
        assert!(replaces.len() >= 25, "{replaces:?}");
        for line in &replaces {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.len(), 4, "{line}");
            assert_eq!(words[0], words[2], "{line}");
            assert_eq!(
                words[3], staging,
                "{line}: staging modules follow {version}"
            );
        }
        for line in go_mod.lines().filter(|l| l.trim().starts_with("k8s.io/")) {
            let module = line.split_whitespace().next().unwrap();
            if line.contains("v0.0.0 ") || line.trim_end().ends_with("v0.0.0") {
                assert!(
                    replaces
                        .iter()
                        .any(|r| r.split_whitespace().next() == Some(module)),
                    "{module} is required at v0.0.0 and not replaced"
                );
            }
        }
    }
    #[test]
    fn ldflags_set_both_version_packages() {
        let flags = version_ldflags("v1.34.4", "2026-01-02T03:04:05Z").unwrap();
        for want in [
            "-X k8s.io/component-base/version.gitVersion=v1.34.4",
            "-X k8s.io/component-base/version.gitMajor=1",
            "-X k8s.io/component-base/version.gitMinor=34",
            "-X k8s.io/client-go/pkg/version.gitVersion=v1.34.4",
            "-X k8s.io/client-go/pkg/version.buildDate=2026-01-02T03:04:05Z",
        ] {
            assert!(flags.contains(want), "{want} not in {flags}");
        }
        assert!(version_ldflags("1.34", "x").is_err());
    }
    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_767_323_045), "2026-01-02T03:04:05Z");
    }
    #[test]
    fn the_cache_key_follows_go_sum() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let key = cache_key(&root).unwrap();
        assert!(key.starts_with("v1."), "{key}");
    }
}
