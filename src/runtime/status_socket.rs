//! The status socket: how `lumierd status` and `lumierd plan` ask a running daemon, which holds
//! the store (sled allows one process), for its status or its records.
//!
//! Protocol: a client connects to `STATE/lumierd.sock`, writes one request line and reads the
//! JSON answer until the daemon closes the connection.
//!
//! | request line | answer |
//! | --- | --- |
//! | `status` or `status STAGE` | the JSON of `lumierd status --json` ([`Replica::status`]: with an etcd store, who leads, and the last view marked stale when the store cannot be read) |
//! | `records` | every store record, as `[[key, record], …]` (for `plan`) |
//! | longer than [`MAX_REQUEST`] bytes | `{"error": …}` |
//!
//! Limits, so a client can cost the daemon only a bounded amount: at most [`MAX_CLIENTS`]
//! connections are served at once (further ones wait in the kernel's backlog, costing no
//! descriptor of ours), a request line is read within [`REQUEST_TIMEOUT`] and up to
//! [`MAX_REQUEST`] bytes. An accept error (e.g. `EMFILE` when the process is out of
//! descriptors) is logged and the loop goes on after a short pause: the socket never dies
//! while the daemon lives.

use crate::replica::Replica;
use crate::store::Store;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// The status socket's file name in the state folder.
pub const SOCKET: &str = "lumierd.sock";
/// Longest request line accepted, in bytes (newline included).
pub const MAX_REQUEST: u64 = 4096;
/// Connections served at once.
pub const MAX_CLIENTS: usize = 8;
/// How long a client may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for the daemon's whole answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error for lack of descriptors (`EMFILE`, `ENFILE`), so the loop does
/// not spin while the process is out of them; other accept errors pause [`ERROR_PAUSE`].
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// After answering, how long and how much unread input is discarded before closing.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 64 * 1024;
/// At most one accept-error log line per this period (the count of the others is logged).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StatusSocketError {
    #[error("status socket {path}: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why asking a daemon gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No socket file, or nobody listens on it: no daemon runs on this state folder.
    #[error("no lumierd daemon answers on {0}")]
    NoDaemon(String),
    /// A daemon's socket accepted (or refused oddly) but gave no valid answer in time.
    #[error("the lumierd daemon's status socket {path} did not answer: {reason}")]
    NotAnswering { path: String, reason: String },
}

/// The status socket while the daemon serves it; dropping it stops serving and removes the file.
pub struct StatusSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl StatusSocket {
    /// The socket file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        self.task.abort();
        // On a thread of its own, waited for briefly: on a frozen state disk unlink(2) blocks
        // until the thaw, and the process must still stop. A file left behind is replaced by
        // the next `serve`.
        let path = self.path.clone();
        let (done, unlinked) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("unlink-status-socket".into())
            .spawn(move || {
                let _ = std::fs::remove_file(path);
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = unlinked.recv_timeout(std::time::Duration::from_millis(500));
        }
    }
}

/// Binds `STATE/lumierd.sock` (mode 0600, replacing a stale file) and serves it until the
/// returned handle is dropped. Must be called within a tokio runtime.
pub fn serve(
    state: &Path,
    store: Store,
    replica: Arc<Replica>,
) -> Result<StatusSocket, StatusSocketError> {
    let path = state.join(SOCKET);
    let bind_error = |source| StatusSocketError::Bind {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(bind_error)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_error)?;
    }
    let task = tokio::spawn(accept_loop(listener, store, replica));
    Ok(StatusSocket { path, task })
}

