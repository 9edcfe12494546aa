//! `run` and `plan`: wiring the provider, the store, the watcher and the controller together,
//! the status socket the `status` command asks while a daemon runs, and the operations side:
//! the admin HTTP API (`crate::admin`), metrics, readiness, signals and sd_notify.
//!
//! Signals: SIGTERM/SIGINT stop gracefully (in-flight calls get a few seconds; the process
//! exits 0 within [`STOP_GRACE`]); SIGHUP reloads: rescan the manifests, make failing resources
//! due now, and run a full pass.

use super::controller::{Change, Controller, ControllerError, PassReport, Policy};
use crate::admin::{self, AdminState};
use crate::cloudflare::{Client, ClientConfig, RateLimit};
use crate::local_api::{LocalApi, LocalApiConfig, LocalApiError};
use crate::manifest::{LoadError, ResourceSpec};
use crate::metrics::Metrics;
use crate::sdnotify::{self, Notifier};
use crate::source::{self, Snapshot};
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

/// The status socket's file name in the state folder.
pub const SOCKET: &str = "lumierd.sock";

/// How long a stop (SIGTERM, SIGINT) may take, in-flight calls included.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Of [`STOP_GRACE`], how long an in-flight pass may go on.
const STOP_INFLIGHT: Duration = Duration::from_secs(6);
/// Of [`STOP_GRACE`], how long the embedded API and the admin API may take to stop.
const STOP_SERVER: Duration = Duration::from_secs(1);

/// Which API lumierd talks to. Its `Debug` output redacts the token.
#[derive(Clone)]
pub enum ProviderConfig {
    /// The embedded local API, persisted under the state folder.
    Embedded { listen: Option<SocketAddr> },
    /// Any Cloudflare-compatible API: the real one, or a separately started emulator.
    Remote {
        base_url: String,
        account_id: String,
        token: String,
    },
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderConfig::Embedded { listen } => {
                f.debug_struct("Embedded").field("listen", listen).finish()
            }
            ProviderConfig::Remote {
                base_url,
                account_id,
                ..
            } => f
                .debug_struct("Remote")
                .field("base_url", base_url)
                .field("account_id", account_id)
                .field("token", &"[redacted]")
                .finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub once: bool,
    pub resync: Duration,
    pub debounce: Duration,
    pub policy: Policy,
    pub provider: ProviderConfig,
    /// Where the admin HTTP API listens (`--admin-listen`); `None` = off.
    pub admin_listen: Option<SocketAddr>,
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
}

/// The provider in use: the client, and the embedded server's handle while it runs.
pub struct Provider {
    pub client: Client,
    pub base_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Provider {
    /// Starts the embedded API when asked, and builds the client.
    ///
    /// The embedded API is a sandbox: an `existing` namespace in `seed` that it lacks is
    /// created there with that id, so the examples run on a fresh machine. Never done against
    /// a remote API, where an existing namespace must really exist.
    pub async fn start(
        config: &ProviderConfig,
        state: &Path,
        seed: &[String],
    ) -> Result<Provider, DaemonError> {
        match config {
            ProviderConfig::Remote {
                base_url,
                account_id,
                token,
            } => {
                let client = Client::new(ClientConfig::new(
                    base_url.trim_end_matches('/'),
                    account_id.clone(),
                    token.clone(),
                ))?;
                Ok(Provider {
                    client,
                    base_url: base_url.clone(),
                    stop: None,
                    server: None,
                })
            }
            ProviderConfig::Embedded { listen } => {
                // The data folder's own random token (0600 file), not a well-known one.
                let data_dir = state.join("local-api");
                let token = crate::local_api::load_or_create_token(&data_dir)?;
                let api = LocalApi::open(LocalApiConfig {
                    token: token.clone(),
                    account_id: crate::local_api::DEFAULT_ACCOUNT_ID.to_owned(),
                    data_dir: Some(data_dir),
                    faults: Default::default(),
                    request_log: None,
                })?;
                for id in seed {
                    if api.seed_namespace(id, &format!("existing-{id}")).await? {
                        tracing::info!(id = %id, "embedded API: created the existing namespace in the sandbox");
                    }
                }
                let addr = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| DaemonError::Io(format!("local API listen on {addr}: {e}")))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| DaemonError::Io(format!("local API address: {e}")))?;
                let base_url = format!("http://{bound}/client/v4");
                let (stop, stopped) = oneshot::channel::<()>();
                let server = tokio::spawn(async move {
                    if let Err(e) = api
                        .serve(listener, async {
                            let _ = stopped.await;
                        })
                        .await
                    {
                        tracing::error!(error = %e, "embedded local API stopped");
                    }
                });
                let mut cfg = ClientConfig::new(
                    base_url.clone(),
                    crate::local_api::DEFAULT_ACCOUNT_ID,
                    token,
                );
                cfg.rate = RateLimit::unlimited();
                let client = Client::new(cfg)?;
                Ok(Provider {
                    client,
                    base_url,
                    stop: Some(stop),
                    server: Some(server),
                })
            }
        }
    }

    /// Stops the embedded API (if any), waiting at most [`STOP_SERVER`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(STOP_SERVER, server).await;
        }
    }
}

