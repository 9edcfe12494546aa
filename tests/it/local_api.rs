//! The local Cloudflare-compatible API, exercised over loopback with `reqwest`: envelopes,
//! error codes, pagination, KV values, Worker uploads as real clients send them, settings,
//! faults, rate limiting, persistence, the request log, and conformance with the official
//! OpenAPI slice in `tests/data/cloudflare-openapi-subset.json` (see tests/data/README.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumierd::local_api::{
    served_routes, Faults, LocalApi, LocalApiConfig, LocalApiError, RateLimitModel,
    DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, REQUEST_LOG_MEMORY_BYTES, REQUEST_LOG_MEMORY_ENTRIES,
};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::timeout;

use crate::support::{eventually, Api};

/// Upper bound for any single await in these tests.
const STEP: Duration = Duration::from_secs(20);

/// The kit's [`Api`] with this file's request helpers; stopped by [`Server::stop`] (or, if a
/// test fails first, when dropped).
struct Server {
    api: LocalApi,
    /// `http://127.0.0.1:PORT/client/v4`
    root: String,
    http: reqwest::Client,
    kit: Api,
}

fn config() -> LocalApiConfig {
    LocalApiConfig {
        token: DEFAULT_TOKEN.to_owned(),
        account_id: DEFAULT_ACCOUNT_ID.to_owned(),
        data_dir: None,
        faults: Faults::default(),
        request_log: None,
    }
}

impl Server {
    async fn start(config: LocalApiConfig) -> Server {
        let kit = Api::start_with(config).await;
        Server {
            api: kit.local.clone(),
            root: kit.base.clone(),
            http: kit.http.clone(),
            kit,
        }
    }

    async fn stop(self) {
        self.kit.stop().await;
    }

    /// URL of `path` under `/accounts/{DEFAULT_ACCOUNT_ID}`.
    fn acct(&self, path: &str) -> String {
        format!("{}/accounts/{DEFAULT_ACCOUNT_ID}{path}", self.root)
    }

    fn req(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(DEFAULT_TOKEN)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> reqwest::Response {
        timeout(STEP, rb.send())
            .await
            .expect("request in time")
            .expect("request sent")
    }

    /// Sends and parses the JSON envelope; returns (status, body).
    async fn json(&self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = self.send(rb).await;
        let status = resp.status();
        let text = timeout(STEP, resp.text())
            .await
            .expect("body in time")
            .expect("body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {status} {text}"));
        (status, body)
    }

    /// A successful envelope's `result`.
    async fn ok(&self, rb: reqwest::RequestBuilder) -> Value {
        let (status, body) = self.json(rb).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true, "{body}");
        assert_eq!(body["errors"], json!([]), "{body}");
        body["result"].clone()
    }

    /// Asserts an error envelope with `status` and `code`; returns its message.
    async fn err(&self, rb: reqwest::RequestBuilder, status: u16, code: u64) -> String {
        let (got, body) = self.json(rb).await;
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["result"], Value::Null, "{body}");
        assert_eq!(body["errors"][0]["code"], code, "{body}");
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn create_ns(&self, title: &str) -> String {
        let ns = self
            .ok(self
                .req(Method::POST, &self.acct("/storage/kv/namespaces"))
                .json(&json!({ "title": title })))
            .await;
        assert_eq!(ns["title"], title);
        ns["id"].as_str().expect("id").to_owned()
    }

    async fn bytes(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self.send(rb).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = timeout(STEP, resp.bytes())
            .await
            .expect("body in time")
            .expect("body");
        (status, headers, body.to_vec())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Percent-encodes everything but unreserved characters (like `encodeURIComponent`).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn is_hex32(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------------------------------------
// KV namespaces
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn namespace_crud_duplicates_and_not_found() {
    let s = Server::start(config()).await;
    let id = s.create_ns("alpha").await;
    assert!(is_hex32(&json!(id)), "{id}");
    assert_eq!(id, id.to_ascii_lowercase());

    let got = s
        .ok(s.req(
            Method::GET,
            &s.acct(&format!("/storage/kv/namespaces/{id}")),
        ))
        .await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["title"], "alpha");

    // Duplicate title on create.
    let msg = s
        .err(
            s.req(Method::POST, &s.acct("/storage/kv/namespaces"))
                .json(&json!({"title": "alpha"})),
            400,
            10014,
        )
        .await;
    assert!(
        msg.contains("A namespace with this account ID and title already exists"),
        "{msg}"
    );
    // Invalid titles.
    s.err(
        s.req(Method::POST, &s.acct("/storage/kv/namespaces"))
            .json(&json!({"title": ""})),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(Method::POST, &s.acct("/storage/kv/namespaces"))
            .json(&json!({"title": "x".repeat(513)})),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(Method::POST, &s.acct("/storage/kv/namespaces"))
            .body("{not json"),
        400,
        10021,
    )
    .await;

    // Rename answers the namespace object; a taken title is 10014.
    let renamed = s
        .ok(s
            .req(
                Method::PUT,
                &s.acct(&format!("/storage/kv/namespaces/{id}")),
            )
            .json(&json!({"title": "beta"})))
        .await;
    assert_eq!(
        renamed,
        json!({"id": id, "title": "beta", "supports_url_encoding": true})
    );
    let other = s.create_ns("gamma").await;
    s.err(
        s.req(
            Method::PUT,
            &s.acct(&format!("/storage/kv/namespaces/{other}")),
        )
        .json(&json!({"title": "beta"})),
        400,
        10014,
    )
    .await;

    // Unknown well-formed id → 10013; malformed id → gateway 7003.
    let unknown = "0123456789abcdef0123456789abcdef";
    for method in [Method::GET, Method::DELETE] {
        s.err(
            s.req(
                method,
                &s.acct(&format!("/storage/kv/namespaces/{unknown}")),
            ),
            404,
            10013,
        )
        .await;
    }
    s.err(
        s.req(
            Method::GET,
            &s.acct(&format!("/storage/kv/namespaces/{unknown}/keys")),
        ),
        404,
        10013,
    )
    .await;
    s.err(
        s.req(Method::GET, &s.acct("/storage/kv/namespaces/not-an-id")),
        404,
        7003,
    )
    .await;

    // Delete answers null; the namespace is gone.
    let (status, body) = s
        .json(s.req(
            Method::DELETE,
            &s.acct(&format!("/storage/kv/namespaces/{id}")),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], true);
    assert_eq!(body["result"], Value::Null);
    s.err(
        s.req(
            Method::GET,
            &s.acct(&format!("/storage/kv/namespaces/{id}")),
        ),
        404,
        10013,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn namespace_list_pagination() {
    let s = Server::start(config()).await;
    let mut titles: Vec<String> = (0..7).map(|i| format!("ns-{i}")).collect();
    // Create out of order: listing by title must sort.
    for t in titles.iter().rev() {
        s.create_ns(t).await;
    }
    let list = |page: u32, per_page: u32, dir: &str| {
        s.req(
            Method::GET,
            &s.acct(&format!(
                "/storage/kv/namespaces?page={page}&per_page={per_page}&order=title&direction={dir}"
            )),
        )
    };
    let mut seen = Vec::new();
    for (page, expected) in [(1u32, 3usize), (2, 3), (3, 1), (4, 0)] {
        let (status, body) = s.json(list(page, 3, "asc")).await;
        assert_eq!(status, 200, "{body}");
        let items = body["result"].as_array().expect("array");
        assert_eq!(items.len(), expected, "page {page}: {body}");
        assert_eq!(
            body["result_info"],
            json!({"page": page, "per_page": 3, "count": expected, "total_count": 7})
        );
        seen.extend(
            items
                .iter()
                .map(|n| n["title"].as_str().unwrap_or("").to_owned()),
        );
    }
    assert_eq!(seen, titles);

    let desc = s.ok(list(1, 1000, "desc")).await;
    titles.reverse();
    let got: Vec<&str> = desc
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n["title"].as_str())
        .collect();
    assert_eq!(got, titles);

    // Defaults: page 1, per_page 20.
    let (_, body) = s
        .json(s.req(Method::GET, &s.acct("/storage/kv/namespaces")))
        .await;
    assert_eq!(body["result_info"]["per_page"], 20);
    assert_eq!(body["result_info"]["page"], 1);
    assert_eq!(body["result"].as_array().map(Vec::len), Some(7));

    for bad in [
        "per_page=0",
        "per_page=1001",
        "page=0",
        "page=x",
        "order=size",
        "direction=up",
    ] {
        s.err(
            s.req(
                Method::GET,
                &s.acct(&format!("/storage/kv/namespaces?{bad}")),
            ),
            400,
            10021,
        )
        .await;
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// KV keys and values
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn key_list_cursor_prefix_and_limits() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("keys").await;
    let mut items: Vec<Value> = (0..25)
        .map(|i| json!({"key": format!("k/{i:02}"), "value": "v"}))
        .collect();
    items.extend((0..5).map(|i| json!({"key": format!("other/{i}"), "value": "v"})));
    let written = s
        .ok(s
            .req(
                Method::PUT,
                &s.acct(&format!("/storage/kv/namespaces/{ns}/bulk")),
            )
            .json(&items))
        .await;
    assert_eq!(written["successful_key_count"], 30);

    let mut names = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let url = s.acct(&format!(
            "/storage/kv/namespaces/{ns}/keys?prefix=k%2F&limit=10&cursor={}",
            enc(&cursor)
        ));
        let (status, body) = s.json(s.req(Method::GET, &url)).await;
        assert_eq!(status, 200, "{body}");
        let page = body["result"].as_array().expect("array");
        assert_eq!(body["result_info"]["count"], page.len());
        names.extend(
            page.iter()
                .map(|k| k["name"].as_str().unwrap_or("").to_owned()),
        );
        pages += 1;
        cursor = body["result_info"]["cursor"]
            .as_str()
            .expect("cursor")
            .to_owned();
        if cursor.is_empty() {
            break;
        }
        assert!(pages < 10, "cursor never ends");
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("k/{i:02}")).collect();
    assert_eq!(names, expected);

    // Default limit returns everything with an empty cursor.
    let (_, body) = s
        .json(s.req(
            Method::GET,
            &s.acct(&format!("/storage/kv/namespaces/{ns}/keys")),
        ))
        .await;
    assert_eq!(body["result"].as_array().map(Vec::len), Some(30));
    assert_eq!(body["result_info"], json!({"count": 30, "cursor": ""}));

    for bad in [
        "limit=9",
        "limit=1001",
        "limit=abc",
        "cursor=zz-not-a-cursor",
    ] {
        s.err(
            s.req(
                Method::GET,
                &s.acct(&format!("/storage/kv/namespaces/{ns}/keys?{bad}")),
            ),
            400,
            10021,
        )
        .await;
    }
    s.stop().await;
}

#[tokio::test]
async fn values_raw_multipart_ttl_and_metadata() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("values").await;
    let value_url = |key: &str| s.acct(&format!("/storage/kv/namespaces/{ns}/values/{}", enc(key)));
    let meta_url = |key: &str| {
        s.acct(&format!(
            "/storage/kv/namespaces/{ns}/metadata/{}",
            enc(key)
        ))
    };

    // Raw body (text/plain as wrangler sends it), result null.
    let (status, body) = s
        .json(
            s.req(Method::PUT, &value_url("greeting"))
                .header("content-type", "text/plain")
                .body("hello"),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body["result"]),
        (200, &Value::Null),
        "{body}"
    );
    let (status, headers, bytes) = s.bytes(s.req(Method::GET, &value_url("greeting"))).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, b"hello");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(headers.get("expiration").is_none());
    assert_eq!(
        s.ok(s.req(Method::GET, &meta_url("greeting"))).await,
        Value::Null
    );

    // Binary octet-stream round trip.
    let binary: Vec<u8> = (0..=255u8).collect();
    s.ok(s
        .req(Method::PUT, &value_url("bin"))
        .header("content-type", "application/octet-stream")
        .body(binary.clone()))
        .await;
    assert_eq!(
        s.bytes(s.req(Method::GET, &value_url("bin"))).await.2,
        binary
    );

    // Multipart with metadata and a TTL.
    let form = Form::new()
        .text("value", "with-meta")
        .text("metadata", r#"{"hash":"abc","n":1}"#);
    s.ok(s
        .req(
            Method::PUT,
            &format!("{}?expiration_ttl=120", value_url("m")),
        )
        .multipart(form))
        .await;
    let (_, headers, bytes) = s.bytes(s.req(Method::GET, &value_url("m"))).await;
    assert_eq!(bytes, b"with-meta");
    let exp: u64 = headers["expiration"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("integer");
    let t = now();
    assert!((t + 115..=t + 125).contains(&exp), "{exp} vs {t}");
    assert_eq!(
        s.ok(s.req(Method::GET, &meta_url("m"))).await,
        json!({"hash": "abc", "n": 1})
    );
    let keys = s
        .ok(s.req(
            Method::GET,
            &s.acct(&format!("/storage/kv/namespaces/{ns}/keys?prefix=m")),
        ))
        .await;
    assert_eq!(
        keys,
        json!([{"name": "m", "expiration": exp, "metadata": {"hash": "abc", "n": 1}}])
    );

    // Absolute expiration; the TTL wins when both are given.
    let at = now() + 3600;
    s.ok(s
        .req(
            Method::PUT,
            &format!("{}?expiration={at}", value_url("abs")),
        )
        .body("x"))
        .await;
    let (_, headers, _) = s.bytes(s.req(Method::GET, &value_url("abs"))).await;
    assert_eq!(headers["expiration"], at.to_string().as_str());
    s.ok(s
        .req(
            Method::PUT,
            &format!(
                "{}?expiration={}&expiration_ttl=600",
                value_url("both"),
                now() + 5
            ),
        )
        .body("x"))
        .await;
    let (_, headers, _) = s.bytes(s.req(Method::GET, &value_url("both"))).await;
    let exp: u64 = headers["expiration"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("int");
    assert!(exp >= now() + 590, "{exp}");

    // Bounds.
    for query in [
        "expiration_ttl=59".to_owned(),
        "expiration_ttl=0".to_owned(),
        format!("expiration={}", now() + 10),
        "expiration=soon".to_owned(),
    ] {
        s.err(
            s.req(Method::PUT, &format!("{}?{query}", value_url("bad")))
                .body("x"),
            400,
            10021,
        )
        .await;
    }
    let big_meta = json!({ "m": "x".repeat(1100) }).to_string();
    s.err(
        s.req(Method::PUT, &value_url("bad"))
            .multipart(Form::new().text("value", "v").text("metadata", big_meta)),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(Method::PUT, &value_url("bad"))
            .multipart(Form::new().text("metadata", "{}")),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(Method::PUT, &value_url(&"k".repeat(513))).body("x"),
        400,
        10021,
    )
    .await;
    s.err(s.req(Method::GET, &value_url("bad")), 404, 10009)
        .await;

    // Missing keys: 404 10009 for value and metadata; delete is fine either way.
    s.err(s.req(Method::GET, &value_url("nope")), 404, 10009)
        .await;
    s.err(s.req(Method::GET, &meta_url("nope")), 404, 10009)
        .await;
    assert_eq!(
        s.ok(s.req(Method::DELETE, &value_url("greeting"))).await,
        Value::Null
    );
    assert_eq!(
        s.ok(s.req(Method::DELETE, &value_url("nope"))).await,
        Value::Null
    );
    s.err(s.req(Method::GET, &value_url("greeting")), 404, 10009)
        .await;
    s.stop().await;
}

#[tokio::test]
async fn encoded_keys_and_keys_with_slashes() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("encoding").await;
    let base = s.acct(&format!("/storage/kv/namespaces/{ns}"));
    let odd = "a b?c%d:e!f#g&h+i";
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/{}", enc(odd)))
        .body("odd"))
        .await;
    // As the Python SDK 4.x sends it: `/` left unencoded.
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/dir/sub/file.txt"))
        .body("nested"))
        .await;
    // As wrangler sends it: everything encoded.
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/{}", enc("x/y")))
        .body("xy"))
        .await;
    // Unicode keys.
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/{}", enc("clé-ü")))
        .body("u"))
        .await;

    let keys = s.ok(s.req(Method::GET, &format!("{base}/keys"))).await;
    let names: Vec<&str> = keys
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, vec![odd, "clé-ü", "dir/sub/file.txt", "x/y"]);

    assert_eq!(
        s.bytes(s.req(Method::GET, &format!("{base}/values/{}", enc(odd))))
            .await
            .2,
        b"odd"
    );
    assert_eq!(
        s.bytes(s.req(
            Method::GET,
            &format!("{base}/values/{}", enc("dir/sub/file.txt"))
        ))
        .await
        .2,
        b"nested"
    );
    assert_eq!(
        s.bytes(s.req(Method::GET, &format!("{base}/values/x/y")))
            .await
            .2,
        b"xy"
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &format!("{base}/metadata/dir/sub/file.txt")))
            .await,
        Value::Null
    );
    s.ok(s.req(Method::DELETE, &format!("{base}/values/dir/sub/file.txt")))
        .await;
    s.err(
        s.req(
            Method::GET,
            &format!("{base}/values/{}", enc("dir/sub/file.txt")),
        ),
        404,
        10009,
    )
    .await;
    s.stop().await;
}

