//! The admin HTTP API of `lumierd run --admin-listen ADDR` (off by default):
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /healthz` | `200 ok` while the process serves, its state store can write and a running pass makes progress (`--stuck-after`) (liveness), else `503` |
//! | `GET /readyz` | `200 ready` once the manifests are loaded and the first pass is done and the store can write (a follower of an elected leader: whether or not its store can write), else `503`; then, with an etcd store, who leads since when, whom this replica follows, and `stale: true since …` ([`crate::replica`]) |
//! | `GET /metrics` | Prometheus text format 0.0.4 ([`crate::metrics`]) |
//! | `GET /status[?stage=S]` | the JSON of `lumierd status --json` (with an etcd store: `leader`, `replica`, `stale`, [`crate::replica`]) |
//! | `GET /status?app=A&stage=S&state=Error&offset=N&limit=M` | a filtered page of it, with `total` (matching), `offset`, `passes`, `api` |
//! | `GET /[?app=&stage=&state=&offset=&limit=]` | the dashboard ([`dashboard`]) |
//!
//! It exposes no secret; it binds loopback unless `--admin-allow-remote` is given, and then
//! `--admin-token-file` protects everything but `/healthz` ([`token`]). The server takes its
//! listener and a shutdown future, and bounds what clients can cost ([`listener`]:
//! connections, header and idle timeouts).

pub mod dashboard;
pub mod listener;
pub mod passes;
pub mod token;

use crate::cloudflare::Client;
use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::store::Store;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub use listener::Limits;
use passes::{Budget, PassLog};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
pub use token::AdminToken;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin API: {0}")]
    Io(#[from] std::io::Error),
}

/// What the admin API reads: the store (status), the metrics and readiness, the client
/// (request counters), the last passes and the budget samples; and the token, if one is
/// required.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub client: Option<Client>,
    pub passes: Arc<PassLog>,
    pub budget: Arc<Budget>,
    pub token: Option<AdminToken>,
    /// Who leads, and whether the status served is stale.
    pub replica: Arc<crate::replica::Replica>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// With a token configured, a request without it gets `401` (and the browser a prompt).
async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !token.allows(auth) {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"lumierd\", charset=\"UTF-8\"",
                )],
                "unauthorized: send Authorization: Bearer TOKEN (the one in --admin-token-file)\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// Serves the admin API on `listener` until `shutdown` completes, within the default
/// [`Limits`] (bounded connections, header and idle timeouts: see [`listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    listener::serve(listener, router(state), Limits::default(), shutdown).await;
    Ok(())
}

/// Liveness: the process serves, and its store can write (a store that cannot record what
/// lumierd does stops all provider writes; a restart reopens it) — unless it is a follower,
/// which writes nothing and serves its last view ([`crate::replica::Replica::writes`]).
async fn healthz(State(state): State<AdminState>) -> Response {
    if let Some(stalled) = state.metrics.stuck() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: the running pass has made no progress for {}s (past --stuck-after)\n",
                stalled.as_secs()
            ),
        )
            .into_response()
    } else if state.store.can_write() || !state.replica.writes() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: the state store cannot write (disk full or failing?)\n",
        )
            .into_response()
    }
}

/// Readiness. A follower writes nothing (it serves status, from its last view when the store
/// cannot be read), so only a replica that may write needs a store that can.
async fn readyz(State(state): State<AdminState>) -> Response {
    let (code, first) = if state.replica.writes() && !state.store.can_write() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the state store cannot write (disk full or failing?)\n",
        )
    } else if state.metrics.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: manifests not loaded or first pass not done\n",
        )
    };
    (code, format!("{first}{}", state.replica.readyz_lines())).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let stats = state.client.as_ref().map(Client::stats);
    let blocked = state.client.as_ref().and_then(Client::blocked_for);
    let mut body = state.metrics.render(stats.as_ref(), blocked);
    crate::metrics::render_replica(&mut body, &state.replica);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
struct StatusQuery {
    app: Option<String>,
    stage: Option<String>,
    state: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    /// Dashboard only: render the live part alone (its refresh).
    fragment: Option<String>,
}

impl StatusQuery {
    fn filter(&self, default_limit: Option<usize>, max_limit: usize) -> crate::status::Filter {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        crate::status::Filter {
            app: set(&self.app),
            stage: set(&self.stage),
            state: set(&self.state),
            offset: self.offset.unwrap_or(0),
            limit: self.limit.or(default_limit).map(|l| l.clamp(1, max_limit)),
        }
    }

    /// Whether only `?stage=` (or nothing) was asked: the contract's plain status.
    fn is_plain(&self) -> bool {
        self.app.is_none() && self.state.is_none() && self.offset.is_none() && self.limit.is_none()
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// Requests spent in the current budget window (sampled now too).
fn budget_spent(state: &AdminState) -> Option<u64> {
    let total = state.client.as_ref()?.stats().requests;
    let now = Instant::now();
    state.budget.sample(now, total);
    Some(state.budget.spent(now, total))
}

async fn status(State(state): State<AdminState>, Query(q): Query<StatusQuery>) -> Response {
    let store = state.store.clone();
    if q.is_plain() {
        let stage = q.stage.filter(|s| !s.is_empty());
        let replica = Arc::clone(&state.replica);
        let result =
            tokio::task::spawn_blocking(move || replica.status(&store, stage.as_deref())).await;
        return match result {
            Ok(Ok(v)) => axum::Json(v).into_response(),
            Ok(Err(e)) => internal(e),
            Err(e) => internal(e),
        };
    }
    let filter = q.filter(None, usize::MAX);
    let offset = filter.offset;
    let result = tokio::task::spawn_blocking(move || crate::status::select(&store, &filter)).await;
    match result {
        Ok(Ok(sel)) => {
            let mut v = crate::status::selection_json(&sel, offset);
            v["passes"] = serde_json::to_value(state.passes.recent()).unwrap_or_default();
            v["api"] = serde_json::json!({
                "requestsInWindow": budget_spent(&state),
                "windowSeconds": passes::BUDGET_WINDOW.as_secs(),
            });
            axum::Json(v).into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// The dashboard page, or (`?fragment=1`) its live part.
async fn dashboard(State(state): State<AdminState>, Query(q): Query<StatusQuery>) -> Response {
    let filter = q.filter(Some(dashboard::PAGE), dashboard::PAGE_MAX);
    let fragment = q
        .fragment
        .as_deref()
        .is_some_and(|f| !f.is_empty() && f != "0");
    let store = state.store.clone();
    let stats = state.client.as_ref().map(Client::stats);
    let extras = dashboard::Extras {
        passes: state.passes.recent(),
        budget_spent: budget_spent(&state),
        limiter_wait_s: stats.map_or(0.0, |s| s.limiter_wait.as_secs_f64()),
        blocked_for_s: state
            .client
            .as_ref()
            .and_then(Client::blocked_for)
            .map(|d| d.as_secs_f64()),
        ready: state.metrics.is_ready(),
        notify_queue: state.store.outbox_len().ok().filter(|n| *n > 0),
    };
    let result = tokio::task::spawn_blocking(move || {
        crate::status::select(&store, &filter)
            .map(|sel| dashboard::render(&sel, &filter, &extras, fragment))
    })
    .await;
    match result {
        Ok(Ok(html)) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            Html(html),
        )
            .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// Whether `addr` may be served without `--admin-allow-remote`: loopback only.
pub fn is_local(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}
