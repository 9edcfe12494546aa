//! The etcd backend of [`super::Store`]: every key lives under a prefix in etcd, spoken to
//! through etcd's documented JSON gateway (`POST /v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/deleterange`, `/v3/kv/txn`; keys and values base64) with the project's `reqwest`.
//! No gRPC client: that would need `protoc` (or a vendored one) and tonic/prost at build
//! time, for a store that sees a few small requests a second.
//!
//! Layout under PREFIX (the same logical layout as sled's trees):
//!
//! | key                         | value                                  |
//! |-----------------------------|----------------------------------------|
//! | `PREFIX/meta/schema_version`| decimal                                |
//! | `PREFIX/meta/load_error`    | the last manifest load error (absent = loaded) |
//! | `PREFIX/meta/last_pass`     | RFC 3339                               |
//! | `PREFIX/resources/A\0S\0N`  | a JSON [`super::Record`]               |
//! | `PREFIX/outbox/SEQ`         | a notification (SEQ: 16 hex digits)    |
//! | `PREFIX/outbox_ids/ID`      | its SEQ (16 hex digits)                |
//!
//! Blocking: the store's API is synchronous, so every call blocks its caller until etcd
//! answers (at most [`CALL_TIMEOUT`]). The HTTP runs on one dedicated thread with its own
//! small runtime, so a call from an async worker never re-enters the daemon's runtime; the
//! daemon's durable writes go through `spawn_blocking`. Durability: etcd has acknowledged a
//! write only after a quorum has it on disk, so every write is durable when it returns and a
//! flush has nothing left to do.
//!
//! Endpoints: a URL names one or more `HOST:PORT`; a call that cannot reach one tries the
//! next, and the one that answered is tried first next time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Longest one gateway call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd URL {url:?}: {why} (expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX)")]
    Url { url: String, why: &'static str },
    #[error("etcd at {endpoints}: {why}")]
    Unreachable { endpoints: String, why: String },
    #[error("etcd answered {status} to {path}: {body}")]
    Refused {
        path: String,
        status: u16,
        body: String,
    },
    #[error("etcd answered {path} with an unreadable body: {why}")]
    Body { path: String, why: String },
    /// A guarded write found the leader key changed: this replica no longer leads.
    #[error("etcd refused a record write: this replica no longer holds the leader lease")]
    Fenced,
}

/// A parsed `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `HOST:PORT` of each member, in the URL's order.
    pub endpoints: Vec<String>,
    /// The key prefix, without a trailing slash (never empty: keys of other users of the
    /// same etcd must not mix with ours).
    pub prefix: String,
}

impl EtcdUrl {
    pub fn parse(url: &str) -> Result<EtcdUrl, EtcdError> {
        let bad = |why| EtcdError::Url {
            url: url.to_owned(),
            why,
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("not an etcd:// URL"))?;
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /PREFIX after the endpoints"))?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(bad("the PREFIX is empty"));
        }
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() || endpoints.iter().any(|h| !h.contains(':')) {
            return Err(bad("each endpoint must be HOST:PORT"));
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: format!("/{}", prefix.trim_start_matches('/')),
        })
    }
}

impl std::fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

/// A key and its value, as etcd stores them.
pub type Kv = (Vec<u8>, Vec<u8>);

type Reply = Result<Value, EtcdError>;
type Job = (String, Value, mpsc::Sender<Reply>);

/// A connection to the gateway: a thread that owns an HTTP client and a small runtime.
/// Dropping the last handle ends the thread.
pub struct Gateway {
    url: EtcdUrl,
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
}