#[tokio::test]
async fn bulk_write_and_both_bulk_delete_routes() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("bulk").await;
    let base = s.acct(&format!("/storage/kv/namespaces/{ns}"));
    let items = json!([
        {"key": "a", "value": "plain"},
        {"key": "b", "value": "AAEC/w==", "base64": true},
        {"key": "c", "value": "meta", "metadata": {"v": 2}, "expiration_ttl": 300},
        {"key": "d", "value": "dd"},
    ]);
    let result = s
        .ok(s.req(Method::PUT, &format!("{base}/bulk")).json(&items))
        .await;
    assert_eq!(
        result,
        json!({"successful_key_count": 4, "unsuccessful_keys": []})
    );
    assert_eq!(
        s.bytes(s.req(Method::GET, &format!("{base}/values/a")))
            .await
            .2,
        b"plain"
    );
    assert_eq!(
        s.bytes(s.req(Method::GET, &format!("{base}/values/b")))
            .await
            .2,
        vec![0u8, 1, 2, 255]
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &format!("{base}/metadata/c")))
            .await,
        json!({"v": 2})
    );

    // One invalid item rejects the whole request.
    s.err(
        s.req(Method::PUT, &format!("{base}/bulk")).json(
            &json!([{"key": "e", "value": "x"}, {"key": "f", "value": "x", "expiration_ttl": 5}]),
        ),
        400,
        10021,
    )
    .await;
    s.err(s.req(Method::GET, &format!("{base}/values/e")), 404, 10009)
        .await;

    // wrangler: DELETE …/bulk; SDKs: POST …/bulk/delete.
    let deleted = s
        .ok(s
            .req(Method::DELETE, &format!("{base}/bulk"))
            .json(&json!(["a"])))
        .await;
    assert_eq!(deleted["successful_key_count"], 1);
    let deleted = s
        .ok(s
            .req(Method::POST, &format!("{base}/bulk/delete"))
            .json(&json!(["b", "missing"])))
        .await;
    assert_eq!(
        deleted,
        json!({"successful_key_count": 2, "unsuccessful_keys": []})
    );
    let keys = s.ok(s.req(Method::GET, &format!("{base}/keys"))).await;
    let names: Vec<&str> = keys
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, vec!["c", "d"]);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Worker scripts
// ---------------------------------------------------------------------------------------------

const INDEX_JS: &str = "export default { async fetch() { return new Response('hi') } }";

/// A module upload as wrangler 4.x sends it: `metadata` first (no filename, no content type),
/// then each module as a file part named by its module name.
fn wrangler_form(metadata: &Value, modules: &[(&str, &str, &str)]) -> Form {
    let mut form = Form::new().text("metadata", metadata.to_string());
    for (name, content_type, content) in modules {
        let part = Part::bytes(content.as_bytes().to_vec())
            .file_name(name.to_string())
            .mime_str(content_type)
            .expect("mime");
        form = form.part(name.to_string(), part);
    }
    form
}

/// A module upload as the Python SDK 5.x sends it: every module part named `files` (the module
/// name is the filename), `metadata` last as `application/json`.
fn python_sdk_form(metadata: &Value, modules: &[(&str, &str, &str)]) -> Form {
    let mut form = Form::new();
    for (name, content_type, content) in modules {
        let part = Part::bytes(content.as_bytes().to_vec())
            .file_name(name.to_string())
            .mime_str(content_type)
            .expect("mime");
        form = form.part("files", part);
    }
    let meta = Part::text(metadata.to_string())
        .mime_str("application/json")
        .expect("mime");
    form.part("metadata", meta)
}

/// Splits a `multipart/form-data` body into (disposition name, content type, bytes) parts.
fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let positions: Vec<usize> = text
        .windows(delimiter.len())
        .enumerate()
        .filter(|(_, w)| *w == delimiter.as_bytes())
        .map(|(i, _)| i)
        .collect();
    for pair in positions.windows(2) {
        let chunk = &text[pair[0] + delimiter.len()..pair[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let split = chunk
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8_lossy(&chunk[..split]).to_string();
        let data = chunk[split + 4..].to_vec();
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_owned();
        let ctype = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or("")
            .to_owned();
        parts.push((name, ctype, data));
    }
    parts
}

#[tokio::test]
async fn script_upload_list_content_settings_and_delete() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("bound").await;
    let script_url = s.acct("/workers/scripts/my-worker");
    let metadata = json!({
        "main_module": "index.js",
        "bindings": [
            {"name": "GREETING", "type": "plain_text", "text": "hello"},
            {"name": "MY_KV", "type": "kv_namespace", "namespace_id": ns},
            {"name": "API_KEY", "type": "secret_text", "text": "s3cret"}
        ],
        "compatibility_date": "2024-09-23",
        "compatibility_flags": [],
        "code_update_strategy": {"mode": "deferred", "max_delay": 300},
        "keep_bindings": ["secret_text", "secret_key"],
        "tags": ["lumierd:managed"]
    });
    let first = s
        .ok(s
            .req(
                Method::PUT,
                &format!("{script_url}?excludeScript=true&bindings_inherit=strict"),
            )
            .multipart(wrangler_form(
                &metadata,
                &[
                    ("index.js", "application/javascript+module", INDEX_JS),
                    ("index.js.map", "application/source-map", "{\"version\":3}"),
                ],
            )))
        .await;
    assert_eq!(first["id"], "my-worker");
    assert_eq!(first["has_modules"], true);
    assert_eq!(first["compatibility_date"], "2024-09-23");
    assert_eq!(first["tags"], json!(["lumierd:managed"]));
    let etag1 = first["etag"].as_str().expect("etag").to_owned();
    assert_eq!(etag1.len(), 64);
    let modified1 = first["modified_on"]
        .as_str()
        .expect("modified_on")
        .to_owned();
    assert!(
        modified1.ends_with('Z') && modified1.contains('T'),
        "{modified1}"
    );

    let list = s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], "my-worker");
    assert_eq!(list[0]["etag"], etag1.as_str());
    assert_eq!(list[0]["modified_on"], modified1.as_str());
    for field in [
        "created_on",
        "has_modules",
        "tags",
        "compatibility_date",
        "compatibility_flags",
        "handlers",
        "usage_model",
    ] {
        assert!(list[0].get(field).is_some(), "{field} missing: {}", list[0]);
    }

    // Second upload, as the Python SDK sends it: new etag and modified_on, same created_on.
    let metadata2 = json!({
        "main_module": "index.js",
        "bindings": [
            {"name": "GREETING", "type": "plain_text", "text": "hello"},
            {"name": "MY_KV", "type": "kv_namespace", "namespace_id": ns}
        ],
        "compatibility_date": "2024-09-23"
    });
    let index2 =
        "import { msg } from './util.js'; export default { fetch() { return new Response(msg) } }";
    let second = s
        .ok(s.req(Method::PUT, &script_url).multipart(python_sdk_form(
            &metadata2,
            &[
                ("index.js", "application/javascript+module", index2),
                (
                    "util.js",
                    "application/javascript+module",
                    "export const msg = 'hi';",
                ),
            ],
        )))
        .await;
    let etag2 = second["etag"].as_str().expect("etag").to_owned();
    let modified2 = second["modified_on"].as_str().expect("modified").to_owned();
    assert_ne!(etag1, etag2);
    assert!(modified2 > modified1, "{modified2} <= {modified1}");
    assert_eq!(second["created_on"], first["created_on"]);

    // Even an identical re-upload changes both.
    let third = s
        .ok(s.req(Method::PUT, &script_url).multipart(python_sdk_form(
            &metadata2,
            &[
                ("index.js", "application/javascript+module", index2),
                (
                    "util.js",
                    "application/javascript+module",
                    "export const msg = 'hi';",
                ),
            ],
        )))
        .await;
    assert_ne!(third["etag"], second["etag"]);
    assert!(third["modified_on"].as_str() > second["modified_on"].as_str());

    // content/v2: multipart, one part per module, cf-entrypoint.
    let (status, headers, body) = s
        .bytes(s.req(Method::GET, &format!("{script_url}/content/v2")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["cf-entrypoint"], "index.js");
    let ct = headers["content-type"].to_str().expect("ascii").to_owned();
    assert!(ct.starts_with("multipart/form-data"), "{ct}");
    let parts = parse_multipart(&ct, &body);
    assert_eq!(
        parts,
        vec![
            (
                "index.js".to_owned(),
                "application/javascript+module".to_owned(),
                index2.as_bytes().to_vec()
            ),
            (
                "util.js".to_owned(),
                "application/javascript+module".to_owned(),
                b"export const msg = 'hi';".to_vec()
            ),
        ]
    );

    // Settings: the secret (kept by keep_bindings? no: upload 2 dropped it) — check text never shows.
    let settings = s
        .ok(s.req(Method::GET, &format!("{script_url}/settings")))
        .await;
    assert_eq!(
        settings["bindings"],
        json!([
            {"name": "GREETING", "type": "plain_text", "text": "hello"},
            {"name": "MY_KV", "type": "kv_namespace", "namespace_id": ns}
        ])
    );
    assert_eq!(settings["compatibility_date"], "2024-09-23");
    assert_eq!(settings["usage_model"], "standard");

    // Re-add a secret, then read it back without its text.
    s.ok(s.req(Method::PUT, &script_url).multipart(wrangler_form(
        &metadata,
        &[("index.js", "application/javascript+module", INDEX_JS)],
    )))
    .await;
    let settings = s
        .ok(s.req(Method::GET, &format!("{script_url}/settings")))
        .await;
    let secret = settings["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["type"] == "secret_text")
        .expect("secret binding")
        .clone();
    assert_eq!(secret, json!({"name": "API_KEY", "type": "secret_text"}));
    assert!(!settings.to_string().contains("s3cret"));

    // PATCH settings (multipart `settings` part): bindings replace the set; inherit keeps the
    // old KV binding; a secret without text keeps its old secret; modified_on changes, etag not.
    let before = s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await[0].clone();
    let patch = json!({
        "bindings": [
            {"type": "inherit", "name": "MY_KV"},
            {"type": "plain_text", "name": "GREETING", "text": "bye"},
            {"type": "secret_text", "name": "API_KEY"}
        ],
        "compatibility_date": "2025-01-01",
        "compatibility_flags": ["nodejs_compat"]
    });
    let settings_part = Part::text(patch.to_string())
        .mime_str("application/json")
        .expect("mime");
    let patched = s
        .ok(s
            .req(Method::PATCH, &format!("{script_url}/settings"))
            .multipart(Form::new().part("settings", settings_part)))
        .await;
    assert_eq!(
        patched["bindings"],
        json!([
            {"name": "MY_KV", "type": "kv_namespace", "namespace_id": ns},
            {"name": "GREETING", "type": "plain_text", "text": "bye"},
            {"name": "API_KEY", "type": "secret_text"}
        ])
    );
    assert_eq!(patched["compatibility_date"], "2025-01-01");
    assert_eq!(patched["compatibility_flags"], json!(["nodejs_compat"]));
    let after = s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await[0].clone();
    assert_eq!(after["etag"], before["etag"]);
    assert!(
        after["modified_on"].as_str() > before["modified_on"].as_str(),
        "{after}"
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &format!("{script_url}/settings")))
            .await["bindings"],
        patched["bindings"]
    );
    // A secret without text and without a previous value is refused.
    let bad = json!({"bindings": [{"type": "secret_text", "name": "NEW_SECRET"}]});
    s.err(
        s.req(Method::PATCH, &format!("{script_url}/settings"))
            .multipart(Form::new().text("settings", bad.to_string())),
        400,
        10021,
    )
    .await;

    // Services view (wrangler's pre-check).
    let service = s
        .ok(s.req(Method::GET, &s.acct("/workers/services/my-worker")))
        .await;
    assert_eq!(service["id"], "my-worker");
    assert_eq!(service["default_environment"]["environment"], "production");
    assert_eq!(
        service["default_environment"]["script"]["etag"],
        after["etag"]
    );
    assert_eq!(
        service["default_environment"]["script"]["last_deployed_from"],
        "api"
    );

    // The bound namespace can't be deleted while the script binds it.
    let msg = s
        .err(
            s.req(
                Method::DELETE,
                &s.acct(&format!("/storage/kv/namespaces/{ns}")),
            ),
            400,
            10052,
        )
        .await;
    assert_eq!(msg, "namespace has associated scripts: my-worker");

    // Delete the script: {id}; then everything about it is 10007 / 10090.
    let deleted = s
        .ok(s.req(Method::DELETE, &format!("{script_url}?force=true")))
        .await;
    assert_eq!(deleted, json!({"id": "my-worker"}));
    s.err(s.req(Method::DELETE, &script_url), 404, 10007).await;
    s.err(
        s.req(Method::GET, &format!("{script_url}/settings")),
        404,
        10007,
    )
    .await;
    s.err(
        s.req(Method::GET, &format!("{script_url}/content/v2")),
        404,
        10007,
    )
    .await;
    s.err(
        s.req(Method::GET, &s.acct("/workers/services/my-worker")),
        404,
        10090,
    )
    .await;
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await,
        json!([])
    );
    // Now the namespace can go.
    s.ok(s.req(
        Method::DELETE,
        &s.acct(&format!("/storage/kv/namespaces/{ns}")),
    ))
    .await;
    s.stop().await;
}

