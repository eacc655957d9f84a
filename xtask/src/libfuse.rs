//! libfuse's `passthrough_hp`, the reference the sidecar bench measures against (issue 21).
//!
//! Built from the fuse3 source Debian ships (trixie's 3.17.2: the first release whose example
//! does kernel FUSE passthrough), fetched from deb.debian.org and checked against its SHA-256
//! before anything of it runs, into `target/libfuse-<version>`. The library is built beside the
//! example (meson links the example to it by rpath), so the system's older libfuse3 is not
//! touched. A finished build leaves a stamp naming the tarball's hash and the build flags; a
//! binary without a matching stamp (an interrupted build) is built again from scratch.
//! `FAULTLINE_BENCH_PASSTHROUGH_HP` naming a binary skips all of this.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

pub(crate) const VERSION: &str = "3.17.2";
const URL: &str = "http://deb.debian.org/debian/pool/main/f/fuse3/fuse3_3.17.2.orig.tar.gz";
/// Of the tarball above, as listed in trixie's `Sources` index.
const SHA256: &str = "3d932431ad94e86179e5265cddde1d67aa3bb2fb09a5bd35c641f86f2b5ed06f";
/// Only the library and the examples: no fusermount3 (it would want to be set-uid), no test
/// suite, no /etc/mtab handling.
const MESON_FLAGS: [&str; 4] = [
    "-Dexamples=true",
    "-Dutils=false",
    "-Dtests=false",
    "-Ddisable-mtab=true",
];

/// The path of a built `passthrough_hp`, building it first when missing or unfinished.
pub(crate) fn passthrough_hp(target: &Path) -> Result<PathBuf, String> {
    let dir = target.join(format!("libfuse-{VERSION}"));
    let binary = dir.join("build/example/passthrough_hp");
    let stamp_file = dir.join("build.stamp");
    let stamp = format!("{SHA256} {}\n", MESON_FLAGS.join(" "));
    if binary.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp) {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let tarball = dir.join(format!("fuse3_{VERSION}.orig.tar.gz"));
    if check_sha256(&tarball).is_err() {
        let mut fetch = Command::new("curl");
        fetch
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&tarball)
            .arg(URL);
        run(fetch, &format!("fetch {URL} to {}", tarball.display()))?;
        check_sha256(&tarball)?;
    }

    let (src, build) = (dir.join("src"), dir.join("build"));
    for d in [&stamp_file, &src, &build] {
        remove(d)?;
    }
    std::fs::create_dir_all(&src).map_err(|e| format!("mkdir {}: {e}", src.display()))?;
    let mut untar = Command::new("tar");
    untar
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1");
    run(
        untar,
        &format!("unpack {} into {}", tarball.display(), src.display()),
    )?;
    let mut setup = Command::new("meson");
    setup.arg("setup").arg(&build).arg(&src).args(MESON_FLAGS);
    run(setup, &format!("meson setup {}", build.display()))?;
    let mut ninja = Command::new("ninja");
    ninja.arg("-C").arg(&build).arg("example/passthrough_hp");
    run(
        ninja,
        &format!("ninja -C {} example/passthrough_hp", build.display()),
    )?;
    if !binary.is_file() {
        return Err(format!("the libfuse build made no {}", binary.display()));
    }
    std::fs::write(&stamp_file, stamp)
        .map_err(|e| format!("write {}: {e}", stamp_file.display()))?;
    Ok(binary)
}

/// Removes a file or a directory tree; absent is fine.
fn remove(path: &Path) -> Result<(), String> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The file's SHA-256 is the pinned one; a file with another hash is removed.
fn check_sha256(file: &Path) -> Result<(), String> {
    if !file.is_file() {
        return Err(format!("no {}", file.display()));
    }
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .map_err(|e| format!("sha256sum {}: cannot start: {e}", file.display()))?;
    if !out.status.success() {
        return Err(format!(
            "sha256sum {}: {} {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text.split_whitespace().next().unwrap_or("");
    if got == SHA256 {
        Ok(())
    } else {
        remove(file)?;
        Err(format!(
            "{}: SHA-256 {got}, expected {SHA256} (file removed)",
            file.display()
        ))
    }
}
