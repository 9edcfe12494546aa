//! The admin HTTP API of `lumierd run --admin-listen ADDR` (off by default):
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /healthz` | `200 ok` while the process serves and its state store can write (liveness), else `503` |
//! | `GET /readyz` | `200 ready` once the manifests are loaded and the first pass is done and the store can write, else `503` |
//! | `GET /metrics` | Prometheus text format 0.0.4 ([`crate::metrics`]) |
//! | `GET /status[?stage=S]` | the JSON of `lumierd status --json` |
//!
//! It has no authentication and exposes no secret; it binds loopback unless
//! `--admin-allow-remote` is given. The server takes its listener and a shutdown future, and
//! bounds what clients can cost ([`listener`]: connections, header and idle timeouts).

pub mod listener;

use crate::cloudflare::Client;
use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::store::Store;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub use listener::Limits;
use std::future::Future;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin API: {0}")]
    Io(#[from] std::io::Error),
}

/// What the admin API reads: the store (status), the metrics and readiness, and the client
/// (request counters).
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub client: Option<Client>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
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
/// lumierd does stops all provider writes; a restart reopens it).
async fn healthz(State(state): State<AdminState>) -> Response {
    if state.store.can_write() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: the state store cannot write (disk full or failing?)\n",
        )
            .into_response()
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if !state.store.can_write() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the state store cannot write (disk full or failing?)\n",
        )
            .into_response()
    } else if state.metrics.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: manifests not loaded or first pass not done\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let stats = state.client.as_ref().map(Client::stats);
    let blocked = state.client.as_ref().and_then(Client::blocked_for);
    let body = state.metrics.render(stats.as_ref(), blocked);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    stage: Option<String>,
}

async fn status(State(state): State<AdminState>, Query(q): Query<StatusQuery>) -> Response {
    let store = state.store.clone();
    let stage = q.stage.filter(|s| !s.is_empty());
    let result =
        tokio::task::spawn_blocking(move || crate::status::status_json(&store, stage.as_deref()))
            .await;
    match result {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// Whether `addr` may be served without `--admin-allow-remote`: loopback only.
pub fn is_local(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}