/// The ids of `existing` namespaces a snapshot declares.
fn existing_ids(snap: &Snapshot) -> Vec<String> {
    snap.desired
        .resources()
        .filter_map(|r| match &r.spec {
            ResourceSpec::KvExisting { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn load_snapshot(
    manifests: &Path,
    previous: Option<&Arc<Snapshot>>,
    store: &Store,
    metrics: &Metrics,
) -> Result<Option<Arc<Snapshot>>, StoreError> {
    let loaded = match previous {
        Some(previous) => source::reload(manifests, previous),
        None => source::load(manifests).map(Arc::new),
    };
    match loaded {
        Ok(snap) => {
            metrics.manifest_load(true);
            store.set_load_error(None)?;
            Ok(Some(snap))
        }
        Err(e) => {
            metrics.manifest_load(false);
            let text = e.to_string();
            tracing::error!("manifests not loaded, the last good ones stay in force:\n{text}");
            store.set_load_error(Some(&text))?;
            store.flush()?;
            Ok(None)
        }
    }
}

/// The operations side of a running daemon: metrics and readiness, and systemd's notify
/// socket when there is one.
struct Ops {
    metrics: Arc<Metrics>,
    notifier: Option<Arc<Notifier>>,
}

impl Ops {
    fn notify(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.send(state);
        }
    }

    /// After a pass: pass metrics, and resources by state from the store.
    fn after_pass(&self, store: &Store, ok: bool, took: Duration) {
        self.metrics.pass(ok, took);
        self.count_resources(store);
    }

    fn count_resources(&self, store: &Store) {
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
    fn first_pass_done(&self) {
        if !self.metrics.is_ready() {
            self.metrics.set_ready(true);
            tracing::info!("ready: manifests loaded and the first pass done");
            self.notify("READY=1\nSTATUS=ready: reconciling");
        }
    }
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

/// The admin API while it runs.
struct AdminServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    async fn start(addr: SocketAddr, state: AdminState) -> Result<AdminServer, DaemonError> {
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

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(STOP_SERVER, self.task).await;
    }
}

/// Serves the status socket: a client writes `status` (or `status STAGE`) and a newline, and
/// reads the status JSON.
fn serve_status_socket(state: &Path, store: Store) -> Result<PathBuf, DaemonError> {
    let path = state.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| DaemonError::Io(format!("status socket {}: {e}", path.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| DaemonError::Io(format!("status socket {}: {e}", path.display())))?;
    }
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read);
                if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
                    .await
                    .is_err()
                {
                    return;
                }
                let body = if line.trim() == "records" {
                    // For `plan` while the daemon holds the store.
                    match store.all() {
                        Ok(records) => serde_json::to_string(&records).unwrap_or_else(|e| {
                            serde_json::json!({ "error": e.to_string() }).to_string()
                        }),
                        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                    }
                } else {
                    let stage = line
                        .trim()
                        .strip_prefix("status")
                        .map(str::trim)
                        .filter(|s| !s.is_empty());
                    match crate::status::status_json(&store, stage) {
                        Ok(v) => v.to_string(),
                        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                    }
                };
                let _ = write.write_all(body.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok(path)
}

/// Sends one request line to a running daemon and parses its JSON answer; `None` when no
/// daemon answers (within 10 s).
async fn ask(state: &Path, request: &str) -> Option<serde_json::Value> {
    let path = state.join(SOCKET);
    let ask = async {
        let mut stream = tokio::net::UnixStream::connect(&path).await.ok()?;
        stream
            .write_all(format!("{request}\n").as_bytes())
            .await
            .ok()?;
        let mut body = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut body)
            .await
            .ok()?;
        serde_json::from_str(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .ok()
        .flatten()
}

/// Asks a running daemon for its status; `None` when no daemon answers.
pub async fn ask_daemon(state: &Path, stage: Option<&str>) -> Option<serde_json::Value> {
    ask(state, &format!("status {}", stage.unwrap_or(""))).await
}

/// The daemon's signal handlers, installed before anything else so that a signal sent
/// during start-up is handled, not fatal: SIGTERM and SIGINT stop, SIGHUP reloads.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
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
async fn stop_signal(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
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
pub async fn run(cfg: RunConfig) -> Result<bool, DaemonError> {
    // `--once` keeps the default dispositions (a signal ends it at once).
    let signals = if cfg.once {
        None
    } else {
        Some(Signals::install()?)
    };
    std::fs::create_dir_all(&cfg.state)
        .map_err(|e| DaemonError::Io(format!("state folder {}: {e}", cfg.state.display())))?;
    let store = Store::open(&cfg.state)?;
    let initial = source::load(&cfg.manifests);
    let seed = initial.as_ref().map(existing_ids).unwrap_or_default();
    let provider = Provider::start(&cfg.provider, &cfg.state, &seed).await?;
    if matches!(cfg.provider, ProviderConfig::Embedded { .. }) {
        println!(
            "local API: {} (account {}, token in {})",
            provider.base_url,
            crate::local_api::DEFAULT_ACCOUNT_ID,
            crate::local_api::token_path(&cfg.state.join("local-api")).display()
        );
    }
    let metrics = Arc::new(Metrics::new());
    let notifier = match Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "sd_notify disabled");
            None
        }
    };
    let ops = Ops { metrics, notifier };
    ops.count_resources(&store);
    let watchdog = match (&ops.notifier, sdnotify::watchdog_interval()) {
        (Some(n), Some(every)) => {
            let n = Arc::clone(n);
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    n.send("WATCHDOG=1");
                }
            }))
        }
        _ => None,
    };
    let admin = match cfg.admin_listen {
        Some(addr) => Some(
            AdminServer::start(
                addr,
                AdminState {
                    store: store.clone(),
                    metrics: Arc::clone(&ops.metrics),
                    client: Some(provider.client.clone()),
                },
            )
            .await?,
        ),
        None => None,
    };
    let controller = Controller {
        client: provider.client.clone(),
        store: store.clone(),
        policy: cfg.policy.clone(),
        metrics: Arc::clone(&ops.metrics),
    };
    let result = match signals {
        None => run_once(initial, &controller, &store, &ops).await,
        Some(signals) => run_forever(&cfg, initial, &controller, &store, &ops, signals).await,
    };
    let flushed = store.flush();
    if let Some(admin) = admin {
        admin.stop().await;
    }
    provider.stop().await;
    if let Some(w) = watchdog {
        w.abort();
    }
    flushed?;
    result
}

