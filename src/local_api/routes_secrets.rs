//! Worker secrets (`/accounts/{a}/workers/scripts/{name}/secrets…`, API-NOTES §7.1).
//!
//! A secret is a `secret_text` (or `secret_key`) binding of the script, so settings, versions
//! and `keep_bindings` see it like any other binding. Its text (or key material) is stored in
//! the emulator's data and **never answered**: every answer carries `{name, type}` only, and
//! no handler logs a body (the request log has method, path, query and status).
//!
//! | op | answer | errors |
//! |---|---|---|
//! | `PUT …/secrets` `{name, type, text}` | `{name, type}` | 404/10007 no script; 400/10053 name held by another binding type; 400/10215 newest version not deployed; 400/10021 bad body |
//! | `GET …/secrets` | `[{name, type}]` (`[]` when none) | 404/10007 |
//! | `GET …/secrets/{name}` | `{name, type}` | 404/10007; 404/10056 no such secret |
//! | `DELETE …/secrets/{name}` | `result: null` | 404/10007; 404/10056 |
//! | `PATCH …/secrets-bulk` `{secrets: {NAME: secret \| null}}` | `{NAME: {name, type}}` of every secret after the change | as PUT |
//!
//! `url_encoded=true` on the by-name routes: the path segment is percent-decoded once by the
//! router, which is what the flag asks for (wrangler sends `encodeURIComponent(name)`).
//! Each change makes one new version of the script and deploys it (see [`super::history`]).
//! HTTP statuses for 10053, 10056 and 10215 are undocumented: 400, 404, 400 here.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::app_state::AppState;
use super::envelope::{ok, ok_null, parse_json, ApiError, ApiResult};
use super::extract::{BodyBytes, PathParams};
use super::history;
use super::routes_workers::find;
use super::state::{Data, ScriptRec};
use crate::cloudflare::types::Binding;

/// "Binding name 'X' already in use." (another binding type holds the name).
const NAME_IN_USE: u32 = 10053;
/// "Binding 'X' not found."
const SECRET_NOT_FOUND: u32 = 10056;
/// The newest version is not deployed: secrets can only change on the deployed version.
const LATEST_NOT_DEPLOYED: u32 = 10215;
/// Secret types; their write-only fields are dropped from every answer.
const SECRET_TYPES: &[&str] = &["secret_text", "secret_key"];

/// A secret as answered.
#[derive(Serialize)]
struct SecretOut {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

fn secret_kind(b: &Binding) -> Option<&str> {
    match b {
        Binding::SecretText { .. } => Some("secret_text"),
        Binding::Other(v) => v
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| SECRET_TYPES.contains(t)),
        _ => None,
    }
}

fn secrets_of(rec: &ScriptRec) -> Vec<SecretOut> {
    rec.bindings
        .iter()
        .filter_map(|b| {
            Some(SecretOut {
                name: b.name()?.to_owned(),
                kind: secret_kind(b)?.to_owned(),
            })
        })
        .collect()
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        SECRET_NOT_FOUND,
        format!("Binding '{name}' not found."),
    )
}

/// Parses one secret of a request body; the error never quotes the body (it holds the text).
fn parse_secret(v: Value) -> Result<Binding, ApiError> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::validation("a secret needs a non-empty 'name'"));
    }
    match kind {
        "secret_text" => match v.get("text").and_then(Value::as_str) {
            Some(text) => Ok(Binding::SecretText {
                name: name.to_owned(),
                text: Some(text.to_owned()),
            }),
            None => Err(ApiError::validation(format!(
                "secret '{name}': 'text' must be a string"
            ))),
        },
        "secret_key" => {
            let has_key = v.get("key_base64").is_some_and(Value::is_string)
                || v.get("key_jwk").is_some_and(Value::is_object);
            if !has_key || !v.get("format").is_some_and(Value::is_string) {
                return Err(ApiError::validation(format!(
                    "secret '{name}': a secret_key needs 'format' and 'key_base64' or 'key_jwk'"
                )));
            }
            Ok(Binding::Other(v))
        }
        _ => Err(ApiError::validation(format!(
            "secret '{name}': 'type' must be secret_text or secret_key"
        ))),
    }
}