/// Accepts clients for ever: a permit first (so excess clients wait in the backlog), then a
/// connection; errors are logged (rate-limited) and followed by a pause, never fatal.
async fn accept_loop(listener: UnixListener, store: Store, replica: Arc<Replica>) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut last_log: Option<Instant> = None;
    let mut unlogged = 0u64;
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return; // never closed
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let (store, replica) = (store.clone(), Arc::clone(&replica));
                tokio::spawn(async move {
                    answer(stream, store, replica).await;
                    drop(permit);
                });
            }
            Err(e) => {
                let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if last_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                    tracing::warn!(error = %e, suppressed = unlogged, "status socket: accept failed; going on");
                    last_log = Some(Instant::now());
                    unlogged = 0;
                } else {
                    unlogged += 1;
                }
                drop(permit);
                let pause = if exhausted {
                    EXHAUSTED_PAUSE
                } else {
                    ERROR_PAUSE
                };
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Reads one bounded request line and writes its answer.
async fn answer(stream: UnixStream, store: Store, replica: Arc<Replica>) {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    let body = match read {
        Err(_) | Ok(Err(_)) => return,
        Ok(Ok(_)) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_REQUEST => {
            json!({ "error": format!("request line longer than {MAX_REQUEST} bytes") }).to_string()
        }
        Ok(Ok(_)) => {
            let request = String::from_utf8_lossy(&line).trim().to_owned();
            // Store reads may block on the disk: off the async workers.
            tokio::task::spawn_blocking(move || respond(&store, &replica, &request))
                .await
                .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string())
        }
    };
    let _ = write.write_all(body.as_bytes()).await;
    let _ = write.shutdown().await;
    // Closing with unread input would reset the connection and lose the answer (an over-long
    // request): read on, discarding, until the client closes, within a bound.
    let mut rest = reader.into_inner().into_inner().take(LINGER_BYTES);
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
}

/// The answer to one request line (see the module's table).
fn respond(store: &Store, replica: &Replica, request: &str) -> String {
    let error = |e: &dyn std::fmt::Display| json!({ "error": e.to_string() }).to_string();
    if request == "records" {
        return match store.all() {
            Ok(records) => serde_json::to_string(&records).unwrap_or_else(|e| error(&e)),
            Err(e) => error(&e),
        };
    }
    let stage = request
        .strip_prefix("status")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match replica.status(store, stage) {
        Ok(v) => v.to_string(),
        Err(e) => error(&e),
    }
}

/// Sends one request line to the daemon on `state` and parses its JSON answer, within
/// [`ASK_TIMEOUT`]; says whether no daemon runs or one runs but does not answer.
pub async fn query(state: &Path, request: &str) -> Result<Value, AskError> {
    query_within(state, request, ASK_TIMEOUT).await
}

async fn query_within(state: &Path, request: &str, within: Duration) -> Result<Value, AskError> {
    let path = state.join(SOCKET);
    let shown = path.display().to_string();
    let not_answering = |reason: String| AskError::NotAnswering {
        path: shown.clone(),
        reason,
    };
    let ask = async {
        let mut stream = match UnixStream::connect(&path).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                        AskError::NoDaemon(shown.clone())
                    }
                    _ => not_answering(e.to_string()),
                })
            }
        };
        stream
            .write_all(format!("{request}\n").as_bytes())
            .await
            .map_err(|e| not_answering(e.to_string()))?;
        let mut body = String::new();
        stream
            .read_to_string(&mut body)
            .await
            .map_err(|e| not_answering(e.to_string()))?;
        serde_json::from_str(&body).map_err(|e| not_answering(format!("not JSON ({e})")))
    };
    tokio::time::timeout(within, ask)
        .await
        .unwrap_or_else(|_| Err(not_answering(format!("no answer within {within:?}"))))
}

/// Sends one request line to a running daemon and parses its JSON answer; `None` when no
/// daemon answers (within [`ASK_TIMEOUT`]).
pub async fn ask(state: &Path, request: &str) -> Option<Value> {
    query(state, request).await.ok()
}

/// Asks a running daemon for its status; `None` when no daemon answers.
pub async fn ask_daemon(state: &Path, stage: Option<&str>) -> Option<Value> {
    ask(state, &format!("status {}", stage.unwrap_or(""))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_status_bounds_the_request_and_tells_no_daemon_from_a_mute_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let socket = serve(dir.path(), store, Arc::new(Replica::new("t", false))).unwrap();
        let v = query(dir.path(), "status").await.unwrap();
        assert!(v.is_object(), "{v}");
        assert!(query(dir.path(), "records").await.unwrap().is_array());

        // A request line past the limit gets an error, not an unbounded read.
        let long = "x".repeat(MAX_REQUEST as usize * 4);
        let v = query(dir.path(), &long).await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("longer than"), "{v}");

        drop(socket);
        assert!(matches!(
            query(dir.path(), "status").await,
            Err(AskError::NoDaemon(_))
        ));
        // A socket bound but never accepting: a daemon that does not answer.
        let _mute = std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET)).unwrap();
        let got = query_within(dir.path(), "status", Duration::from_millis(200)).await;
        assert!(matches!(got, Err(AskError::NotAnswering { .. })), "{got:?}");
    }
}
