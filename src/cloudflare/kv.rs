//! Workers KV operations: namespaces (`/accounts/{a}/storage/kv/namespaces`) and keys,
//! values and metadata below them. See API-NOTES §1.1–1.2.

use bytes::Bytes;
use reqwest::Method;
use serde_json::json;

use super::client::{segment, Body, Client, FormPart, Request};
use super::error::{ApiError, ErrorKind};
use super::types::{codes, KvKey, Namespace};

/// Namespaces requested per page by [`Client::list_namespaces`] (the newer API's maximum).
pub const NAMESPACE_PAGE_SIZE: u32 = 1000;

/// Keys requested per page by [`Client::list_keys`] (the API's maximum; minimum is 10).
pub const KEY_PAGE_SIZE: u32 = 1000;

/// Safety stop for pagination loops that never end (a server ignoring `page` / `cursor`).
const MAX_PAGES: u32 = 10_000;

/// A value write: the bytes, optional expiry and optional metadata.
///
/// `expiration` is absolute (unix seconds); `expiration_ttl` is relative (seconds, the API
/// requires at least 60) and wins when both are set. `metadata` is any JSON (the API caps
/// its serialized size at 1024 bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueWrite {
    pub value: Vec<u8>,
    pub expiration: Option<u64>,
    pub expiration_ttl: Option<u64>,
    pub metadata: Option<serde_json::Value>,
}

impl ValueWrite {
    /// A write of `value` that never expires and carries no metadata.
    pub fn new(value: impl Into<Vec<u8>>) -> ValueWrite {
        ValueWrite {
            value: value.into(),
            ..ValueWrite::default()
        }
    }
}

impl Client {
    fn namespaces_path(&self) -> String {
        format!("{}/storage/kv/namespaces", self.account_path())
    }

    fn namespace_path(&self, op: &'static str, id: &str) -> Result<String, ApiError> {
        Ok(format!(
            "{}/{}",
            self.namespaces_path(),
            segment(op, "namespace id", id)?
        ))
    }

    fn key_path(
        &self,
        op: &'static str,
        ns: &str,
        kind: &str,
        key: &str,
    ) -> Result<String, ApiError> {
        Ok(format!(
            "{}/{kind}/{}",
            self.namespace_path(op, ns)?,
            segment(op, "key", key)?
        ))
    }

    /// All namespaces of the account, ordered by title. Requests `per_page=1000` pages
    /// (`order=title&direction=asc`) until a page shorter than that (or empty) arrives;
    /// `total_count` is never trusted.
    pub async fn list_namespaces(&self) -> Result<Vec<Namespace>, ApiError> {
        self.list_namespaces_paged(NAMESPACE_PAGE_SIZE).await
    }

    /// [`Client::list_namespaces`] with a chosen page size. Exposed only so integration
    /// tests can exercise multi-page listing without creating thousands of namespaces.
    #[doc(hidden)]
    pub async fn list_namespaces_paged(&self, per_page: u32) -> Result<Vec<Namespace>, ApiError> {
        const OP: &str = "list_namespaces";
        let per_page = per_page.max(1);
        let mut all: Vec<Namespace> = Vec::new();
        for page in 1..=MAX_PAGES {
            let req = Request::new(OP, Method::GET, self.namespaces_path())
                .query("page", page.to_string())
                .query("per_page", per_page.to_string())
                .query("order", "title")
                .query("direction", "asc");
            let (result, _info) = self.call_envelope::<Vec<Namespace>>(req).await?;
            let items = result.unwrap_or_default();
            let short = items.len() < per_page as usize;
            all.extend(items);
            if short {
                return Ok(all);
            }
        }
        Err(ApiError::new(
            OP,
            ErrorKind::Invalid,
            format!("namespace list did not end after {MAX_PAGES} pages"),
        ))
    }

    /// One namespace by id. `NotFound` (10013) when it does not exist.
    pub async fn get_namespace(&self, id: &str) -> Result<Namespace, ApiError> {
        const OP: &str = "get_namespace";
        self.call(Request::new(OP, Method::GET, self.namespace_path(OP, id)?))
            .await
    }

    /// Creates a namespace. `AlreadyExists` (10014) when the title is taken. A retried create
    /// whose first attempt timed out after being applied also ends in `AlreadyExists`.
    pub async fn create_namespace(&self, title: &str) -> Result<Namespace, ApiError> {
        const OP: &str = "create_namespace";
        let req = Request::new(OP, Method::POST, self.namespaces_path())
            .json(&json!({ "title": title }))?;
        self.call(req).await
    }

    /// Renames a namespace (its id and data are unchanged). Returns the namespace; when the
    /// API answers with a null/empty result (2024 spec), `{id, title}` is returned instead.
    pub async fn rename_namespace(&self, id: &str, title: &str) -> Result<Namespace, ApiError> {
        const OP: &str = "rename_namespace";
        let req = Request::new(OP, Method::PUT, self.namespace_path(OP, id)?)
            .json(&json!({ "title": title }))?;
        let (result, _) = self.call_envelope::<serde_json::Value>(req).await?;
        let fallback = || Namespace {
            id: id.to_owned(),
            title: title.to_owned(),
            supports_url_encoding: None,
        };
        Ok(match result {
            Some(v) if v.is_object() && v.get("id").is_some() => {
                serde_json::from_value(v).unwrap_or_else(|_| fallback())
            }
            _ => fallback(),
        })
    }