impl Gateway {
    pub fn connect(url: EtcdUrl) -> Result<Gateway, EtcdError> {
        let unreachable = |why: String| EtcdError::Unreachable {
            endpoints: url.endpoints.join(","),
            why,
        };
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let endpoints = url.endpoints.clone();
        std::thread::Builder::new()
            .name("etcd-gateway".into())
            .spawn(move || {
                let first = AtomicUsize::new(0);
                while let Ok((path, body, reply)) = rx.recv() {
                    let out = runtime.block_on(call(&client, &endpoints, &first, &path, &body));
                    let _ = reply.send(out);
                }
            })
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Gateway {
            url,
            jobs: std::sync::Mutex::new(tx),
        })
    }

    pub fn url(&self) -> &EtcdUrl {
        &self.url
    }

    /// One gateway call (`path` e.g. `/v3/kv/range`), blocking until it answers.
    pub fn post(&self, path: &str, body: Value) -> Reply {
        let (tx, rx) = mpsc::channel();
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send((path.to_owned(), body, tx));
        let gone = || EtcdError::Unreachable {
            endpoints: self.url.endpoints.join(","),
            why: "the gateway thread has ended".into(),
        };
        sent.map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// The full key for `rest` (e.g. `meta/last_pass`) under the prefix.
    pub fn key(&self, rest: &[u8]) -> Vec<u8> {
        let mut k = format!("{}/", self.url.prefix).into_bytes();
        k.extend_from_slice(rest);
        k
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let out = self.post("/v3/kv/range", json!({ "key": B64.encode(key) }))?;
        Ok(kvs(&out)?.into_iter().next().map(|(_, v)| v))
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        self.post(
            "/v3/kv/put",
            json!({ "key": B64.encode(key), "value": B64.encode(value) }),
        )?;
        Ok(())
    }

    pub fn delete(&self, key: &[u8]) -> Result<bool, EtcdError> {
        let out = self.post("/v3/kv/deleterange", json!({ "key": B64.encode(key) }))?;
        Ok(int(&out, "deleted") > 0)
    }

    /// Keys and values in `[from, end)` in key order, at most `limit` (0 = all).
    pub fn range(&self, from: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EtcdError> {
        let out = self.post(
            "/v3/kv/range",
            json!({ "key": B64.encode(from), "range_end": B64.encode(end), "limit": limit }),
        )?;
        kvs(&out)
    }

    /// How many keys are in `[from, end)`.
    pub fn count(&self, from: &[u8], end: &[u8]) -> Result<usize, EtcdError> {
        let out = self.post(
            "/v3/kv/range",
            json!({ "key": B64.encode(from), "range_end": B64.encode(end), "count_only": true }),
        )?;
        Ok(usize::try_from(int(&out, "count")).unwrap_or(0))
    }

    /// The last key in `[from, end)`, if any.
    pub fn last(&self, from: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let out = self.post(
            "/v3/kv/range",
            json!({ "key": B64.encode(from), "range_end": B64.encode(end), "limit": 1,
                    "sort_order": "DESCEND", "sort_target": "KEY", "keys_only": true }),
        )?;
        Ok(kvs(&out)?.into_iter().next().map(|(k, _)| k))
    }
}

/// The end of the range of every key that starts with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// An int64 field: the gateway sends them as JSON strings (proto3 JSON mapping).
fn int(v: &Value, field: &str) -> i64 {
    match &v[field] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kvs(out: &Value) -> Result<Vec<Kv>, EtcdError> {
    let bad = |why: String| EtcdError::Body {
        path: "/v3/kv/range".into(),
        why,
    };
    let Some(list) = out.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new()); // proto3 JSON leaves empty lists out
    };
    list.iter()
        .map(|kv| {
            let field = |name: &str| -> Result<Vec<u8>, EtcdError> {
                match kv.get(name).and_then(Value::as_str) {
                    Some(s) => B64.decode(s).map_err(|e| bad(e.to_string())),
                    None => Ok(Vec::new()),
                }
            };
            Ok((field("key")?, field("value")?))
        })
        .collect()
}

/// One call, tried on each endpoint from the last one that answered.
async fn call(
    client: &reqwest::Client,
    endpoints: &[String],
    first: &AtomicUsize,
    path: &str,
    body: &Value,
) -> Reply {
    let start = first.load(Ordering::Relaxed);
    let mut last_error = String::new();
    for i in 0..endpoints.len() {
        let at = (start + i) % endpoints.len();
        let url = format!("http://{}{path}", endpoints[at]);
        let resp = match client.post(&url).json(body).send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        first.store(at, Ordering::Relaxed);
        let status = resp.status();
        let text = resp.text().await.map_err(|e| EtcdError::Body {
            path: path.into(),
            why: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(EtcdError::Refused {
                path: path.into(),
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        return serde_json::from_str(&text).map_err(|e| EtcdError::Body {
            path: path.into(),
            why: e.to_string(),
        });
    }
    Err(EtcdError::Unreachable {
        endpoints: endpoints.join(","),
        why: last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_why_not() {
        let u = EtcdUrl::parse("etcd://10.0.0.1:2379,10.0.0.2:2379/lumierd/prod/").unwrap();
        assert_eq!(u.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(u.prefix, "/lumierd/prod");
        assert_eq!(
            u.to_string(),
            "etcd://10.0.0.1:2379,10.0.0.2:2379/lumierd/prod"
        );
        for (bad, why) in [
            ("http://x:1/p", "not an etcd:// URL"),
            ("etcd://x:1", "no /PREFIX"),
            ("etcd://x:1/", "PREFIX is empty"),
            ("etcd://x/p", "HOST:PORT"),
        ] {
            let e = EtcdUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
    }
}
