//! `run`: the boot list (provider, store, operations side, controller) and the run loop (the
//! scheduler says when a pass runs), and the status socket the `status` command asks while a
//! daemon runs.
//!
//! Signals: SIGTERM/SIGINT stop gracefully (in-flight calls get a few seconds; the process
//! exits 0 within [`STOP_GRACE`]); SIGHUP reloads: rescan the manifests, make failing resources
//! due now, and run a full pass.

use super::change::{Change, PassReport};
use super::controller::{Controller, ControllerError, Policy};
use super::ops::{AdminServer, Ops};
use super::provider::{existing_ids, Provider, ProviderConfig};
use super::scheduler::{Scheduler, Trigger};
use super::signals::{stop_signal, Signals};
use super::status_socket;
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
/// Of [`STOP_GRACE`], how long an in-flight pass may go on.
const STOP_INFLIGHT: Duration = Duration::from_secs(6);
/// When a pass that failed as a whole (the list calls, the store) is tried again.
const FAILED_PASS_RETRY: Duration = Duration::from_secs(5);
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

fn load_snapshot(
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
fn retry_now(store: &Store) -> Result<usize, StoreError> {
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

fn log_pass(report: &PassReport, took: Duration) {
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
/// store, the manifests, the provider, the operations side (metrics, sd_notify, watchdog,
/// admin API), the controller; then one pass (`--once`) or the loop.
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
    let provider = Provider::start(&cfg.provider, &cfg.state, &seed).await?;
    provider.client.set_instance(&cfg.instance_id);
    if matches!(cfg.provider, ProviderConfig::Embedded { .. }) {
        println!(
            "local API: {} (account {}, token in {})",
            provider.base_url,
            crate::local_api::DEFAULT_ACCOUNT_ID,
            crate::local_api::token_path(&cfg.state.join("local-api")).display()
        );
    }
    // ---- local edge (#16): started after the provider, updated after each pass, stopped
    // at shutdown (before the provider, whose KV store it serves).
    let edge = match (&cfg.serve, &provider.local_api) {
        (Some(serve), Some(api)) => {
            let edge =
                crate::edge::Edge::start(api.clone(), serve.listen, serve.workerd.clone()).await?;
            println!("serving: http://{}", edge.addr());
            Some(edge)
        }
        _ => None,
    };
    // ---- end local edge
    let ops = Ops::start(&store);
    ops.metrics.set_stuck_after(cfg.stuck_after);
    ops.count_resources(&store);
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
    let delivery = match &events {
        Some(sink) => Some(Delivery::start(sink).map_err(|e| DaemonError::Io(e.to_string()))?),
        None => None,
    };
    let local_id = installation_id(&cfg.state, true)
        .map_err(|e| DaemonError::Io(format!("installation id: {e}")))?
        .unwrap_or_default();
    // Replicas sharing an etcd store are one installation: the first one's id wins.
    let installation = store.shared_installation_id(&local_id)?.unwrap_or(local_id);
    let controller = Controller {
        client: provider.client.clone(),
        store: store.clone(),
        installation,
        policy: cfg.policy.clone(),
        metrics: Arc::clone(&ops.metrics),
        events,
    };
    // With an etcd store the replicas elect a leader; only it reconciles (`run --once` is
    // a one-off and does not campaign). With sled this replica always leads.
    let leader = match (&cfg.store, &signals) {
        (Some(crate::store::Location::Etcd(url)), Some(_)) => Some(
            crate::runtime::leader::Leader::start(
                url,
                &cfg.instance_id,
                cfg.lease_ttl,
                store.clone(),
                provider.client.clone(),
            )
            .map_err(|e| DaemonError::Io(e.to_string()))?,
        ),
        _ => None,
    };
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
    if let Some(edge) = edge {
        edge.stop().await; // local edge (#16)
    }
    if let (Some(delivery), Some(sink)) = (delivery, controller.events.as_ref()) {
        let within = if cfg.once {
            NOTIFY_DRAIN_ONCE
        } else {
            STOP_SERVER
        };
        delivery.finish(sink, within).await;
    }
    // Bounded: a frozen disk must not keep the process from stopping.
    let flushed = match tokio::time::timeout(STOP_SERVER, store.flush_durable()).await {
        Ok(flushed) => flushed,
        Err(_) => {
            tracing::error!(
                "the state store did not flush within {STOP_SERVER:?}; stopping anyway"
            );
            Ok(())
        }
    };
    if let Some(admin) = admin {
        admin.stop().await;
    }
    provider.stop().await;
    ops.stop();
    flushed?;
    result
}

/// Records a manifest load's outcome (metrics, the store's load error) and returns the
/// snapshot it produced, if any.
fn loaded(
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

/// Waits until the leader view changes (this replica leads, or follows a new leader);
/// whether this replica leads now. Pends forever without an election (sled: always leader).
async fn leadership_changed(
    w: &mut Option<tokio::sync::watch::Receiver<crate::runtime::leader::LeaderView>>,
) -> bool {
    let Some(rx) = w.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        return std::future::pending().await;
    }
    let leading = rx.borrow_and_update().leading;
    leading
}

/// Resolves to `false` once this replica no longer leads (pends while it does, or without
/// an election).
async fn leadership_lost(
    w: &mut Option<tokio::sync::watch::Receiver<crate::runtime::leader::LeaderView>>,
) -> bool {
    let Some(rx) = w.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        if !rx.borrow_and_update().leading {
            return false;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
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

/// The daemon's loop: the scheduler says when a pass runs; signals stop or reload.
// The leader is one more side of the loop, like the edge; the lead's rewrite of this loop
// may bundle them.
#[allow(clippy::too_many_arguments)]
async fn run_forever(
    cfg: &RunConfig,
    initial: Result<Snapshot, LoadError>,
    controller: &Controller,
    store: &Store,
    ops: &Ops,
    signals: Signals,
    edge: &Option<crate::edge::Edge>,
    leader: Option<&crate::runtime::leader::Leader>,
) -> Result<bool, DaemonError> {
    let mut leadership = leader.map(|l| l.watch());
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let socket = status_socket::serve(&cfg.state, store.clone())
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    // Only manifest-relevant changes wake the loop: manifests, the workers' module files
    // (known from each snapshot), never the state folder.
    let modules = crate::watch::ModulePaths::default();
    let filter = crate::watch::Filter::default()
        .ignore(&cfg.state)
        .modules(modules.clone());
    let (_watch, mut changes) = crate::watch::watch_filtered(&cfg.manifests, filter)?;
    let mut snapshot = match loaded(initial, store, ops, controller.events.as_ref()) {
        Ok(snap) => snap,
        Err(DaemonError::Manifests(e)) => {
            tracing::error!("manifests not loaded; waiting for a fix:\n{e}");
            ops.notify("STATUS=waiting for valid manifests (see `lumierd status`)");
            None
        }
        Err(e) => return Err(e),
    };
    let mut scheduler = Scheduler::new(cfg.resync, cfg.debounce);
    let mut reloading = false;
    // The snapshot whose module files the watch knows.
    let mut tracked: Option<Arc<Snapshot>> = None;
    loop {
        let trigger = tokio::select! {
            t = scheduler.next(&mut changes) => t,
            _ = hup.recv() => {
                ops.metrics.reload();
                if ops.metrics.is_ready() {
                    reloading = true;
                    ops.notify("RELOADING=1\nSTATUS=reloading");
                }
                match retry_now(store) {
                    Ok(due) => tracing::info!(retrying = due, "SIGHUP: reloading manifests and resyncing"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: the state store cannot make retries due; resyncing"),
                }
                scheduler.resync_now();
                continue;
            }
            _ = stop_signal(&mut term, &mut int) => {
                ops.notify("STOPPING=1\nSTATUS=stopping");
                break;
            }
            leading = leadership_changed(&mut leadership) => {
                let view = leadership.as_ref().map(|rx| rx.borrow().clone());
                if let (Some(sink), Some(leader)) = (
                    controller.events.as_ref(),
                    view.as_ref().and_then(|v| v.leader.as_deref()),
                ) {
                    let since = view.as_ref().and_then(|v| v.since.as_deref());
                    sink.emit(crate::notify::Event::leader_changed(leader, since, Timestamp::now()));
                }
                if leading {
                    // A new leader starts its first pass at once, on the loaded snapshot.
                    scheduler.resync_now();
                } else if snapshot.is_some() {
                    ops.first_pass_done(); // a follower with its snapshot loaded is ready
                }
                continue;
            }
        };
        if trigger.rescans() {
            let reloaded = load_snapshot(
                &cfg.manifests,
                &cfg.load,
                snapshot.as_ref(),
                store,
                &ops.metrics,
                controller.events.as_ref(),
            );
            if reloaded.is_none() {
                modules.set_unknown();
            }
            if let Some(s) = reloaded {
                if trigger == Trigger::Changed {
                    // What the edit changed goes first in the next pass.
                    if let Some(old) = snapshot.as_deref() {
                        scheduler.prioritize(s.changed_since(old));
                    }
                }
                snapshot = Some(s);
            }
        }
        let Some(snap) = snapshot.clone() else {
            continue;
        };
        if !tracked.as_ref().is_some_and(|t| Arc::ptr_eq(t, &snap)) {
            modules.set_sources(
                snap.bundles()
                    .flat_map(|(_, b)| b.sources.iter().map(PathBuf::as_path))
                    .chain(snap.lumier_sources()),
            );
            tracked = Some(Arc::clone(&snap));
        }
        if leadership.as_ref().is_some_and(|w| !w.borrow().leading) {
            continue; // a follower keeps its snapshot and waits to lead
        }
        // What the load ran (or the last pass) is not held through this pass's peak.
        crate::memory::release_free_memory();
        let (at, start) = (Timestamp::now(), Instant::now());
        let first = scheduler.take_priority();
        ops.metrics.pass_started();
        let pass = controller.pass_first(&snap, &first);
        tokio::pin!(pass);
        let outcome = tokio::select! {
            r = &mut pass => r,
            _ = stop_signal(&mut term, &mut int) => {
                // Nothing new goes to the provider from here on; calls in flight finish.
                controller.client.stop_sending();
                tracing::info!("stopping: finishing in-flight calls");
                ops.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight calls");
                let _ = tokio::time::timeout(STOP_INFLIGHT, &mut pass).await;
                break;
            }
            false = leadership_lost(&mut leadership) => {
                // The client's gate is already shut: drop the pass (its markers are durable,
                // as after a kill) and follow.
                tracing::warn!("leadership lost mid-pass: pass abandoned");
                continue;
            }
        };
        ops.after_pass(store, outcome.is_ok(), start.elapsed());
        ops.record_pass(at, start.elapsed(), outcome.as_ref());
        crate::memory::release_free_memory();
        match outcome {
            Ok(report) => {
                log_pass(&report, start.elapsed());
                ops.first_pass_done();
                scheduler.retry_in(report.next_retry.map(Timestamp::until));
                if let Some(edge) = edge.as_ref() {
                    edge.update(); // local edge (#16): serve what the pass uploaded
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pass failed; retrying in 5 s");
                if !ops.metrics.is_ready() {
                    ops.notify(&format!("STATUS=first pass failed, retrying: {e}"));
                }
                scheduler.retry_in(Some(FAILED_PASS_RETRY));
            }
        }
        if reloading {
            reloading = false;
            ops.notify("READY=1\nSTATUS=ready: reloaded");
        }
    }
    tracing::info!("shutting down");
    drop(socket);
    Ok(true)
}

fn print_changes(changes: &[Change]) {
    for c in changes {
        println!("{c}");
    }
}
