//! workers.dev: the account subdomain and each script's route on it (API-NOTES §7.2).
//!
//! | op | answer | errors |
//! |---|---|---|
//! | `GET /workers/subdomain` | `{subdomain}` ([`AccountSubdomain::DEFAULT`] on a fresh emulator) | 404/10007 after a DELETE |
//! | `PUT /workers/subdomain` `{subdomain}` | `{subdomain}` | 400/10021 name not `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$` |
//! | `DELETE /workers/subdomain` | 204, no body ([SPEC26]) | — |
//! | `GET …/scripts/{n}/subdomain` | `{enabled, previews_enabled}` (both false for a new script) | 404/10007 |
//! | `POST …/scripts/{n}/subdomain` `{enabled, previews_enabled?}` | the state after; an omitted `previews_enabled` follows `enabled` | 404/10007; 400/10021 no boolean `enabled` |
//! | `DELETE …/scripts/{n}/subdomain` | `{enabled: false, previews_enabled: false}` | 404/10007 |
//! | `GET /workers/workers/{n}` | the newer "Worker" resource, reduced to what wrangler reads: `{id, name, subdomain{enabled, previews_enabled}, tags, logpush, …}` | 404/10007 |
//!
//! The subdomain state is not versioned: changing it does not touch the script's versions,
//! etag or `modified_on`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::app_state::AppState;
use super::envelope::{ok, parse_json, ApiError, ApiResult};
use super::extract::{BodyBytes, PathParams};
use super::routes_workers::find;
use super::state::{rfc3339_micros, ScriptSubdomain};
use crate::cloudflare::types::codes;

/// True for names wrangler and the API accept: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
fn valid_subdomain(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(ok)
        && b.last().is_some_and(ok)
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// `GET /accounts/{a}/workers/subdomain` → `{subdomain}`.
pub async fn get_account_subdomain(
    State(state): State<AppState>,
    PathParams((_a,)): PathParams<(String,)>,
) -> ApiResult {
    let name = state.store.read(|d| d.account_subdomain.name.clone());
    match name {
        Some(subdomain) => ok(json!({ "subdomain": subdomain })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::SCRIPT_NOT_FOUND,
            "This account has no workers.dev subdomain registered.",
        )),
    }
}

/// `PUT /accounts/{a}/workers/subdomain` with `{subdomain}` → `{subdomain}`.
pub async fn put_account_subdomain(
    State(state): State<AppState>,
    PathParams((_a,)): PathParams<(String,)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    let v: Value = parse_json(&body)?;
    let name = v
        .get("subdomain")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !valid_subdomain(&name) {
        return Err(ApiError::validation(format!(
            "invalid subdomain {name:?}: must match ^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?$"
        )));
    }
    let stored = name.clone();
    state
        .store
        .mutate(move |d| {
            d.account_subdomain.name = Some(stored);
            Ok(())
        })
        .await?;
    ok(json!({ "subdomain": name }))
}

/// `DELETE /accounts/{a}/workers/subdomain` → 204.
pub async fn delete_account_subdomain(
    State(state): State<AppState>,
    PathParams((_a,)): PathParams<(String,)>,
) -> ApiResult {
    state
        .store
        .mutate(|d| {
            d.account_subdomain.name = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET …/scripts/{n}/subdomain` → `{enabled, previews_enabled}`.
pub async fn get_script_subdomain(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let sub = state.store.read(|d| find(d, &name).map(|r| r.subdomain))?;
    ok(sub)
}

/// `POST …/scripts/{n}/subdomain` with `{enabled, previews_enabled?}` → the state after.
pub async fn post_script_subdomain(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    let v: Value = parse_json(&body)?;
    let Some(enabled) = v.get("enabled").and_then(Value::as_bool) else {
        return Err(ApiError::validation("'enabled' must be a boolean"));
    };
    let previews_enabled = match v.get("previews_enabled") {
        None | Some(Value::Null) => enabled,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::validation("'previews_enabled' must be a boolean")),
    };
    set_script_subdomain(
        &state,
        name,
        ScriptSubdomain {
            enabled,
            previews_enabled,
        },
    )
    .await
}

/// `DELETE …/scripts/{n}/subdomain` → `{enabled: false, previews_enabled: false}`.
pub async fn delete_script_subdomain(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    set_script_subdomain(&state, name, ScriptSubdomain::default()).await
}

async fn set_script_subdomain(state: &AppState, name: String, sub: ScriptSubdomain) -> ApiResult {
    state
        .store
        .mutate(move |d| {
            find(d, &name)?;
            if let Some(rec) = d.scripts.get_mut(&name) {
                rec.subdomain = sub;
            }
            Ok(())
        })
        .await?;
    ok(sub)
}

/// `GET /accounts/{a}/workers/workers/{n}` (by name): what wrangler ≥ 4.1xx reads before its
/// subdomain POST (`subdomain.enabled`, `subdomain.previews_enabled`). No `url` is given, so
/// wrangler builds the workers.dev host from `GET /workers/subdomain`.
pub async fn get_worker(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let rec = state.store.read(|d| find(d, &name).cloned())?;
    ok(json!({
        "id": rec.name,
        "name": rec.name,
        "created_on": rfc3339_micros(rec.created_micros),
        "updated_on": rfc3339_micros(rec.modified_micros),
        "logpush": rec.logpush,
        "tags": rec.tags,
        "tail_consumers": rec.tail_consumers,
        "subdomain": rec.subdomain,
        "observability": {"enabled": false},
    }))
}

#[cfg(test)]
mod tests {
    use super::valid_subdomain;

    #[test]
    fn subdomain_names() {
        for ok in ["a", "lumierd-local", "x1", "a-b-c"] {
            assert!(valid_subdomain(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", long.as_str()] {
            assert!(!valid_subdomain(bad), "{bad}");
        }
    }
}
