//! Worker scripts: upload, list, content, settings, delete, and the minimal service view
//! (`/accounts/{a}/workers/…`).
//!
//! Upload contract (`PUT …/scripts/{name}`, `multipart/form-data` only, else 400/10021):
//! * part `metadata` holds the JSON metadata ([`ScriptMetadata`]; unknown fields accepted);
//! * every other part is a module, named by its **filename** when it has one (the Python SDK
//!   names every module part `files`), else by its part name (wrangler sets both);
//! * `main_module` (module syntax) or `body_part` (service-worker syntax) must name an uploaded
//!   module (400/10021); modules must use a content type the real API accepts;
//! * name must match `^[a-z0-9_][a-z0-9-_]*$`, ≤ 63 characters (400/10016); total size
//!   ≤ 10 MiB (400/10027); `kv_namespace` bindings must name existing namespaces (400/10041);
//! * bindings need string `type` and `name`, and the typed ones (`kv_namespace`, `plain_text`,
//!   `secret_text`) their fields (400/10021);
//! * bindings: `inherit` keeps the previous binding of that name (`old_name` supported; with
//!   `?bindings_inherit=strict` an unresolvable one is 400/10057, else it is dropped);
//!   `secret_text` without `text` keeps the previous secret; `keep_bindings` keeps previous
//!   bindings of the listed types that the upload does not name.
//!
//! `PUT …/scripts/{name}/content` replaces only the modules and the entry point (metadata part
//! `{main_module | body_part}`, or the `CF-WORKER-MAIN-MODULE-PART` / `CF-WORKER-BODY-PART`
//! header), keeping bindings and settings.
//!
//! Every upload gets a new `etag` (SHA-256 over name, modules, metadata and an upload counter)
//! and a new `modified_on` (strictly increasing). A settings PATCH changes `modified_on` but not
//! the etag, which hashes content.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::app_state::AppState;
use super::envelope::{ok, parse_json, ApiError, ApiResult};
use super::extract::{BodyBytes, PathParams, QueryParams};
use super::history;
use super::multipart;
use super::state::{rfc3339_micros, Data, ScriptRec};
use super::worker_bindings::resolve_bindings;
use super::worker_upload::{check_entry, collect_parts, etag, parse_upload, Upload};
use crate::cloudflare::types::{codes, Binding, Script, ScriptSettings};

const MAX_NAME_LEN: usize = 63;
/// `workers/services/{name}` not found.
const SERVICE_NOT_FOUND: u32 = 10090;

/// True for names the real API accepts: `^[a-z0-9_][a-z0-9-_]*$`, at most 63 characters.
pub fn valid_script_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

pub(super) fn find<'a>(d: &'a Data, name: &str) -> Result<&'a ScriptRec, ApiError> {
    d.scripts.get(name).ok_or_else(ApiError::script_not_found)
}

/// A script as answered: the shared [`Script`] plus the fields of the real answer that the
/// shared type does not carry.
#[derive(Serialize)]
struct ScriptOut {
    #[serde(flatten)]
    script: Script,
    logpush: bool,
    tail_consumers: Vec<Value>,
    last_deployed_from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    startup_time_ms: Option<u32>,
    /// On an upload: the new version's id (wrangler reads it as "Current Version ID"; §7.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_id: Option<String>,
}

fn script_out(rec: &ScriptRec, startup: bool) -> ScriptOut {
    ScriptOut {
        script: Script {
            id: rec.name.clone(),
            etag: rec.etag.clone(),
            created_on: rfc3339_micros(rec.created_micros),
            modified_on: rfc3339_micros(rec.modified_micros),
            has_modules: rec.has_modules(),
            tags: Some(rec.tags.clone()),
            compatibility_date: rec.compatibility_date.clone(),
            compatibility_flags: rec.compatibility_flags.clone(),
            handlers: vec!["fetch".to_owned()],
            usage_model: rec.usage_model.clone(),
        },
        logpush: rec.logpush,
        tail_consumers: rec.tail_consumers.clone(),
        last_deployed_from: rec.last_deployed_from.clone(),
        startup_time_ms: startup.then_some(0),
        deployment_id: None,
    }
}

/// Settings as answered: secret texts omitted.
#[derive(Serialize)]
struct SettingsOut {
    #[serde(flatten)]
    settings: ScriptSettings,
    tail_consumers: Vec<Value>,
}

