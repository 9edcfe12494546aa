//! `run`: the boot list (provider, store, operations side, controller), one pass (`--once`)
//! or the loop ([`super::run_loop`]: the scheduler says when a pass runs), and the stop in
//! reverse order. The status socket the `status` command asks is [`super::status_socket`].
//!
//! Signals: SIGTERM/SIGINT stop gracefully (in-flight calls get a few seconds; the process
//! exits 0 within [`STOP_GRACE`]); SIGHUP reloads: rescan the manifests, make failing resources
//! due now, and run a full pass.

use super::change::{Change, PassReport};
use super::controller::{Controller, ControllerError, Policy};
use super::ops::{AdminServer, Ops};
use super::provider::{existing_ids, Provider, ProviderConfig};
use super::run_loop::run_forever;
use super::signals::Signals;
pub use super::status_socket::{ask, ask_daemon, SOCKET};
use crate::local_api::LocalApiError;
use crate::manifest::LoadError;
use crate::metrics::Metrics;
use crate::notify::{Delivery, Event, Sink, Target};
use crate::source::{self, Snapshot};
use crate::store::installation::installation_id;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a stop (SIGTERM, SIGINT) may take, in-flight calls included.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `run --once` waits for its notifications to go out before it exits.
const NOTIFY_DRAIN_ONCE: Duration = Duration::from_secs(5);
/// Of [`STOP_GRACE`], how long the embedded API and the admin API may take to stop.
pub(super) const STOP_SERVER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub manifests: PathBuf,
    pub state: PathBuf,
    /// Where the records live (`--store`); `None` = sled in `state`. The state folder still
    /// holds the local API's data, the status socket and (for sled) the installation id.
    pub store: Option<crate::store::Location>,
    /// This replica's name (`--instance-id`): in the User-Agent of every provider request
    /// and in the leader key.
    pub instance_id: String,
    /// The leader lease's TTL (`--lease-ttl`), with an etcd store.
    pub lease_ttl: Duration,
    pub once: bool,
    pub resync: Duration,
    pub debounce: Duration,
    pub policy: Policy,
    pub provider: ProviderConfig,
    /// Where the admin HTTP API listens (`--admin-listen`); `None` = off.
    pub admin_listen: Option<SocketAddr>,
    /// How manifests are loaded (`--allow-empty`).
    pub load: crate::manifest::LoadOptions,
    /// A running pass without progress for this long fails liveness (`--stuck-after`).
    pub stuck_after: Duration,
    /// The local edge (`--serve`): workerd serving the embedded API's workers; `None` = off.
    pub serve: Option<crate::edge::ServeConfig>,
    /// The admin API's token (`--admin-token-file`); `None` = none required.
    pub admin_token: Option<crate::admin::AdminToken>,
    /// Webhook URLs notified of drift, errors, held prunes and load failures (`--notify`).
    pub notify: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("embedded local API: {0}")]
    LocalApi(#[from] LocalApiError),
    #[error("Cloudflare client: {0}")]
    Client(#[from] crate::cloudflare::ApiError),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error("{0}")]
    Manifests(#[from] LoadError),
    #[error(transparent)]
    Edge(#[from] crate::edge::EdgeError),
}

/// Records a manifest load's outcome (`error`: None = loaded) in the store, and notifies a
/// change of it (failed, failed differently, recovered).
fn note_load(store: &Store, events: Option<&Sink>, error: Option<&str>) -> Result<(), StoreError> {
    let was = store.load_error()?;
    store.set_load_error(error)?;
    if let Some(sink) = events {
        if let Some(event) = Event::load(was.as_deref(), error, Timestamp::now()) {
            sink.emit(event);
        }
    }
    Ok(())
}

/// Reloads the manifests (incrementally after `previous`), records the outcome, and returns
/// the new snapshot (`None`: not loaded, the last good one stays in force).
pub(super) fn load_snapshot(
    manifests: &Path,
    options: &crate::manifest::LoadOptions,
    previous: Option<&Arc<Snapshot>>,
    store: &Store,
    metrics: &Metrics,
    events: Option<&Sink>,
) -> Option<Arc<Snapshot>> {
    let loaded = match previous {
        Some(previous) => source::reload(manifests, previous),
        None => source::load_with(manifests, options).map(Arc::new),
    };
    let (snapshot, error) = match loaded {
        Ok(snap) => {
            metrics.manifest_load(true);
            (Some(snap), None)
        }
        Err(e) => {
            metrics.manifest_load(false);
            let text = e.to_string();
            tracing::error!("manifests not loaded, the last good ones stay in force:\n{text}");
            (None, Some(text))
        }
    };
    // A store that cannot write must not end the daemon: the pass that follows fails and
    // is retried, and the health checks say why.
    if let Err(e) = note_load(store, events, error.as_deref()).and_then(|()| store.flush()) {
        tracing::warn!(error = %e, "recording the manifest load in the state store");
    }
    snapshot
}

/// Makes every resource that waits for a retry due now (SIGHUP): failure counts stay, so the
/// backoff still grows if it fails again.
pub(super) fn retry_now(store: &Store) -> Result<usize, StoreError> {
    let mut n = 0;
    for item in store.records() {
        let (key, mut rec) = item?;
        if rec.next_retry.is_some() {
            rec.next_retry = None;
            store.put(&key, &rec)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Logs a finished pass.
pub(super) fn log_pass(report: &PassReport, took: Duration) {
    tracing::info!(
        changes = report.changes.len(),
        converged = report.converged,
        took_ms = took.as_millis() as u64,
        "pass done"
    );
}

/// `lumierd run`: returns whether everything converged (meaningful with `--once`).
///
/// The boot list: signal handlers (first, so a signal during start-up is handled), the
/// store, the manifests, the provider, the local edge, the operations side (metrics,
/// sd_notify, watchdog, admin API), notifications, the controller, the election; then one
/// pass (`--once`) or the loop; then everything stops in reverse order.
pub async fn run(cfg: RunConfig) -> Result<bool, DaemonError> {
    // `--once` keeps the default dispositions (a signal ends it at once).
    let signals = if cfg.once {
        None
    } else {
        Some(Signals::install()?)
    };
    std::fs::create_dir_all(&cfg.state)
        .map_err(|e| DaemonError::Io(format!("state folder {}: {e}", cfg.state.display())))?;
    let store = match &cfg.store {
        Some(location) => Store::open_at(location)?,
        None => Store::open(&cfg.state)?,
    };
    let initial = source::load_with(&cfg.manifests, &cfg.load);
    let seed = initial.as_ref().map(existing_ids).unwrap_or_default();
    let provider = start_provider(&cfg, &seed).await?;
    let edge = start_edge(&cfg, &provider).await?;
    let mut ops = start_ops(&cfg, signals.is_some(), &store);
    let admin = match cfg.admin_listen {
        Some(addr) => {
            let state = ops.admin_state(&store, &provider.client, cfg.admin_token.clone());
            Some(AdminServer::start(addr, state).await?)
        }
        None => None,
    };
    let events = (!cfg.notify.is_empty()).then(|| {
        let targets = cfg.notify.iter().map(|u| Target::new(u)).collect();
        Sink::new(store.clone(), targets, Arc::clone(&ops.metrics))
    });
    let leader = start_leader(&cfg, signals.is_some(), &store, &provider)?;
    if let Some(l) = &leader {
        ops.follow(l.watch(), &store);
    }
    let delivery = start_delivery(&cfg, events.as_ref(), leader.as_ref())?;
    let controller = Controller {
        client: provider.client.clone(),
        store: store.clone(),
        installation: installation(&cfg, &store)?,
        policy: cfg.policy.clone(),
        metrics: Arc::clone(&ops.metrics),
        events,
    };
    // Start-up is over: the code only it ran need not stay resident (see `memory`).
    crate::memory::release_code_pages();
    let result = match signals {
        None => run_once(initial, &controller, &store, &ops).await,
        Some(signals) => {
            let r = run_forever(
                &cfg,
                initial,
                &controller,
                &store,
                &ops,
                signals,
                &edge,
                leader.as_ref(),
            )
            .await;
            // In-flight calls are done: hand the lease over now, not after a TTL.
            if let Some(l) = leader {
                let _ = tokio::task::spawn_blocking(move || l.resign()).await;
            }
            r
        }
    };
    let running = Running {
        edge,
        delivery,
        admin,
        provider,
        ops,
    };
    running.stop(&cfg, &controller, &store).await?;
    result
}

/// Starts delivering notifications, if any are configured. Replicas share the outbox: only
/// the leader delivers (the gate is its leadership).
fn start_delivery(
    cfg: &RunConfig,
    events: Option<&Sink>,
    leader: Option<&crate::runtime::leader::Leader>,
) -> Result<Option<Delivery>, DaemonError> {
    let Some(sink) = events else {
        return Ok(None);
    };
    let gate = leader.map(|l| l.watch());
    Delivery::start(sink, &cfg.instance_id, gate)
        .map(Some)
        .map_err(|e| DaemonError::Io(e.to_string()))
}

/// Starts the provider, names this replica to it, and prints where the embedded API is.
async fn start_provider(cfg: &RunConfig, seed: &[String]) -> Result<Provider, DaemonError> {
    let provider = Provider::start(&cfg.provider, &cfg.state, seed).await?;
    provider.client.set_instance(&cfg.instance_id);
    if matches!(cfg.provider, ProviderConfig::Embedded { .. }) {
        println!(
            "local API: {} (account {}, token in {})",
            provider.base_url,
            crate::local_api::DEFAULT_ACCOUNT_ID,
            crate::local_api::token_path(&cfg.state.join("local-api")).display()
        );
    }
    Ok(provider)
}

/// The local edge (#16), with `--serve` and the embedded API: started after the provider,
/// updated after each pass, stopped at shutdown (before the provider, whose KV it serves).
async fn start_edge(
    cfg: &RunConfig,
    provider: &Provider,
) -> Result<Option<crate::edge::Edge>, DaemonError> {
    let (Some(serve), Some(api)) = (&cfg.serve, &provider.local_api) else {
        return Ok(None);
    };
    let edge = crate::edge::Edge::start(api.clone(), serve.listen, serve.workerd.clone()).await?;
    println!("serving: http://{}", edge.addr());
    Ok(Some(edge))
}

/// The operations side (metrics, sd_notify, watchdog), with this replica's view: with an
/// etcd store (and a `daemon`, not `--once`) the replicas elect a leader.
fn start_ops(cfg: &RunConfig, daemon: bool, store: &Store) -> Ops {
    let elected = matches!(cfg.store, Some(crate::store::Location::Etcd(_))) && daemon;
    let ops = Ops::start(
        store,
        crate::replica::Replica::new(&cfg.instance_id, elected),
    );
    ops.metrics.set_stuck_after(cfg.stuck_after);
    ops.count_resources(store);
    ops
}

/// This installation's id: the state folder's, or for replicas sharing an etcd store the
/// first one's (they are one installation).
fn installation(cfg: &RunConfig, store: &Store) -> Result<String, DaemonError> {
    let local_id = installation_id(&cfg.state, true)
        .map_err(|e| DaemonError::Io(format!("installation id: {e}")))?
        .unwrap_or_default();
    Ok(store.shared_installation_id(&local_id)?.unwrap_or(local_id))
}

/// With an etcd store the replicas elect a leader; only it reconciles (`run --once`, when
/// `daemon` is false, is a one-off and does not campaign). With sled this replica always
/// leads (`None`).
fn start_leader(
    cfg: &RunConfig,
    daemon: bool,
    store: &Store,
    provider: &Provider,
) -> Result<Option<crate::runtime::leader::Leader>, DaemonError> {
    let (Some(crate::store::Location::Etcd(url)), true) = (&cfg.store, daemon) else {
        return Ok(None);
    };
    crate::runtime::leader::Leader::start(
        url,
        &cfg.instance_id,
        cfg.lease_ttl,
        store.clone(),
        provider.client.clone(),
    )
    .map(Some)
    .map_err(|e| DaemonError::Io(e.to_string()))
}

/// What `run` started that must be stopped, in this order, once the passes are over.
struct Running {
    edge: Option<crate::edge::Edge>,
    delivery: Option<Delivery>,
    admin: Option<AdminServer>,
    provider: Provider,
    ops: Ops,
}

impl Running {
    /// Stops the edge, drains notifications, flushes the store (bounded: a frozen disk must
    /// not keep the process from stopping), stops the admin API, the provider and the
    /// operations side. The error is the flush's.
    async fn stop(
        self,
        cfg: &RunConfig,
        controller: &Controller,
        store: &Store,
    ) -> Result<(), DaemonError> {
        if let Some(edge) = self.edge {
            edge.stop().await; // local edge (#16)
        }
        if let (Some(delivery), Some(sink)) = (self.delivery, controller.events.as_ref()) {
            let within = if cfg.once {
                NOTIFY_DRAIN_ONCE
            } else {
                STOP_SERVER
            };
            delivery.finish(sink, within).await;
        }
        let flushed = match tokio::time::timeout(STOP_SERVER, store.flush_durable()).await {
            Ok(flushed) => flushed,
            Err(_) => {
                tracing::error!(
                    "the state store did not flush within {STOP_SERVER:?}; stopping anyway"
                );
                Ok(())
            }
        };
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        self.provider.stop().await;
        self.ops.stop();
        Ok(flushed?)
    }
}

/// Records a manifest load's outcome (metrics, the store's load error) and returns the
/// snapshot it produced, if any.
pub(super) fn loaded(
    result: Result<Snapshot, LoadError>,
    store: &Store,
    ops: &Ops,
    events: Option<&Sink>,
) -> Result<Option<Arc<Snapshot>>, DaemonError> {
    match result {
        Ok(snap) => {
            ops.metrics.manifest_load(true);
            note_load(store, events, None)?;
            Ok(Some(Arc::new(snap)))
        }
        Err(e) => {
            ops.metrics.manifest_load(false);
            note_load(store, events, Some(&e.to_string()))?;
            store.flush()?;
            Err(e.into())
        }
    }
}

async fn run_once(
    initial: Result<Snapshot, LoadError>,
    controller: &Controller,
    store: &Store,
    ops: &Ops,
) -> Result<bool, DaemonError> {
    let Some(snap) = loaded(initial, store, ops, controller.events.as_ref())? else {
        return Ok(false);
    };
    // One run is an explicit request to try everything now (as SIGHUP is for the daemon):
    // the backoff of an earlier run does not hold it back.
    retry_now(store)?;
    // Later passes only matter when a resource waits on another or on a short retry.
    let mut converged = false;
    for _ in 0..3 {
        let (at, start) = (Timestamp::now(), Instant::now());
        let report = controller.pass(&snap).await;
        ops.after_pass(store, report.is_ok(), start.elapsed());
        ops.record_pass(at, start.elapsed(), report.as_ref());
        let report = report?;
        ops.first_pass_done();
        log_pass(&report, start.elapsed());
        print_changes(&report.changes);
        converged = report.converged;
        if converged || report.changes.is_empty() {
            break;
        }
    }
    Ok(converged)
}

fn print_changes(changes: &[Change]) {
    for c in changes {
        println!("{c}");
    }
}
