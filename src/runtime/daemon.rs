//! `run` and `plan`: wiring the provider, the store, the watcher and the controller together,
//! and the status socket the `status` command asks while a daemon runs.

use super::controller::{Change, Controller, ControllerError, PassReport, Policy};
use crate::cloudflare::{Client, ClientConfig, RateLimit};
use crate::local_api::{LocalApi, LocalApiConfig, LocalApiError};
use crate::manifest::{LoadError, ResourceSpec};
use crate::source::{self, Snapshot};
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// The status socket's file name in the state folder.
pub const SOCKET: &str = "lumierd.sock";

/// Which API lumierd talks to.
#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub once: bool,
    pub resync: Duration,
    pub debounce: Duration,
    pub policy: Policy,
    pub provider: ProviderConfig,
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
                let api = LocalApi::open(LocalApiConfig {
                    token: crate::local_api::DEFAULT_TOKEN.to_owned(),
                    account_id: crate::local_api::DEFAULT_ACCOUNT_ID.to_owned(),
                    data_dir: Some(state.join("local-api")),
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
                    crate::local_api::DEFAULT_TOKEN,
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

    /// Stops the embedded API (if any), waiting at most 5 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
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

fn load_snapshot(manifests: &Path, store: &Store) -> Result<Option<Arc<Snapshot>>, StoreError> {
    match source::load(manifests) {
        Ok(snap) => {
            store.set_load_error(None)?;
            Ok(Some(Arc::new(snap)))
        }
        Err(e) => {
            let text = e.to_string();
            tracing::error!("manifests not loaded, the last good ones stay in force:\n{text}");
            store.set_load_error(Some(&text))?;
            store.flush()?;
            Ok(None)
        }
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
                let stage = line
                    .trim()
                    .strip_prefix("status")
                    .map(str::trim)
                    .filter(|s| !s.is_empty());
                let body = match crate::status::status_json(&store, stage) {
                    Ok(v) => v.to_string(),
                    Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                };
                let _ = write.write_all(body.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok(path)
}

/// Asks a running daemon for its status; `None` when no daemon answers.
pub async fn ask_daemon(state: &Path, stage: Option<&str>) -> Option<serde_json::Value> {
    let path = state.join(SOCKET);
    let ask = async {
        let mut stream = tokio::net::UnixStream::connect(&path).await.ok()?;
        let request = format!("status {}\n", stage.unwrap_or(""));
        stream.write_all(request.as_bytes()).await.ok()?;
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

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => std::future::pending::<()>().await,
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
    std::fs::create_dir_all(&cfg.state)
        .map_err(|e| DaemonError::Io(format!("state folder {}: {e}", cfg.state.display())))?;
    let store = Store::open(&cfg.state)?;
    let initial = source::load(&cfg.manifests);
    let seed = initial.as_ref().map(existing_ids).unwrap_or_default();
    let provider = Provider::start(&cfg.provider, &cfg.state, &seed).await?;
    if matches!(cfg.provider, ProviderConfig::Embedded { .. }) {
        println!(
            "local API: {} (account {})",
            provider.base_url,
            crate::local_api::DEFAULT_ACCOUNT_ID
        );
    }
    let controller = Controller {
        client: provider.client.clone(),
        store: store.clone(),
        policy: cfg.policy.clone(),
    };
    let result = if cfg.once {
        run_once(initial, &controller, &store).await
    } else {
        run_forever(&cfg, initial, &controller, &store).await
    };
    store.flush()?;
    provider.stop().await;
    result
}

async fn run_once(
    initial: Result<Snapshot, LoadError>,
    controller: &Controller,
    store: &Store,
) -> Result<bool, DaemonError> {
    let snap = match initial {
        Ok(s) => Arc::new(s),
        Err(e) => {
            store.set_load_error(Some(&e.to_string()))?;
            store.flush()?;
            return Err(e.into());
        }
    };
    store.set_load_error(None)?;
    // Later passes only matter when a resource waits on another or on a short retry.
    let mut converged = false;
    for _ in 0..3 {
        let start = Instant::now();
        let report = controller.pass(&snap).await?;
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
) -> Result<bool, DaemonError> {
    let socket = serve_status_socket(&cfg.state, store.clone())?;
    let (_watch, mut changes) = crate::watch::watch(&cfg.manifests)?;
    let mut snapshot = match initial {
        Ok(snap) => {
            store.set_load_error(None)?;
            Some(Arc::new(snap))
        }
        Err(e) => {
            let text = e.to_string();
            tracing::error!("manifests not loaded; waiting for a fix:\n{text}");
            store.set_load_error(Some(&text))?;
            None
        }
    };
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| DaemonError::Io(format!("SIGHUP handler: {e}")))?;
    let mut next_resync = Instant::now();
    loop {
        let mut wake = next_resync;
        if let Some(snap) = snapshot.clone() {
            let start = Instant::now();
            let pass = controller.pass(&snap);
            tokio::pin!(pass);
            let outcome = tokio::select! {
                r = &mut pass => Some(r),
                _ = &mut shutdown => {
                    // Finish in-flight calls, within 10 s.
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut pass).await;
                    None
                }
            };
            let Some(outcome) = outcome else { break };
            match outcome {
                Ok(report) => {
                    log_pass(&report, start.elapsed());
                    if let Some(t) = report.next_retry {
                        let wait = t
                            .duration_since(std::time::SystemTime::now())
                            .unwrap_or_default();
                        wake = wake.min(Instant::now() + wait);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pass failed; retrying in 5 s");
                    wake = wake.min(Instant::now() + Duration::from_secs(5));
                }
            }
            if Instant::now() >= next_resync {
                let jitter = 1.0 + (rand::random::<f64>() * 0.2 - 0.1);
                next_resync = Instant::now() + cfg.resync.mul_f64(jitter);
                wake = wake.min(next_resync);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            Some(()) = changes.recv() => {
                // Debounce: wait until the folder is quiet, then rescan everything.
                while tokio::time::timeout(cfg.debounce, changes.recv()).await.is_ok_and(|e| e.is_some()) {}
                if let Some(s) = load_snapshot(&cfg.manifests, store)? {
                    snapshot = Some(s);
                }
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading manifests and resyncing");
                if let Some(s) = load_snapshot(&cfg.manifests, store)? {
                    snapshot = Some(s);
                }
                next_resync = Instant::now();
            }
            _ = &mut shutdown => break,
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
    // A running daemon holds the store; plan then works from a copy-free read of nothing:
    // it reports as if lumierd had no records (ownership errors would show as refusals).
    let tmp;
    let store_dir = if cfg.state.join("db").exists() && ask_daemon(&cfg.state, None).await.is_none()
    {
        cfg.state.clone()
    } else {
        tmp = tempdir_for_plan()?;
        tmp.clone()
    };
    let store = Store::open(&store_dir)?;
    // Plan changes nothing, not even the sandbox: no seeding.
    let provider = Provider::start(&cfg.provider, &cfg.state, &[]).await?;
    let controller = Controller {
        client: provider.client.clone(),
        store,
        policy: Policy {
            act: false,
            ..cfg.policy
        },
    };
    let report = controller.pass(&snap).await;
    provider.stop().await;
    let mut changes = report?.changes;
    for (key, bundle) in &snap.bundles {
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

fn tempdir_for_plan() -> Result<PathBuf, DaemonError> {
    let dir = std::env::temp_dir().join(format!("lumierd-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| DaemonError::Io(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}