fn settings_out(rec: &ScriptRec) -> SettingsOut {
    let bindings = rec.bindings.iter().map(history::public_binding).collect();
    SettingsOut {
        settings: ScriptSettings {
            bindings,
            compatibility_date: rec.compatibility_date.clone(),
            compatibility_flags: rec.compatibility_flags.clone(),
            tags: Some(rec.tags.clone()),
            usage_model: rec.usage_model.clone(),
            logpush: rec.logpush,
        },
        tail_consumers: rec.tail_consumers.clone(),
    }
}

/// `GET …/workers/scripts` → every script (no pagination), by name.
pub async fn list_scripts(
    State(state): State<AppState>,
    PathParams((_a,)): PathParams<(String,)>,
) -> ApiResult {
    let all: Vec<ScriptOut> = state
        .store
        .read(|d| d.scripts.values().map(|s| script_out(s, false)).collect());
    ok(all)
}

pub(super) fn str_field(raw: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    raw.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `PUT …/workers/scripts/{name}` (multipart) → the script (see the module doc).
pub async fn upload_script(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    q: QueryParams,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    if !valid_script_name(&name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_SCRIPT_NAME,
            "workers.api.error.invalid_script_name",
        ));
    }
    let upload = parse_upload(multipart::read_parts(req).await?)?;
    let strict = q.get("bindings_inherit") == Some("strict");
    let out = state
        .store
        .mutate(move |d| store_upload(d, name, upload, strict, source))
        .await?;
    ok(out)
}

