//! The embedded Cloudflare-compatible local API (axum over hyper), served by
//! `lumierd emulator` and embedded in `lumierd run` by default.
//!
//! It speaks the slice of the Cloudflare v4 API that lumierd and common third-party clients
//! use (KV namespaces, keys, values, bulk; Worker scripts, content, settings; token verify),
//! under `/client/v4`, with the real service's envelopes, status codes and error codes (see
//! `../shared/cloudflare/API-NOTES.md`). The wire types are [`crate::cloudflare::types`].
//!
//! Decisions where the real API is ambiguous or undocumented (each is also noted where it is
//! implemented):
//! * **Auth.** Every route under `/client/v4` except `/user/…` requires
//!   `Authorization: Bearer <token>` equal to the configured token. A missing or wrong token,
//!   legacy `X-Auth-Key`/`X-Auth-Email` headers, and a path account id other than the configured
//!   one all answer **HTTP 403, code 10000 "Authentication error"** (what the real API answers
//!   for a token without access to the account).
//! * **Token kind.** The configured token is an *account-owned* token:
//!   `GET /accounts/{a}/tokens/verify` answers `{id, status:"active"}`, while
//!   `GET /user/tokens/verify` answers **401, code 1000 "Invalid API Token"**, as the real API
//!   does for account tokens (wrangler classifies tokens this way).
//! * **Validation errors** without a documented code (bad query parameters, bad bodies, key and
//!   metadata limits, script upload validation) answer 400 with code 10021.
//! * **Malformed ids** (a namespace id that is not 32 hex characters) answer 404 with code 7003
//!   "Could not route to …", like the real API gateway; well-formed unknown ids answer 10013.
//! * **Wrong method** on a served path: 405 with code 10000 "<METHOD> method not allowed for
//!   the api_token authentication scheme" (the real gateway's wording).
//! * **Dropped connections** (`reset_rate`) are logged with status 0.
//! * **A client that goes away** does not cancel its request: each request is handled in a
//!   task of its own that runs to its end, applies what it applies and is logged with the
//!   status it would have answered (as a server that received a whole request does).
//! * **Request bodies are read to the end before answering**, also when the answer does not
//!   need them (auth failure, 404, validation error): hyper closes a connection whose request
//!   body is unread, and a client still sending it (undici's `fetch` in wrangler and the
//!   TypeScript SDK) then sees a reset instead of the answer, where the real API answers.
//!
//! Served for the real Workers workflow (`wrangler deploy`, `wrangler secret …`, `wrangler
//! versions/deployments …`; API-NOTES §7): secrets (`routes_secrets`), the workers.dev
//! subdomains and `GET /workers/workers/{name}` (`routes_subdomain`), versions and deployments
//! (`routes_versions`, records in `history`). Every upload records a version and a deployment;
//! `last_deployed_from` is `wrangler` for requests whose `User-Agent` is wrangler's, else `api`.
//! Not served (answered 404/7003): routes, custom domains, cron triggers, and the `tags` filter
//! of the script list. Served beyond the 2024 slice because the official SDKs and wrangler call
//! it: `POST …/bulk/get`. `scripts/compat/` in the repository runs wrangler, the Python and the
//! TypeScript SDKs against `lumierd emulator`.
//!
//! Request pipeline, in order: latency → connection drop → injected 500 → rate limit → auth →
//! route. Every request, whatever its fate, is recorded in the request log.
//!
//! **Bounded memory.** Nothing kept across requests grows with them: the in-memory request
//! log is a ring (see `reqlog`), the rate limiter has one window for the served account and
//! one for `/user/…` and counts nothing else (requests naming another account are refused by
//! auth and leave no trace but their log entry).

mod app_state;
mod auth;
mod envelope;
mod extract;
mod faults;
mod history;
mod multipart;
mod private_fs;
mod reqlog;
mod routes;
mod routes_kv;
mod routes_kv_binding;
mod routes_kv_bulk;
mod routes_secrets;
mod routes_subdomain;
mod routes_tokens;
mod routes_versions;
mod routes_workers;
mod served;
mod state;
mod token_file;
mod worker_bindings;
mod worker_upload;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;

