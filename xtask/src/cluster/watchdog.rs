//! The watchdog of a control plane started by a process that may die without cleaning up.

use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::plane::{ControlPlane, pids};

/// A process that outlives the one that starts it only to clean up after it: it holds the read
/// end of a pipe whose write end this process keeps; when this process dies in any way (even
/// SIGKILL), the pipe closes and the watchdog stops the control plane's processes and removes
/// its directories. [`Watchdog::disarm`] after a clean [`super::stop`] lets it exit without touching
/// anything.
#[derive(Debug)]
pub struct Watchdog {
    stdin: Option<ChildStdin>,
    child: Child,
}

/// Starts the watchdog of `plane` (see [`Watchdog`]).
pub fn watchdog(plane: &ControlPlane) -> Result<Watchdog, String> {
    // Terminal signals are ignored: it must outlive a Ctrl-C of the test run to clean up.
    let script = r#"trap '' INT HUP TERM
read line
[ "$line" = done ] && exit 0
shift 2
for pid in "$@"; do kill -KILL "$pid" 2>/dev/null; done
for pid in "$@"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; done
rm -rf "$dir" "$etcd""#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("dir=\"$1\" etcd=\"$2\"; {script}"))
        .arg("faultline-watchdog")
        .arg(&plane.dir)
        .arg(&plane.etcd_data)
        .args(pids(plane).iter().map(u32::to_string))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the control plane's watchdog: {e}"))?;
    let stdin = child.stdin.take();
    Ok(Watchdog { stdin, child })
}

impl Watchdog {
    /// Tells the watchdog that the control plane is already stopped, and waits for it to exit.
    pub fn disarm(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}
