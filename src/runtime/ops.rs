//! The operations side of a running daemon: metrics and readiness, systemd's notify socket,
//! and the admin HTTP API (`crate::admin`) while it runs.

use super::daemon::{DaemonError, STOP_SERVER};
use crate::admin::{self, AdminState};
use crate::cloudflare::Client;
use crate::metrics::Metrics;
use crate::sdnotify::{self, Notifier};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The operations side of a running daemon: metrics and readiness, and systemd's notify
/// socket when there is one.
pub struct Ops {
    pub metrics: Arc<Metrics>,
    notifier: Option<Arc<Notifier>>,
    /// Pings systemd's watchdog while the daemon runs.
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl Ops {
    /// Fresh metrics; systemd's notify socket and watchdog when systemd gave them. The
    /// watchdog is pinged only while `store` can write, so systemd restarts a daemon whose
    /// store failed (the restart reopens it).
    pub fn start(store: &Store) -> Ops {
        let notifier = match Notifier::from_env() {
            Ok(n) => n.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, "sd_notify disabled");
                None
            }
        };
        let watchdog = match (&notifier, sdnotify::watchdog_interval()) {
            (Some(n), Some(every)) => {
                let n = Arc::clone(n);
                let store = store.clone();
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if store.can_write() {
                            n.send("WATCHDOG=1");
                        }
                    }
                }))
            }
            _ => None,
        };
        Ops {
            metrics: Arc::new(Metrics::new()),
            notifier,
            watchdog,
        }
    }

    /// What the admin API serves.
    pub fn admin_state(&self, store: &Store, client: &Client) -> AdminState {
        AdminState {
            store: store.clone(),
            metrics: Arc::clone(&self.metrics),
            client: Some(client.clone()),
        }
    }

    pub fn stop(self) {
        if let Some(w) = self.watchdog {
            w.abort();
        }
    }

    pub fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.send(state);
        }
    }

    /// After a pass: pass metrics, and resources by state from the store.
    pub fn after_pass(&self, store: &Store, ok: bool, took: Duration) {
        self.metrics.pass(ok, took);
        self.count_resources(store);
    }

    pub fn count_resources(&self, store: &Store) {
        let mut failed = None;
        let records = store.records().filter_map(|item| match item {
            Ok((_, record)) => Some(record),
            Err(e) => {
                failed.get_or_insert(e);
                None
            }
        });
        self.metrics.set_resources(records);
        if let Some(e) = failed {
            tracing::warn!(error = %e, "reading the store for metrics");
        }
    }

    /// The first successful pass makes the daemon ready.
    pub fn first_pass_done(&self) {
        if !self.metrics.is_ready() {
            self.metrics.set_ready(true);
            tracing::info!("ready: manifests loaded and the first pass done");
            self.notify("READY=1\nSTATUS=ready: reconciling");
        }
    }
}

/// The admin API while it runs.
pub struct AdminServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    pub async fn start(addr: SocketAddr, state: AdminState) -> Result<AdminServer, DaemonError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DaemonError::Io(format!("admin API listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| DaemonError::Io(format!("admin API address: {e}")))?;
        println!("admin API: http://{bound}");
        tracing::info!(addr = %bound, "admin API: /healthz /readyz /metrics /status");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = admin::serve(listener, state, shutdown).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        Ok(AdminServer { stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(STOP_SERVER, self.task).await;
    }
}
