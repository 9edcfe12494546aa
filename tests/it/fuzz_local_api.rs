//! Fuzzing on the stable toolchain: a seeded mutation loop over (1) the client's multipart
//! parser and (2) the local API's routes, driven through the real server over loopback with
//! malformed paths, queries, headers, JSON bodies and multipart uploads.
//!
//! Promise: no panic, no hang, no dropped connection, and every answer a proper envelope
//! (`{success, errors, messages, result}`; an error status always `success: false` with at
//! least one `{code, message}`), except the two raw answers the real API gives (a KV value,
//! a script's content).
//!
//! Bounded by default (a few seconds, part of the suite). Knobs: `LUMIERD_FUZZ_ITERS`
//! (requests or parser inputs per target, default 1500 / 20000) and `LUMIERD_FUZZ_SEED` (the
//! run's seed, printed on failure). The long run is in RELIABILITY.md, `## Local API`.

use std::time::Duration;

use lumierd::cloudflare::multipart;
use lumierd::local_api::{
    served_routes, Faults, LocalApi, LocalApiConfig, DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Upper bound for one request, including the server's answer.
const STEP: Duration = Duration::from_secs(20);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    env_number("LUMIERD_FUZZ_SEED", rand::random())
}

/// Applies 1..=4 byte-level mutations: flip, insert, delete, truncate, duplicate a slice, or
/// splice in a token that matters to parsers.
fn mutate_bytes(rng: &mut StdRng, input: &mut Vec<u8>) {
    const TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r\n\r\n",
        b"--",
        b"\"",
        b";",
        b"=",
        b"%",
        b"filename*=utf-8''%C3%",
        b"Content-Disposition: form-data; name=",
        b"Content-Type: ",
        b"\x00",
        b"\xff\xfe",
        b"{",
        b"}",
        b"[",
        b"]",
        b"null",
        b"18446744073709551616",
    ];
    for _ in 0..rng.gen_range(1..=4) {
        let len = input.len();
        match rng.gen_range(0..6) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let i = rng.gen_range(0..=len);
                input.insert(i, rng.gen());
            }
            2 if len > 0 => {
                let i = rng.gen_range(0..len);
                input.remove(i);
            }
            3 if len > 0 => input.truncate(rng.gen_range(0..len)),
            4 if len > 1 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                let chunk = input[a..b].to_vec();
                let at = rng.gen_range(0..=len);
                input.splice(at..at, chunk);
            }
            _ => {
                let token = TOKENS.choose(rng).copied().unwrap_or(b"--");
                let at = rng.gen_range(0..=len);
                input.splice(at..at, token.iter().copied());
            }
        }
    }
}

