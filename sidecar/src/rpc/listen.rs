//! Where the RPC service listens, checked and bound at start, before anything is mounted.
//!
//! Whoever reaches the RPC service can fail, delay or corrupt the app's I/O, so it is kept off
//! the network: `--rpc-listen` must resolve to loopback addresses only (unless
//! `--rpc-listen-allow-non-loopback`), and the `--rpc-socket` file is created `0600` (or
//! `--rpc-socket-mode`) with no moment at which it is open to everyone.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};

/// Why the RPC service cannot listen where it was told to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error("--rpc-listen {addr}: cannot resolve it: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--rpc-listen {addr}: resolves to no address")]
    NoAddress { addr: String },
    #[error(
        "--rpc-listen {addr} is not a loopback address ({resolved}): fault control must not be \
         reachable from the network, anyone who can connect can fail, delay or corrupt this \
         pod's I/O; listen on 127.0.0.1 or ::1, or use --rpc-socket, or pass \
         --rpc-listen-allow-non-loopback to accept that risk"
    )]
    NotLoopback { addr: String, resolved: String },
    #[error("--rpc-listen {addr}: bind: {source}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--rpc-socket {}: exists and is not a socket; not replacing it", path.display())]
    NotASocket { path: PathBuf },
    #[error("--rpc-socket {}: {what}: {source}", path.display())]
    Unix {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) use faultline_rpc::is_loopback;

/// `host:port` or `ip:port` to addresses (names resolved, `localhost:65533` works).
pub(crate) fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ListenError> {
    let mut addrs: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => addr
            .to_socket_addrs()
            .map_err(|source| ListenError::Resolve {
                addr: addr.to_string(),
                source,
            })?
            .collect(),
    };
    addrs.dedup();
    if addrs.is_empty() {
        return Err(ListenError::NoAddress {
            addr: addr.to_string(),
        });
    }
    Ok(addrs)
}

/// The addresses `--rpc-listen` may bind: every one loopback, unless `allow_non_loopback`.
pub(crate) fn checked(
    addr: &str,
    allow_non_loopback: bool,
) -> Result<Vec<SocketAddr>, ListenError> {
    let addrs = resolve(addr)?;
    if !allow_non_loopback && !addrs.iter().all(is_loopback) {
        let resolved: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        return Err(ListenError::NotLoopback {
            addr: addr.to_string(),
            resolved: resolved.join(", "),
        });
    }
    Ok(addrs)
}

/// Binds every address; one that does not exist on this host (`::1` without IPv6) is skipped
/// as long as another was bound.
pub(crate) fn bind_tcp(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ListenError> {
    let mut bound = Vec::new();
    let mut first_err = None;
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(l) => bound.push(l),
            Err(source) if source.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tracing::debug!(%addr, %source, "rpc address not available here, skipped");
                first_err.get_or_insert(ListenError::BindTcp {
                    addr: *addr,
                    source,
                });
            }
            Err(source) => {
                return Err(ListenError::BindTcp {
                    addr: *addr,
                    source,
                });
            }
        }
    }
    match (bound.is_empty(), first_err) {
        (true, Some(err)) => Err(err),
        _ => Ok(bound),
    }
}

/// A Unix socket at `path` with permission bits `mode`. A stale socket of an earlier run is
/// replaced; any other file there is refused.
pub(crate) fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, ListenError> {
    let io = |what: &'static str| {
        move |source| ListenError::Unix {
            path: path.into(),
            what,
            source,
        }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(io("remove the stale socket"))?
        }
        Ok(_) => return Err(ListenError::NotASocket { path: path.into() }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io("stat")(err)),
    }
    // bind(2) gives the socket file 0777 minus the umask. Binding under umask 0177 makes it
    // 0600 from the first moment; chmod then sets the mode asked for. The umask is
    // process-wide: this runs at start, before any other thread creates files.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(io("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))?;
    Ok(listener)
}

/// The listeners of the RPC service, bound.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    pub tcp: Vec<TcpListener>,
    pub unix: Option<(PathBuf, UnixListener)>,
}

impl Listeners {
    /// Checks and binds `--rpc-listen` and `--rpc-socket`.
    pub(crate) fn bind(
        tcp: Option<&str>,
        allow_non_loopback: bool,
        unix: Option<(&Path, u32)>,
    ) -> Result<Self, ListenError> {
        let tcp = match tcp {
            Some(addr) => bind_tcp(&checked(addr, allow_non_loopback)?)?,
            None => Vec::new(),
        };
        let unix = match unix {
            Some((path, mode)) => Some((path.to_path_buf(), bind_unix(path, mode)?)),
            None => None,
        };
        Ok(Self { tcp, unix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(checked("127.0.0.1:0", false).is_ok());
        assert!(checked("[::1]:0", false).is_ok());
        assert!(checked("[::ffff:127.0.0.1]:0", false).is_ok());
        assert!(checked("localhost:0", false).is_ok(), "names resolve");
        let err = checked("0.0.0.0:65533", false).unwrap_err().to_string();
        assert!(
            err.contains("fault control must not be reachable from the network")
                && err.contains("--rpc-listen-allow-non-loopback"),
            "{err}"
        );
        assert!(checked("0.0.0.0:65533", true).is_ok());
        assert!(checked("10.1.2.3:1", false).is_err());
        assert!(matches!(
            checked("no-such-host.invalid:1", false),
            Err(ListenError::Resolve { .. })
        ));
    }

    #[test]
    fn unix_socket_mode_and_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpc.sock");
        let l = bind_unix(&path, 0o600).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        drop(l);
        // The socket file of a previous run is replaced, with the new mode.
        bind_unix(&path, 0o660).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o660);
        let file = dir.path().join("data");
        std::fs::write(&file, b"keep").unwrap();
        assert!(matches!(
            bind_unix(&file, 0o600),
            Err(ListenError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}
