//! Signals: SIGTERM and SIGINT stop, SIGHUP reloads.

use super::daemon::DaemonError;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The daemon's signal handlers, installed before anything else so that a signal sent
/// during start-up is handled, not fatal: SIGTERM and SIGINT stop, SIGHUP reloads.
pub struct Signals {
    pub term: Signal,
    pub int: Signal,
    pub hup: Signal,
}

impl Signals {
    pub fn install() -> Result<Signals, DaemonError> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| DaemonError::Io(format!("{name} handler: {e}")))
        };
        Ok(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

/// Completes on SIGTERM or SIGINT (cancel-safe).
pub async fn stop_signal(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
