//! The local edge (`lumierd run --serve ADDR`): Cloudflare's runtime, workerd, serving every
//! module Worker the embedded local API holds — the modules and bindings as uploaded, not the
//! files on disk — at `http://{script}.localhost:PORT/` and `http://ADDR/{app}/{stage}/{name}/…`.
//!
//! * [`Edge::start`] finds workerd ([`find`]), binds ADDR (loopback only: nothing here
//!   authenticates), serves the local API's KV binding protocol on a loopback port of its own
//!   (so `env.NS` reads and writes the namespaces the v4 API serves; the same listener takes
//!   the workers' console lines, [`logs`]) and starts workerd on what the API holds.
//! * [`Edge::update`] after each pass (it returns at once: the edge's own task does the work):
//!   when a script's etag moved, a new workerd generation is started on the same socket and
//!   the old one stopped once it listens ([`supervisor`]). A version that fails to start
//!   (workerd blames its service) is remembered as failed: the previous good version of that
//!   script keeps serving (or none, if it never started) and the others are served as
//!   uploaded; it is not retried until its etag moves again. A workerd that exits on its own
//!   is started again at once.
//! * [`Edge::stop`] within [`supervisor::STOP_WAIT`] plus two seconds.
//!
//! What each worker's status shows (`localUrl`, a failed start) is kept on a process-wide
//! board read by [`annotate`]: one edge runs per process.

pub mod config;
pub mod find;
pub mod logs;
pub mod supervisor;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::local_api::{LocalApi, ServedScript};
use config::Origin;
use supervisor::{StartFailure, Supervisor};

/// `run --serve ADDR [--workerd PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Where the edge listens (loopback; port 0 picks one).
    pub listen: SocketAddr,
    /// The workerd binary; `None`: on PATH, else `./node_modules/.bin/workerd`.
    pub workerd: Option<PathBuf>,
}

/// Errors of starting the edge (a Worker that fails to start is not an error: see
/// [`Edge::update`]).
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{0}")]
    WorkerdNotFound(String),
    #[error(
        "--serve {0}: the local edge serves loopback addresses only (it has no authentication)"
    )]
    NotLoopback(SocketAddr),
    #[error("--serve {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("local edge: {0}")]
    Io(String),
}

/// One script's line on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeState {
    /// `http://{script}.localhost:PORT/` while a version of it is served.
    pub local_url: Option<String>,
    /// workerd's message when its newest version failed to start.
    pub error: Option<String>,
}

static BOARD: RwLock<BTreeMap<String, EdgeState>> = RwLock::new(BTreeMap::new());

/// The edge's view of a script, for its status: `None` when no edge runs or it does not know
/// the script.
pub fn annotate(script: &str) -> Option<EdgeState> {
    BOARD
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(script)
        .cloned()
}

/// Adds the edge's view of a worker to its status: `output.localUrl`, and a failed start
/// appended to `message`. For `status.rs`; a no-op without an edge.
pub fn annotate_status(script: &str, output: &mut Option<serde_json::Value>, message: &mut String) {
    let Some(state) = annotate(script) else {
        return;
    };
    if let (Some(url), Some(serde_json::Value::Object(o))) = (&state.local_url, output.as_mut()) {
        o.insert("localUrl".into(), url.clone().into());
    }
    if let Some(err) = &state.error {
        let text = format!(
            "local edge: the newest version failed to start ({}): {err}",
            if state.local_url.is_some() {
                "the previous one keeps serving"
            } else {
                "nothing served"
            },
            // One line: the status table shows the message in a column.
            err = err.lines().map(str::trim).collect::<Vec<_>>().join(" "),
        );
        if message.is_empty() {
            *message = text;
        } else {
            message.push_str("; ");
            message.push_str(&text);
        }
    }
}