/// A valid multipart body (boundary `b0undary`) of 1..=4 parts, as the content endpoint sends.
fn multipart_seed(rng: &mut StdRng) -> Vec<u8> {
    let mut body = Vec::new();
    if rng.gen_bool(0.2) {
        body.extend_from_slice(b"preamble\r\n");
    }
    for i in 0..rng.gen_range(1..=4) {
        body.extend_from_slice(b"--b0undary\r\n");
        let disposition = match rng.gen_range(0..3) {
            0 => format!("form-data; name=\"m{i}.js\"; filename=\"m{i}.js\""),
            1 => format!("form-data; name=\"files\"; filename*=utf-8''m%C3%AF{i}.js"),
            _ => format!("form-data; name=m{i}"),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        if rng.gen_bool(0.7) {
            body.extend_from_slice(b"Content-Type: application/javascript+module\r\n");
        }
        body.extend_from_slice(b"\r\n");
        let content: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect();
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--b0undary--\r\n");
    body
}

/// The client's multipart parser never panics on malformed content and, on the valid seeds,
/// finds every part.
#[test]
fn fuzz_the_client_multipart_parser() {
    let seed = seed();
    let iters = env_number("LUMIERD_FUZZ_ITERS", 20_000);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut err) = (0u64, 0u64);
    for i in 0..iters {
        let mut body = multipart_seed(&mut rng);
        let parts_in_seed = body.windows(12).filter(|w| w == b"--b0undary\r\n").count();
        if i % 8 == 0 {
            let parsed = multipart::parse(&body, "b0undary")
                .unwrap_or_else(|e| panic!("seed {seed}, iteration {i}: valid body refused: {e}"));
            assert_eq!(parsed.len(), parts_in_seed, "seed {seed}, iteration {i}");
            continue;
        }
        mutate_bytes(&mut rng, &mut body);
        let boundary = if rng.gen_bool(0.9) { "b0undary" } else { "b" };
        let outcome = std::panic::catch_unwind(|| multipart::parse(&body, boundary));
        match outcome {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panic!(
                "seed {seed}, iteration {i}: the parser panicked on {:?}",
                String::from_utf8_lossy(&body)
            ),
        }
        let content_type: String = {
            let mut ct = b"multipart/form-data; boundary=b0undary".to_vec();
            mutate_bytes(&mut rng, &mut ct);
            String::from_utf8_lossy(&ct).into_owned()
        };
        let _ = multipart::boundary(&content_type);
    }
    eprintln!("multipart fuzz: seed {seed}, {iters} inputs, {ok} parsed, {err} refused, 0 panics");
}

/// Path segments that stress routing, percent-decoding and validation.
fn segment(rng: &mut StdRng, namespaces: &[String]) -> String {
    const NASTY: &[&str] = &[
        "",
        ".",
        "..",
        "%",
        "%zz",
        "%00",
        "%FF%FE",
        "%2F",
        "a%2Fb",
        "a/b/c",
        "%C3%A9",
        "W",
        "-x",
        "x.y",
        "0123456789abcdef0123456789abcdeg",
        "ffffffffffffffffffffffffffffffff",
        "%20",
        "a%0Ab",
        "%E2%80%AE",
    ];
    match rng.gen_range(0..6) {
        0 | 1 if !namespaces.is_empty() => namespaces.choose(rng).cloned().unwrap_or_default(),
        2 => NASTY
            .choose(rng)
            .map(|s| (*s).to_owned())
            .unwrap_or_default(),
        3 => "k".repeat(rng.gen_range(1..3000)),
        4 => format!("{:032x}", rng.gen::<u128>()),
        _ => ["w", "k", "key", "fuzz", "cache"]
            .choose(rng)
            .map(|s| (*s).to_owned())
            .unwrap_or_default(),
    }
}

fn query(rng: &mut StdRng) -> String {
    const NAMES: &[&str] = &[
        "page",
        "per_page",
        "limit",
        "cursor",
        "prefix",
        "expiration",
        "expiration_ttl",
        "order",
        "direction",
        "bindings_inherit",
        "metadata",
    ];
    const VALUES: &[&str] = &[
        "",
        "0",
        "1",
        "-1",
        "10",
        "1000",
        "1001",
        "60",
        "59",
        "18446744073709551615",
        "18446744073709551616",
        "1e9",
        "abc",
        "%zz",
        "title",
        "desc",
        "strict",
        "253402300800",
    ];
    let mut parts = Vec::new();
    for _ in 0..rng.gen_range(0..4) {
        let name = NAMES.choose(rng).copied().unwrap_or("page");
        let value = VALUES.choose(rng).copied().unwrap_or("");
        parts.push(format!("{name}={value}"));
    }
    parts.join("&")
}

/// A JSON document like the ones the routes take, with random values swapped in.
fn json_body(rng: &mut StdRng, namespaces: &[String]) -> Value {
    let ns = namespaces.first().cloned().unwrap_or_default();
    let mut doc = match rng.gen_range(0..7) {
        0 => json!({ "title": "fuzz" }),
        1 => json!([{ "key": "k", "value": "v", "expiration_ttl": 120, "metadata": {"a": 1} }]),
        2 => json!(["k", "k2"]),
        3 => json!({ "keys": ["k"], "type": "json", "withMetadata": true }),
        4 => json!({ "bindings": [{ "type": "kv_namespace", "name": "KV", "namespace_id": ns }] }),
        5 => {
            json!({ "compatibility_date": "2024-01-01", "usage_model": "standard", "logpush": false })
        }
        _ => {
            json!({ "main_module": "index.js", "bindings": [{ "type": "plain_text", "name": "A", "text": "x" }] })
        }
    };
    for _ in 0..rng.gen_range(0..3) {
        replace_somewhere(rng, &mut doc);
    }
    doc
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(u64::MAX),
        4 => json!(-1),
        5 => json!("x".repeat(rng.gen_range(0..2000))),
        6 => json!([]),
        7 => json!({ "type": 5 }),
        _ => json!({}),
    }
}