/// Stores an upload as script `name` (see the module doc): bindings resolved against the
/// old script's (`strict`: `bindings_inherit=strict`), versions, deployments and subdomain
/// kept, a new etag and a deployed version recorded; answers the script.
fn store_upload(
    d: &mut Data,
    name: String,
    upload: Upload,
    strict: bool,
    source: &str,
) -> Result<ScriptOut, ApiError> {
    let Upload {
        meta,
        raw_meta,
        meta_bytes,
        modules,
    } = upload;
    let old = d.scripts.get(&name);
    let old_bindings = old.map(|s| s.bindings.clone()).unwrap_or_default();
    let created = old.map(|s| s.created_micros);
    let kept = old.map(|s| {
        (
            s.versions.clone(),
            s.deployments.clone(),
            s.version_counter,
            s.subdomain,
        )
    });
    let (versions, deployments, version_counter, subdomain) = kept.unwrap_or_default();
    let bindings = resolve_bindings(d, meta.bindings, &old_bindings, &meta.keep_bindings, strict)?;
    d.upload_counter += 1;
    let etag = etag(&name, &modules, &meta_bytes, d.upload_counter);
    let stamp = d.next_stamp();
    let mut rec = ScriptRec {
        name: name.clone(),
        modules,
        main_module: meta.main_module,
        body_part: if raw_meta.contains_key("main_module") {
            None
        } else {
            meta.body_part
        },
        bindings,
        compatibility_date: meta.compatibility_date,
        compatibility_flags: meta.compatibility_flags,
        tags: meta.tags,
        usage_model: str_field(&raw_meta, "usage_model").unwrap_or_else(|| "standard".to_owned()),
        logpush: raw_meta
            .get("logpush")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tail_consumers: raw_meta
            .get("tail_consumers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        etag,
        created_micros: created.unwrap_or(stamp),
        modified_micros: stamp,
        versions,
        deployments,
        version_counter,
        last_deployed_from: source.to_owned(),
        subdomain,
    };
    let version = history::record_deployed(d, &mut rec, source, Default::default());
    let mut out = script_out(&rec, true);
    out.deployment_id = Some(version);
    d.scripts.insert(name, rec);
    history::gc(d);
    Ok(out)
}

/// `PUT …/scripts/{name}/content`: replaces the code "without touching config or metadata".
/// Multipart: an optional `metadata` part holding only `{main_module | body_part}`, and the
/// module parts; the entry may instead be named by the `CF-WORKER-MAIN-MODULE-PART` /
/// `CF-WORKER-BODY-PART` header (the metadata part wins when both are given). Bindings,
/// compatibility settings, tags and the rest are kept; the script gets a new etag and
/// `modified_on`. Answers the script; 404/10007 when there is no such script.
pub async fn put_content(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    let header_main = header_text(req.headers(), "cf-worker-main-module-part");
    let header_body = header_text(req.headers(), "cf-worker-body-part");
    let (meta_bytes, modules) = collect_parts(multipart::read_parts(req).await?)?;
    let (mut main_module, mut body_part) = (None, None);
    if let Some(bytes) = &meta_bytes {
        let Value::Object(raw) = parse_json::<Value>(bytes)? else {
            return Err(ApiError::validation("metadata must be a JSON object"));
        };
        main_module = str_field(&raw, "main_module");
        body_part = str_field(&raw, "body_part");
    }
    if main_module.is_none() && body_part.is_none() {
        main_module = header_main;
        body_part = header_body;
    }
    if main_module.is_some() {
        body_part = None;
    }
    check_entry(main_module.as_ref(), body_part.as_ref(), &modules)?;
    let meta_bytes = meta_bytes.unwrap_or_default();
    let out = state
        .store
        .mutate(move |d| {
            let mut rec = find(d, &name)?.clone();
            d.upload_counter += 1;
            rec.etag = etag(&name, &modules, &meta_bytes, d.upload_counter);
            rec.modules = modules;
            rec.main_module = main_module;
            rec.body_part = body_part;
            rec.modified_micros = d.next_stamp();
            let version = history::record_deployed(d, &mut rec, source, Default::default());
            let mut out = script_out(&rec, true);
            out.deployment_id = Some(version);
            d.scripts.insert(name, rec);
            history::gc(d);
            Ok(out)
        })
        .await?;
    ok(out)
}

/// A header's value, trimmed; `None` when absent, empty or not text.
fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// `GET …/scripts/{name}` and `GET …/scripts/{name}/content/v2`: a module Worker answers
/// `multipart/form-data` with one part per module (name = filename = module name, with its
/// content type) and `cf-entrypoint: <main_module>`; a service-worker script answers its raw
/// body part.
pub async fn download_script(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let rec = state.store.read(|d| find(d, &name).cloned())?;
    match (&rec.main_module, &rec.body_part) {
        (Some(main), _) => {
            let parts: Vec<(&str, &str, &[u8])> = rec
                .modules
                .iter()
                .map(|m| {
                    (
                        m.name.as_str(),
                        m.content_type.as_str(),
                        m.content.as_slice(),
                    )
                })
                .collect();
            let (content_type, body) = multipart::write_form(&parts);
            let mut response = body.into_response();
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            if let Ok(v) = HeaderValue::from_str(main) {
                headers.insert("cf-entrypoint", v);
            }
            Ok(response)
        }
        (None, body_part) => {
            let module = rec
                .modules
                .iter()
                .find(|m| Some(&m.name) == body_part.as_ref())
                .or_else(|| rec.modules.first());
            let Some(module) = module else {
                return Ok(StatusCode::NO_CONTENT.into_response());
            };
            let response: Response = (
                [(header::CONTENT_TYPE, "application/javascript")],
                module.content.clone(),
            )
                .into_response();
            Ok(response)
        }
    }
}

/// `DELETE …/scripts/{name}?force=` → `{id: name}`; 404/10007 when missing.
pub async fn delete_script(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    state
        .store
        .mutate(|d| {
            d.scripts
                .remove(&name)
                .ok_or_else(ApiError::script_not_found)?;
            history::gc(d);
            Ok(())
        })
        .await?;
    ok(json!({ "id": name }))
}

/// `GET …/scripts/{name}/settings` → bindings (secret texts omitted), compatibility, tags,
/// usage model, logpush, tail consumers.
pub async fn get_settings(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let out = state.store.read(|d| find(d, &name).map(settings_out))?;
    ok(out)
}

/// `PATCH …/scripts/{name}/settings`: multipart with one part `settings` (JSON; a plain JSON
/// body is accepted too). Fields present replace the stored ones (`bindings` replaces the set,
/// resolving `inherit` and text-less secrets against the current bindings). Bumps
/// `modified_on`, keeps the etag.
pub async fn patch_settings(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    let settings_bytes = if multipart::is_multipart(req.headers()) {
        multipart::read_parts(req)
            .await?
            .into_iter()
            .find(|p| p.name.as_deref() == Some("settings"))
            .map(|p| p.data.to_vec())
            .ok_or_else(|| ApiError::validation("missing the 'settings' part"))?
    } else {
        let BodyBytes(body) = BodyBytes::read(req).await?;
        body.to_vec()
    };
    let Value::Object(patch) = parse_json::<Value>(&settings_bytes)? else {
        return Err(ApiError::validation("settings must be a JSON object"));
    };
    let new_bindings: Option<Vec<Binding>> = match patch.get("bindings") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|e| ApiError::validation(format!("invalid bindings: {e}")))?,
        ),
    };
    let out = state
        .store
        .mutate(move |d| {
            let current = find(d, &name)?.clone();
            let bindings = match new_bindings {
                Some(b) => resolve_bindings(d, b, &current.bindings, &[], false)?,
                None => current.bindings.clone(),
            };
            let mut rec = current;
            rec.bindings = bindings;
            apply_common_settings(&mut rec, &patch)?;
            if let Some(v) = patch.get("compatibility_date") {
                rec.compatibility_date = v.as_str().map(str::to_owned);
            }
            if let Some(v) = patch.get("compatibility_flags") {
                rec.compatibility_flags = string_list(v, "compatibility_flags")?;
            }
            if let Some(v) = patch.get("usage_model").and_then(Value::as_str) {
                rec.usage_model = v.to_owned();
            }
            rec.modified_micros = d.next_stamp();
            let versioned = [
                "bindings",
                "compatibility_date",
                "compatibility_flags",
                "usage_model",
            ];
            if versioned.iter().any(|k| patch.contains_key(*k)) {
                history::record_deployed(d, &mut rec, source, Default::default());
            }
            let out = settings_out(&rec);
            d.scripts.insert(name, rec);
            history::gc(d);
            Ok(out)
        })
        .await?;
    ok(out)
}

