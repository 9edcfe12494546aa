//! The client against a scripted HTTP server (axum on loopback), for what the local API cannot
//! show: the exact requests sent (paths, query and path encodings, headers, JSON and multipart
//! bodies, which its request log does not record) and answers it never gives (a `null` rename
//! result, a lying `total_count`, `success: false` on a 200, undecodable bodies, a token that
//! only the user endpoint verifies).
//!
//! Everything the real local API can show (every operation's results, error classes, retries
//! and their bounds, `Retry-After`, `Ratelimit` pauses, blocks shared by clones, resets and
//! timeouts) is tested once, against it, in `tests/it/client.rs`; the pure parts (encoding,
//! backoff, limiter, classification, multipart) have table tests beside their code.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::{Request as AxumRequest, State};
use axum::response::Response as AxumResponse;
use serde_json::json;
use tokio::net::TcpListener;

use super::types::{Binding, Module, ScriptMetadata};
use super::*;

const TOKEN: &str = "tok-SECRET-1234567890";

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// What the mock answers: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);
type Responder = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct Mock {
    seen: Arc<Mutex<Vec<Seen>>>,
    responder: Arc<Responder>,
}

fn ok(result: serde_json::Value) -> Reply {
    envelope(200, true, &[], result)
}

fn envelope(
    status: u16,
    success: bool,
    errors: &[(u32, &str)],
    result: serde_json::Value,
) -> Reply {
    let errors: Vec<_> = errors
        .iter()
        .map(|(c, m)| json!({"code": c, "message": m}))
        .collect();
    let body = json!({"success": success, "errors": errors, "messages": [], "result": result});
    (
        status,
        vec![("content-type", "application/json".to_owned())],
        body.to_string().into_bytes(),
    )
}

async fn handle(State(mock): State<Mock>, req: AxumRequest) -> AxumResponse {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers.clone(),
        body,
    };
    let n = {
        let mut all = mock.seen.lock().expect("lock");
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, headers, body) = (mock.responder)(&seen, n);
    let mut resp = AxumResponse::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp.body(AxumBody::from(body)).expect("response")
}