async fn run_once(
    initial: Result<Snapshot, LoadError>,
    controller: &Controller,
    store: &Store,
    ops: &Ops,
) -> Result<bool, DaemonError> {
    let snap = match initial {
        Ok(s) => Arc::new(s),
        Err(e) => {
            ops.metrics.manifest_load(false);
            store.set_load_error(Some(&e.to_string()))?;
            store.flush()?;
            return Err(e.into());
        }
    };
    ops.metrics.manifest_load(true);
    store.set_load_error(None)?;
    // Later passes only matter when a resource waits on another or on a short retry.
    let mut converged = false;
    for _ in 0..3 {
        let start = Instant::now();
        let report = controller.pass(&snap).await;
        ops.after_pass(store, report.is_ok(), start.elapsed());
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

async fn run_forever(
    cfg: &RunConfig,
    initial: Result<Snapshot, LoadError>,
    controller: &Controller,
    store: &Store,
    ops: &Ops,
    signals: Signals,
) -> Result<bool, DaemonError> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let socket = serve_status_socket(&cfg.state, store.clone())?;
    let (_watch, mut changes) = crate::watch::watch(&cfg.manifests)?;
    let mut snapshot = match initial {
        Ok(snap) => {
            ops.metrics.manifest_load(true);
            store.set_load_error(None)?;
            Some(Arc::new(snap))
        }
        Err(e) => {
            ops.metrics.manifest_load(false);
            let text = e.to_string();
            tracing::error!("manifests not loaded; waiting for a fix:\n{text}");
            store.set_load_error(Some(&text))?;
            ops.notify("STATUS=waiting for valid manifests (see `lumierd status`)");
            None
        }
    };
    let mut next_resync = Instant::now();
    let mut first = true;
    let mut priority: std::collections::HashSet<crate::manifest::ResourceKey> = Default::default();
    let mut reloading = false;
    loop {
        let resync_due = Instant::now() >= next_resync;
        if resync_due && !first {
            // A resync rescans the manifests too, so a missed file event is caught within
            // one resync period (and a SIGHUP reload rescans now).
            if let Some(s) = load_snapshot(&cfg.manifests, snapshot.as_ref(), store, &ops.metrics)?
            {
                snapshot = Some(s);
            }
        }
        first = false;
        let mut retry_at: Option<Instant> = None;
        // Taken by this pass: later passes have no order to keep.
        let first_keys = std::mem::take(&mut priority);
        if let Some(snap) = snapshot.clone() {
            let start = Instant::now();
            let pass = controller.pass_first(&snap, &first_keys);
            tokio::pin!(pass);
            let outcome = tokio::select! {
                r = &mut pass => Some(r),
                _ = stop_signal(&mut term, &mut int) => {
                    tracing::info!("stopping: finishing in-flight calls");
                    ops.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight calls");
                    let _ = tokio::time::timeout(STOP_INFLIGHT, &mut pass).await;
                    None
                }
            };
            let Some(outcome) = outcome else { break };
            ops.after_pass(store, outcome.is_ok(), start.elapsed());
            crate::memory::release_free_memory();
            match outcome {
                Ok(report) => {
                    log_pass(&report, start.elapsed());
                    ops.first_pass_done();
                    if let Some(t) = report.next_retry {
                        let wait = t
                            .duration_since(std::time::SystemTime::now())
                            .unwrap_or_default();
                        retry_at = Some(Instant::now() + wait);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pass failed; retrying in 5 s");
                    if !ops.metrics.is_ready() {
                        ops.notify(&format!("STATUS=first pass failed, retrying: {e}"));
                    }
                    retry_at = Some(Instant::now() + Duration::from_secs(5));
                }
            }
        }
        if reloading {
            reloading = false;
            ops.notify("READY=1\nSTATUS=ready: reloaded");
        }
        if resync_due {
            let jitter = 1.0 + (rand::random::<f64>() * 0.2 - 0.1);
            next_resync = Instant::now() + cfg.resync.mul_f64(jitter);
        }
        let wake = retry_at.map_or(next_resync, |r| r.min(next_resync));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            Some(()) = changes.recv() => {
                // Debounce: wait until the folder is quiet, then rescan everything.
                while tokio::time::timeout(cfg.debounce, changes.recv()).await.is_ok_and(|e| e.is_some()) {}
                if let Some(s) = load_snapshot(&cfg.manifests, snapshot.as_ref(), store, &ops.metrics)? {
                    // What the edit changed goes first in the next pass.
                    priority = snapshot.as_deref().map(|old| s.changed_since(old)).unwrap_or_default();
                    snapshot = Some(s);
                }
            }
            _ = hup.recv() => {
                ops.metrics.reload();
                if ops.metrics.is_ready() {
                    reloading = true;
                    ops.notify("RELOADING=1\nSTATUS=reloading");
                }
                let due = retry_now(store)?;
                tracing::info!(retrying = due, "SIGHUP: reloading manifests and resyncing");
                // The next turn rescans (a resync is due) and runs a full pass.
                next_resync = Instant::now();
            }
            _ = stop_signal(&mut term, &mut int) => {
                ops.notify("STOPPING=1\nSTATUS=stopping");
                break;
            }
        }
    }
    tracing::info!("shutting down");
    let _ = std::fs::remove_file(socket);
    Ok(true)
}

fn print_changes(changes: &[Change]) {
    for c in changes {
        if c.details.is_empty() {
            println!("{} {}", c.action, c.key);
        } else {
            println!("{} {}: {}", c.action, c.key, c.details.join("; "));
        }
    }
}

/// `lumierd plan`: what a pass would do, changing nothing. Returns the changes.
pub async fn plan(cfg: RunConfig) -> Result<Vec<Change>, DaemonError> {
    let snap = source::load(&cfg.manifests)?;
    // A running daemon holds the store (sled has one writer): plan then works on a scratch
    // copy of the daemon's records, asked over the status socket.
    let scratch = std::env::temp_dir().join(format!("lumierd-plan-{}", std::process::id()));
    let from_daemon = ask(&cfg.state, "records").await;
    let store = match &from_daemon {
        Some(records) => {
            let records: Vec<(crate::manifest::ResourceKey, crate::store::Record)> =
                serde_json::from_value(records.clone())
                    .map_err(|e| DaemonError::Io(format!("the daemon's records: {e}")))?;
            let store = Store::open(&scratch)?;
            for (key, record) in &records {
                store.put(key, record)?;
            }
            store
        }
        None if cfg.state.join("db").exists() => Store::open(&cfg.state)?,
        None => Store::open(&scratch)?,
    };
    // Plan changes nothing, not even the sandbox: no seeding.
    let provider = Provider::start(&cfg.provider, &cfg.state, &[]).await?;
    let controller = Controller {
        client: provider.client.clone(),
        store,
        policy: Policy {
            act: false,
            ..cfg.policy
        },
        metrics: Arc::new(Metrics::new()),
    };
    let report = controller.pass(&snap).await;
    provider.stop().await;
    drop(controller);
    let _ = std::fs::remove_dir_all(&scratch);
    let mut changes = report?.changes;
    for (key, bundle) in snap.bundles() {
        if let Some(c) = changes
            .iter_mut()
            .find(|c| &c.key == key && (c.action == "create" || c.action == "update"))
        {
            c.details.extend(
                crate::worker::describe(bundle)
                    .into_iter()
                    .map(|m| format!("module {m}")),
            );
        }
    }
    Ok(changes)
}