/// Applies `logpush`, `tags` and `tail_consumers` when present.
fn apply_common_settings(
    rec: &mut ScriptRec,
    patch: &serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    if let Some(v) = patch.get("logpush") {
        rec.logpush = v.as_bool().unwrap_or(false);
    }
    if let Some(v) = patch.get("tags") {
        rec.tags = string_list(v, "tags")?;
    }
    if let Some(v) = patch.get("tail_consumers") {
        rec.tail_consumers = match v {
            Value::Null => Vec::new(),
            Value::Array(items) => items.clone(),
            _ => return Err(ApiError::validation("tail_consumers must be an array")),
        };
    }
    Ok(())
}

fn string_list(v: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        _ => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::validation(format!("{field} must be a list of strings"))),
    }
}

#[derive(Serialize)]
struct ScriptSettingsOut {
    logpush: bool,
    tail_consumers: Vec<Value>,
    tags: Vec<String>,
}

fn script_settings_out(rec: &ScriptRec) -> ScriptSettingsOut {
    ScriptSettingsOut {
        logpush: rec.logpush,
        tail_consumers: rec.tail_consumers.clone(),
        tags: rec.tags.clone(),
    }
}

/// `GET …/scripts/{name}/script-settings` → the non-versioned settings.
pub async fn get_script_settings(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let out = state
        .store
        .read(|d| find(d, &name).map(script_settings_out))?;
    ok(out)
}

/// `PATCH …/scripts/{name}/script-settings` with JSON `{logpush?, tail_consumers?, tags?}`.
pub async fn patch_script_settings(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    let Value::Object(patch) = parse_json::<Value>(&body)? else {
        return Err(ApiError::validation("body must be a JSON object"));
    };
    let out = state
        .store
        .mutate(move |d| {
            let mut rec = find(d, &name)?.clone();
            apply_common_settings(&mut rec, &patch)?;
            rec.modified_micros = d.next_stamp();
            let out = script_settings_out(&rec);
            d.scripts.insert(name, rec);
            Ok(out)
        })
        .await?;
    ok(out)
}

/// `GET …/workers/services/{name}` → a minimal service; 404/10090 when there is no script.
pub async fn get_service(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let rec = state.store.read(|d| d.scripts.get(&name).cloned());
    let Some(rec) = rec else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            SERVICE_NOT_FOUND,
            "workers.api.error.service_not_found",
        ));
    };
    let tag = {
        let digest = Sha256::digest(format!("{}:{}", rec.name, rec.created_micros).as_bytes());
        hex::encode(&digest[..16])
    };
    let created = rfc3339_micros(rec.created_micros);
    let modified = rfc3339_micros(rec.modified_micros);
    ok(json!({
        "id": rec.name,
        "created_on": created,
        "modified_on": modified,
        "default_environment": {
            "environment": "production",
            "created_on": created,
            "modified_on": modified,
            "script": {
                "id": rec.name,
                "tag": tag,
                "tags": rec.tags,
                "etag": rec.etag,
                "handlers": ["fetch"],
                "modified_on": modified,
                "created_on": created,
                "last_deployed_from": rec.last_deployed_from,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::valid_script_name;

    #[test]
    fn script_names() {
        for ok in ["a", "my-worker", "_x", "0abc", "a_b-c"] {
            assert!(valid_script_name(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-a", "A", "a.b", "a b", long.as_str()] {
            assert!(!valid_script_name(bad), "{bad}");
        }
    }
}