pub use faults::{Faults, RateLimitModel};
pub use reqlog::{
    LoggedRequest, MEMORY_BYTES as REQUEST_LOG_MEMORY_BYTES,
    MEMORY_ENTRIES as REQUEST_LOG_MEMORY_ENTRIES,
};
pub use routes_kv_binding::NAMESPACE_HEADER as KV_BINDING_NAMESPACE_HEADER;
pub use served::ServedScript;
pub use token_file::{load_or_create as load_or_create_token, token_path, TOKEN_FILE};

use faults::{RateLimiter, Verdict};
use reqlog::RequestLog;
use state::Store;

/// The account id of the embedded default configuration (32 lowercase hex).
pub const DEFAULT_ACCOUNT_ID: &str = "1ae1d0c0ffee00000000000000000001";
/// The bearer token of the in-memory default configuration and of `lumierd emulator` without
/// `--token` on a loopback address (local development only). A persisted API embedded in
/// `lumierd run` uses the random token of its data folder instead ([`load_or_create_token`]).
pub const DEFAULT_TOKEN: &str = "lumierd-local-token";

/// `(method, path)` of every route the local API serves. Paths are relative to `/client/v4`
/// and written as in the OpenAPI document (`/accounts/{account_id}/…`); a trailing
/// `{key_name}` matches the rest of the path. This is the table the router is built from.
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    routes::served_routes()
}

/// How long [`LocalApi::serve`] waits for in-flight requests after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest request body read (bulk writes may be up to 100 MB on the real API).
const MAX_BODY: usize = 110 * 1024 * 1024;

/// How to run a local API. Its `Debug` output redacts the token.
#[derive(Clone)]
pub struct LocalApiConfig {
    /// The bearer token accepted. Never logged.
    pub token: String,
    /// The one account served (32 hex characters).
    pub account_id: String,
    /// Persist everything here across restarts; `None` = memory only.
    pub data_dir: Option<PathBuf>,
    pub faults: Faults,
    /// Append one JSON line `{method,path,query,status,duration_ms,ts}` per request here.
    pub request_log: Option<PathBuf>,
}

impl std::fmt::Debug for LocalApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApiConfig")
            .field("token", &"<redacted>")
            .field("account_id", &self.account_id)
            .field("data_dir", &self.data_dir)
            .field("faults", &self.faults)
            .field("request_log", &self.request_log)
            .finish()
    }
}

impl Default for LocalApiConfig {
    /// The embedded default: [`DEFAULT_TOKEN`], [`DEFAULT_ACCOUNT_ID`], memory only, no faults.
    fn default() -> Self {
        LocalApiConfig {
            token: DEFAULT_TOKEN.to_owned(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            data_dir: None,
            faults: Faults::default(),
            request_log: None,
        }
    }
}

/// Errors of opening and serving the local API (request-level errors are API envelopes).
#[derive(Debug, thiserror::Error)]
pub enum LocalApiError {
    #[error("invalid local API configuration: {0}")]
    Config(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt local API state in {path}: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("local API state in {path} has format {found}; this build reads up to {supported}")]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("local API listener failed: {0}")]
    Listener(#[source] std::io::Error),
}

/// A handle on a local API: cheap to clone, all clones share state, log and fault knobs.
#[derive(Clone)]
pub struct LocalApi {
    inner: Arc<Inner>,
}

struct Inner {
    token: String,
    account_id: String,
    faults: RwLock<Faults>,
    limiter: RateLimiter,
    log: RequestLog,
    router: axum::Router,
    store: Store,
}

impl std::fmt::Debug for LocalApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalApi")
            .field("account_id", &self.inner.account_id)
            .finish_non_exhaustive()
    }
}