/// Replaces one value (the document itself, or a field or element at any depth).
fn replace_somewhere(rng: &mut StdRng, v: &mut Value) {
    let descend = rng.gen_bool(0.7);
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            if let Some(k) = keys.choose(rng) {
                if let Some(child) = map.get_mut(k) {
                    replace_somewhere(rng, child);
                }
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.gen_range(0..items.len());
            replace_somewhere(rng, &mut items[i]);
        }
        _ => *v = random_value(rng),
    }
}

/// An upload as wrangler sends it, then possibly mutated byte by byte.
fn multipart_upload(rng: &mut StdRng, namespaces: &[String]) -> (String, Vec<u8>) {
    let boundary = "fuzzb0undary";
    let mut meta = json_body(rng, namespaces);
    if rng.gen_bool(0.6) {
        meta = json!({ "main_module": "index.js", "bindings": meta.get("bindings").cloned().unwrap_or(json!([])) });
    }
    let mut body = Vec::new();
    let mut part = |name: &str, ct: Option<&str>, data: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n")
                .as_bytes(),
        );
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    };
    part("metadata", None, meta.to_string().as_bytes());
    let types = [
        "application/javascript+module",
        "text/javascript",
        "application/wasm",
        "text/plain",
        "application/x-nonsense",
    ];
    for name in ["index.js", "value", "settings", "dep.js"] {
        if rng.gen_bool(0.6) {
            part(name, types.choose(rng).copied(), b"export default {}");
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    if rng.gen_bool(0.4) {
        mutate_bytes(rng, &mut body);
    }
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Checks one answer; `Err` says what is wrong.
fn check_answer(
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<(), String> {
    if method == "HEAD" {
        return Ok(());
    }
    // `DELETE /workers/subdomain` answers 204 with no body, as the 2026 spec says.
    if status == 204 && method == "DELETE" && body.is_empty() {
        return Ok(());
    }
    let raw_ok = (200..300).contains(&status)
        && method == "GET"
        && (path.contains("/values/") || path.contains("/workers/scripts/"));
    if !content_type.starts_with("application/json") {
        return if raw_ok {
            Ok(())
        } else {
            Err(format!(
                "status {status} with content type {content_type:?}"
            ))
        };
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let success = v["success"]
        .as_bool()
        .ok_or_else(|| format!("no success flag: {v}"))?;
    let errors = v["errors"]
        .as_array()
        .ok_or_else(|| format!("no errors: {v}"))?;
    if !v["messages"].is_array() || v.get("result").is_none() {
        return Err(format!("not an envelope: {v}"));
    }
    if status >= 400 || !success {
        if success || status < 400 || errors.is_empty() {
            return Err(format!("status {status} with {v}"));
        }
        for e in errors {
            if !e["code"].is_u64() || !e["message"].is_string() {
                return Err(format!("bad error item: {v}"));
            }
        }
        if status >= 500 {
            return Err(format!("server error: {v}"));
        }
    }
    Ok(())
}

/// The real router, over loopback, under a mutation loop: every request gets a proper answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_the_local_api_routes() {
    let seed = seed();
    let iters = env_number("LUMIERD_FUZZ_ITERS", 1500);
    let mut rng = StdRng::seed_from_u64(seed);
    let api = LocalApi::open(LocalApiConfig {
        token: DEFAULT_TOKEN.to_owned(),
        account_id: DEFAULT_ACCOUNT_ID.to_owned(),
        data_dir: None,
        faults: Faults::default(),
        request_log: None,
    })
    .expect("open");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let root = format!("http://{}/client/v4", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP)
        .build()
        .expect("client");
    let acct = format!("{root}/accounts/{DEFAULT_ACCOUNT_ID}");

    // Something to find: two namespaces with keys, and a script bound to one of them.
    let mut namespaces = Vec::new();
    for title in ["fuzz-a", "fuzz-b"] {
        let r: Value = http
            .post(format!("{acct}/storage/kv/namespaces"))
            .bearer_auth(DEFAULT_TOKEN)
            .json(&json!({ "title": title }))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        namespaces.push(r["result"]["id"].as_str().expect("id").to_owned());
    }
    for key in ["k", "key", "a/b"] {
        http.put(format!(
            "{acct}/storage/kv/namespaces/{}/values/{key}",
            namespaces[0]
        ))
        .bearer_auth(DEFAULT_TOKEN)
        .body("v")
        .send()
        .await
        .expect("put");
    }

    let routes = served_routes();
    let methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for i in 0..iters {
        let (route_method, template) = *routes.choose(&mut rng).expect("routes");
        let method = if rng.gen_bool(0.85) {
            route_method
        } else {
            methods.choose(&mut rng).copied().unwrap_or("GET")
        };
        let account = if rng.gen_bool(0.95) {
            DEFAULT_ACCOUNT_ID.to_owned()
        } else {
            segment(&mut rng, &[])
        };
        let mut path = template.replace("{account_id}", &account);
        for name in [
            "{namespace_id}",
            "{key_name}",
            "{script_name}",
            "{service_name}",
        ] {
            if path.contains(name) {
                let s = segment(&mut rng, &namespaces);
                path = path.replace(name, &s);
            }
        }
        if rng.gen_bool(0.05) {
            path.push_str(
                ["/", "//x", "/%", "/.."]
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or("/"),
            );
        }
        let q = query(&mut rng);
        let url = if q.is_empty() {
            format!("{root}{path}")
        } else {
            format!("{root}{path}?{q}")
        };
        let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
            continue;
        };
        let mut req = http.request(m, &url);
        match rng.gen_range(0..20) {
            0 => {}
            1 => req = req.bearer_auth("wrong"),
            2 => req = req.header("authorization", "Basic x"),
            _ => req = req.bearer_auth(DEFAULT_TOKEN),
        }
        req = match rng.gen_range(0..5) {
            0 => {
                let (ct, body) = multipart_upload(&mut rng, &namespaces);
                req.header("content-type", ct).body(body)
            }
            1 => {
                let mut bytes = json_body(&mut rng, &namespaces).to_string().into_bytes();
                if rng.gen_bool(0.5) {
                    mutate_bytes(&mut rng, &mut bytes);
                }
                req.header("content-type", "application/json").body(bytes)
            }
            2 => {
                let bytes: Vec<u8> = (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect();
                let ct = [
                    "application/octet-stream",
                    "multipart/form-data",
                    "multipart/form-data; boundary=",
                    "multipart/form-data; boundary=\"x",
                    "text/plain; charset=utf-8",
                    "\u{7f}",
                ]
                .choose(&mut rng)
                .copied()
                .unwrap_or("text/plain");
                req.header("content-type", ct).body(bytes)
            }
            3 => req.json(&json_body(&mut rng, &namespaces)),
            _ => req,
        };
        let resp = match tokio::time::timeout(STEP, req.send()).await {
            Err(_) => panic!("seed {seed}, iteration {i}: {method} {url}: no answer in {STEP:?}"),
            Ok(Err(e)) if e.is_builder() => continue,
            Ok(Err(e)) => panic!("seed {seed}, iteration {i}: {method} {url}: {e}"),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = tokio::time::timeout(STEP, resp.bytes())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}, iteration {i}: body in time"))
            .unwrap_or_else(|e| panic!("seed {seed}, iteration {i}: body: {e}"));
        if let Err(problem) = check_answer(method, &path, status, &content_type, &body) {
            panic!("seed {seed}, iteration {i}: {method} {url}: {problem}");
        }
        *statuses.entry(status).or_default() += 1;
    }
    // Still serving after all that.
    let alive = http
        .get(format!("{acct}/storage/kv/namespaces"))
        .bearer_auth(DEFAULT_TOKEN)
        .send()
        .await
        .expect("still serving");
    assert_eq!(alive.status(), 200);
    eprintln!("route fuzz: seed {seed}, {iters} requests, statuses {statuses:?}, 0 panics");
    let _ = stop.send(());
    tokio::time::timeout(STEP, server)
        .await
        .expect("stops in time")
        .expect("serve task")
        .expect("serve returns Ok");
}