/// Starts the mock; returns a client config pointing at it and the request record.
async fn start(
    responder: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (
    ClientConfig,
    Arc<Mutex<Vec<Seen>>>,
    tokio::task::JoinHandle<()>,
) {
    let mock = Mock {
        seen: Arc::new(Mutex::new(Vec::new())),
        responder: Arc::new(responder),
    };
    let seen = mock.seen.clone();
    let app = axum::Router::new().fallback(handle).with_state(mock);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut config = ClientConfig::new(format!("http://{addr}/client/v4"), "acc123", TOKEN);
    config.rate = RateLimit::unlimited();
    config.backoff_base = Duration::from_millis(5);
    config.timeout = Duration::from_secs(5);
    (config, seen, task)
}

fn seen(all: &Arc<Mutex<Vec<Seen>>>) -> Vec<Seen> {
    all.lock().expect("lock").clone()
}

fn ns(id: &str, title: &str) -> serde_json::Value {
    json!({"id": id, "title": title})
}

#[tokio::test]
async fn namespace_request_shapes_and_a_null_rename_result() {
    let (config, log, task) = start(|s, _| match (s.method.as_str(), s.path.as_str()) {
        ("POST", _) => ok(ns("n1", "t1")),
        ("GET", p) if p.ends_with("/n1") => ok(ns("n1", "t1")),
        ("PUT", _) => ok(serde_json::Value::Null),
        ("DELETE", _) => ok(serde_json::Value::Null),
        _ => envelope(404, false, &[(7003, "No route")], serde_json::Value::Null),
    })
    .await;
    let c = Client::new(config).expect("client");
    assert_eq!(c.create_namespace("t1").await.expect("create").id, "n1");
    assert_eq!(c.get_namespace("n1").await.expect("get").title, "t1");
    // A null rename result falls back to {id, title}.
    let renamed = c.rename_namespace("n1", "t2").await.expect("rename");
    assert_eq!((renamed.id.as_str(), renamed.title.as_str()), ("n1", "t2"));
    c.delete_namespace("n1").await.expect("delete");
    let log = seen(&log);
    assert_eq!(log.len(), 4);
    assert_eq!(
        log[0].path,
        "/client/v4/accounts/acc123/storage/kv/namespaces"
    );
    assert_eq!(log[0].body, br#"{"title":"t1"}"#.to_vec());
    assert_eq!(
        log[0]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(log[2].body, br#"{"title":"t2"}"#.to_vec());
    for s in &log {
        assert_eq!(
            s.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let stats = c.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.retries, 0);
    assert_eq!(stats.count("create_namespace", 200), 1);
    task.abort();
}

#[tokio::test]
async fn pages_end_on_a_short_or_empty_page_whatever_total_count_says() {
    // 7 namespaces, page size 3: pages of 3, 3, 1 → three requests.
    let (config, log, task) = start(|s, _| {
        let page: usize = s
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("page="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let all: Vec<_> = (0..7)
            .map(|i| ns(&format!("id{i}"), &format!("t{i}")))
            .collect();
        let per_page: usize = s
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("per_page="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(20);
        let items: Vec<_> = all
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        // total_count lies on purpose: it must not be trusted.
        let mut reply = ok(json!(items));
        let mut v: serde_json::Value = serde_json::from_slice(&reply.2).expect("json");
        v["result_info"] =
            json!({"page": page, "per_page": per_page, "count": items.len(), "total_count": 3});
        reply.2 = v.to_string().into_bytes();
        reply
    })
    .await;
    let c = Client::new(config).expect("client");
    let got = c.list_namespaces_paged(3).await.expect("list");
    assert_eq!(got.len(), 7);
    let first = seen(&log);
    assert_eq!(first.len(), 3);
    assert!(first[0].query.contains("page=1") && first[0].query.contains("per_page=3"));
    assert!(first[2].query.contains("page=3"));
    // Page size 7: one full page, then an empty page ends the loop.
    let got = c.list_namespaces_paged(7).await.expect("list");
    assert_eq!(got.len(), 7);
    assert_eq!(seen(&log).len(), 5);
    task.abort();
}

#[tokio::test]
async fn key_list_query_and_value_path_encoding() {
    let (config, log, task) = start(|s, _| {
        if s.path.contains("/keys") {
            let (keys, cursor) = if s.query.contains("cursor=c%2B1") {
                (json!([{"name": "b", "expiration": 1_900_000_000u64}]), "")
            } else {
                (json!([{"name": "a", "metadata": {"h": 1}}]), "c+1")
            };
            let body = json!({"success": true, "errors": [], "messages": [], "result": keys,
                "result_info": {"count": 1, "cursor": cursor}});
            return (200, vec![], body.to_string().into_bytes());
        }
        ok(serde_json::Value::Null)
    })
    .await;
    let c = Client::new(config).expect("client");
    let keys = c.list_keys("ns1", Some("a b/")).await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].expiration, Some(1_900_000_000));
    c.delete_value("ns1", "dir/a b?%:!é").await.expect("delete");
    let log = seen(&log);
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].query, "limit=1000&prefix=a%20b%2F");
    assert_eq!(log[1].query, "limit=1000&prefix=a%20b%2F&cursor=c%2B1");
    assert_eq!(
        log[2].path,
        "/client/v4/accounts/acc123/storage/kv/namespaces/ns1/values/dir%2Fa%20b%3F%25%3A%21%C3%A9"
    );
    // Keys that a URL parser would collapse are refused without a request.
    let err = c.delete_value("ns1", "..").await.expect_err("dot-dot");
    assert_eq!(err.kind, ErrorKind::Invalid);
    let err = c.get_namespace("").await.expect_err("empty");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(seen_len(&c), 3);
    task.abort();
}

fn seen_len(c: &Client) -> u64 {
    c.stats().requests
}

/// Raw bytes go as an octet-stream body; TTL or metadata switch to a multipart body with
/// `value` and `metadata` parts and the expiry in the query. (Reads are tested against the
/// local API in `tests/it/client.rs`.)
#[tokio::test]
async fn value_write_shapes() {
    let (config, log, task) = start(|_, _| ok(serde_json::Value::Null)).await;
    let c = Client::new(config).expect("client");
    let before = seen(&log).len();
    c.put_value("ns", "k", &ValueWrite::new(b"raw bytes".to_vec()))
        .await
        .expect("raw put");
    c.put_value(
        "ns",
        "k",
        &ValueWrite {
            value: vec![1, 2, 3],
            expiration: Some(1_900_000_000),
            expiration_ttl: Some(120),
            metadata: Some(json!({"m": true})),
        },
    )
    .await
    .expect("multipart put");
    let log = seen(&log);
    let raw = &log[before];
    assert_eq!(raw.method, "PUT");
    assert_eq!(raw.query, "");
    assert_eq!(raw.body, b"raw bytes".to_vec());
    assert_eq!(
        raw.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/octet-stream")
    );
    let multi = &log[before + 1];
    assert_eq!(multi.query, "expiration=1900000000&expiration_ttl=120");
    let ct = multi
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multipart::boundary(ct).expect("multipart");
    let parts = multipart::parse(&multi.body, &boundary).expect("parts");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].name.as_deref(), Some("value"));
    assert_eq!(parts[0].data, vec![1, 2, 3]);
    assert_eq!(parts[1].name.as_deref(), Some("metadata"));
    assert_eq!(parts[1].data, br#"{"m":true}"#.to_vec());
    task.abort();
}

/// The fake API of [`script_request_shapes`]: a content download, an upload, settings and a
/// script list.
fn script_api(s: &Seen) -> Reply {
    if s.path.ends_with("/content/v2") {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"index.js\"; filename=\"index.js\"\r\nContent-Type: application/javascript+module\r\n\r\nexport default {}\r\n--XX--\r\n";
        return (
            200,
            vec![
                (
                    "content-type",
                    "multipart/form-data; boundary=XX".to_owned(),
                ),
                ("cf-entrypoint", "index.js".to_owned()),
            ],
            body.to_vec(),
        );
    }
    match s.method.as_str() {
        "PUT" => ok(json!({"id": "w1", "etag": "e1", "has_modules": true})),
        "PATCH" | "GET" if s.path.ends_with("/settings") => ok(json!({
            "bindings": [{"type": "plain_text", "name": "A", "text": "x"}],
            "compatibility_date": "2025-01-01",
            "usage_model": "standard"
        })),
        "GET" => ok(json!([{"id": "w1"}, {"id": "w2", "etag": "e2"}])),
        _ => ok(json!({"id": "w1"})),
    }
}

/// A two-module upload with a KV binding.
fn two_module_upload() -> ScriptUpload {
    ScriptUpload {
        metadata: ScriptMetadata {
            main_module: Some("index.js".into()),
            bindings: vec![Binding::KvNamespace {
                name: "KV".into(),
                namespace_id: "0123".into(),
            }],
            compatibility_date: Some("2025-01-01".into()),
            ..ScriptMetadata::default()
        },
        modules: vec![
            Module {
                name: "index.js".into(),
                content_type: "application/javascript+module".into(),
                content: b"export default {}".to_vec(),
            },
            Module {
                name: "lib/util.mjs".into(),
                content_type: "application/javascript+module".into(),
                content: b"export const x = 1".to_vec(),
            },
        ],
    }
}

/// The upload is a multipart body: the metadata, then each module with its file name and
/// content type.
fn assert_upload_shape(up: &Seen) {
    assert_eq!(up.path, "/client/v4/accounts/acc123/workers/scripts/w1");
    let ct = up
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts =
        multipart::parse(&up.body, &multipart::boundary(ct).expect("boundary")).expect("parts");
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].name.as_deref(), Some("metadata"));
    assert_eq!(parts[0].content_type.as_deref(), Some("application/json"));
    let meta: serde_json::Value = serde_json::from_slice(&parts[0].data).expect("metadata json");
    assert_eq!(meta["main_module"], "index.js");
    assert_eq!(meta["bindings"][0]["type"], "kv_namespace");
    assert_eq!(parts[1].name.as_deref(), Some("index.js"));
    assert_eq!(parts[1].filename.as_deref(), Some("index.js"));
    assert_eq!(
        parts[1].content_type.as_deref(),
        Some("application/javascript+module")
    );
    assert_eq!(parts[2].filename.as_deref(), Some("lib/util.mjs"));
}