/// Applies `changes` (`Some` = put, `None` = delete) to the script as one new deployed
/// version. Validates everything before changing anything.
fn change_secrets(
    d: &mut Data,
    script: &str,
    changes: Vec<(String, Option<Binding>)>,
    source: &str,
) -> Result<ScriptRec, ApiError> {
    let mut rec = find(d, script)?.clone();
    if !history::latest_is_deployed(&rec) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            LATEST_NOT_DEPLOYED,
            "Secret edit failed. You attempted to modify a secret, but the latest version of your Worker isn't currently deployed.",
        ));
    }
    for (name, change) in changes {
        let existing = rec.bindings.iter().position(|b| b.name() == Some(&name));
        match (change, existing) {
            (Some(secret), Some(i)) => {
                if secret_kind(&rec.bindings[i]).is_none() {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        NAME_IN_USE,
                        format!("Binding name '{name}' already in use."),
                    ));
                }
                rec.bindings[i] = secret;
            }
            (Some(secret), None) => rec.bindings.push(secret),
            (None, Some(i)) if secret_kind(&rec.bindings[i]).is_some() => {
                rec.bindings.remove(i);
            }
            (None, _) => return Err(not_found(&name)),
        }
    }
    rec.modified_micros = d.next_stamp();
    history::record_deployed(d, &mut rec, source, Default::default());
    d.scripts.insert(rec.name.clone(), rec.clone());
    history::gc(d);
    Ok(rec)
}

/// `PUT …/secrets` with a JSON secret → `{name, type}`.
pub async fn put_secret(
    State(state): State<AppState>,
    PathParams((_a, script)): PathParams<(String, String)>,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    let BodyBytes(body) = BodyBytes::read(req).await?;
    let secret = parse_secret(parse_json::<Value>(&body)?)?;
    let out = SecretOut {
        name: secret.name().unwrap_or_default().to_owned(),
        kind: secret_kind(&secret).unwrap_or_default().to_owned(),
    };
    let name = out.name.clone();
    state
        .store
        .mutate(move |d| change_secrets(d, &script, vec![(name, Some(secret))], source))
        .await?;
    ok(out)
}

/// `GET …/secrets` → `[{name, type}]`.
pub async fn list_secrets(
    State(state): State<AppState>,
    PathParams((_a, script)): PathParams<(String, String)>,
) -> ApiResult {
    let out = state.store.read(|d| find(d, &script).map(secrets_of))?;
    ok(out)
}

/// `GET …/secrets/{secret_name}` → `{name, type}`.
pub async fn get_secret(
    State(state): State<AppState>,
    PathParams((_a, script, name)): PathParams<(String, String, String)>,
) -> ApiResult {
    let out = state.store.read(|d| {
        find(d, &script).and_then(|rec| {
            secrets_of(rec)
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| not_found(&name))
        })
    })?;
    ok(out)
}

/// `DELETE …/secrets/{secret_name}` → `result: null`.
pub async fn delete_secret(
    State(state): State<AppState>,
    PathParams((_a, script, name)): PathParams<(String, String, String)>,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    state
        .store
        .mutate(move |d| change_secrets(d, &script, vec![(name, None)], source))
        .await?;
    ok_null()
}

/// `PATCH …/secrets-bulk` with `{secrets: {NAME: secret | null}}` (merge-patch: an omitted
/// name is unchanged) → every secret after the change, by name.
pub async fn patch_secrets_bulk(
    State(state): State<AppState>,
    PathParams((_a, script)): PathParams<(String, String)>,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    let BodyBytes(body) = BodyBytes::read(req).await?;
    let Some(Value::Object(secrets)) = parse_json::<Value>(&body)?
        .get_mut("secrets")
        .map(Value::take)
    else {
        return Err(ApiError::validation(
            "body must be {\"secrets\": {NAME: secret | null}}",
        ));
    };
    if secrets.len() > 100 {
        return Err(ApiError::validation("at most 100 secrets per request"));
    }
    let mut changes = Vec::with_capacity(secrets.len());
    for (name, v) in secrets {
        let change = match v {
            Value::Null => None,
            mut v => {
                if let Some(obj) = v.as_object_mut() {
                    obj.entry("name")
                        .or_insert_with(|| Value::String(name.clone()));
                }
                let secret = parse_secret(v)?;
                if secret.name() != Some(name.as_str()) {
                    return Err(ApiError::validation(format!(
                        "secret '{name}': the name inside differs from its key"
                    )));
                }
                Some(secret)
            }
        };
        changes.push((name, change));
    }
    let rec = state
        .store
        .mutate(move |d| change_secrets(d, &script, changes, source))
        .await?;
    let out: serde_json::Map<String, Value> = secrets_of(&rec)
        .into_iter()
        .map(|s| {
            let v = serde_json::json!({"name": s.name, "type": s.kind});
            (s.name, v)
        })
        .collect();
    ok(out)
}