impl LocalApi {
    /// Opens the API: validates the configuration, loads `data_dir` if it holds a state, and
    /// opens the request log file. Does not listen; see [`LocalApi::serve`].
    pub fn open(config: LocalApiConfig) -> Result<LocalApi, LocalApiError> {
        if config.token.is_empty() {
            return Err(LocalApiError::Config("the token must not be empty".into()));
        }
        if config.account_id.len() != 32
            || !config.account_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(LocalApiError::Config(format!(
                "account id {:?} is not 32 hex characters",
                config.account_id
            )));
        }
        let store = Store::open(config.data_dir.as_deref())?;
        let log = RequestLog::open(config.request_log.as_deref())?;
        let router = routes::router(app_state::AppState {
            store: store.clone(),
            token_id: auth::token_id(&config.token),
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
        Ok(LocalApi {
            inner: Arc::new(Inner {
                token: config.token,
                account_id: config.account_id.to_ascii_lowercase(),
                faults: RwLock::new(config.faults),
                limiter: RateLimiter::default(),
                log,
                router,
                store,
            }),
        })
    }

    /// Creates a namespace with a given id and title unless one with that id exists; returns
    /// whether it created one. For the embedded sandbox only: it lets `existing` namespaces
    /// of the manifests resolve on a fresh machine. The real API has no such call.
    pub async fn seed_namespace(&self, id: &str, title: &str) -> Result<bool, LocalApiError> {
        let (id, title) = (id.to_owned(), title.to_owned());
        self.inner
            .store
            .mutate(move |d| {
                if d.namespaces.contains_key(&id) {
                    return Ok(false);
                }
                let ns = state::NamespaceRec {
                    id: id.clone(),
                    title,
                    values: Default::default(),
                };
                d.namespaces.insert(id, ns);
                Ok(true)
            })
            .await
            .map_err(|e| LocalApiError::Config(format!("seeding namespace: {e:?}")))
    }

    /// The account id served.
    pub fn account_id(&self) -> &str {
        &self.inner.account_id
    }

    /// A copy of the requests logged since start (or the last [`clear_request_log`]), oldest
    /// first: the newest [`REQUEST_LOG_MEMORY_ENTRIES`] at most, within
    /// [`REQUEST_LOG_MEMORY_BYTES`] of path and query text (the `request_log` file keeps all).
    ///
    /// [`clear_request_log`]: LocalApi::clear_request_log
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.inner.log.snapshot()
    }

    /// Empties the in-memory request log (the log file, if any, is kept).
    pub fn clear_request_log(&self) {
        self.inner.log.clear();
    }

    /// Replaces the fault knobs; rate-limit windows restart.
    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
        self.inner.limiter.reset();
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (at most a few seconds) and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), LocalApiError> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) if is_transient_accept_error(&e) => {
                            tracing::warn!(error = %e, "local API: accept failed; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        Err(e) => return Err(LocalApiError::Listener(e)),
                    };
                    let _ = stream.set_nodelay(true);
                    let inner = Arc::clone(&self.inner);
                    let service = hyper::service::service_fn(move |req| {
                        let inner = Arc::clone(&inner);
                        // Each request runs in a task of its own, so that it runs to its end
                        // (applied and logged) also when its client goes away: hyper drops
                        // this future when the connection closes, not the task.
                        let task = tokio::spawn(async move { inner.handle(req).await });
                        async move {
                            match task.await {
                                Ok(answer) => answer,
                                Err(_) => Ok(envelope::ApiError::internal(
                                    "Internal server error (the request handler failed)",
                                )
                                .into_response()),
                            }
                        }
                    });
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        // Errors here are client disconnects and injected resets.
                        let _ = conn.await;
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
        Ok(())
    }
}

/// Returned by the connection service to make hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct ConnectionDropped;

