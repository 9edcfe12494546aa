//! workerd's KV binding protocol, served over the local API's own KV state, so that a Worker
//! run by the local edge (`lumierd run --serve`) reads and writes the same namespaces that the
//! v4 API (`…/storage/kv/namespaces/{id}/values/{key}`), `status` and the SDKs see.
//!
//! workerd turns each `env.NS` call into an HTTP request to the service a `kvNamespace`
//! binding names (`src/workerd/api/kv.c++`); the edge points that service here and injects the
//! namespace id as the [`NAMESPACE_HEADER`] header. The protocol:
//!
//! | call | request | answer |
//! | --- | --- | --- |
//! | `get`, `getWithMetadata` | `GET /{key}?urlencoded=true` | 200 raw bytes, metadata JSON in `CF-KV-Metadata`; 404 when missing or expired |
//! | `put` | `PUT /{key}?urlencoded=true[&expiration=S][&expiration_ttl=S]`, metadata JSON in `CF-KV-Metadata`, body = value | 200 (400 with the v4 API's message on a bad TTL, key or size) |
//! | `delete` | `DELETE /{key}?urlencoded=true` | 200, also when missing |
//! | `list` | `GET /?prefix=&key_count_limit=&cursor=` | `{keys:[{name, expiration?, metadata? (JSON text)}], list_complete, cursor?}` |
//! | `get([keys])` | `POST /bulk/get` `{keys, type?, withMetadata?}` | `{key: value \| null}` or `{key: {value, metadata}}` |
//!
//! Keys are percent-encoded in the path (one segment: a `/` in a key arrives as `%2F`, so
//! `/bulk/get` is never a key). Writes go through the v4 API's own validation and persistence
//! (same limits, same `expiration_ttl` ≥ 60 rule). An unknown or missing namespace id answers
//! 500, which the Worker sees as a thrown `KV … failed: 500`.
//!
//! This listener has no authentication: it is bound to loopback by the edge and reachable by
//! anything on the machine, like the embedded v4 API's sandbox token. Its requests bypass the
//! v4 pipeline (no fault injection, rate limit or request log): they are the runtime's, not a
//! client's.

use std::collections::HashMap;
use std::ops::Bound;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;

use super::routes_kv::validate_write;
use super::state::{now_secs, Store, ValueRec};
use super::LocalApi;

/// The request header carrying the namespace id (the edge's workerd config injects it).
pub const NAMESPACE_HEADER: &str = "x-lumierd-kv-namespace";
/// The header carrying a value's metadata as JSON, both ways.
const METADATA_HEADER: &str = "cf-kv-metadata";
/// Most keys one `list` returns (the runtime's limit).
const MAX_LIST: usize = 1000;
/// Largest request body read (a value is at most 25 MiB).
const MAX_BODY: usize = 26 * 1024 * 1024;

impl LocalApi {
    /// The KV binding protocol over this API's KV state, as an axum router to serve on a
    /// loopback listener of its own (see the module doc).
    pub fn kv_binding_router(&self) -> Router {
        Router::new()
            .fallback(handle)
            .with_state(self.inner.store.clone())
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
    }
}

/// A protocol-level failure: status and a short plain-text reason (workerd shows the status).
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<super::envelope::ApiError> for Fail {
    fn from(e: super::envelope::ApiError) -> Self {
        Fail(e.status, e.message)
    }
}

async fn handle(State(store): State<Store>, req: Request) -> Response {
    match dispatch(store, req).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn dispatch(store: Store, req: Request) -> Result<Response, Fail> {
    let namespace = req
        .headers()
        .get(NAMESPACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| Fail(StatusCode::INTERNAL_SERVER_ERROR, "no namespace id".into()))?;
    let query: HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|Query(q)| q)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, e.to_string()))?;
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| Fail(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
    if method == Method::POST && raw_path == "/bulk/get" {
        return bulk_get(&store, &namespace, &body);
    }
    let key = percent_decode(raw_path.strip_prefix('/').unwrap_or(&raw_path))
        .ok_or_else(|| Fail(StatusCode::BAD_REQUEST, "key is not UTF-8".into()))?;
    match (method, key.is_empty()) {
        (Method::GET, true) => list(&store, &namespace, &query),
        (Method::GET, false) => get(&store, &namespace, &key),
        (Method::PUT, false) => put(&store, namespace, key, &query, &headers, body).await,
        (Method::DELETE, false) => delete(&store, namespace, key).await,
        _ => Err(Fail(StatusCode::METHOD_NOT_ALLOWED, "not a KV call".into())),
    }
}

fn unknown_namespace(id: &str) -> Fail {
    Fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("namespace {id} not found"),
    )
}

fn get(store: &Store, ns: &str, key: &str) -> Result<Response, Fail> {
    let now = now_secs();
    let found = store.read(|d| {
        d.namespaces
            .get(ns)
            .map(|n| n.values.get(key).filter(|v| v.is_live(now)).cloned())
    });
    let Some(found) = found else {
        return Err(unknown_namespace(ns));
    };
    let Some(rec) = found else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut builder = Response::builder().status(StatusCode::OK);
    if let Some(meta) = &rec.metadata {
        builder = builder.header(METADATA_HEADER, meta.to_string());
    }
    builder
        .body(Body::from(rec.value))
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Fail> {
    match query.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Fail(StatusCode::BAD_REQUEST, format!("invalid {name}: {v:?}"))),
    }
}

