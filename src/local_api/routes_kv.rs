//! KV namespaces, keys, values and bulk operations
//! (`/accounts/{a}/storage/kv/namespaces/…`).
//!
//! Limits enforced (from the real service): title 1..=512 characters and unique per account
//! (10014); key 1..=512 bytes, not `.` or `..`; metadata ≤ 1024 bytes serialized; value
//! ≤ 25 MiB (413); `expiration_ttl` ≥ 60 and `expiration` ≥ now + 60 (`expiration_ttl` wins),
//! both ending no later than 9999-12-31T23:59:59Z (our bound, see [`MAX_EXPIRATION_SECS`]);
//! key list `limit` 10..=1000 (default 1000); namespace list `per_page` 1..=1000 (default 20,
//! the newer documented bounds), `page` ≥ 1, a page past the end is `[]`. Validation failures
//! without a documented code answer 400/10021.

use std::ops::Bound;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::app_state::AppState;
use super::envelope::{ok, ok_list, ok_null, parse_json, ApiError, ApiResult};
use super::extract::{BodyBytes, PathParams, QueryParams};
use super::multipart;
use super::state::{now_secs, Data, NamespaceRec, ValueRec};
use crate::cloudflare::types::{codes, KvKey, Namespace, ResultInfo};

const MAX_TITLE_CHARS: usize = 512;
const MAX_KEY_BYTES: usize = 512;
const MAX_METADATA_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
const MIN_TTL_SECS: u64 = 60;
/// Latest expiration accepted: 9999-12-31T23:59:59Z, the last instant RFC 3339 can write.
/// The real API documents no upper bound but refuses `expiration_ttl = u64::MAX`; its code
/// and message for that case are not documented, so the emulator answers with the closest
/// documented validation error (400/10021, worded like the documented lower-bound errors).
const MAX_EXPIRATION_SECS: u64 = 253_402_300_799;

fn to_api(ns: &NamespaceRec) -> Namespace {
    Namespace {
        id: ns.id.clone(),
        title: ns.title.clone(),
        supports_url_encoding: Some(true),
    }
}

pub fn find<'a>(data: &'a Data, id: &str) -> Result<&'a NamespaceRec, ApiError> {
    data.namespaces
        .get(&id.to_ascii_lowercase())
        .ok_or_else(ApiError::namespace_not_found)
}

pub fn find_mut<'a>(data: &'a mut Data, id: &str) -> Result<&'a mut NamespaceRec, ApiError> {
    data.namespaces
        .get_mut(&id.to_ascii_lowercase())
        .ok_or_else(ApiError::namespace_not_found)
}

#[derive(Deserialize)]
struct TitleBody {
    title: Option<String>,
}

fn validate_title(body: &[u8]) -> Result<String, ApiError> {
    let TitleBody { title } = parse_json(body)?;
    let title = title.unwrap_or_default();
    if title.trim().is_empty() {
        return Err(ApiError::validation("title must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::validation(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title)
}

fn duplicate_title(action: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        codes::DUPLICATE_TITLE,
        format!("{action} namespace: 'A namespace with this account ID and title already exists'"),
    )
}

/// `GET …/namespaces?page&per_page&order&direction`. Default order: `id` ascending.
pub async fn list_namespaces(
    State(state): State<AppState>,
    PathParams((_account,)): PathParams<(String,)>,
    q: QueryParams,
) -> ApiResult {
    let page = q.number("page", 1, 1, u32::MAX)?;
    let per_page = q.number("per_page", 20, 1, 1000)?;
    let by_title = match q.get("order").unwrap_or("id") {
        "id" => false,
        "title" => true,
        other => {
            return Err(ApiError::validation(format!(
                "Invalid order: {other:?} (id|title)"
            )))
        }
    };
    let descending = match q.get("direction").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        other => {
            return Err(ApiError::validation(format!(
                "Invalid direction: {other:?} (asc|desc)"
            )))
        }
    };
    let mut all: Vec<Namespace> = state
        .store
        .read(|d| d.namespaces.values().map(to_api).collect());
    if by_title {
        all.sort_by(|a, b| a.title.cmp(&b.title).then_with(|| a.id.cmp(&b.id)));
    }
    if descending {
        all.reverse();
    }
    let total = all.len();
    let start = (page as usize - 1).saturating_mul(per_page as usize);
    let items: Vec<Namespace> = all
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .collect();
    let info = ResultInfo {
        page: Some(page),
        per_page: Some(per_page),
        count: Some(u32::try_from(items.len()).unwrap_or(u32::MAX)),
        total_count: Some(u32::try_from(total).unwrap_or(u32::MAX)),
        cursor: None,
    };
    ok_list(items, info)
}

/// `POST …/namespaces` with `{title}` → the new namespace.
pub async fn create_namespace(
    State(state): State<AppState>,
    PathParams((_account,)): PathParams<(String,)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    let title = validate_title(&body)?;
    let created = state
        .store
        .mutate(|d| {
            if d.namespaces.values().any(|n| n.title == title) {
                return Err(duplicate_title("create"));
            }
            let id = loop {
                let id = random_id();
                if !d.namespaces.contains_key(&id) {
                    break id;
                }
            };
            let ns = NamespaceRec {
                id: id.clone(),
                title,
                values: Default::default(),
            };
            let api = to_api(&ns);
            d.namespaces.insert(id, ns);
            Ok(api)
        })
        .await?;
    ok(created)
}

/// 32 random lowercase hex characters.
fn random_id() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// `GET …/namespaces/{id}`.
pub async fn get_namespace(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let ns = state.store.read(|d| find(d, &id).map(to_api))?;
    ok(ns)
}

/// `PUT …/namespaces/{id}` with `{title}` → the renamed namespace (wrangler reads
/// `result.title`; the 2024 spec's empty result is not what clients need).
pub async fn rename_namespace(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let title = validate_title(&body)?;
    let renamed = state
        .store
        .mutate(|d| {
            let key = find(d, &id)?.id.clone();
            if d.namespaces
                .values()
                .any(|n| n.title == title && n.id != key)
            {
                return Err(duplicate_title("rename"));
            }
            let ns = find_mut(d, &key)?;
            ns.title = title;
            Ok(to_api(ns))
        })
        .await?;
    ok(renamed)
}

/// `DELETE …/namespaces/{id}` → `null`; 400/10052 while a script binds it.
pub async fn delete_namespace(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    state
        .store
        .mutate(|d| {
            let key = find(d, &id)?.id.clone();
            let bound = d.scripts_binding(&key);
            if !bound.is_empty() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::NAMESPACE_STILL_BOUND,
                    format!("namespace has associated scripts: {}", bound.join(", ")),
                ));
            }
            d.namespaces.remove(&key);
            Ok(())
        })
        .await?;
    ok_null()
}