impl Inner {
    /// Handles one request and logs it: with its answer's status, or with status 0 when the
    /// connection is dropped by fault injection or the handling ends without an answer. A
    /// request whose answer is lost by fault injection after it was handled
    /// ([`Faults::applied_lost_rate`]) is logged with the status it would have had and
    /// `answer_lost`.
    async fn handle(&self, req: hyper::Request<Incoming>) -> Result<Response, ConnectionDropped> {
        let path = req.uri().path().to_owned();
        let entry = self
            .log
            .start(
                req.method().to_string(),
                path.clone(),
                req.uri().query().unwrap_or("").to_owned(),
            )
            .with_user_agent(
                req.headers()
                    .get(hyper::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            );
        let faults = self
            .faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        let bucket = auth::rate_limit_bucket(&path, &self.account_id);
        let lose_answer = faults::lose_answer(&faults, req.method());
        let response = match faults::decide(&faults, &self.limiter, bucket) {
            Verdict::Drop => {
                entry.finish(0);
                return Err(ConnectionDropped);
            }
            Verdict::Reject(err) => {
                drain_unless_waiting(req).await;
                err.into_response()
            }
            Verdict::Proceed(headers) => {
                let mut response =
                    match auth::check(&self.token, &self.account_id, &path, req.headers()) {
                        Err(err) => {
                            drain_unless_waiting(req).await;
                            err.into_response()
                        }
                        Ok(()) => self.route(req).await,
                    };
                if lose_answer {
                    // Applied (and logged with its status), then the answer is lost.
                    entry.finish_answer_lost(response.status().as_u16());
                    return Err(ConnectionDropped);
                }
                for (name, value) in headers {
                    response.headers_mut().insert(name, value);
                }
                response
            }
        };
        entry.finish(response.status().as_u16());
        Ok(response)
    }

    /// Reads the whole request body, then routes the request. Reading it first means that an
    /// answer given without looking at the body (a validation error, 404, 405) still reaches
    /// a client that is sending one: hyper closes a connection whose request body is unread,
    /// and a client still writing (undici's `fetch`, as in wrangler and the TypeScript SDK)
    /// then sees a reset instead of the answer. Every handler buffers its body anyway.
    async fn route(&self, req: hyper::Request<Incoming>) -> Response {
        let (parts, body) = req.into_parts();
        let bytes = match read_body(Body::new(body), MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge) => {
                return envelope::ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    envelope::PAYLOAD_CODE,
                    format!("Request body is larger than {MAX_BODY} bytes"),
                )
                .into_response()
            }
            Err(BodyError::Broken(e)) => {
                return envelope::ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    envelope::PAYLOAD_CODE,
                    format!("Could not read the request body: {e}"),
                )
                .into_response()
            }
        };
        let req = hyper::Request::from_parts(parts, Body::from(bytes));
        match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

/// Most bytes read and thrown away from a request answered without its body.
const MAX_DRAIN: usize = 2 * MAX_BODY;
/// Longest time spent reading a body before answering anyway.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

enum BodyError {
    TooLarge,
    Broken(String),
}

/// Reads `body` to its end, keeping at most `limit` bytes. A longer body is read on (up to
/// [`MAX_DRAIN`]) and thrown away, so that the client gets the 413 rather than a reset.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
            seen = seen.saturating_add(chunk.len());
            if seen > MAX_DRAIN {
                return Err(BodyError::TooLarge);
            }
            if seen <= limit {
                buf.extend_from_slice(&chunk);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(())) if seen <= limit => Ok(buf.into()),
        Ok(Ok(())) | Ok(Err(BodyError::TooLarge)) => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyError::Broken("timed out".into())),
    }
}

/// Reads and discards the body of a request answered without it (auth failure, injected
/// error, rate limit), for the reason given at [`Inner::route`]. A client that sent
/// `Expect: 100-continue` is waiting for a go-ahead and has sent no body: it is not asked for
/// one.
async fn drain_unless_waiting(req: hyper::Request<Incoming>) {
    let waiting = req
        .headers()
        .get(axum::http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if !waiting {
        let _ = read_body(Body::new(req.into_body()), 0).await;
    }
}

/// Accept errors that concern one connection or a passing resource shortage, not the listener.
fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}