#[tokio::test]
async fn script_request_shapes() {
    let (config, log, task) = start(|s, _| script_api(s)).await;
    let c = Client::new(config).expect("client");
    let upload = two_module_upload();
    let script = c.upload_script("w1", &upload).await.expect("upload");
    assert_eq!(script.etag, "e1");
    let settings = c.get_settings("w1").await.expect("settings");
    assert_eq!(settings.compatibility_date.as_deref(), Some("2025-01-01"));
    c.patch_settings("w1", &settings).await.expect("patch");
    let content = c.get_content("w1").await.expect("content");
    assert_eq!(content.main_module.as_deref(), Some("index.js"));
    assert_eq!(content.modules[0].content, b"export default {}".to_vec());
    assert_eq!(c.list_scripts().await.expect("list").len(), 2);
    c.delete_script("w1", true).await.expect("delete");

    let log = seen(&log);
    assert_upload_shape(&log[0]);
    let patch = &log[2];
    assert_eq!(patch.method, "PATCH");
    let ct = patch
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts =
        multipart::parse(&patch.body, &multipart::boundary(ct).expect("boundary")).expect("parts");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].name.as_deref(), Some("settings"));
    assert_eq!(log[5].method, "DELETE");
    assert_eq!(log[5].query, "force=true");
    task.abort();
}