/// `GET …/keys?prefix&cursor&limit`: keys in byte order; `result_info.cursor` is `""` on the
/// last page. The cursor is opaque to clients (hex of the last key returned).
pub async fn list_keys(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
    q: QueryParams,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let limit = q.number("limit", 1000, 10, 1000)? as usize;
    let prefix = q.get("prefix").unwrap_or("").to_owned();
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::validation("Invalid cursor"))?,
        ),
    };
    let now = now_secs();
    let (keys, more) = state.store.read(|d| {
        let ns = find(d, &id)?;
        let lower = match &after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        let mut matching = ns
            .values
            .range::<String, _>((lower, Bound::Unbounded))
            .skip_while(|(k, _)| k.as_str() < prefix.as_str())
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, v)| v.is_live(now))
            .map(|(k, v)| KvKey {
                name: k.clone(),
                expiration: v.expiration,
                metadata: v.metadata.clone(),
            });
        let keys: Vec<KvKey> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        Ok::<_, ApiError>((keys, more))
    })?;
    let cursor = match (more, keys.last()) {
        (true, Some(last)) => hex::encode(last.name.as_bytes()),
        _ => String::new(),
    };
    let info = ResultInfo {
        count: Some(u32::try_from(keys.len()).unwrap_or(u32::MAX)),
        cursor: Some(cursor),
        ..ResultInfo::default()
    };
    ok_list(keys, info)
}

/// `GET …/values/{key}` → the raw bytes (`application/octet-stream`), with an `expiration`
/// header (unix seconds) when the value expires; 404/10009 when missing or expired.
pub async fn get_value(
    State(state): State<AppState>,
    PathParams((account, id, key)): PathParams<(String, String, String)>,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let now = now_secs();
    let value = state.store.read(|d| {
        let ns = find(d, &id)?;
        ns.values
            .get(&key)
            .filter(|v| v.is_live(now))
            .cloned()
            .ok_or_else(ApiError::key_not_found)
    })?;
    let mut response: Response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        value.value,
    )
        .into_response();
    if let Some(exp) = value.expiration {
        response
            .headers_mut()
            .insert("expiration", HeaderValue::from(exp));
    }
    Ok(response)
}

/// `GET …/metadata/{key}` → the key's metadata (`null` when it has none); 404/10009 when missing.
pub async fn get_metadata(
    State(state): State<AppState>,
    PathParams((account, id, key)): PathParams<(String, String, String)>,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let now = now_secs();
    let metadata = state.store.read(|d| {
        let ns = find(d, &id)?;
        ns.values
            .get(&key)
            .filter(|v| v.is_live(now))
            .map(|v| v.metadata.clone())
            .ok_or_else(ApiError::key_not_found)
    })?;
    ok(metadata)
}