/// The running edge: a handle on the task that owns workerd (see [`Edge::update`]).
pub struct Edge {
    addr: SocketAddr,
    wake: Arc<tokio::sync::Notify>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The edge's state, owned by its task: reloads run there, never in the daemon's run loop.
struct Runner {
    api: LocalApi,
    addr: SocketAddr,
    kv_addr: SocketAddr,
    supervisor: Supervisor,
    kv_stop: Option<tokio::sync::oneshot::Sender<()>>,
    kv_task: Option<tokio::task::JoinHandle<()>>,
    /// The served scripts' origins, for the tail sink's log lines.
    origins: logs::Origins,
    /// What the running generation serves (name → version).
    serving: BTreeMap<String, ServedScript>,
    /// Versions that failed to start: name → (etag, message).
    failed: BTreeMap<String, (String, String)>,
    /// `(name, etag)` of what the API held at the last update.
    held_etags: Vec<(String, String)>,
    started: bool,
}

impl Edge {
    /// Starts the edge on `listen` (loopback) with the workerd at `workerd` (else found on
    /// PATH or in `./node_modules/.bin`), serving what `api` holds now.
    pub async fn start(
        api: LocalApi,
        listen: SocketAddr,
        workerd: Option<PathBuf>,
    ) -> Result<Edge, EdgeError> {
        if !listen.ip().is_loopback() {
            return Err(EdgeError::NotLoopback(listen));
        }
        let cwd = std::env::current_dir().map_err(|e| EdgeError::Io(format!("cwd: {e}")))?;
        let path_var = std::env::var_os("PATH");
        let binary = find::locate(workerd.as_deref(), path_var.as_deref(), &cwd)?;
        let listener = std::net::TcpListener::bind(listen).map_err(|source| EdgeError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| EdgeError::Bind {
            addr: listen,
            source,
        })?;
        let kv_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| EdgeError::Io(format!("KV binding listener: {e}")))?;
        let kv_addr = kv_listener
            .local_addr()
            .map_err(|e| EdgeError::Io(format!("KV binding listener: {e}")))?;
        let (kv_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let origins = logs::Origins::default();
        let router = api
            .kv_binding_router()
            .merge(logs::router(Arc::clone(&origins)));
        let kv_task = tokio::spawn(async move {
            let served = axum::serve(kv_listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "local edge: the KV binding listener stopped");
            }
        });
        let supervisor = Supervisor::new(binary.clone(), listener)?;
        tracing::info!(workerd = %binary.display(), %addr, "local edge: starting workerd");
        let runner = Runner {
            api,
            addr,
            kv_addr,
            supervisor,
            kv_stop: Some(kv_stop),
            kv_task: Some(kv_task),
            origins,
            serving: BTreeMap::new(),
            failed: BTreeMap::new(),
            held_etags: Vec::new(),
            started: false,
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        wake.notify_one(); // the first start
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(runner.run(Arc::clone(&wake), stopped));
        Ok(Edge {
            addr,
            wake,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address served (the bound port when `--serve` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Asks the edge to bring workerd in line with what the local API holds; call after each
    /// pass. Returns at once: the reload runs on the edge's task (requests made meanwhile are
    /// coalesced into one more check), so the run loop never waits for workerd. A check is
    /// cheap when nothing moved (one read of the scripts' etags, no process started).
    pub fn update(&self) {
        self.wake.notify_one();
    }

    /// Stops workerd and the KV binding listener and clears the board, within
    /// [`supervisor::STOP_WAIT`] plus two seconds (a reload in progress is cut short: dropping
    /// the task kills workerd).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            let bound = supervisor::STOP_WAIT + Duration::from_secs(2);
            if tokio::time::timeout(bound, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        BOARD.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Runner {
    /// Checks on each wake-up, restarts workerd when it exits on its own, stops on `stopped`.
    async fn run(
        mut self,
        wake: Arc<tokio::sync::Notify>,
        mut stopped: tokio::sync::oneshot::Receiver<()>,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                () = wake.notified() => self.update().await,
                () = self.supervisor.exited() => {
                    tracing::warn!("local edge: workerd exited on its own; starting it again");
                    self.update().await;
                }
            }
        }
        self.shutdown().await;
    }

    /// Brings workerd in line with what the local API holds.
    async fn update(&mut self) {
        let etags = self.api.served_etags();
        let running = self.supervisor.is_running();
        if self.started && running && etags == self.held_etags {
            return;
        }
        let dead = self.started && !running;
        let held = self.api.served_scripts();
        self.held_etags = held
            .iter()
            .map(|s| (s.name.clone(), s.etag.clone()))
            .collect();
        let mut want = self.candidate(&held);
        if self.started && !dead && same_versions(&want, &self.serving) {
            self.publish(&held);
            return;
        }
        let begun = Instant::now();
        // At most two tries: as uploaded, then with the versions workerd blamed set back.
        for attempt in 0..2 {
            match self.try_start(&want).await {
                Ok(()) => {
                    tracing::info!(
                        workers = want.len(),
                        took_ms = begun.elapsed().as_millis() as u64,
                        "local edge: serving"
                    );
                    break;
                }
                Err(failure) => {
                    self.blame(&want, &failure, attempt);
                    want = self.candidate(&held);
                    if self.started && !dead && same_versions(&want, &self.serving) {
                        break;
                    }
                }
            }
        }
        self.publish(&held);
    }

    /// Starts workerd serving `want`; once it listens, `want` is what is served, and a
    /// version that failed before but changed since is no longer held as failed.
    async fn try_start(&mut self, want: &[ServedScript]) -> Result<(), StartFailure> {
        let origins: Arc<BTreeMap<String, Origin>> = Arc::new(
            want.iter()
                .filter_map(|s| config::origin(s).map(|o| (s.name.clone(), o)))
                .collect(),
        );
        let cfg = config::render(want, self.kv_addr);
        for (script, binding, why) in &cfg.skipped {
            tracing::warn!(script = %script, binding = %binding, "local edge: binding not served: {why}");
        }
        self.supervisor.start(&cfg, Arc::clone(&origins)).await?;
        *self.origins.write().unwrap_or_else(|p| p.into_inner()) = (*origins).clone();
        self.started = true;
        self.serving = want.iter().map(|s| (s.name.clone(), s.clone())).collect();
        for s in want {
            if self
                .failed
                .get(&s.name)
                .is_some_and(|(etag, _)| *etag != s.etag)
            {
                self.failed.remove(&s.name);
            }
        }
        Ok(())
    }

    /// Holds as failed the new versions of `want` (not served now) that `failure` names; when
    /// it names none, or on the second try (`attempt` 1), every new version.
    fn blame(&mut self, want: &[ServedScript], failure: &StartFailure, attempt: usize) {
        let new: Vec<&ServedScript> = want
            .iter()
            .filter(|s| {
                self.serving
                    .get(&s.name)
                    .is_none_or(|old| old.etag != s.etag)
            })
            .collect();
        let mut blamed: Vec<(String, String, String)> = new
            .iter()
            .filter_map(|s| {
                failure
                    .services
                    .get(&s.name)
                    .map(|m| (s.name.clone(), s.etag.clone(), m.clone()))
            })
            .collect();
        if blamed.is_empty() || attempt == 1 {
            // Unattributed (or still failing): every new version is set back.
            blamed = new
                .iter()
                .map(|s| {
                    let msg = failure
                        .services
                        .get(&s.name)
                        .cloned()
                        .unwrap_or_else(|| failure.output.clone());
                    (s.name.clone(), s.etag.clone(), msg)
                })
                .collect();
        }
        for (name, etag, msg) in &blamed {
            tracing::error!(script = %name, "local edge: this version failed to start; the previous one keeps serving:\n{msg}");
            self.failed
                .insert(name.clone(), (etag.clone(), msg.clone()));
        }
    }

    /// What to serve: each held script as uploaded, unless that version is known to fail,
    /// then the version served now (if any).
    fn candidate(&self, held: &[ServedScript]) -> Vec<ServedScript> {
        held.iter()
            .filter_map(|s| match self.failed.get(&s.name) {
                Some((etag, _)) if *etag == s.etag => self.serving.get(&s.name).cloned(),
                _ => Some(s.clone()),
            })
            .collect()
    }

    /// Writes the board [`annotate`] reads.
    fn publish(&self, held: &[ServedScript]) {
        let port = self.addr.port();
        let mut board = BOARD.write().unwrap_or_else(|p| p.into_inner());
        board.clear();
        for s in held {
            let local_url = self
                .serving
                .contains_key(&s.name)
                .then(|| format!("http://{}.localhost:{port}/", s.name));
            let error = self
                .failed
                .get(&s.name)
                .filter(|(etag, _)| *etag == s.etag)
                .map(|(_, m)| m.clone());
            board.insert(s.name.clone(), EdgeState { local_url, error });
        }
    }

    /// Stops workerd and the KV binding listener.
    async fn shutdown(mut self) {
        self.supervisor.stop().await;
        if let Some(stop) = self.kv_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.kv_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

fn same_versions(want: &[ServedScript], serving: &BTreeMap<String, ServedScript>) -> bool {
    want.len() == serving.len()
        && want
            .iter()
            .all(|s| serving.get(&s.name).is_some_and(|o| o.etag == s.etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gains_local_url_and_a_one_line_failed_start() {
        let script = "unit-test-edge-annotate";
        BOARD.write().unwrap().insert(
            script.to_owned(),
            EdgeState {
                local_url: Some("http://unit-test-edge-annotate.localhost:1/".into()),
                error: Some("service x: Uncaught Error: boom\n  at index.js:1:7".into()),
            },
        );
        let mut output = Some(serde_json::json!({ "type": "worker" }));
        let mut message = "uploaded".to_owned();
        annotate_status(script, &mut output, &mut message);
        assert_eq!(
            output.unwrap()["localUrl"],
            "http://unit-test-edge-annotate.localhost:1/"
        );
        assert_eq!(
            message,
            "uploaded; local edge: the newest version failed to start (the previous one keeps \
             serving): service x: Uncaught Error: boom at index.js:1:7"
        );
        let mut none = None;
        let mut empty = String::new();
        annotate_status("not-served", &mut none, &mut empty);
        assert_eq!((none, empty.as_str()), (None, ""));
        BOARD.write().unwrap().remove(script);
    }
}