async fn put(
    store: &Store,
    ns: String,
    key: String,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Fail> {
    let metadata = match headers.get(METADATA_HEADER) {
        None => None,
        Some(v) => Some(serde_json::from_slice(v.as_bytes()).map_err(|e| {
            Fail(
                StatusCode::BAD_REQUEST,
                format!("metadata is not JSON: {e}"),
            )
        })?),
    };
    let rec = validate_write(
        &key,
        body.to_vec(),
        number(query, "expiration")?,
        number(query, "expiration_ttl")?,
        metadata,
        now_secs(),
    )?;
    let stored = store
        .mutate(move |d| {
            Ok(d.namespaces.get_mut(&ns).map(|n| {
                n.values.insert(key, rec);
            }))
        })
        .await?;
    match stored {
        Some(()) => Ok(StatusCode::OK.into_response()),
        None => Err(Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "namespace not found".into(),
        )),
    }
}

async fn delete(store: &Store, ns: String, key: String) -> Result<Response, Fail> {
    let found = store
        .mutate(move |d| {
            Ok(d.namespaces.get_mut(&ns).map(|n| {
                n.values.remove(&key);
            }))
        })
        .await?;
    match found {
        Some(()) => Ok(StatusCode::OK.into_response()),
        None => Err(Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "namespace not found".into(),
        )),
    }
}

fn list(store: &Store, ns: &str, query: &HashMap<String, String>) -> Result<Response, Fail> {
    let limit = number(query, "key_count_limit")?
        .map(|n| (n as usize).clamp(1, MAX_LIST))
        .unwrap_or(MAX_LIST);
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let after = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Fail(StatusCode::BAD_REQUEST, "invalid cursor".into()))?,
        ),
    };
    let now = now_secs();
    let page = store.read(|d| {
        let n = d.namespaces.get(ns)?;
        let lower = match &after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        let mut matching = n
            .values
            .range::<String, _>((lower, Bound::Unbounded))
            .skip_while(|(k, _)| k.as_str() < prefix.as_str())
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, v)| v.is_live(now));
        let keys: Vec<(String, ValueRec)> = matching
            .by_ref()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let more = matching.next().is_some();
        Some((keys, more))
    });
    let Some((keys, more)) = page else {
        return Err(unknown_namespace(ns));
    };
    let cursor = match (more, keys.last()) {
        (true, Some((last, _))) => Some(hex::encode(last.as_bytes())),
        _ => None,
    };
    let keys: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(name, v)| {
            let mut o = serde_json::Map::new();
            o.insert("name".into(), name.into());
            if let Some(exp) = v.expiration {
                o.insert("expiration".into(), exp.into());
            }
            if let Some(meta) = v.metadata {
                // workerd parses a string here as JSON (kv.c++ parseListMetadata).
                o.insert("metadata".into(), meta.to_string().into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let mut out = serde_json::json!({ "keys": keys, "list_complete": cursor.is_none() });
    if let Some(c) = cursor {
        out["cursor"] = c.into();
    }
    Ok(axum::Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkGet {
    keys: Vec<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    with_metadata: bool,
}

fn bulk_get(store: &Store, ns: &str, body: &[u8]) -> Result<Response, Fail> {
    let req: BulkGet = serde_json::from_slice(body)
        .map_err(|e| Fail(StatusCode::BAD_REQUEST, format!("bad bulk get: {e}")))?;
    let as_json = req.kind.as_deref() == Some("json");
    let now = now_secs();
    let found = store.read(|d| {
        let n = d.namespaces.get(ns)?;
        Some(
            req.keys
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        n.values.get(k).filter(|v| v.is_live(now)).cloned(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    });
    let Some(found) = found else {
        return Err(unknown_namespace(ns));
    };
    let mut out = serde_json::Map::new();
    for (key, rec) in found {
        let entry = match rec {
            None => serde_json::Value::Null,
            Some(rec) => {
                let text = String::from_utf8(rec.value).map_err(|_| {
                    Fail(
                        StatusCode::BAD_REQUEST,
                        "binary values are not supported".into(),
                    )
                })?;
                let value = if as_json {
                    serde_json::from_str(&text).map_err(|_| {
                        Fail(StatusCode::BAD_REQUEST, format!("{key:?} is not JSON"))
                    })?
                } else {
                    serde_json::Value::String(text)
                };
                if req.with_metadata {
                    serde_json::json!({ "value": value, "metadata": rec.metadata })
                } else {
                    value
                }
            }
        };
        out.insert(key, entry);
    }
    Ok(axum::Json(serde_json::Value::Object(out)).into_response())
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8. A `%` not followed by two hex
/// digits is kept as is.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_of_key_paths() {
        for (raw, key) in [
            ("plain", Some("plain")),
            ("a%2Fb", Some("a/b")),
            ("user%3A1", Some("user:1")),
            ("%E2%9C%93", Some("✓")),
            ("50%", Some("50%")),
            ("%zz", Some("%zz")),
            ("%FF", None),
        ] {
            assert_eq!(percent_decode(raw).as_deref(), key, "{raw}");
        }
    }
}
