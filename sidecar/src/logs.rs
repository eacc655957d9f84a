//! Logs on stderr, text or JSON, level from `RUST_LOG` (default `info`); colour codes only when
//! stderr is a terminal, never in a log file or a collector.

use std::io::IsTerminal as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().finish().with(GoneReplies).init();
    } else {
        builder.finish().with(GoneReplies).init();
    }
}

/// Drops fuser's ERROR "Failed to send FUSE reply" when the kernel answered ENOENT or ENODEV:
/// the kernel no longer waits for that reply, because its caller was killed or the mount is
/// gone — the normal end of a lazy unmount, where the app's last `close` sends RELEASE and the
/// connection ends before our answer. Not an error of ours; any other failed reply still is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GoneReplies;

/// What an event says: its target (fuser logs through the `log` crate, whose records arrive
/// with the target in a `log.target` field) and whether its message names ENOENT or ENODEV.
#[derive(Default)]
struct Seen {
    log_target: Option<String>,
    gone: bool,
}

impl Visit for Seen {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let text = format!("{value:?}");
            self.gone = text.contains("(os error 2)") || text.contains("(os error 19)");
        }
    }
}

const REPLY_TARGET: &str = "fuser::reply";

impl<S: Subscriber> Layer<S> for GoneReplies {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        // Records of the `log` crate come in with the target "log".
        if !matches!(event.metadata().target(), REPLY_TARGET | "log") {
            return true;
        }
        let mut seen = Seen::default();
        event.record(&mut seen);
        let target = seen
            .log_target
            .as_deref()
            .unwrap_or(event.metadata().target());
        !(target == REPLY_TARGET && seen.gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn replies_the_kernel_stopped_waiting_for_are_not_errors() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
            .with(GoneReplies);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "fuser::reply", "Failed to send FUSE reply: No such file or directory (os error 2)");
            tracing::error!(target: "fuser::reply", "Failed to send FUSE reply: No such device (os error 19)");
            // How a record of the `log` crate arrives (fuser logs through `log`).
            tracing::event!(target: "log", tracing::Level::ERROR, log.target = "fuser::reply", "Failed to send FUSE reply: No such file or directory (os error 2)");
            tracing::error!(target: "fuser::reply", "Failed to send FUSE reply: Invalid argument (os error 22)");
            tracing::error!(target: "faultline", "other (os error 2)");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("os error 22") && lines[1].contains("other"),
            "{text}"
        );
    }
}