    /// Deletes a namespace and all its pairs. `Invalid` (10052) while a Worker binds it.
    pub async fn delete_namespace(&self, id: &str) -> Result<(), ApiError> {
        const OP: &str = "delete_namespace";
        let req = Request::new(OP, Method::DELETE, self.namespace_path(OP, id)?);
        self.call_envelope::<serde_json::Value>(req).await?;
        Ok(())
    }

    /// All keys of namespace `ns` (optionally only those starting with `prefix`), following
    /// `result_info.cursor` until it is empty or absent.
    pub async fn list_keys(&self, ns: &str, prefix: Option<&str>) -> Result<Vec<KvKey>, ApiError> {
        self.list_keys_paged(ns, prefix, KEY_PAGE_SIZE).await
    }

    /// [`Client::list_keys`] with a chosen page size (`limit`, clamped to 10..=1000). Exposed
    /// only so integration tests can exercise cursor pagination cheaply.
    #[doc(hidden)]
    pub async fn list_keys_paged(
        &self,
        ns: &str,
        prefix: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KvKey>, ApiError> {
        const OP: &str = "list_keys";
        let path = format!("{}/keys", self.namespace_path(OP, ns)?);
        let limit = limit.clamp(10, 1000);
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req =
                Request::new(OP, Method::GET, path.clone()).query("limit", limit.to_string());
            if let Some(prefix) = prefix {
                req = req.query("prefix", prefix);
            }
            if let Some(c) = &cursor {
                req = req.query("cursor", c.clone());
            }
            let (result, info) = self.call_envelope::<Vec<KvKey>>(req).await?;
            all.extend(result.unwrap_or_default());
            let next = info.and_then(|i| i.cursor).filter(|c| !c.is_empty());
            match next {
                None => return Ok(all),
                Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                    return Err(ApiError::new(
                        OP,
                        ErrorKind::Invalid,
                        "key list returned the same cursor twice",
                    ))
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(ApiError::new(
            OP,
            ErrorKind::Invalid,
            format!("key list did not end after {MAX_PAGES} pages"),
        ))
    }

    /// Reads a value: `Some((bytes, expiration))` with `expiration` in unix seconds from the
    /// `expiration` header, or `None` when the key does not exist (404 / 10009). A missing
    /// namespace is an error (`NotFound`, 10013), not `None`.
    pub async fn get_value(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Option<u64>)>, ApiError> {
        const OP: &str = "get_value";
        let req = Request::new(OP, Method::GET, self.key_path(OP, ns, "values", key)?).raw();
        match self.send(req).await {
            Ok(resp) => {
                let expiration = resp
                    .header("expiration")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                Ok(Some((resp.body.to_vec(), expiration)))
            }
            Err(e) if e.has_code(codes::KEY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a value. Without metadata the body is the raw bytes
    /// (`application/octet-stream`); with metadata it is `multipart/form-data` with parts
    /// `value` and `metadata` (JSON text). `expiration` / `expiration_ttl` go in the query.
    pub async fn put_value(&self, ns: &str, key: &str, write: &ValueWrite) -> Result<(), ApiError> {
        const OP: &str = "put_value";
        let mut req = Request::new(OP, Method::PUT, self.key_path(OP, ns, "values", key)?);
        if let Some(exp) = write.expiration {
            req = req.query("expiration", exp.to_string());
        }
        if let Some(ttl) = write.expiration_ttl {
            req = req.query("expiration_ttl", ttl.to_string());
        }
        let data = Bytes::from(write.value.clone());
        let body = match &write.metadata {
            None => Body::Raw {
                content_type: "application/octet-stream",
                data,
            },
            Some(metadata) => {
                let meta = serde_json::to_vec(metadata).map_err(|e| {
                    ApiError::new(
                        OP,
                        ErrorKind::Invalid,
                        format!("cannot encode metadata: {e}"),
                    )
                })?;
                Body::Multipart(vec![
                    FormPart {
                        name: "value".to_owned(),
                        filename: None,
                        content_type: None,
                        data,
                    },
                    FormPart {
                        name: "metadata".to_owned(),
                        filename: None,
                        content_type: None,
                        data: Bytes::from(meta),
                    },
                ])
            }
        };
        self.call_envelope::<serde_json::Value>(req.body(body))
            .await?;
        Ok(())
    }

    /// Deletes a key. Deleting a key that does not exist succeeds (as on the real API).
    pub async fn delete_value(&self, ns: &str, key: &str) -> Result<(), ApiError> {
        const OP: &str = "delete_value";
        let req = Request::new(OP, Method::DELETE, self.key_path(OP, ns, "values", key)?);
        self.call_envelope::<serde_json::Value>(req).await?;
        Ok(())
    }

    /// A key's metadata. `None` both when the key has no metadata (`result: null`) and when the
    /// key does not exist (404 / 10009); use [`Client::get_value`] or [`Client::list_keys`] to
    /// tell them apart. A missing namespace is an error.
    pub async fn get_metadata(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        const OP: &str = "get_metadata";
        let req = Request::new(OP, Method::GET, self.key_path(OP, ns, "metadata", key)?);
        match self.call_envelope::<serde_json::Value>(req).await {
            Ok((result, _)) => Ok(result.filter(|v| !v.is_null())),
            Err(e) if e.has_code(codes::KEY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
