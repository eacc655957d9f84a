//! libfuse's `passthrough_hp`, the reference the sidecar bench measures against (issue 21).
//!
//! Built from the fuse3 source Debian ships (trixie's 3.17.2: the first release whose example
//! does kernel FUSE passthrough), fetched from deb.debian.org and checked against its SHA-256
//! before anything of it runs, into `target/libfuse-<version>`. The library is built beside the
//! example (meson links the example to it by rpath), so the system's older libfuse3 is not
//! touched. `FAULTLINE_BENCH_PASSTHROUGH_HP` naming a binary skips all of this.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

const VERSION: &str = "3.17.2";
const URL: &str = "http://deb.debian.org/debian/pool/main/f/fuse3/fuse3_3.17.2.orig.tar.gz";
/// Of the tarball above, as listed in trixie's `Sources` index.
const SHA256: &str = "3d932431ad94e86179e5265cddde1d67aa3bb2fb09a5bd35c641f86f2b5ed06f";

/// The path of a built `passthrough_hp`, building it first when missing.
pub(crate) fn passthrough_hp(target: &Path) -> Result<PathBuf, String> {
    let dir = target.join(format!("libfuse-{VERSION}"));
    let binary = dir.join("build/example/passthrough_hp");
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let tarball = dir.join(format!("fuse3_{VERSION}.orig.tar.gz"));
    let mut fetch = Command::new("curl");
    fetch
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&tarball)
        .arg(URL);
    run(fetch, &format!("fetch libfuse {VERSION} source ({URL})"))?;
    check_sha256(&tarball)?;

    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).map_err(|e| format!("mkdir {}: {e}", src.display()))?;
    let mut untar = Command::new("tar");
    untar
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1");
    run(untar, "unpack libfuse")?;

    let build = dir.join("build");
    let mut setup = Command::new("meson");
    setup
        .arg("setup")
        .arg(&build)
        .arg(&src)
        // Only the library and the examples: no fusermount3 (it would want to be set-uid), no
        // test suite, no /etc/mtab handling.
        .args([
            "-Dexamples=true",
            "-Dutils=false",
            "-Dtests=false",
            "-Ddisable-mtab=true",
        ]);
    run(setup, "meson setup libfuse")?;
    let mut ninja = Command::new("ninja");
    ninja.arg("-C").arg(&build).arg("example/passthrough_hp");
    run(ninja, "build passthrough_hp")?;
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("the libfuse build made no {}", binary.display()))
    }
}

fn check_sha256(file: &Path) -> Result<(), String> {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .map_err(|e| format!("sha256sum: cannot start: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text.split_whitespace().next().unwrap_or("");
    if got == SHA256 {
        Ok(())
    } else {
        let _ = std::fs::remove_file(file);
        Err(format!(
            "{}: SHA-256 {got}, expected {SHA256} (file removed)",
            file.display()
        ))
    }
}