#[tokio::test]
async fn success_false_on_200_and_undecodable_bodies_are_errors() {
    let (config, log, task) = start(|s, _| {
        if s.path.ends_with("/namespaces") {
            envelope(
                200,
                false,
                &[(10021, "validation failed")],
                serde_json::Value::Null,
            )
        } else if s.path.ends_with("/scripts") {
            (200, vec![], b"<html>not json</html>".to_vec())
        } else {
            (400, vec![], b"plain text failure".to_vec())
        }
    })
    .await;
    let c = Client::new(config).expect("client");
    let err = c.create_namespace("x").await.expect_err("success false");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(err.status, Some(200));
    assert!(err.has_code(10021));
    let err = c.list_scripts().await.expect_err("undecodable");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(
        err.to_string().contains("undecodable response body"),
        "{err}"
    );
    let err = c
        .get_namespace("abc")
        .await
        .expect_err("non-envelope error");
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.to_string().contains("plain text failure"), "{err}");
    // None of them was retried.
    assert_eq!(seen(&log).len(), 3);
    assert_eq!(c.stats().retries, 0);
    task.abort();
}

#[tokio::test]
async fn verify_token_falls_back_to_the_user_endpoint() {
    let (config, log, task) = start(|s, _| {
        if s.path.starts_with("/client/v4/accounts/") {
            envelope(404, false, &[(7003, "No route")], serde_json::Value::Null)
        } else {
            ok(json!({"id": "tokid", "status": "active"}))
        }
    })
    .await;
    let c = Client::new(config).expect("client");
    assert_eq!(c.verify_token().await.expect("verify").status, "active");
    let log = seen(&log);
    assert_eq!(log[0].path, "/client/v4/accounts/acc123/tokens/verify");
    assert_eq!(log[1].path, "/client/v4/user/tokens/verify");
    task.abort();
}