#[tokio::test]
async fn script_upload_validation_errors() {
    let s = Server::start(config()).await;
    let meta = json!({"main_module": "index.js"});
    let module = [("index.js", "application/javascript+module", INDEX_JS)];

    for bad_name in ["Bad_Name", "-leading", "has.dot"] {
        let msg = s
            .err(
                s.req(
                    Method::PUT,
                    &s.acct(&format!("/workers/scripts/{bad_name}")),
                )
                .multipart(wrangler_form(&meta, &module)),
                400,
                10016,
            )
            .await;
        assert_eq!(msg, "workers.api.error.invalid_script_name");
    }
    s.err(
        s.req(
            Method::PUT,
            &s.acct(&format!("/workers/scripts/{}", "a".repeat(64))),
        )
        .multipart(wrangler_form(&meta, &module)),
        400,
        10016,
    )
    .await;

    let url = s.acct("/workers/scripts/w");
    // Binding a namespace that doesn't exist.
    let missing = "0123456789abcdef0123456789abcdef";
    let msg = s
        .err(
            s.req(Method::PUT, &url).multipart(wrangler_form(
                &json!({"main_module": "index.js", "bindings": [{"type": "kv_namespace", "name": "KV", "namespace_id": missing}]}),
                &module,
            )),
            400,
            10041,
        )
        .await;
    assert_eq!(msg, format!("KV namespace '{missing}' not found."));
    // main_module naming no uploaded module.
    s.err(
        s.req(Method::PUT, &url)
            .multipart(wrangler_form(&json!({"main_module": "main.js"}), &module)),
        400,
        10021,
    )
    .await;
    // No metadata part.
    let no_meta = Form::new().part(
        "index.js",
        Part::bytes(INDEX_JS.as_bytes().to_vec())
            .file_name("index.js")
            .mime_str("application/javascript+module")
            .expect("mime"),
    );
    s.err(s.req(Method::PUT, &url).multipart(no_meta), 400, 10021)
        .await;
    // Unsupported module content type.
    s.err(
        s.req(Method::PUT, &url)
            .multipart(wrangler_form(&meta, &[("index.js", "image/png", INDEX_JS)])),
        400,
        10021,
    )
    .await;
    // The TypeScript SDK 7.3 bug: JS body with bracket-encoded metadata.
    s.err(
        s.req(
            Method::PUT,
            &format!("{url}?metadata[main_module]=index.js"),
        )
        .header("content-type", "application/javascript")
        .body(INDEX_JS),
        400,
        10021,
    )
    .await;
    // Over 10 MiB.
    let huge = "x".repeat(10 * 1024 * 1024 + 1);
    s.err(
        s.req(Method::PUT, &url).multipart(wrangler_form(
            &meta,
            &[
                ("index.js", "application/javascript+module", INDEX_JS),
                ("big.txt", "text/plain", &huge),
            ],
        )),
        400,
        10027,
    )
    .await;
    // Strict inherit of a binding that never existed.
    s.err(
        s.req(Method::PUT, &format!("{url}?bindings_inherit=strict")).multipart(wrangler_form(
            &json!({"main_module": "index.js", "bindings": [{"type": "inherit", "name": "GONE"}]}),
            &module,
        )),
        400,
        10057,
    )
    .await;
    // Nothing was created by the failures.
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await,
        json!([])
    );
    s.err(s.req(Method::GET, &format!("{url}/settings")), 404, 10007)
        .await;
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Auth, routing, token verify
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn auth_routes_and_token_verify() {
    let s = Server::start(config()).await;
    let ns_url = s.acct("/storage/kv/namespaces");

    // Wrong token, no token, legacy key headers: 403 10000.
    for rb in [
        s.http.get(&ns_url).bearer_auth("wrong-token"),
        s.http.get(&ns_url),
        s.http
            .get(&ns_url)
            .header("X-Auth-Key", "k")
            .header("X-Auth-Email", "a@b.c"),
    ] {
        let msg = s.err(rb, 403, 10000).await;
        assert_eq!(msg, "Authentication error");
    }
    // Wrong account.
    let other = format!(
        "{}/accounts/ffffffffffffffffffffffffffffffff/storage/kv/namespaces",
        s.root
    );
    s.err(s.req(Method::GET, &other), 403, 10000).await;

    // Account token verify works; user verify says the token is not a user token.
    let verified = s.ok(s.req(Method::GET, &s.acct("/tokens/verify"))).await;
    assert_eq!(verified["status"], "active");
    assert!(is_hex32(&verified["id"]), "{verified}");
    assert!(!verified.to_string().contains(DEFAULT_TOKEN));
    s.err(
        s.req(Method::GET, &format!("{}/user/tokens/verify", s.root)),
        401,
        1000,
    )
    .await;
    s.err(
        s.http.get(s.acct("/tokens/verify")).bearer_auth("nope"),
        403,
        10000,
    )
    .await;

    // Unknown routes and wrong methods are enveloped.
    let msg = s
        .err(s.req(Method::GET, &s.acct("/nothing/here")), 404, 7003)
        .await;
    assert_eq!(msg, "No route for the URI");
    s.err(s.req(Method::GET, &format!("{}/zones", s.root)), 404, 7003)
        .await;
    let site_root = format!("{}/", s.root.trim_end_matches("/client/v4"));
    s.err(s.req(Method::GET, &site_root), 404, 7003).await;
    let (status, body) = s.json(s.req(Method::PATCH, &ns_url)).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"][0]["code"], 10000, "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "PATCH method not allowed for the api_token authentication scheme"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Faults and rate limiting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_model_answers_429_with_retry_after() {
    let mut cfg = config();
    cfg.faults.rate_limit = Some(RateLimitModel {
        requests: 3,
        window: Duration::from_secs(30),
    });
    let s = Server::start(cfg).await;
    let url = s.acct("/storage/kv/namespaces");
    for i in 0..3u32 {
        let resp = s.send(s.req(Method::GET, &url)).await;
        assert_eq!(resp.status(), 200);
        let rl = resp.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            rl.starts_with(&format!("\"default\";r={};t=", 2 - i)),
            "{rl}"
        );
        assert_eq!(resp.headers()["ratelimit-policy"], "\"default\";q=3;w=30");
    }
    let resp = s.send(s.req(Method::GET, &url)).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("integer seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"][0]["code"], 971);
    assert_eq!(
        body["errors"][0]["message"],
        "Please wait and consider throttling your request speed"
    );
    // Other accounts' budgets are separate (and still answer their own auth error).
    let other = format!(
        "{}/accounts/ffffffffffffffffffffffffffffffff/storage/kv/namespaces",
        s.root
    );
    s.err(s.req(Method::GET, &other), 403, 10000).await;

    // A short window reopens.
    s.api.set_faults(Faults {
        rate_limit: Some(RateLimitModel {
            requests: 1,
            window: Duration::from_millis(300),
        }),
        ..Faults::default()
    });
    assert_eq!(s.send(s.req(Method::GET, &url)).await.status(), 200);
    let blocked = s.send(s.req(Method::GET, &url)).await;
    assert_eq!(blocked.status(), 429);
    assert_eq!(blocked.headers()["retry-after"], "1");
    // A refused request does not count against the budget: poll until the window is over.
    eventually(
        Duration::from_secs(2),
        "the 300 ms window to reopen",
        || async {
            match s.send(s.req(Method::GET, &url)).await.status() {
                StatusCode::OK => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;

    // Turning the model off lifts the limit and the headers.
    s.api.set_faults(Faults::default());
    let resp = s.send(s.req(Method::GET, &url)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("ratelimit").is_none());
    let statuses: Vec<u16> = s.api.request_log().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    s.stop().await;
}

#[tokio::test]
async fn injected_errors_resets_and_latency() {
    let s = Server::start(config()).await;
    let url = s.acct("/storage/kv/namespaces");

    s.api.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..3 {
        s.err(s.req(Method::GET, &url), 500, 10002).await;
    }

    s.api.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    });
    s.api.clear_request_log();
    let result = timeout(STEP, s.req(Method::GET, &url).send())
        .await
        .expect("fails in time");
    let err = result.expect_err("the connection is dropped");
    assert!(!err.is_timeout(), "{err:?}");
    let log = s.api.request_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].status, 0);

    s.api.set_faults(Faults {
        latency: Duration::from_millis(200),
        ..Faults::default()
    });
    let started = Instant::now();
    s.ok(s.req(Method::GET, &url)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));

    s.api.set_faults(Faults::default());
    s.ok(s.req(Method::GET, &url)).await;
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Persistence and the request log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("api-state");
    let mut cfg = config();
    cfg.data_dir = Some(data.clone());

    let s = Server::start(cfg.clone()).await;
    let ns = s.create_ns("persisted").await;
    let base = s.acct(&format!("/storage/kv/namespaces/{ns}"));
    s.ok(s
        .req(
            Method::PUT,
            &format!("{base}/values/{}?expiration_ttl=3600", enc("a/b c")),
        )
        .multipart(
            Form::new()
                .text("value", "v1")
                .text("metadata", r#"{"h":"x"}"#),
        ))
    .await;
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/bin"))
        .body(vec![0u8, 159, 255]))
        .await;
    let metadata = json!({
        "main_module": "index.js",
        "bindings": [
            {"name": "KV", "type": "kv_namespace", "namespace_id": ns},
            {"name": "S", "type": "secret_text", "text": "hidden"}
        ],
        "compatibility_date": "2025-01-01",
        "tags": ["t1"]
    });
    s.ok(s
        .req(Method::PUT, &s.acct("/workers/scripts/keeper"))
        .multipart(wrangler_form(
            &metadata,
            &[("index.js", "application/javascript+module", INDEX_JS)],
        )))
    .await;
    s.ok(s
        .req(Method::PATCH, &s.acct("/workers/scripts/keeper/settings"))
        .multipart(Form::new().text(
            "settings",
            json!({"compatibility_flags": ["nodejs_compat"]}).to_string(),
        )))
    .await;

    let namespaces = s
        .ok(s.req(Method::GET, &s.acct("/storage/kv/namespaces")))
        .await;
    let keys = s.ok(s.req(Method::GET, &format!("{base}/keys"))).await;
    let scripts = s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await;
    let settings = s
        .ok(s.req(Method::GET, &s.acct("/workers/scripts/keeper/settings")))
        .await;
    let (_, _, content) = s
        .bytes(s.req(Method::GET, &s.acct("/workers/scripts/keeper/content/v2")))
        .await;
    s.stop().await;
    assert!(data.join("state.json").is_file());

    let s = Server::start(cfg).await;
    let base = s.acct(&format!("/storage/kv/namespaces/{ns}"));
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/storage/kv/namespaces")))
            .await,
        namespaces
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &format!("{base}/keys"))).await,
        keys
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await,
        scripts
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/workers/scripts/keeper/settings")))
            .await,
        settings
    );
    assert_eq!(settings["compatibility_flags"], json!(["nodejs_compat"]));
    let (_, headers, again) = s
        .bytes(s.req(Method::GET, &s.acct("/workers/scripts/keeper/content/v2")))
        .await;
    let ct = headers["content-type"].to_str().expect("ascii").to_owned();
    assert_eq!(parse_multipart(&ct, &again)[0].2, INDEX_JS.as_bytes());
    assert!(!content.is_empty());
    let (_, headers, value) = s
        .bytes(s.req(Method::GET, &format!("{base}/values/{}", enc("a/b c"))))
        .await;
    assert_eq!(value, b"v1");
    assert!(headers.get("expiration").is_some());
    assert_eq!(
        s.bytes(s.req(Method::GET, &format!("{base}/values/bin")))
            .await
            .2,
        vec![0u8, 159, 255]
    );
    // The secret survived too: a text-less secret patch resolves against it.
    s.ok(s
        .req(Method::PATCH, &s.acct("/workers/scripts/keeper/settings"))
        .multipart(Form::new().text(
            "settings",
            json!({"bindings": [{"type": "inherit", "name": "KV"}, {"type": "secret_text", "name": "S"}]})
                .to_string(),
        )))
        .await;
    // A bound namespace stays bound across the restart.
    s.err(
        s.req(
            Method::DELETE,
            &s.acct(&format!("/storage/kv/namespaces/{ns}")),
        ),
        400,
        10052,
    )
    .await;
    s.stop().await;

    // A corrupt snapshot is a typed error, not a panic or a silent reset.
    std::fs::write(data.join("state.json"), b"{ nope").expect("write");
    let mut cfg = config();
    cfg.data_dir = Some(data);
    assert!(matches!(
        LocalApi::open(cfg),
        Err(LocalApiError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn request_log_records_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("logs/requests.jsonl");
    let mut cfg = config();
    cfg.request_log = Some(log_path.clone());
    let s = Server::start(cfg).await;
    s.create_ns("logged").await;
    s.ok(s.req(
        Method::GET,
        &format!("{}?per_page=5", s.acct("/storage/kv/namespaces")),
    ))
    .await;
    s.err(
        s.http
            .get(s.acct("/storage/kv/namespaces"))
            .bearer_auth("bad"),
        403,
        10000,
    )
    .await;
    s.err(s.req(Method::GET, &s.acct("/missing")), 404, 7003)
        .await;

    let log = s.api.request_log();
    let summary: Vec<(String, String, String, u16)> = log
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.query.clone(), r.status))
        .collect();
    let p = format!("/client/v4/accounts/{DEFAULT_ACCOUNT_ID}");
    assert_eq!(
        summary,
        vec![
            (
                "POST".into(),
                format!("{p}/storage/kv/namespaces"),
                "".into(),
                200
            ),
            (
                "GET".into(),
                format!("{p}/storage/kv/namespaces"),
                "per_page=5".into(),
                200
            ),
            (
                "GET".into(),
                format!("{p}/storage/kv/namespaces"),
                "".into(),
                403
            ),
            ("GET".into(), format!("{p}/missing"), "".into(), 404),
        ]
    );
    assert!(log.iter().all(|r| r.duration_ms >= 0.0));

    let text = std::fs::read_to_string(&log_path).expect("log file");
    assert!(!text.contains(DEFAULT_TOKEN));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    for (line, entry) in lines.iter().zip(&log) {
        assert_eq!(line["method"], entry.method.as_str());
        assert_eq!(line["path"], entry.path.as_str());
        assert_eq!(line["status"], entry.status);
        assert!(line["duration_ms"].is_number());
        assert!(
            line["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    s.api.clear_request_log();
    assert!(s.api.request_log().is_empty());
    s.stop().await;
}

/// Issue #12.9: the in-memory log is a ring bounded in entries and bytes, and requests naming
/// unknown accounts with unknown tokens leave nothing else behind; the file keeps everything.
#[tokio::test]
async fn request_log_memory_is_bounded_and_the_file_keeps_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("requests.jsonl");
    let mut cfg = config();
    cfg.request_log = Some(log_path.clone());
    cfg.faults.rate_limit = Some(RateLimitModel {
        requests: 1_000_000,
        window: Duration::from_secs(300),
    });
    let s = Server::start(cfg).await;
    let long = "k".repeat(16 * 1024);
    let sent = 2 * REQUEST_LOG_MEMORY_BYTES / long.len() + 10;
    for i in 0..sent {
        let account = format!("{i:032x}");
        let url = format!("{}/accounts/{account}/storage/kv/namespaces/{long}", s.root);
        let (status, _) = s.json(s.http.get(&url).bearer_auth(format!("t{i}"))).await;
        assert_eq!(status.as_u16(), 403);
    }
    let log = s.api.request_log();
    let bytes: usize = log
        .iter()
        .map(|r| r.method.len() + r.path.len() + r.query.len())
        .sum();
    assert!(bytes <= REQUEST_LOG_MEMORY_BYTES, "{bytes} bytes in memory");
    assert!(
        log.len() < sent && !log.is_empty(),
        "{} of {sent}",
        log.len()
    );
    assert!(log.len() <= REQUEST_LOG_MEMORY_ENTRIES);
    let last = format!("{:032x}", sent - 1);
    assert!(
        log[log.len() - 1].path.contains(&last),
        "the newest entry is kept"
    );
    let text = std::fs::read_to_string(&log_path).expect("log file");
    assert_eq!(text.lines().count(), sent, "the file keeps every request");
    // The budget of the served account is untouched by all those requests.
    let resp = s
        .send(s.req(Method::GET, &s.acct("/storage/kv/namespaces")))
        .await;
    let rl = resp.headers()["ratelimit"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(rl.starts_with("\"default\";r=999999;"), "{rl}");
    s.stop().await;
}

/// Issue #12.11: a client that sends a whole request and closes the connection before the
/// answer (here during injected latency) still has its request applied and logged, with the
/// status it would have been answered.
#[tokio::test]
async fn requests_of_clients_that_went_away_are_applied_and_logged() {
    use tokio::io::AsyncWriteExt;
    let mut cfg = config();
    cfg.faults.latency = Duration::from_millis(300);
    let s = Server::start(cfg).await;
    let addr = s.root["http://".len()..]
        .split('/')
        .next()
        .expect("host")
        .to_owned();
    let path = format!("/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/storage/kv/namespaces");
    for i in 0..3 {
        let body = json!({ "title": format!("gone-{i}") }).to_string();
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.expect("send");
        drop(tcp);
    }
    let deadline = Instant::now() + STEP;
    loop {
        let posts: Vec<u16> = s
            .api
            .request_log()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.status)
            .collect();
        if posts == [200, 200, 200] {
            break;
        }
        assert!(Instant::now() < deadline, "logged POSTs: {posts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.api.set_faults(Faults::default());
    let list = s
        .ok(s.req(Method::GET, &s.acct("/storage/kv/namespaces")))
        .await;
    let mut titles: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["title"].as_str())
        .collect();
    titles.sort_unstable();
    assert_eq!(titles, ["gone-0", "gone-1", "gone-2"]);
    s.stop().await;
}

/// Issue #12.13: what the real API refuses, the emulator refuses: malformed bindings (on upload
/// and on a settings PATCH) and expirations no calendar can hold.
#[tokio::test]
async fn malformed_bindings_and_endless_expirations_are_refused() {
    let s = Server::start(config()).await;
    let module = [("index.js", "application/javascript+module", INDEX_JS)];
    let url = s.acct("/workers/scripts/w");
    for binding in [
        json!({"type": 5}),
        json!({"type": 5, "name": "X"}),
        json!({"name": "X"}),
        json!({"type": "plain_text"}),
        json!({"type": "kv_namespace", "name": "KV"}),
        json!({"type": "plain_text", "name": "X", "text": 7}),
    ] {
        let meta = json!({"main_module": "index.js", "bindings": [binding]});
        let msg = s
            .err(
                s.req(Method::PUT, &url)
                    .multipart(wrangler_form(&meta, &module)),
                400,
                10021,
            )
            .await;
        assert!(msg.contains("binding at index 0"), "{binding}: {msg}");
    }
    // Nothing was created; a good upload still works and a bad PATCH is refused too.
    s.err(s.req(Method::GET, &url), 404, 10007).await;
    let good = json!({"main_module": "index.js", "bindings": [{"type": "service", "name": "S", "service": "x"}]});
    s.ok(s
        .req(Method::PUT, &url)
        .multipart(wrangler_form(&good, &module)))
        .await;
    let patch = Form::new().text("settings", json!({"bindings": [{"type": 5}]}).to_string());
    let msg = s
        .err(
            s.req(Method::PATCH, &format!("{url}/settings"))
                .multipart(patch),
            400,
            10021,
        )
        .await;
    assert!(msg.contains("binding at index 0"), "{msg}");

    let ns = s.create_ns("ttl").await;
    let value = |q: &str| s.acct(&format!("/storage/kv/namespaces/{ns}/values/k?{q}"));
    for q in [
        format!("expiration_ttl={}", u64::MAX),
        format!("expiration={}", u64::MAX),
        "expiration_ttl=253402300800".to_owned(),
    ] {
        let msg = s
            .err(s.req(Method::PUT, &value(&q)).body("v"), 400, 10021)
            .await;
        assert!(msg.starts_with("Invalid expiration"), "{q}: {msg}");
    }
    let bulk = json!([{"key": "k", "value": "v", "expiration_ttl": u64::MAX}]);
    s.err(
        s.req(
            Method::PUT,
            &s.acct(&format!("/storage/kv/namespaces/{ns}/bulk")),
        )
        .json(&bulk),
        400,
        10021,
    )
    .await;
    // A year is fine.
    s.ok(s
        .req(Method::PUT, &value("expiration_ttl=31536000"))
        .body("v"))
        .await;
    s.stop().await;
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Issue #11.7: the API embedded in `run` answers only to the random token of its state, kept
/// 0600 in a 0700 folder (an older, open state is tightened) and never printed; the path is.
#[tokio::test]
async fn the_embedded_api_has_a_private_random_token_and_private_state() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("state/local-api");
    // A state left open by an older build.
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("state.json"), "{}").expect("write");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(
        data.join("state.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let examples = crate::support::repo().join("examples");
    let args = [
        "run",
        "--once",
        "--manifests",
        examples.to_str().expect("utf-8"),
        "--state",
        "state",
    ];
    let out = crate::support::run_in(dir.path(), &args, Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out:?}");
    let token = std::fs::read_to_string(data.join("token")).expect("token file");
    let token = token.trim();
    assert_eq!(token.len(), 64, "a 256-bit random token");
    assert_ne!(token, DEFAULT_TOKEN);
    assert!(
        out.stdout.contains("token in state/local-api/token"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
    assert_eq!(mode(&data), 0o700);
    for file in ["token", "state.json"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }

    // The same state keeps its token; the default token is refused.
    let out = crate::support::run_in(dir.path(), &args, Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out:?}");
    let again = std::fs::read_to_string(data.join("token")).expect("token file");
    assert_eq!(again.trim(), token);
    let mut cfg = config();
    cfg.token = token.to_owned();
    cfg.data_dir = Some(data.clone());
    let s = Server::start(cfg).await;
    s.err(
        s.req(Method::GET, &s.acct("/storage/kv/namespaces")),
        403,
        10000,
    )
    .await;
    let list = s
        .ok(s
            .http
            .get(s.acct("/storage/kv/namespaces"))
            .bearer_auth(token))
        .await;
    assert!(!list.as_array().expect("list").is_empty(), "{list}");
    s.stop().await;
}

/// Issue #11.7: a non-loopback listen address is refused unless explicitly allowed, naming
/// the flag; a remote emulator also needs a token of its own.
#[test]
fn non_loopback_listen_addresses_need_an_explicit_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let state = state.to_str().expect("utf-8");
    for cmd in ["run", "plan"] {
        let out = crate::support::run(&[
            cmd,
            "--manifests",
            "examples",
            "--state",
            state,
            "--local-api-listen",
            "0.0.0.0:0",
        ]);
        assert_eq!(out.code, 2, "{cmd}: {out:?}");
        assert!(out.stderr.contains("--local-api-allow-remote"), "{out:?}");
    }
    let out = crate::support::run(&["emulator", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--allow-remote"), "{out:?}");
    let out = crate::support::run(&["emulator", "--listen", "[::]:0", "--allow-remote"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--token"), "{out:?}");
    assert!(!state_exists(dir.path()), "nothing was started");
}

fn state_exists(dir: &Path) -> bool {
    dir.join("state/local-api").exists()
}

// ---------------------------------------------------------------------------------------------
// Real clients' request shapes, as captured from wrangler 4.86/4.164, the Python SDK 4.3.1 and
// 5.9.0 and the TypeScript SDK 7.3.0 (scripts/compat/ reproduces the capture)
// ---------------------------------------------------------------------------------------------

/// Value writes as each client sends them; where a client has its own bug, the emulator does
/// what the real API does with that request.
#[tokio::test]
async fn value_writes_as_each_real_client_sends_them() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("client-shapes").await;
    let base = s.acct(&format!("/storage/kv/namespaces/{ns}"));
    let get = |key: &str| s.req(Method::GET, &format!("{base}/values/{}", enc(key)));
    let meta = |key: &str| s.req(Method::GET, &format!("{base}/metadata/{}", enc(key)));

    // wrangler: raw `text/plain;charset=UTF-8` without metadata, TTL as a query parameter.
    s.ok(s
        .req(
            Method::PUT,
            &format!("{base}/values/{}?expiration_ttl=3600", enc("dir/with meta")),
        )
        .header("content-type", "text/plain;charset=UTF-8")
        .body("hello"))
        .await;
    assert_eq!(s.bytes(get("dir/with meta")).await.2, b"hello");

    // Python SDK 5.x: always multipart; `value` is a file part named "upload"
    // (octet-stream), `metadata` an `application/json` part after it.
    let form = Form::new()
        .part(
            "value",
            Part::bytes(b"v5".to_vec())
                .file_name("upload")
                .mime_str("application/octet-stream")
                .expect("mime"),
        )
        .part(
            "metadata",
            Part::text(r#"{"a": 1, "b": "x"}"#)
                .mime_str("application/json")
                .expect("mime"),
        );
    s.ok(s
        .req(
            Method::PUT,
            &format!("{base}/values/{}", enc("with/slash:meta")),
        )
        .multipart(form))
        .await;
    assert_eq!(s.bytes(get("with/slash:meta")).await.2, b"v5");
    assert_eq!(
        s.ok(meta("with/slash:meta")).await,
        json!({"a": 1, "b": "x"})
    );

    // Python SDK 4.x: the key's `/` left unencoded, and the body sent as JSON
    // `{"metadata": …, "value": …}`, which the real API stores verbatim as the value
    // (cloudflare-python#2519): so does the emulator.
    let py4_body = r#"{"metadata":"{}","value":"hello"}"#;
    s.ok(s
        .req(
            Method::PUT,
            &format!("{base}/values/py4/a:b?expiration_ttl=3600"),
        )
        .header("content-type", "application/json")
        .body(py4_body))
        .await;
    assert_eq!(s.bytes(get("py4/a:b")).await.2, py4_body.as_bytes());
    assert_eq!(s.ok(meta("py4/a:b")).await, Value::Null);

    // TypeScript SDK 7.x: multipart `value` text part (no filename); an object `metadata` is
    // bracket-encoded (`metadata[a]`), which the real API ignores (cloudflare-typescript#2664),
    // while a JSON string `metadata` arrives as one `metadata` part and is kept.
    let form = Form::new()
        .text("value", "ts")
        .text("metadata[a]", "1")
        .text("metadata[b]", "x");
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/ts-obj"))
        .multipart(form))
        .await;
    assert_eq!(s.bytes(get("ts-obj")).await.2, b"ts");
    assert_eq!(s.ok(meta("ts-obj")).await, Value::Null);
    let form = Form::new()
        .text("value", "ts")
        .text("metadata", r#"{"s":1}"#);
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/ts-str"))
        .multipart(form))
        .await;
    assert_eq!(s.ok(meta("ts-str")).await, json!({"s": 1}));
    s.stop().await;
}

/// `POST …/bulk/get`, which was not served (404/7003) and which the Python SDK's
/// `kv.namespaces.bulk_get`, the TypeScript SDK's `bulkGet` and `wrangler kv bulk get` call.
#[tokio::test]
async fn bulk_get_as_the_sdks_and_wrangler_send_it() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("bulk-get").await;
    let base = s.acct(&format!("/storage/kv/namespaces/{ns}"));
    let exp = now() + 600;
    s.ok(s.req(Method::PUT, &format!("{base}/bulk")).json(&json!([
        {"key": "a", "value": "1", "metadata": {"m": 1}, "expiration": exp},
        {"key": "b", "value": "{\"x\":2}"},
        {"key": "bin", "value": "//79", "base64": true},
    ])))
    .await;
    let bulk_get = |body: Value| {
        s.req(Method::POST, &format!("{base}/bulk/get"))
            .header("content-type", "application/json")
            .body(body.to_string())
    };

    // wrangler / Python SDK default: `{"keys": [...]}` → text values, missing keys null.
    let r = s.ok(bulk_get(json!({"keys": ["a", "b", "zz"]}))).await;
    assert_eq!(
        r,
        json!({"values": {"a": "1", "b": "{\"x\":2}", "zz": null}})
    );
    // Python SDK `type="json", with_metadata=True` (sent as `withMetadata`).
    let r = s
        .ok(bulk_get(
            json!({"keys": ["a", "b", "zz"], "type": "json", "withMetadata": true}),
        ))
        .await;
    assert_eq!(
        r,
        json!({"values": {
            "a": {"value": 1, "metadata": {"m": 1}, "expiration": exp},
            "b": {"value": {"x": 2}, "metadata": null},
            "zz": null
        }})
    );

    // Refusals: no keys, more than 100, an unknown type, a non-JSON value with type json,
    // a binary value, an unknown namespace.
    s.err(bulk_get(json!({"keys": []})), 400, 10021).await;
    let many: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
    s.err(bulk_get(json!({ "keys": many })), 400, 10021).await;
    s.err(
        bulk_get(json!({"keys": ["a"], "type": "stream"})),
        400,
        10021,
    )
    .await;
    let m = s
        .err(
            bulk_get(json!({"keys": ["a", "bin"], "type": "text"})),
            400,
            10021,
        )
        .await;
    assert!(m.contains("non-text"), "{m}");
    s.ok(s
        .req(Method::PUT, &format!("{base}/values/plain"))
        .body("not json"))
        .await;
    s.err(
        bulk_get(json!({"keys": ["plain"], "type": "json"})),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(
            Method::POST,
            &s.acct("/storage/kv/namespaces/0123456789abcdef0123456789abcdef/bulk/get"),
        )
        .json(&json!({"keys": ["a"]})),
        404,
        10013,
    )
    .await;
    s.stop().await;
}

/// `PUT …/scripts/{name}/content`, which was not served (404/7003) and which the Python SDK's
/// `workers.scripts.content.update` calls: module parts named `files[]` (module name = filename),
/// `metadata` (`{"main_module": …}` only) last, as `application/json`.
#[tokio::test]
async fn content_put_as_the_python_sdk_sends_it() {
    let s = Server::start(config()).await;
    let ns = s.create_ns("content-put").await;
    let url = s.acct("/workers/scripts/content-put");
    let meta = json!({
        "main_module": "index.js",
        "compatibility_date": "2025-01-01",
        "bindings": [
            {"name": "KV", "type": "kv_namespace", "namespace_id": ns},
            {"name": "S", "type": "secret_text", "text": "shh"}
        ]
    });
    let first = s
        .ok(s.req(Method::PUT, &url).multipart(python_sdk_form(
            &meta,
            &[("index.js", "application/javascript+module", INDEX_JS)],
        )))
        .await;
    let settings_before = s.ok(s.req(Method::GET, &format!("{url}/settings"))).await;

    const V2: &str = "export default { async fetch() { return new Response('v2') } }";
    let mut form = Form::new();
    for (name, body) in [("main.js", V2), ("util.js", "export const x = 1;")] {
        form = form.part(
            "files[]",
            Part::bytes(body.as_bytes().to_vec())
                .file_name(name)
                .mime_str("application/javascript+module")
                .expect("mime"),
        );
    }
    let form = form.part(
        "metadata",
        Part::text(r#"{"main_module": "main.js"}"#)
            .mime_str("application/json")
            .expect("mime"),
    );
    let second = s
        .ok(s
            .req(Method::PUT, &format!("{url}/content"))
            .multipart(form))
        .await;
    assert_eq!(second["id"], "content-put");
    assert_ne!(second["etag"], first["etag"]);
    assert!(second["modified_on"].as_str() > first["modified_on"].as_str());
    assert_eq!(second["created_on"], first["created_on"]);

    // The code changed; bindings and compatibility settings did not.
    let (status, headers, body) = s
        .bytes(s.req(Method::GET, &format!("{url}/content/v2")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["cf-entrypoint"], "main.js");
    let ct = headers["content-type"].to_str().expect("ascii").to_owned();
    let parts = parse_multipart(&ct, &body);
    let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["main.js", "util.js"]);
    assert_eq!(parts[0].2, V2.as_bytes());
    assert_eq!(
        s.ok(s.req(Method::GET, &format!("{url}/settings"))).await,
        settings_before
    );

    // The entry named by header instead of a metadata part (service-worker syntax).
    let form = Form::new().part(
        "worker.js",
        Part::bytes(b"addEventListener('fetch', e => e.respondWith(new Response('sw')))".to_vec())
            .file_name("worker.js")
            .mime_str("application/javascript")
            .expect("mime"),
    );
    s.ok(s
        .req(Method::PUT, &format!("{url}/content"))
        .header("CF-WORKER-BODY-PART", "worker.js")
        .multipart(form))
        .await;
    let (_, headers, body) = s
        .bytes(s.req(Method::GET, &format!("{url}/content/v2")))
        .await;
    assert!(headers.get("cf-entrypoint").is_none());
    assert!(body.starts_with(b"addEventListener"));

    // Refusals: an entry that names no uploaded part, no entry at all, an unknown script.
    let form = || {
        Form::new().part(
            "files[]",
            Part::bytes(V2.as_bytes().to_vec())
                .file_name("main.js")
                .mime_str("application/javascript+module")
                .expect("mime"),
        )
    };
    s.err(
        s.req(Method::PUT, &format!("{url}/content"))
            .header("CF-WORKER-MAIN-MODULE-PART", "other.js")
            .multipart(form()),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(Method::PUT, &format!("{url}/content"))
            .multipart(form()),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(Method::PUT, &s.acct("/workers/scripts/nope/content"))
            .header("CF-WORKER-MAIN-MODULE-PART", "main.js")
            .multipart(form()),
        404,
        10007,
    )
    .await;
    s.stop().await;
}

/// An answer given without reading the request body (a validation error, a bad token) still
/// reaches the client, and the connection stays usable. hyper used to close a connection whose
/// request body was unread, so a client still writing it saw a reset: the TypeScript SDK
/// 7.3.0's `workers.scripts.update` (`Content-Type: application/javascript` with a
/// bracket-encoded form body, cloudflare-typescript#2799) failed with "Connection error" instead
/// of 400/10021, and so did wrangler's `fetch` uploads answered 403. Checked with two pipelined
/// requests on one connection: both must be answered.
#[tokio::test]
async fn early_answers_read_the_request_body_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = Server::start(config()).await;
    let authority = s
        .root
        .trim_start_matches("http://")
        .trim_end_matches("/client/v4")
        .to_owned();
    let script_path = format!("/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/workers/scripts/ts-sdk");
    let ts_body = "------formdata-undici-083628658314\r\nContent-Disposition: form-data; name=\"metadata[main_module]\"\r\n\r\nindex.js\r\n------formdata-undici-083628658314--\r\n"
        .repeat(200);
    let request = |method: &str, path: &str, token: &str, content_type: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let follow_up = request(
        "GET",
        &format!("/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/workers/scripts"),
        DEFAULT_TOKEN,
        "application/json",
        "",
    );
    for (first, want) in [
        // The TypeScript SDK's script upload: 400/10021.
        (
            request("PUT", &script_path, DEFAULT_TOKEN, "application/javascript", &ts_body),
            "\"code\":10021",
        ),
        // A bulk write with a wrong token: 403/10000.
        (
            request(
                "PUT",
                &format!("/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/storage/kv/namespaces/0123456789abcdef0123456789abcdef/bulk"),
                "wrong-token",
                "application/json",
                &format!("[{}]", vec!["{\"key\":\"k\",\"value\":\"v\"}"; 500].join(",")),
            ),
            "\"code\":10000",
        ),
    ] {
        let mut conn = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        conn.write_all(format!("{first}{follow_up}").as_bytes())
            .await
            .expect("write both requests");
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 8192];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                let text = String::from_utf8_lossy(&got);
                if text.matches("HTTP/1.1 ").count() >= 2 && text.trim_end().ends_with('}') {
                    break;
                }
            }
        };
        let _ = timeout(Duration::from_secs(5), read).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains(want), "first answer missing:\n{text}");
        assert_eq!(
            text.matches("HTTP/1.1 200 OK").count(),
            1,
            "the connection was closed before the second request was answered:\n{text}"
        );
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Conformance with the official OpenAPI slice
// ---------------------------------------------------------------------------------------------

/// Routes served that the 2024-08 slice does not have, each with why it is served.
const NEWER_ROUTES: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/accounts/{account_id}/tokens/verify",
        "account-owned token verify; in the newer reference docs (API-NOTES §0), not in the 2024 slice",
    ),
    (
        "GET",
        "/accounts/{account_id}/workers/services/{service_name}",
        "wrangler's and Terraform's existence pre-check (API-NOTES §4, §6); not in the slice",
    ),
    (
        "POST",
        "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk/get",
        "bulk read in the newer reference docs (API-NOTES §1.2); the SDKs' bulk_get/bulkGet and `wrangler kv bulk get` call it",
    ),
    (
        "DELETE",
        "/accounts/{account_id}/workers/services/{service_name}",
        "`wrangler delete` deletes the Worker through its service (`?force=true`); same as the script DELETE",
    ),
    (
        "DELETE",
        "/accounts/{account_id}/workers/subdomain",
        "account subdomain delete, new in the 2026 spec (API-NOTES §7.2): 204, no body",
    ),
    (
        "GET",
        "/accounts/{account_id}/workers/workers/{worker_id}",
        "the newer Worker resource; `wrangler deploy` (4.1xx) reads its `subdomain` before the subdomain POST",
    ),
];

fn openapi_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cloudflare-openapi-subset.json")
}

/// The OpenAPI document turned into JSON Schema (draft 4, which OpenAPI 3.0 schemas follow),
/// with these documented adjustments:
/// * `nullable: true` becomes a `"null"` member of `type` (OpenAPI 3.0 → JSON Schema);
/// * `workers_usage_model` also allows `standard`, the current default the newer reference
///   documents (the 2024 pattern is `^(bundled|unbound)$`);
/// * `workers_binding` also allows the `plain_text` and `secret_text` bindings (newer docs;
///   secret text omitted on read), which the 2024 `oneOf` lacks;
/// * a `writeOnly` property is not `required` (OpenAPI: write-only properties are required
///   only in requests; these are answers, e.g. a secret's `text`).
fn conformance_doc() -> Value {
    let text = std::fs::read_to_string(openapi_path()).expect("read the OpenAPI slice");
    let mut doc: Value = serde_json::from_str(&text).expect("OpenAPI JSON");
    fn nullable(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.remove("nullable") == Some(Value::Bool(true)) {
                    if let Some(Value::String(t)) = map.get("type").cloned() {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    if let Some(Value::Array(e)) = map.get_mut("enum") {
                        if !e.contains(&Value::Null) {
                            e.push(Value::Null);
                        }
                    }
                }
                map.values_mut().for_each(nullable);
            }
            Value::Array(items) => items.iter_mut().for_each(nullable),
            _ => {}
        }
    }
    nullable(&mut doc);
    fn write_only_not_required(v: &mut Value) {
        match v {
            Value::Object(map) => {
                let write_only: Vec<String> = map
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|props| {
                        props
                            .iter()
                            .filter(|(_, p)| p.get("writeOnly") == Some(&Value::Bool(true)))
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(Value::Array(req)) = map.get_mut("required") {
                    req.retain(|r| {
                        !r.as_str()
                            .is_some_and(|r| write_only.iter().any(|w| w == r))
                    });
                }
                map.values_mut().for_each(write_only_not_required);
            }
            Value::Array(items) => items.iter_mut().for_each(write_only_not_required),
            _ => {}
        }
    }
    write_only_not_required(&mut doc);
    let schemas = &mut doc["components"]["schemas"];
    schemas["workers_usage_model"]["pattern"] = json!("^(bundled|unbound|standard)$");
    schemas["workers_plain_text_binding"] = json!({
        "type": "object", "required": ["name", "type", "text"],
        "properties": {"name": {"type": "string"}, "type": {"enum": ["plain_text"]}, "text": {"type": "string"}}
    });
    schemas["workers_secret_text_binding"] = json!({
        "type": "object", "required": ["name", "type"],
        "properties": {"name": {"type": "string"}, "type": {"enum": ["secret_text"]}}
    });
    let one_of = schemas["workers_binding"]["oneOf"]
        .as_array_mut()
        .expect("workers_binding.oneOf");
    one_of.push(json!({"$ref": "#/components/schemas/workers_plain_text_binding"}));
    one_of.push(json!({"$ref": "#/components/schemas/workers_secret_text_binding"}));
    doc
}

/// Validates `body` against `schema` (a schema object from the document, possibly with
/// `$ref`s into `#/components/schemas`).
fn validate(doc: &Value, schema: &Value, body: &Value) -> Result<(), String> {
    let mut root = json!({ "allOf": [schema] });
    root["components"] = doc["components"].clone();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&root)
        .map_err(|e| format!("schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The JSON response schema for (method, path, status), as the slice declares it.
///
/// Error answers are checked against the family's `*-api-response-common-failure` schema:
/// several workers operations in the slice declare 4XX bodies with a success-only schema
/// (`success: enum [true]`, or an `allOf` of success and failure), which no error answer can
/// satisfy. Token verify on the account path uses the user path's schema (same shape per the
/// newer docs).
fn response_schema(doc: &Value, method: &str, path: &str, status: u16) -> Option<Value> {
    let failure = |family: &str| json!({"$ref": format!("#/components/schemas/{family}_api-response-common-failure")});
    let family = if path.contains("/storage/kv/") {
        "workers-kv"
    } else if path.contains("/tokens/verify") {
        "iam"
    } else {
        "workers"
    };
    if status >= 400 {
        return Some(failure(family));
    }
    let spec_path = if path == "/accounts/{account_id}/tokens/verify" {
        "/user/tokens/verify"
    } else {
        path
    };
    let op = doc["paths"]
        .get(spec_path)?
        .get(method.to_ascii_lowercase())?;
    op["responses"]["200"]["content"]["application/json"]
        .get("schema")
        .filter(|s| !s.is_null())
        .cloned()
}

#[tokio::test]
async fn routes_and_responses_conform_to_the_openapi_slice() {
    let doc = conformance_doc();

    // 1. Every served route is in the slice, or listed as newer with a reason.
    let mut newer_used = Vec::new();
    for (method, path) in served_routes() {
        let in_slice = doc["paths"]
            .get(path)
            .and_then(|p| p.get(method.to_ascii_lowercase()))
            .is_some();
        if !in_slice {
            let listed = NEWER_ROUTES
                .iter()
                .find(|(m, p, _)| *m == method && *p == path);
            assert!(
                listed.is_some(),
                "{method} {path} is neither in the slice nor in NEWER_ROUTES"
            );
            newer_used.push((method, path));
        }
    }
    for (m, p, reason) in NEWER_ROUTES {
        assert!(!reason.is_empty());
        assert!(
            newer_used.contains(&(*m, *p)),
            "NEWER_ROUTES lists {m} {p}, which is not served"
        );
    }

    // 2. JSON answers validate against the slice's response schemas.
    let s = Server::start(config()).await;
    let a = DEFAULT_ACCOUNT_ID;
    let mut checked = 0;
    let mut check = |method: &str, template: &str, status: u16, body: &Value| {
        let template = template.replace("{a}", "{account_id}");
        let schema = response_schema(&doc, method, &template, status);
        if let Some(schema) = schema {
            if let Err(e) = validate(&doc, &schema, body) {
                panic!("{method} {template} ({status}) does not match the slice: {e}\n{body}");
            }
            checked += 1;
        }
    };
    let ns_t = "/accounts/{a}/storage/kv/namespaces";
    let one_t = "/accounts/{a}/storage/kv/namespaces/{namespace_id}";

    let call = |method: Method, url: String| s.req(method, &url);
    let (st, body) = s
        .json(call(Method::POST, s.acct("/storage/kv/namespaces")).json(&json!({"title": "conf"})))
        .await;
    check("POST", ns_t, st.as_u16(), &body);
    let ns = body["result"]["id"].as_str().expect("id").to_owned();
    let (st, body) = s
        .json(call(Method::POST, s.acct("/storage/kv/namespaces")).json(&json!({"title": "conf"})))
        .await;
    check("POST", ns_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct("/storage/kv/namespaces?per_page=5"),
        ))
        .await;
    check("GET", ns_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct(&format!("/storage/kv/namespaces/{ns}")),
        ))
        .await;
    check("GET", one_t, st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(Method::PUT, s.acct(&format!("/storage/kv/namespaces/{ns}")))
                .json(&json!({"title": "conf2"})),
        )
        .await;
    check("PUT", one_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct("/storage/kv/namespaces/0123456789abcdef0123456789abcdef"),
        ))
        .await;
    check("GET", one_t, st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(
                Method::PUT,
                s.acct(&format!("/storage/kv/namespaces/{ns}/values/k1")),
            )
            .multipart(Form::new().text("value", "v").text("metadata", "{\"a\":1}")),
        )
        .await;
    check(
        "PUT",
        &format!("{one_t}/values/{{key_name}}"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct(&format!("/storage/kv/namespaces/{ns}/values/nope")),
        ))
        .await;
    check(
        "GET",
        &format!("{one_t}/values/{{key_name}}"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct(&format!("/storage/kv/namespaces/{ns}/metadata/k1")),
        ))
        .await;
    check(
        "GET",
        &format!("{one_t}/metadata/{{key_name}}"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(
            call(
                Method::PUT,
                s.acct(&format!("/storage/kv/namespaces/{ns}/bulk")),
            )
            .json(&json!([{"key": "k2", "value": "v"}, {"key": "k3", "value": "v"}])),
        )
        .await;
    check("PUT", &format!("{one_t}/bulk"), st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct(&format!("/storage/kv/namespaces/{ns}/keys?limit=10")),
        ))
        .await;
    check("GET", &format!("{one_t}/keys"), st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(
                Method::DELETE,
                s.acct(&format!("/storage/kv/namespaces/{ns}/bulk")),
            )
            .json(&json!(["k2"])),
        )
        .await;
    check("DELETE", &format!("{one_t}/bulk"), st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(
                Method::POST,
                s.acct(&format!("/storage/kv/namespaces/{ns}/bulk/delete")),
            )
            .json(&json!(["k3"])),
        )
        .await;
    check("POST", &format!("{one_t}/bulk/delete"), st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::DELETE,
            s.acct(&format!("/storage/kv/namespaces/{ns}/values/k1")),
        ))
        .await;
    check(
        "DELETE",
        &format!("{one_t}/values/{{key_name}}"),
        st.as_u16(),
        &body,
    );

    let sc_t = "/accounts/{a}/workers/scripts/{script_name}";
    let meta = json!({
        "main_module": "index.js",
        "bindings": [
            {"name": "KV", "type": "kv_namespace", "namespace_id": ns},
            {"name": "V", "type": "plain_text", "text": "x"},
            {"name": "S", "type": "secret_text", "text": "y"}
        ],
        "compatibility_date": "2025-01-01"
    });
    let (st, body) = s
        .json(
            call(Method::PUT, s.acct("/workers/scripts/conf")).multipart(wrangler_form(
                &meta,
                &[("index.js", "application/javascript+module", INDEX_JS)],
            )),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check("PUT", sc_t, st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(Method::PUT, s.acct("/workers/scripts/Conf")).multipart(wrangler_form(
                &meta,
                &[("index.js", "application/javascript+module", INDEX_JS)],
            )),
        )
        .await;
    check("PUT", sc_t, st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(Method::PUT, s.acct("/workers/scripts/conf/content")).multipart(wrangler_form(
                &json!({"main_module": "index.js"}),
                &[("index.js", "application/javascript+module", INDEX_JS)],
            )),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check("PUT", &format!("{sc_t}/content"), st.as_u16(), &body);
    let (st, body) = s.json(call(Method::GET, s.acct("/workers/scripts"))).await;
    check("GET", "/accounts/{a}/workers/scripts", st.as_u16(), &body);
    let (st, body) = s
        .json(call(Method::GET, s.acct("/workers/scripts/conf/settings")))
        .await;
    check("GET", &format!("{sc_t}/settings"), st.as_u16(), &body);
    let (st, body) = s
        .json(
            call(Method::PATCH, s.acct("/workers/scripts/conf/settings")).multipart(
                Form::new().text(
                    "settings",
                    json!({"logpush": true, "tags": ["x"]}).to_string(),
                ),
            ),
        )
        .await;
    check("PATCH", &format!("{sc_t}/settings"), st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct("/workers/scripts/conf/script-settings"),
        ))
        .await;
    check(
        "GET",
        &format!("{sc_t}/script-settings"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(
            call(
                Method::PATCH,
                s.acct("/workers/scripts/conf/script-settings"),
            )
            .json(&json!({"logpush": false})),
        )
        .await;
    check(
        "PATCH",
        &format!("{sc_t}/script-settings"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(call(Method::GET, s.acct("/workers/scripts/none/settings")))
        .await;
    check("GET", &format!("{sc_t}/settings"), st.as_u16(), &body);

    // Secrets, subdomains, versions and deployments (API-NOTES §7).
    let secret_t = format!("{sc_t}/secrets");
    let (st, body) = s
        .json(
            call(Method::PUT, s.acct("/workers/scripts/conf/secrets"))
                .json(&json!({"name": "API_KEY", "text": "t", "type": "secret_text"})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check("PUT", &secret_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(Method::GET, s.acct("/workers/scripts/conf/secrets")))
        .await;
    check("GET", &secret_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct("/workers/scripts/conf/secrets/API_KEY"),
        ))
        .await;
    check(
        "GET",
        &format!("{secret_t}/{{secret_name}}"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(
            call(Method::PATCH, s.acct("/workers/scripts/conf/secrets-bulk")).json(
                &json!({"secrets": {"B": {"name": "B", "text": "t", "type": "secret_text"}}}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check("PATCH", &format!("{sc_t}/secrets-bulk"), st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::DELETE,
            s.acct("/workers/scripts/conf/secrets/API_KEY?url_encoded=true"),
        ))
        .await;
    assert_eq!(st, 200, "{body}");
    check(
        "DELETE",
        &format!("{secret_t}/{{secret_name}}"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(call(
            Method::DELETE,
            s.acct("/workers/scripts/conf/secrets/API_KEY"),
        ))
        .await;
    assert_eq!(st, 404, "{body}");
    check(
        "DELETE",
        &format!("{secret_t}/{{secret_name}}"),
        st.as_u16(),
        &body,
    );
    let (st, body) = s
        .json(call(Method::GET, s.acct("/workers/subdomain")))
        .await;
    assert_eq!(body["result"]["subdomain"], "lumierd-local", "{body}");
    check("GET", "/accounts/{a}/workers/subdomain", st.as_u16(), &body);
    let (st, body) = s
        .json(call(Method::PUT, s.acct("/workers/subdomain")).json(&json!({"subdomain": "conf"})))
        .await;
    check("PUT", "/accounts/{a}/workers/subdomain", st.as_u16(), &body);
    let sub_t = format!("{sc_t}/subdomain");
    for (method, body) in [
        (Method::GET, None),
        (Method::POST, Some(json!({"enabled": true}))),
        (Method::DELETE, None),
    ] {
        let mut rb = call(method.clone(), s.acct("/workers/scripts/conf/subdomain"));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let (st, body) = s.json(rb).await;
        assert_eq!(st, 200, "{body}");
        check(method.as_str(), &sub_t, st.as_u16(), &body);
    }
    let versions_t = format!("{sc_t}/versions");
    let (st, body) = s
        .json(
            call(
                Method::POST,
                s.acct("/workers/scripts/conf/versions?bindings_inherit=strict"),
            )
            .multipart(wrangler_form(
                &json!({"main_module": "index.js", "bindings": [{"name": "KV", "type": "inherit"}],
                        "keep_bindings": ["secret_text"], "annotations": {"workers/message": "m"}}),
                &[("index.js", "application/javascript+module", INDEX_JS)],
            )),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check("POST", &versions_t, st.as_u16(), &body);
    let version = body["result"]["id"]
        .as_str()
        .expect("version id")
        .to_owned();
    let (st, body) = s
        .json(call(Method::GET, s.acct("/workers/scripts/conf/versions")))
        .await;
    check("GET", &versions_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct(&format!("/workers/scripts/conf/versions/{version}")),
        ))
        .await;
    check(
        "GET",
        &format!("{versions_t}/{{version_id}}"),
        st.as_u16(),
        &body,
    );
    let deployments_t = format!("{sc_t}/deployments");
    let (st, body) = s
        .json(
            call(Method::POST, s.acct("/workers/scripts/conf/deployments")).json(&json!({
                "strategy": "percentage",
                "versions": [{"version_id": version, "percentage": 100}]
            })),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    check("POST", &deployments_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct("/workers/scripts/conf/deployments"),
        ))
        .await;
    check("GET", &deployments_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::GET,
            s.acct("/workers/scripts/none/deployments"),
        ))
        .await;
    assert_eq!(body["errors"][0]["code"], 10007, "{body}");
    check("GET", &deployments_t, st.as_u16(), &body);
    let (st, body) = s.json(call(Method::GET, s.acct("/tokens/verify"))).await;
    check("GET", "/accounts/{a}/tokens/verify", st.as_u16(), &body);
    let (st, body) = s
        .json(call(Method::GET, format!("{}/user/tokens/verify", s.root)))
        .await;
    check("GET", "/user/tokens/verify", st.as_u16(), &body);
    let (st, body) = s
        .json(call(Method::DELETE, s.acct("/workers/scripts/conf")))
        .await;
    check("DELETE", sc_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(
            Method::DELETE,
            s.acct(&format!("/storage/kv/namespaces/{ns}")),
        ))
        .await;
    check("DELETE", one_t, st.as_u16(), &body);
    let (st, body) = s
        .json(call(Method::GET, format!("{}/accounts/{a}/nope", s.root)))
        .await;
    check("GET", ns_t, st.as_u16(), &body);
    assert!(checked >= 44, "only {checked} answers checked");
    s.stop().await;
}

#[test]
fn the_validator_rejects_wrong_shapes() {
    // Guards the conformance test itself: a wrong answer must fail validation.
    let doc = conformance_doc();
    let schema = response_schema(
        &doc,
        "GET",
        "/accounts/{account_id}/storage/kv/namespaces",
        200,
    )
    .expect("schema");
    let good = json!({"success": true, "errors": [], "messages": [], "result": [{"id": "0f2ac74b498b48028cb68387c421e279", "title": "t"}], "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1}});
    assert_eq!(validate(&doc, &schema, &good), Ok(()));
    let no_title = json!({"success": true, "errors": [], "messages": [], "result": [{"id": "x"}]});
    assert!(validate(&doc, &schema, &no_title).is_err());
    let failure = response_schema(&doc, "GET", "/accounts/{account_id}/workers/scripts", 404)
        .expect("schema");
    let error = json!({"success": false, "errors": [{"code": 10007, "message": "m"}], "messages": [], "result": null});
    assert_eq!(validate(&doc, &failure, &error), Ok(()));
    let not_an_error = json!({"success": true, "errors": [], "messages": [], "result": null});
    assert!(validate(&doc, &failure, &not_an_error).is_err());
}

// ---------------------------------------------------------------------------------------------
// The real Workers workflow: secrets, workers.dev, versions and deployments (API-NOTES §7)
// ---------------------------------------------------------------------------------------------

/// A canary secret text: it must never come back from the API, nor reach the request log.
const CANARY: &str = "canary-7f3a91c2-never-answered";

impl Server {
    /// Uploads `name` with `PUT …/scripts/{name}` (wrangler's form) and `metadata`; returns
    /// the result.
    async fn upload(&self, name: &str, metadata: Value) -> Value {
        self.ok(self
            .req(Method::PUT, &self.acct(&format!("/workers/scripts/{name}")))
            .multipart(wrangler_form(
                &metadata,
                &[("index.js", "application/javascript+module", INDEX_JS)],
            )))
        .await
    }

    /// Names of the script's bindings of `kind` from its settings.
    async fn binding_names(&self, name: &str, kind: &str) -> Vec<String> {
        let settings = self
            .ok(self.req(
                Method::GET,
                &self.acct(&format!("/workers/scripts/{name}/settings")),
            ))
            .await;
        settings["bindings"]
            .as_array()
            .expect("bindings")
            .iter()
            .filter(|b| b["type"] == kind)
            .map(|b| b["name"].as_str().expect("name").to_owned())
            .collect()
    }
}

#[tokio::test]
async fn secrets_are_write_only_and_survive_uploads_that_keep_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("requests.jsonl");
    let mut cfg = config();
    cfg.request_log = Some(log_path.clone());
    let s = Server::start(cfg).await;
    let secrets = s.acct("/workers/scripts/app/secrets");
    let put = |name: &str, text: &str| {
        s.req(Method::PUT, &secrets)
            .json(&json!({"name": name, "text": text, "type": "secret_text"}))
    };

    // No script: 10007 (wrangler then uploads a draft Worker and retries).
    s.err(put("API_KEY", CANARY), 404, 10007).await;
    s.err(s.req(Method::GET, &secrets), 404, 10007).await;
    s.upload(
        "app",
        json!({"main_module": "index.js", "bindings": [{"type": "plain_text", "name": "STAGE", "text": "dev"}]}),
    )
    .await;
    assert_eq!(s.ok(s.req(Method::GET, &secrets)).await, json!([]));

    // Put answers {name, type}; list, get and settings never carry the text.
    let put_answer = s.ok(put("API_KEY", CANARY)).await;
    assert_eq!(
        put_answer,
        json!({"name": "API_KEY", "type": "secret_text"})
    );
    s.ok(put("API_KEY", &format!("{CANARY}-rotated"))).await;
    let list = s.ok(s.req(Method::GET, &secrets)).await;
    assert_eq!(list, json!([{"name": "API_KEY", "type": "secret_text"}]));
    let one = s
        .ok(s.req(Method::GET, &format!("{secrets}/API_KEY?url_encoded=true")))
        .await;
    assert_eq!(one, json!({"name": "API_KEY", "type": "secret_text"}));
    let settings = s
        .ok(s.req(Method::GET, &s.acct("/workers/scripts/app/settings")))
        .await;
    assert!(!settings.to_string().contains(CANARY), "{settings}");

    // A name held by another binding type: 10053; a missing secret: 10056.
    s.err(put("STAGE", "x"), 400, 10053).await;
    s.err(s.req(Method::GET, &format!("{secrets}/NOPE")), 404, 10056)
        .await;
    s.err(
        s.req(Method::DELETE, &format!("{secrets}/NOPE")),
        404,
        10056,
    )
    .await;
    s.err(
        s.req(Method::DELETE, &format!("{secrets}/STAGE")),
        404,
        10056,
    )
    .await;
    s.err(
        s.req(Method::PUT, &secrets)
            .json(&json!({"name": "X", "type": "secret_text"})),
        400,
        10021,
    )
    .await;

    // A re-upload with keep_bindings (what wrangler sends) keeps the secret; one without drops it.
    let kept = json!({"main_module": "index.js", "keep_bindings": ["secret_text", "secret_key"]});
    s.upload("app", kept).await;
    assert_eq!(s.binding_names("app", "secret_text").await, ["API_KEY"]);
    s.upload("app", json!({"main_module": "index.js"})).await;
    assert!(s.binding_names("app", "secret_text").await.is_empty());

    // Bulk: puts and deletes in one version; answers every secret after the change.
    s.ok(put("OLD", CANARY)).await;
    let bulk = s
        .ok(s
            .req(Method::PATCH, &s.acct("/workers/scripts/app/secrets-bulk"))
            .header("content-type", "application/merge-patch+json")
            .body(
                json!({"secrets": {"A": {"name": "A", "text": CANARY, "type": "secret_text"}, "OLD": null}})
                    .to_string(),
            ))
        .await;
    assert_eq!(bulk, json!({"A": {"name": "A", "type": "secret_text"}}));
    s.ok(s.req(Method::DELETE, &format!("{secrets}/A?url_encoded=true")))
        .await;
    assert_eq!(s.ok(s.req(Method::GET, &secrets)).await, json!([]));

    // Nothing answered or logged carries the text.
    for r in s.api.request_log() {
        assert!(!format!("{r:?}").contains(CANARY), "{r:?}");
    }
    let log = std::fs::read_to_string(&log_path).expect("request log");
    assert!(!log.contains(CANARY));
    let versions = s
        .ok(s.req(
            Method::GET,
            &s.acct("/workers/scripts/app/versions?deployable=true"),
        ))
        .await;
    for v in versions["items"].as_array().expect("items") {
        let id = v["id"].as_str().expect("id");
        let full = s
            .ok(s.req(
                Method::GET,
                &s.acct(&format!("/workers/scripts/app/versions/{id}")),
            ))
            .await;
        assert!(!full.to_string().contains(CANARY), "{full}");
    }
    s.stop().await;
}

#[tokio::test]
async fn versions_deploy_only_when_deployed_and_rollbacks_guard_changed_secrets() {
    let s = Server::start(config()).await;
    let script = |p: &str| s.acct(&format!("/workers/scripts/app{p}"));
    let content = || s.bytes(s.req(Method::GET, &script("/content/v2")));

    // An upload answers deployment_id = the new version's id, deployed at 100 %.
    let up = s
        .upload("app", json!({"main_module": "index.js", "bindings": [{"type": "plain_text", "name": "V", "text": "1"}]}))
        .await;
    let v1 = up["deployment_id"]
        .as_str()
        .expect("deployment_id")
        .to_owned();
    assert_eq!(v1.len(), 36, "{up}");
    assert_eq!(up["last_deployed_from"], "api", "{up}");
    let deps = s.ok(s.req(Method::GET, &script("/deployments"))).await;
    assert_eq!(
        deps["deployments"][0]["versions"],
        json!([{"version_id": v1, "percentage": 100.0}])
    );
    s.ok(s
        .req(Method::PUT, &script("/secrets"))
        .json(&json!({"name": "S", "text": "one", "type": "secret_text"})))
        .await;
    // The secret put made and deployed a version of its own.
    let deps = s.ok(s.req(Method::GET, &script("/deployments"))).await;
    let v_one = deps["deployments"][0]["versions"][0]["version_id"]
        .as_str()
        .expect("version id")
        .to_owned();
    assert_ne!(v_one, v1);

    // A version upload (as wrangler sends it) is not live until deployed; `inherit` and
    // keep_bindings resolve against the newest version.
    let body = "export default { fetch() { return new Response('v2') } }";
    let version = s
        .ok(s
            .req(Method::POST, &script("/versions?bindings_inherit=strict"))
            .header("user-agent", "wrangler/4.164.0")
            .multipart(wrangler_form(
                &json!({"main_module": "index.js", "bindings": [{"type": "inherit", "name": "V"}],
                        "keep_bindings": ["secret_text", "secret_key"],
                        "annotations": {"workers/message": "second"}}),
                &[("index.js", "application/javascript+module", body)],
            )))
        .await;
    let v2 = version["id"].as_str().expect("id").to_owned();
    assert_eq!(version["metadata"]["source"], "wrangler", "{version}");
    assert_eq!(version["annotations"]["workers/message"], "second");
    assert!(version["startup_time_ms"].is_number(), "{version}");
    let names: Vec<&str> = version["resources"]["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["V", "S"], "{version}");
    let (_, _, live) = content().await;
    assert!(!String::from_utf8_lossy(&live).contains("v2"));
    // Secret edits need the newest version deployed: 10215.
    s.err(
        s.req(Method::PUT, &script("/secrets"))
            .json(&json!({"name": "S", "text": "two", "type": "secret_text"})),
        400,
        10215,
    )
    .await;
    // strict inherit of a binding that does not exist: 10057.
    s.err(
        s.req(Method::POST, &script("/versions?bindings_inherit=strict"))
            .multipart(wrangler_form(
                &json!({"main_module": "index.js", "bindings": [{"type": "inherit", "name": "NOPE"}]}),
                &[("index.js", "application/javascript+module", INDEX_JS)],
            )),
        400,
        10057,
    )
    .await;

    let deploy = |id: &str, force: bool| {
        s.req(
            Method::POST,
            &script(if force { "/deployments?force=true" } else { "/deployments" }),
        )
        .header("user-agent", "wrangler/4.164.0")
        .json(&json!({"strategy": "percentage", "versions": [{"version_id": id, "percentage": 100}], "annotations": {}}))
    };
    s.ok(deploy(&v2, false)).await;
    let (_, _, live) = content().await;
    assert!(String::from_utf8_lossy(&live).contains("v2"));
    let listed = s.ok(s.req(Method::GET, &s.acct("/workers/scripts"))).await;
    assert_eq!(listed[0]["last_deployed_from"], "wrangler", "{listed}");

    // Rolling back to the version holding S=one after S changed: 10220 naming it, unless
    // forced.
    s.ok(s
        .req(Method::PUT, &script("/secrets"))
        .json(&json!({"name": "S", "text": "two", "type": "secret_text"})))
        .await;
    let msg = s.err(deploy(&v_one, false), 400, 10220).await;
    assert!(msg.ends_with(": S"), "{msg}");
    s.ok(deploy(&v_one, true)).await;
    let (_, _, live) = content().await;
    assert!(!String::from_utf8_lossy(&live).contains("v2"));

    // Bad bodies and unknown ids.
    s.err(
        s.req(Method::POST, &script("/deployments")).json(
            &json!({"strategy": "percentage", "versions": [{"version_id": v1, "percentage": 50}]}),
        ),
        400,
        10021,
    )
    .await;
    s.err(
        deploy("00000000-0000-4000-8000-000000000000", false),
        400,
        10021,
    )
    .await;
    s.err(
        s.req(
            Method::GET,
            &script("/versions/00000000-0000-4000-8000-000000000000"),
        ),
        404,
        10007,
    )
    .await;
    for path in ["/versions", "/deployments"] {
        s.err(
            s.req(
                Method::GET,
                &s.acct(&format!("/workers/scripts/none{path}")),
            ),
            404,
            10007,
        )
        .await;
    }
    let listed = s.ok(s.req(Method::GET, &script("/versions"))).await;
    let numbers: Vec<u64> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|v| v["number"].as_u64())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] > w[1]), "{numbers:?}");
    s.stop().await;
}

#[tokio::test]
async fn workers_dev_subdomains() {
    let s = Server::start(config()).await;
    let account = s.acct("/workers/subdomain");
    assert_eq!(
        s.ok(s.req(Method::GET, &account)).await,
        json!({"subdomain": "lumierd-local"})
    );
    s.err(
        s.req(Method::PUT, &account)
            .json(&json!({"subdomain": "Bad_Name"})),
        400,
        10021,
    )
    .await;
    s.ok(s
        .req(Method::PUT, &account)
        .json(&json!({"subdomain": "team"})))
        .await;
    assert_eq!(
        s.ok(s.req(Method::GET, &account)).await,
        json!({"subdomain": "team"})
    );
    let (status, _, body) = s.bytes(s.req(Method::DELETE, &account)).await;
    assert_eq!((status.as_u16(), body.len()), (204, 0));
    s.err(s.req(Method::GET, &account), 404, 10007).await;

    let sub = s.acct("/workers/scripts/app/subdomain");
    s.err(s.req(Method::GET, &sub), 404, 10007).await;
    s.err(
        s.req(Method::POST, &sub).json(&json!({"enabled": true})),
        404,
        10007,
    )
    .await;
    s.upload("app", json!({"main_module": "index.js"})).await;
    let off = json!({"enabled": false, "previews_enabled": false});
    assert_eq!(s.ok(s.req(Method::GET, &sub)).await, off);
    // An omitted previews_enabled follows enabled.
    let on = s
        .ok(s
            .req(Method::POST, &sub)
            .header("Cloudflare-Workers-Script-Api-Date", "2025-08-01")
            .json(&json!({"enabled": true})))
        .await;
    assert_eq!(on, json!({"enabled": true, "previews_enabled": true}));
    let worker = s
        .ok(s.req(Method::GET, &s.acct("/workers/workers/app")))
        .await;
    assert_eq!(worker["subdomain"], on, "{worker}");
    let mixed = s
        .ok(s
            .req(Method::POST, &sub)
            .json(&json!({"enabled": true, "previews_enabled": false})))
        .await;
    assert_eq!(mixed, json!({"enabled": true, "previews_enabled": false}));
    s.err(s.req(Method::POST, &sub).json(&json!({})), 400, 10021)
        .await;
    // The route survives a re-upload, and DELETE turns both off.
    s.upload("app", json!({"main_module": "index.js"})).await;
    assert_eq!(s.ok(s.req(Method::GET, &sub)).await, mixed);
    assert_eq!(s.ok(s.req(Method::DELETE, &sub)).await, off);
    s.err(
        s.req(Method::GET, &s.acct("/workers/workers/none")),
        404,
        10007,
    )
    .await;
    // `wrangler delete` goes through the service.
    s.ok(s.req(Method::DELETE, &s.acct("/workers/services/app?force=true")))
        .await;
    s.err(s.req(Method::GET, &sub), 404, 10007).await;
    s.stop().await;
}

#[tokio::test]
async fn secrets_versions_and_subdomains_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.data_dir = Some(dir.path().join("api-state"));
    let s = Server::start(cfg.clone()).await;
    let up = s.upload("app", json!({"main_module": "index.js"})).await;
    s.ok(s
        .req(Method::PUT, &s.acct("/workers/scripts/app/secrets"))
        .json(&json!({"name": "K", "text": CANARY, "type": "secret_text"})))
        .await;
    s.ok(s
        .req(Method::POST, &s.acct("/workers/scripts/app/subdomain"))
        .json(&json!({"enabled": true})))
        .await;
    s.ok(s
        .req(Method::PUT, &s.acct("/workers/subdomain"))
        .json(&json!({"subdomain": "kept"})))
        .await;
    let before = s
        .ok(s.req(Method::GET, &s.acct("/workers/scripts/app/deployments")))
        .await;
    s.stop().await;

    let s = Server::start(cfg).await;
    let after = s
        .ok(s.req(Method::GET, &s.acct("/workers/scripts/app/deployments")))
        .await;
    assert_eq!(after, before);
    let version = up["deployment_id"].as_str().expect("deployment_id");
    s.ok(s.req(
        Method::GET,
        &s.acct(&format!("/workers/scripts/app/versions/{version}")),
    ))
    .await;
    assert_eq!(s.binding_names("app", "secret_text").await, ["K"]);
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/workers/scripts/app/subdomain")))
            .await,
        json!({"enabled": true, "previews_enabled": true})
    );
    assert_eq!(
        s.ok(s.req(Method::GET, &s.acct("/workers/subdomain")))
            .await,
        json!({"subdomain": "kept"})
    );
    s.stop().await;
}

#[tokio::test]
async fn version_history_is_bounded_and_stores_each_module_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.data_dir = Some(dir.path().join("api-state"));
    let snapshot = dir.path().join("api-state/state.json");
    let s = Server::start(cfg).await;
    let code_hex = hex_of(INDEX_JS.as_bytes());
    let copies = || {
        std::fs::read_to_string(&snapshot)
            .expect("state.json")
            .matches(&code_hex)
            .count()
    };
    // 25 uploads of the same code (a var changes each time): 20 versions kept, the code
    // stored twice (the live script and one shared version blob).
    for i in 0..25 {
        s.upload(
            "app",
            json!({"main_module": "index.js", "bindings": [{"type": "plain_text", "name": "N", "text": i.to_string()}]}),
        )
        .await;
    }
    let listed = s
        .ok(s.req(
            Method::GET,
            &s.acct("/workers/scripts/app/versions?deployable=true"),
        ))
        .await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["number"], 25);
    assert_eq!(copies(), 2);
    // Deleting the script drops its versions' contents too.
    s.ok(s.req(Method::DELETE, &s.acct("/workers/scripts/app")))
        .await;
    assert_eq!(copies(), 0);
    s.stop().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Issue #11 ("applied, answer lost"): with `applied_lost_rate` 1.0 a create is made and logged
/// (with its status and `answer_lost`) while its client gets no answer, only a dropped
/// connection; reads are never lost.
#[tokio::test]
async fn applied_lost_writes_are_made_and_logged_but_never_answered() {
    let s = Server::start(config()).await;
    s.api.set_faults(Faults {
        applied_lost_rate: 1.0,
        ..Faults::default()
    });
    let url = s.acct("/storage/kv/namespaces");
    let sent = timeout(
        STEP,
        s.req(Method::POST, &url)
            .json(&json!({ "title": "lost-answer" }))
            .send(),
    )
    .await
    .expect("fails in time");
    let err = sent.expect_err("the create gets no answer");
    assert!(!err.is_timeout(), "{err:?}");
    // A read is answered whatever the knob says.
    let list = s.ok(s.req(Method::GET, &url)).await;
    let titles: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["title"].as_str())
        .collect();
    assert_eq!(titles, ["lost-answer"], "the create was applied");
    let posts: Vec<(u16, bool)> = s
        .api
        .request_log()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| (r.status, r.answer_lost))
        .collect();
    assert_eq!(posts, [(200, true)]);
    s.api.set_faults(Faults::default());
    s.stop().await;
}