/// `PUT …/values/{key}?expiration&expiration_ttl`: body raw (any content type), or multipart
/// with part `value` and optional part `metadata` (JSON text). Answers `null`.
pub async fn put_value(
    State(state): State<AppState>,
    PathParams((account, id, key)): PathParams<(String, String, String)>,
    q: QueryParams,
    req: Request,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let (value, metadata) = if multipart::is_multipart(req.headers()) {
        let parts = multipart::read_parts(req).await?;
        let mut value = None;
        let mut metadata = None;
        for part in parts {
            match part.name.as_deref() {
                Some("value") => value = Some(part.data.to_vec()),
                Some("metadata") => {
                    let parsed: serde_json::Value = serde_json::from_slice(&part.data)
                        .map_err(|e| ApiError::validation(format!("Invalid metadata: {e}")))?;
                    metadata = Some(parsed);
                }
                _ => {}
            }
        }
        let value =
            value.ok_or_else(|| ApiError::validation("multipart body has no 'value' part"))?;
        (value, metadata)
    } else {
        let BodyBytes(body) = BodyBytes::read(req).await?;
        (body.to_vec(), None)
    };
    let expiration = parse_number_param(q.get("expiration"), "expiration")?;
    let ttl = parse_number_param(q.get("expiration_ttl"), "expiration_ttl")?;
    let record = validate_write(&key, value, expiration, ttl, metadata, now_secs())?;
    state
        .store
        .mutate(|d| {
            let ns = find_mut(d, &id)?;
            purge_expired(ns);
            ns.values.insert(key, record);
            Ok(())
        })
        .await?;
    ok_null()
}

fn parse_number_param(text: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::validation(format!("Invalid {name}: {t:?} is not an integer"))),
    }
}

/// Validates one write and builds its record. `ttl` wins over `expiration`.
pub fn validate_write(
    key: &str,
    value: Vec<u8>,
    expiration: Option<u64>,
    ttl: Option<u64>,
    metadata: Option<serde_json::Value>,
    now: u64,
) -> Result<ValueRec, ApiError> {
    validate_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::VALIDATION,
            format!(
                "Value length of {} exceeds limit of {MAX_VALUE_BYTES}.",
                value.len()
            ),
        ));
    }
    let expiration = match (ttl, expiration) {
        (Some(ttl), _) if ttl < MIN_TTL_SECS => {
            return Err(ApiError::validation(format!(
                "Invalid expiration_ttl of {ttl}. Expiration TTL must be at least {MIN_TTL_SECS}."
            )))
        }
        (Some(ttl), _) if ttl > MAX_EXPIRATION_SECS.saturating_sub(now) => {
            return Err(ApiError::validation(format!(
                "Invalid expiration_ttl of {ttl}. Expiration TTL must be at most {}.",
                MAX_EXPIRATION_SECS.saturating_sub(now)
            )))
        }
        (Some(ttl), _) => Some(now.saturating_add(ttl)),
        (None, Some(exp)) if exp < now.saturating_add(MIN_TTL_SECS) => {
            return Err(ApiError::validation(format!(
                "Invalid expiration of {exp}. Expiration times must be at least {MIN_TTL_SECS} seconds in the future."
            )))
        }
        (None, Some(exp)) if exp > MAX_EXPIRATION_SECS => {
            return Err(ApiError::validation(format!(
                "Invalid expiration of {exp}. Expiration times must be at most {MAX_EXPIRATION_SECS}."
            )))
        }
        (None, exp) => exp,
    };
    if let Some(m) = &metadata {
        let size = serde_json::to_vec(m).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > MAX_METADATA_BYTES {
            return Err(ApiError::validation(format!(
                "Metadata length of {size} exceeds limit of {MAX_METADATA_BYTES}."
            )));
        }
    }
    Ok(ValueRec {
        value,
        expiration,
        metadata: metadata.filter(|m| !m.is_null()),
    })
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key == "." || key == ".." {
        return Err(ApiError::validation(format!("Invalid key name: {key:?}")));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::validation(format!(
            "UTF-8 encoded length of {} exceeds key length limit of {MAX_KEY_BYTES}.",
            key.len()
        )));
    }
    Ok(())
}

pub fn purge_expired(ns: &mut NamespaceRec) {
    let now = now_secs();
    ns.values.retain(|_, v| v.is_live(now));
}

/// `DELETE …/values/{key}` → `null` (also when the key does not exist).
pub async fn delete_value(
    State(state): State<AppState>,
    PathParams((account, id, key)): PathParams<(String, String, String)>,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    state
        .store
        .mutate(|d| {
            let ns = find_mut(d, &id)?;
            ns.values.remove(&key);
            Ok(())
        })
        .await?;
    ok_null()
}

/// Answers `Err` unless `id` is a well-formed namespace id (32 hex characters): the real API
/// gateway does not route malformed ids (404, code 7003).
pub fn check_namespace_id(account: &str, id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            crate::cloudflare::types::codes::NO_ROUTE,
            format!(
                "Could not route to /client/v4/accounts/{account}/storage/kv/namespaces/{id}, perhaps your object identifier is invalid?"
            ),
        ))
    }
}
