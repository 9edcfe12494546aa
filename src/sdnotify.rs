//! systemd's notify protocol, by hand: one datagram per state change to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract socket written `@name`), and the watchdog interval
//! from `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`). No libsystemd.
//!
//! States sent by the daemon: `READY=1` once the first pass is done, `WATCHDOG=1` every half
//! watchdog interval, `RELOADING=1` then `READY=1` around a SIGHUP reload, `STOPPING=1` on
//! shutdown, and a human-readable `STATUS=…` along the way.
//!
//! Kept by hand rather than the `sd-notify` crate (issue #10.6), for two reasons measured with
//! sd-notify 0.5.0 (a scratch program, 2026-11-30): its `notify` fails with `ENOENT` for an
//! abstract socket (`NOTIFY_SOCKET=@name`, which systemd hands out too, and which
//! `sends_to_path_and_abstract_sockets` below covers), and it sends on a blocking socket: with
//! a manager that stops reading, the 12th datagram blocked the sending thread for good (more
//! than 2 s, then the run was ended) — here that thread is a tokio worker. This notifier is
//! non-blocking and drops a note instead. The crate would save about 60 lines.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={path}: {reason}")]
    Address { path: String, reason: String },
    #[error("NOTIFY_SOCKET={path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A connection to the service manager's notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    path: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, or `None` when it is unset or empty (not run by
    /// systemd, or by a unit that is not `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Notifier::new(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for the socket at `path` (`@name` for an abstract socket).
    pub fn new(path: &str) -> Result<Notifier, NotifyError> {
        let addr = socket_addr(path)?;
        let io = |source| NotifyError::Io {
            path: path.to_owned(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(io)?;
        // Never block the daemon on a slow or full manager queue: a dropped note is better.
        socket.set_nonblocking(true).map_err(io)?;
        Ok(Notifier {
            socket,
            addr,
            path: path.to_owned(),
        })
    }

    /// Sends one notification, e.g. `READY=1` or `STATUS=…` (several may be joined by `\n`).
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Sends, logging (at debug) instead of failing: notifications are best effort.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }
}

fn socket_addr(path: &str) -> Result<SocketAddr, NotifyError> {
    let bad = |reason: String| NotifyError::Address {
        path: path.to_owned(),
        reason,
    };
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| bad(e.to_string()))
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path).map_err(|e| bad(e.to_string()))
    } else {
        Err(bad(
            "not an absolute path or an abstract socket name (@name)".into(),
        ))
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set for this process
/// (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_honours_pid() {
        assert_eq!(
            watchdog_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
    }

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("lumierd-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.notify("WATCHDOG=1").unwrap();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");

        assert!(Notifier::new("relative/path").is_err());
    }
}
