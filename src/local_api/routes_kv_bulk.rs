//! KV bulk operations (`/accounts/{a}/storage/kv/namespaces/{ns}/bulk…`): write and delete up
//! to 10,000 items at once, all or nothing, and read up to 100 keys (`bulk/get`). Items are
//! validated as single writes are ([`super::routes_kv`]).

use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::app_state::AppState;
use super::envelope::{ok, parse_json, ApiError, ApiResult};
use super::extract::{BodyBytes, PathParams};
use super::routes_kv::{check_namespace_id, find, find_mut, purge_expired, validate_write};
use super::state::{now_secs, ValueRec};

/// Most items of one bulk write or delete.
const MAX_BULK_ITEMS: usize = 10_000;

#[derive(Deserialize)]
struct BulkItem {
    key: String,
    value: String,
    #[serde(default)]
    base64: bool,
    #[serde(default)]
    expiration: Option<u64>,
    #[serde(default)]
    expiration_ttl: Option<u64>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

/// Result of the bulk endpoints.
#[derive(Serialize)]
struct BulkResult {
    successful_key_count: usize,
    unsuccessful_keys: Vec<String>,
}

fn check_bulk_len(n: usize) -> Result<(), ApiError> {
    if n > MAX_BULK_ITEMS {
        return Err(ApiError::validation(format!(
            "Too many items: {n} (at most {MAX_BULK_ITEMS})"
        )));
    }
    Ok(())
}

/// `PUT …/bulk` with `[{key, value, base64?, expiration?, expiration_ttl?, metadata?}]`: all or
/// nothing — one invalid item rejects the request.
pub async fn bulk_write(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let items: Vec<BulkItem> = parse_json(&body)?;
    check_bulk_len(items.len())?;
    let now = now_secs();
    let mut records = Vec::with_capacity(items.len());
    for item in items {
        let value = if item.base64 {
            base64::engine::general_purpose::STANDARD
                .decode(item.value.as_bytes())
                .map_err(|e| {
                    ApiError::validation(format!(
                        "Invalid base64 value for key {:?}: {e}",
                        item.key
                    ))
                })?
        } else {
            item.value.into_bytes()
        };
        let record = validate_write(
            &item.key,
            value,
            item.expiration,
            item.expiration_ttl,
            item.metadata,
            now,
        )?;
        records.push((item.key, record));
    }
    let count = records.len();
    state
        .store
        .mutate(|d| {
            let ns = find_mut(d, &id)?;
            purge_expired(ns);
            ns.values.extend(records);
            Ok(())
        })
        .await?;
    ok(BulkResult {
        successful_key_count: count,
        unsuccessful_keys: Vec::new(),
    })
}

/// `DELETE …/bulk` (deprecated, wrangler) and `POST …/bulk/delete` (SDKs) with a JSON array of
/// key names. Missing keys count as deleted.
pub async fn bulk_delete(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let keys: Vec<String> = parse_json(&body)?;
    check_bulk_len(keys.len())?;
    let count = keys.len();
    state
        .store
        .mutate(|d| {
            let ns = find_mut(d, &id)?;
            for key in &keys {
                ns.values.remove(key);
            }
            Ok(())
        })
        .await?;
    ok(BulkResult {
        successful_key_count: count,
        unsuccessful_keys: Vec::new(),
    })
}

/// Most keys one `bulk/get` may ask for.
const MAX_BULK_GET_KEYS: usize = 100;

#[derive(Deserialize)]
struct BulkGetBody {
    keys: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, rename = "withMetadata")]
    with_metadata: Option<bool>,
}

/// `POST …/bulk/get` with `{keys: [1..=100], type?: "text"|"json", withMetadata?: bool}` →
/// `{values: {key: value}}`, or with metadata `{values: {key: {value, metadata, expiration?}}}`;
/// missing (or expired) keys map to `null`. Values must be UTF-8 text ("Binary values are not
/// supported"), and with `type: "json"` valid JSON, else the request is 400/10021 (as the
/// runtime's bulk read answers). Newer than the 2024 slice (API-NOTES §1.2); the SDKs'
/// `bulk_get`/`bulkGet` and `wrangler kv bulk get` call it.
pub async fn bulk_get(
    State(state): State<AppState>,
    PathParams((account, id)): PathParams<(String, String)>,
    BodyBytes(body): BodyBytes,
) -> ApiResult {
    check_namespace_id(&account, &id)?;
    let BulkGetBody {
        keys,
        kind,
        with_metadata,
    } = parse_json(&body)?;
    let as_json = match kind.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "\"{other}\" is not a valid type. Use \"json\" or \"text\""
            )))
        }
    };
    if keys.is_empty() {
        return Err(ApiError::validation("You must request a minimum of 1 key"));
    }
    if keys.len() > MAX_BULK_GET_KEYS {
        return Err(ApiError::validation(format!(
            "You can request a maximum of {MAX_BULK_GET_KEYS} keys"
        )));
    }
    let with_metadata = with_metadata.unwrap_or(false);
    let now = now_secs();
    let found: Vec<(String, Option<ValueRec>)> = state.store.read(|d| {
        let ns = find(d, &id)?;
        Ok::<_, ApiError>(
            keys.iter()
                .map(|k| {
                    let v = ns.values.get(k).filter(|v| v.is_live(now)).cloned();
                    (k.clone(), v)
                })
                .collect(),
        )
    })?;
    let mut values = serde_json::Map::with_capacity(found.len());
    for (key, rec) in found {
        let Some(rec) = rec else {
            values.insert(key, serde_json::Value::Null);
            continue;
        };
        let kind_name = if as_json { "json" } else { "text" };
        let non_kind = || {
            ApiError::validation(format!(
                "At least one of the requested keys corresponds to a non-{kind_name} value"
            ))
        };
        let text = String::from_utf8(rec.value).map_err(|_| non_kind())?;
        let value = if as_json {
            serde_json::from_str(&text).map_err(|_| non_kind())?
        } else {
            serde_json::Value::String(text)
        };
        let entry = if with_metadata {
            let mut obj = serde_json::Map::new();
            obj.insert("value".into(), value);
            obj.insert(
                "metadata".into(),
                rec.metadata.unwrap_or(serde_json::Value::Null),
            );
            if let Some(exp) = rec.expiration {
                obj.insert("expiration".into(), exp.into());
            }
            serde_json::Value::Object(obj)
        } else {
            value
        };
        values.insert(key, entry);
    }
    ok(serde_json::json!({ "values": values }))
}
