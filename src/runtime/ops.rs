//! The operations side of a running daemon: metrics and readiness, systemd's notify socket,
//! and the admin HTTP API (`crate::admin`) while it runs.

use super::daemon::{DaemonError, STOP_SERVER};
use crate::admin::passes::{Budget, PassLog, PassSummary, BUDGET_SAMPLE_EVERY};
use crate::admin::{self, AdminState, AdminToken};
use crate::cloudflare::Client;
use crate::metrics::Metrics;
use crate::replica::{Replica, PROBE_EVERY};
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
    /// The last passes, for the dashboard.
    pub passes: Arc<PassLog>,
    /// Requests per budget window, for the dashboard.
    budget: Arc<Budget>,
    notifier: Option<Arc<Notifier>>,
    /// Pings systemd's watchdog while the daemon runs.
    watchdog: Option<tokio::task::JoinHandle<()>>,
    /// Who leads and whether the status served is stale (`/readyz`, `/metrics`, status).
    pub replica: Arc<Replica>,
    /// Mirrors the election's view into `replica` and probes the store ([`Ops::follow`]).
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Ops {
    /// Fresh metrics; systemd's notify socket and watchdog when systemd gave them. The
    /// watchdog is pinged only while `store` can write, so systemd restarts a daemon whose
    /// store failed (the restart reopens it) — a follower's, which writes nothing, excepted.
    pub fn start(store: &Store, replica: Replica) -> Ops {
        let notifier = match Notifier::from_env() {
            Ok(n) => n.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, "sd_notify disabled");
                None
            }
        };
        let metrics = Arc::new(Metrics::new());
        let replica = Arc::new(replica);
        let watchdog = match (&notifier, sdnotify::watchdog_interval()) {
            (Some(n), Some(every)) => {
                let n = Arc::clone(n);
                let store = store.clone();
                let metrics = Arc::clone(&metrics);
                let replica = Arc::clone(&replica);
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let store_ok = store.can_write() || !replica.writes();
                        if store_ok && metrics.stuck().is_none() {
                            n.send("WATCHDOG=1");
                        }
                    }
                }))
            }
            _ => None,
        };
        Ops {
            metrics,
            passes: Arc::default(),
            budget: Arc::default(),
            notifier,
            watchdog,
            replica,
            follower: None,
        }
    }

    /// With an election: keeps the replica's report in step with the election's `view`,
    /// and probes `store` every [`PROBE_EVERY`] so that a stale view shows (and clears)
    /// without anyone asking for status.
    pub fn follow(
        &mut self,
        mut view: tokio::sync::watch::Receiver<crate::runtime::leader::LeaderView>,
        store: &Store,
    ) {
        let (replica, store) = (Arc::clone(&self.replica), store.clone());
        self.follower = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                replica.observe(&view.borrow_and_update());
                tokio::select! {
                    changed = view.changed() => if changed.is_err() {
                        return; // the election ended: the daemon is stopping
                    },
                    _ = tick.tick() => {
                        let (r, s) = (Arc::clone(&replica), store.clone());
                        let _ = tokio::task::spawn_blocking(move || r.probe(&s)).await;
                    }
                }
            }
        }));
    }

    /// What the admin API serves; `token`: required on every path but `/healthz`.
    pub fn admin_state(
        &self,
        store: &Store,
        client: &Client,
        token: Option<AdminToken>,
    ) -> AdminState {
        AdminState {
            store: store.clone(),
            metrics: Arc::clone(&self.metrics),
            client: Some(client.clone()),
            passes: Arc::clone(&self.passes),
            budget: Arc::clone(&self.budget),
            token,
            replica: Arc::clone(&self.replica),
        }
    }

    /// Keeps a pass that started at `at` in the dashboard's ring of the last passes.
    pub fn record_pass<E: std::fmt::Display>(
        &self,
        at: crate::time::Timestamp,
        took: Duration,
        outcome: Result<&super::change::PassReport, &E>,
    ) {
        self.passes.record(PassSummary::of(at, took, outcome));
    }

    pub fn stop(self) {
        if let Some(w) = self.watchdog {
            w.abort();
        }
        if let Some(f) = self.follower {
            f.abort();
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
        let records = store.records().map(|item| item.map(|(_, record)| record));
        if let Err(e) = self.metrics.set_resources(records) {
            tracing::warn!(error = %e, "reading the store for metrics (the last counts stay)");
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
    sampler: Option<tokio::task::JoinHandle<()>>,
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
        tracing::info!(addr = %bound, "admin API: / (dashboard) /healthz /readyz /metrics /status");
        // The budget window's samples, whether or not anyone looks at the dashboard.
        let sampler = state.client.clone().map(|client| {
            let budget = Arc::clone(&state.budget);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(BUDGET_SAMPLE_EVERY);
                loop {
                    tick.tick().await;
                    budget.sample(std::time::Instant::now(), client.stats().requests);
                }
            })
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = admin::serve(listener, state, shutdown).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        Ok(AdminServer {
            stop,
            task,
            sampler,
        })
    }

    pub async fn stop(self) {
        if let Some(s) = self.sampler {
            s.abort();
        }
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(STOP_SERVER, self.task).await;
    }
}
