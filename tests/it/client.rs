//! The Cloudflare client (`lumierd::cloudflare::Client`) against the real local API over
//! loopback: every operation, every error class, pagination, and the retry / rate-limit
//! behaviour under injected faults (asserted through the local API's request log).
//!
//! Every test runs inside `tokio::time::timeout` and stops the server it started.

use std::future::Future;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use lumierd::cloudflare::types::{Binding, Module, ScriptMetadata};
use lumierd::cloudflare::{ApiError, Client, ErrorKind, ScriptUpload, ValueWrite};
use lumierd::local_api::{Faults, LoggedRequest, RateLimitModel, DEFAULT_TOKEN};
use serde_json::json;

use crate::support::Api;

/// A well-formed namespace id that does not exist.
const UNKNOWN_NS: &str = "ffffffffffffffffffffffffffffffff";

/// Runs a test body with a hard time bound.
async fn bounded<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .expect("test exceeded its time bound");
}

fn kind(r: Result<impl std::fmt::Debug, ApiError>) -> (ErrorKind, Vec<u32>) {
    let e = r.expect_err("expected an error");
    assert!(!e.to_string().contains(DEFAULT_TOKEN), "token leaked: {e}");
    (e.kind, e.errors.iter().map(|m| m.code).collect())
}

fn count(log: &[LoggedRequest], method: &str, path_suffix: &str) -> usize {
    log.iter()
        .filter(|r| r.method == method && r.path.ends_with(path_suffix))
        .count()
}

fn module(name: &str, text: &str) -> Module {
    Module {
        name: name.to_owned(),
        content_type: "application/javascript+module".to_owned(),
        content: text.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn namespace_crud_and_errors() {
    bounded(30, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let ns = c.create_namespace("app-prod-cache").await.expect("create");
        assert_eq!(ns.title, "app-prod-cache");
        assert_eq!(ns.id.len(), 32);
        assert_eq!(c.get_namespace(&ns.id).await.expect("get"), ns.clone());
        assert!(c
            .list_namespaces()
            .await
            .expect("list")
            .iter()
            .any(|n| n.id == ns.id));

        // Duplicate title → AlreadyExists (10014), not retried.
        assert_eq!(
            kind(c.create_namespace("app-prod-cache").await),
            (ErrorKind::AlreadyExists, vec![10014])
        );

        let renamed = c
            .rename_namespace(&ns.id, "app-prod-cache-2")
            .await
            .expect("rename");
        assert_eq!(renamed.id, ns.id);
        assert_eq!(renamed.title, "app-prod-cache-2");
        assert_eq!(
            c.get_namespace(&ns.id).await.expect("get").title,
            "app-prod-cache-2"
        );

        c.delete_namespace(&ns.id).await.expect("delete");
        assert_eq!(
            kind(c.get_namespace(&ns.id).await),
            (ErrorKind::NotFound, vec![10013])
        );
        assert_eq!(
            kind(c.delete_namespace(&ns.id).await).0,
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(c.rename_namespace(UNKNOWN_NS, "x").await).0,
            ErrorKind::NotFound
        );
        // A malformed id is a gateway 404 (7003): still NotFound.
        assert_eq!(
            kind(c.get_namespace("not-hex").await).0,
            ErrorKind::NotFound
        );
        // Empty title → validation (10021) → Invalid.
        assert_eq!(
            kind(c.create_namespace("").await),
            (ErrorKind::Invalid, vec![10021])
        );

        let stats = c.stats();
        assert_eq!(stats.retries, 0);
        assert_eq!(stats.count("create_namespace", 400), 2);
        assert_eq!(stats.requests as usize, h.log().len());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn namespace_listing_follows_pages_until_a_short_or_empty_page() {
    bounded(60, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        for i in 0..25 {
            c.create_namespace(&format!("ns-{i:02}"))
                .await
                .expect("create");
        }
        h.clear_log();

        // The production call: one page of 1000, short → one request.
        let all = c.list_namespaces().await.expect("list");
        assert_eq!(all.len(), 25);
        let titles: Vec<&str> = all.iter().map(|n| n.title.as_str()).collect();
        let mut sorted = titles.clone();
        sorted.sort();
        assert_eq!(titles, sorted, "ordered by title");
        let log = h.log();
        assert_eq!(log.len(), 1);
        assert!(log[0].query.contains("per_page=1000"), "{}", log[0].query);

        // Pages of 10: 10, 10, 5 (short) → three requests.
        h.clear_log();
        let paged = c.list_namespaces_paged(10).await.expect("paged");
        assert_eq!(paged, all);
        let queries: Vec<String> = h.log().into_iter().map(|r| r.query).collect();
        assert_eq!(queries.len(), 3, "{queries:?}");
        for (i, q) in queries.iter().enumerate() {
            assert!(
                q.contains(&format!("page={}", i + 1)) && q.contains("per_page=10"),
                "{q}"
            );
        }

        // Pages of 5: five full pages, then an empty sixth page ends the loop.
        h.clear_log();
        assert_eq!(c.list_namespaces_paged(5).await.expect("paged").len(), 25);
        assert_eq!(h.log().len(), 6);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn keys_follow_the_cursor() {
    bounded(90, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let ns = c.create_namespace("keys").await.expect("create").id;

        for i in 0..25 {
            c.put_value(&ns, &format!("small/{i:02}"), &ValueWrite::new(vec![b'x']))
                .await
                .expect("put");
        }
        h.clear_log();
        let keys = c
            .list_keys_paged(&ns, Some("small/"), 10)
            .await
            .expect("list");
        let names: Vec<String> = keys.iter().map(|k| k.name.clone()).collect();
        let want: Vec<String> = (0..25).map(|i| format!("small/{i:02}")).collect();
        assert_eq!(names, want);
        let log = h.log();
        assert_eq!(log.len(), 3, "10 + 10 + 5");
        assert!(!log[0].query.contains("cursor="));
        assert!(log[1].query.contains("cursor=") && log[2].query.contains("cursor="));

        // More than one full default page (1000): written concurrently, listed in two requests.
        let writes = (0..1010).map(|i| {
            let c = c.clone();
            let ns = ns.clone();
            async move {
                c.put_value(&ns, &format!("big/{i:04}"), &ValueWrite::new(vec![b'y']))
                    .await
            }
        });
        let mut pending = futures_util::stream::iter(writes).buffer_unordered(32);
        while let Some(r) = pending.next().await {
            r.expect("bulk put");
        }
        h.clear_log();
        let big = c.list_keys(&ns, Some("big/")).await.expect("list");
        assert_eq!(big.len(), 1010);
        assert_eq!(h.log().len(), 2);
        assert_eq!(c.list_keys(&ns, None).await.expect("all").len(), 1035);
        assert!(c
            .list_keys(&ns, Some("none/"))
            .await
            .expect("empty")
            .is_empty());
        assert_eq!(
            kind(c.list_keys(UNKNOWN_NS, None).await).0,
            ErrorKind::NotFound
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn values_ttl_metadata_and_encoded_names() {
    bounded(30, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let ns = c.create_namespace("values").await.expect("create").id;

        // Raw bytes, including non-UTF-8.
        let bytes = vec![0u8, 1, 2, 254, 255, b'\r', b'\n'];
        c.put_value(&ns, "bin", &ValueWrite::new(bytes.clone()))
            .await
            .expect("put");
        assert_eq!(
            c.get_value(&ns, "bin").await.expect("get"),
            Some((bytes, None))
        );

        // TTL + metadata: multipart write, expiration header on read, metadata endpoint.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("now")
            .as_secs();
        let write = ValueWrite {
            value: b"hello".to_vec(),
            expiration: None,
            expiration_ttl: Some(3600),
            metadata: Some(json!({"sha256": "abc", "n": 1})),
        };
        c.put_value(&ns, "meta", &write).await.expect("put meta");
        let (value, exp) = c
            .get_value(&ns, "meta")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(value, b"hello".to_vec());
        let exp = exp.expect("expiration header");
        assert!(exp >= now + 3590 && exp <= now + 3610, "{exp} vs {now}");
        assert_eq!(
            c.get_metadata(&ns, "meta").await.expect("metadata"),
            Some(json!({"sha256": "abc", "n": 1}))
        );
        assert_eq!(c.get_metadata(&ns, "bin").await.expect("no metadata"), None);
        assert_eq!(c.get_metadata(&ns, "missing").await.expect("missing"), None);

        // Absolute expiration.
        let at = now + 7200;
        c.put_value(
            &ns,
            "abs",
            &ValueWrite {
                expiration: Some(at),
                ..ValueWrite::new(b"a".to_vec())
            },
        )
        .await
        .expect("put abs");
        assert_eq!(
            c.get_value(&ns, "abs").await.expect("get").map(|v| v.1),
            Some(Some(at))
        );

        let listed = c.list_keys(&ns, None).await.expect("list");
        let meta_key = listed.iter().find(|k| k.name == "meta").expect("listed");
        assert_eq!(meta_key.metadata, Some(json!({"sha256": "abc", "n": 1})));
        assert_eq!(meta_key.expiration, Some(exp));

        // Names that need percent-encoding round-trip exactly.
        for name in ["a/b c", "q?x=1&y#z", "100%:!*'()", "ünï/cødé", "..."] {
            c.put_value(&ns, name, &ValueWrite::new(name.as_bytes().to_vec()))
                .await
                .expect("put odd name");
            let got = c.get_value(&ns, name).await.expect("get odd name");
            assert_eq!(got, Some((name.as_bytes().to_vec(), None)), "{name}");
            assert!(c
                .list_keys(&ns, Some(name))
                .await
                .expect("list")
                .iter()
                .any(|k| k.name == name));
        }

        // Missing key → None; delete; missing namespace → NotFound; TTL < 60 → Invalid.
        assert_eq!(c.get_value(&ns, "missing").await.expect("get"), None);
        c.delete_value(&ns, "bin").await.expect("delete");
        assert_eq!(c.get_value(&ns, "bin").await.expect("get"), None);
        assert_eq!(
            kind(c.get_value(UNKNOWN_NS, "k").await),
            (ErrorKind::NotFound, vec![10013])
        );
        assert_eq!(
            kind(
                c.put_value(UNKNOWN_NS, "k", &ValueWrite::new(b"v".to_vec()))
                    .await
            )
            .0,
            ErrorKind::NotFound
        );
        let short_ttl = ValueWrite {
            expiration_ttl: Some(10),
            ..ValueWrite::new(b"v".to_vec())
        };
        assert_eq!(
            kind(c.put_value(&ns, "k", &short_ttl).await).0,
            ErrorKind::Invalid
        );
        assert_eq!(c.stats().retries, 0);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn scripts_upload_list_settings_content_delete() {
    bounded(30, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let ns = c.create_namespace("app-prod-cache").await.expect("ns").id;
        let upload = ScriptUpload {
            metadata: ScriptMetadata {
                main_module: Some("index.js".into()),
                bindings: vec![
                    Binding::KvNamespace {
                        name: "CACHE".into(),
                        namespace_id: ns.clone(),
                    },
                    Binding::PlainText {
                        name: "STAGE".into(),
                        text: "prod".into(),
                    },
                ],
                compatibility_date: Some("2025-01-01".into()),
                tags: vec!["lumierd:managed".into()],
                ..ScriptMetadata::default()
            },
            modules: vec![
                module(
                    "index.js",
                    "import { v } from './lib/util.js';\nexport default { fetch() { return new Response(v) } }",
                ),
                module("lib/util.js", "export const v = 'hi';"),
            ],
        };
        let script = c.upload_script("app-prod-api", &upload).await.expect("upload");
        assert_eq!(script.id, "app-prod-api");
        assert!(!script.etag.is_empty());
        assert!(c
            .list_scripts()
            .await
            .expect("list")
            .iter()
            .any(|s| s.id == "app-prod-api" && s.etag == script.etag));

        let settings = c.get_settings("app-prod-api").await.expect("settings");
        assert_eq!(settings.bindings, upload.metadata.bindings);
        assert_eq!(settings.compatibility_date.as_deref(), Some("2025-01-01"));

        let mut patch = settings.clone();
        patch.compatibility_flags = vec!["nodejs_compat".into()];
        patch.bindings.retain(|b| b.name() != Some("STAGE"));
        let patched = c.patch_settings("app-prod-api", &patch).await.expect("patch");
        assert_eq!(patched.compatibility_flags, vec!["nodejs_compat".to_owned()]);
        assert_eq!(patched.bindings.len(), 1);
        assert_eq!(c.get_settings("app-prod-api").await.expect("get"), patched);

        let content = c.get_content("app-prod-api").await.expect("content");
        assert_eq!(content.main_module.as_deref(), Some("index.js"));
        assert_eq!(content.modules, upload.modules);

        // A namespace still bound cannot be deleted (10052 → Invalid).
        assert_eq!(
            kind(c.delete_namespace(&ns).await),
            (ErrorKind::Invalid, vec![10052])
        );
        // A binding to a missing namespace (10041) and a bad name (10016) → Invalid.
        let mut dangling = upload.clone();
        dangling.metadata.bindings = vec![Binding::KvNamespace {
            name: "GONE".into(),
            namespace_id: UNKNOWN_NS.into(),
        }];
        assert_eq!(
            kind(c.upload_script("other", &dangling).await),
            (ErrorKind::Invalid, vec![10041])
        );
        assert_eq!(
            kind(c.upload_script("Bad_Name", &upload).await),
            (ErrorKind::Invalid, vec![10016])
        );

        c.delete_script("app-prod-api", false).await.expect("delete");
        for r in [
            c.get_settings("app-prod-api").await.map(|_| ()),
            c.get_content("app-prod-api").await.map(|_| ()),
            c.delete_script("app-prod-api", true).await,
        ] {
            assert_eq!(kind(r), (ErrorKind::NotFound, vec![10007]));
        }
        c.delete_namespace(&ns).await.expect("unbound now");
        assert!(c.list_scripts().await.expect("list").is_empty());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn token_verify_and_auth_errors() {
    bounded(30, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let status = c.verify_token().await.expect("verify");
        assert_eq!(status.status, "active");
        // The local token is account-owned: only the account endpoint was needed.
        assert_eq!(count(&h.log(), "GET", "/user/tokens/verify"), 0);

        let mut config = h.client_config();
        config.token = "wrong-token".into();
        let bad = Client::new(config).expect("client");
        assert_eq!(kind(bad.verify_token().await).0, ErrorKind::Auth);
        // It fell back to the user endpoint before giving up.
        assert_eq!(count(&h.log(), "GET", "/user/tokens/verify"), 1);
        assert_eq!(kind(bad.list_namespaces().await).0, ErrorKind::Auth);
        assert_eq!(kind(bad.create_namespace("x").await).0, ErrorKind::Auth);
        assert_eq!(kind(bad.list_scripts().await).0, ErrorKind::Auth);

        // Another account's id → Auth too.
        let mut config = h.client_config();
        config.account_id = "abcdefabcdefabcdefabcdefabcdefab".into();
        let other = Client::new(config).expect("client");
        assert_eq!(kind(other.list_scripts().await).0, ErrorKind::Auth);
        assert_eq!(bad.stats().retries + other.stats().retries, 0);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn rate_limit_429_retry_after_is_honoured_without_hammering() {
    bounded(60, async {
        let h = Api::start(Faults {
            rate_limit: Some(RateLimitModel {
                requests: 5,
                window: Duration::from_secs(2),
            }),
            ..Faults::default()
        })
        .await;
        // Another process (its own limiter) spends the whole budget of the window.
        let other = h.client();
        for _ in 0..5 {
            other.list_scripts().await.expect("spend budget");
        }
        let started = tokio::time::Instant::now();
        let c = h.client();
        for _ in 0..12 {
            c.list_scripts().await.expect("eventually succeeds");
        }
        let elapsed = started.elapsed();
        let log = h.timed_log();
        let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
        // Exactly one 429: after it the client paused for Retry-After, and afterwards it
        // followed the `Ratelimit: r=0;t=T` hints instead of running into the limit again.
        assert_eq!(
            statuses.iter().filter(|s| **s == 429).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(statuses.len(), 5 + 1 + 12, "{statuses:?}");
        let i429 = statuses.iter().position(|s| *s == 429).expect("a 429");
        let gap = log[i429 + 1].start - log[i429].start;
        assert!(
            gap >= 0.99,
            "retried {gap:.3}s after the 429 (Retry-After ≥ 1 s)"
        );
        // Budget: 5 per 2 s window; 17 successes need at least 3 window changes.
        assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
        let stats = c.stats();
        assert_eq!(stats.count("list_scripts", 429), 1);
        assert_eq!(stats.retries, 1);
        assert!(stats.limiter_wait >= Duration::from_secs(1));

        // Concurrent callers on one client share the block: a burst of 10 at an exhausted
        // budget gets at most one round of 429s per window, never a retry storm.
        h.clear_log();
        let burst = (0..10).map(|_| {
            let c = c.clone();
            async move { c.list_scripts().await }
        });
        for r in futures_util::future::join_all(burst).await {
            r.expect("burst call");
        }
        let throttled = h.log().iter().filter(|r| r.status == 429).count();
        assert!(throttled <= 10, "{throttled} 429s for 10 calls");
        h.stop().await;
    })
    .await;
}

/// With retries off, a 429 surfaces as `RateLimited` with its `Retry-After`, and every clone
/// of the client waits out the block before sending again.
#[tokio::test]
async fn a_429_blocks_every_clone_until_retry_after() {
    bounded(30, async {
        let h = Api::start(Faults {
            rate_limit: Some(RateLimitModel {
                requests: 1,
                window: Duration::from_secs(1),
            }),
            ..Faults::default()
        })
        .await;
        h.client().list_scripts().await.expect("spend the budget");
        let mut config = h.client_config();
        config.max_retries = 0;
        let c = Client::new(config).expect("client");
        let err = c
            .get_namespace(UNKNOWN_NS)
            .await
            .expect_err("429, no retries");
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        let blocked_at = std::time::Instant::now();
        c.clone().list_scripts().await.expect("after the block");
        assert!(blocked_at.elapsed() >= Duration::from_millis(900));
        let log = h.timed_log();
        let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![200, 429, 200]);
        let gap = log[2].start - log[1].start;
        assert!(gap >= 0.99, "sent {gap:.3}s after the 429");
        h.stop().await;
    })
    .await;
}

/// A `Ratelimit` header saying no request is left pauses the next call until the window is
/// over, so the client does not run into a 429.
#[tokio::test]
async fn a_ratelimit_header_with_no_quota_left_pauses_the_next_call() {
    bounded(30, async {
        let h = Api::start(Faults {
            rate_limit: Some(RateLimitModel {
                requests: 1,
                window: Duration::from_secs(1),
            }),
            ..Faults::default()
        })
        .await;
        let c = h.client();
        c.list_scripts().await.expect("first");
        c.list_scripts().await.expect("second");
        let log = h.timed_log();
        let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![200, 200]);
        let gap = log[1].start - log[0].start;
        assert!(gap >= 0.99, "sent {gap:.3}s after `r=0;t=1`");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_long_block_fails_fast_with_retry_after() {
    bounded(30, async {
        let h = Api::start(Faults {
            rate_limit: Some(RateLimitModel {
                requests: 1,
                window: Duration::from_secs(300),
            }),
            ..Faults::default()
        })
        .await;
        let other = h.client();
        other.list_scripts().await.expect("spend the budget");
        let c = h.client();
        let started = std::time::Instant::now();
        let e = c.list_scripts().await.expect_err("blocked");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.has_code(971));
        assert!(
            e.retry_after()
                .is_some_and(|d| d > Duration::from_secs(200)),
            "{e}"
        );
        // Every clone now refuses without sending anything.
        let before = h.log().len();
        let e = c
            .clone()
            .get_namespace(UNKNOWN_NS)
            .await
            .expect_err("refused");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.status, None, "refused without an answer");
        assert_eq!(h.log().len(), before);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(c.blocked_for().is_some());
        assert_eq!(c.stats().refused_while_blocked, 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn injected_500s_converge_with_retries() {
    bounded(60, async {
        let h = Api::start(Faults::default()).await;
        let mut config = h.client_config();
        config.max_retries = 10;
        config.backoff_base = Duration::from_millis(5);
        let c = Client::new(config).expect("client");
        let ns = c.create_namespace("flaky").await.expect("create").id;
        h.set_faults(Faults {
            error_rate: 0.3,
            ..Faults::default()
        });
        for i in 0..30 {
            c.put_value(&ns, &format!("k{i}"), &ValueWrite::new(vec![b'v']))
                .await
                .expect("put converges");
        }
        assert_eq!(c.list_keys(&ns, None).await.expect("list").len(), 30);
        let log = h.log();
        let errors = log.iter().filter(|r| r.status == 500).count();
        assert!(errors > 0, "the fault injection did fire");
        let stats = c.stats();
        assert_eq!(stats.retries as usize, errors);
        assert_eq!(stats.requests as usize, log.len());

        // With retries disabled the 500 surfaces as Retryable.
        h.set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        });
        let mut config = h.client_config();
        config.max_retries = 2;
        let strict = Client::new(config).expect("client");
        let e = strict.list_scripts().await.expect_err("always 500");
        assert_eq!(e.kind, ErrorKind::Retryable);
        assert_eq!(e.status, Some(500));
        assert_eq!(strict.stats().count("list_scripts", 500), 3);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connection_resets_are_retried() {
    bounded(60, async {
        let h = Api::start(Faults::default()).await;
        let mut config = h.client_config();
        config.max_retries = 10;
        config.backoff_base = Duration::from_millis(5);
        let c = Client::new(config).expect("client");
        let ns = c.create_namespace("resets").await.expect("create").id;
        h.set_faults(Faults {
            reset_rate: 0.3,
            ..Faults::default()
        });
        for i in 0..30 {
            c.put_value(&ns, &format!("k{i}"), &ValueWrite::new(vec![b'v']))
                .await
                .expect("put converges");
        }
        h.set_faults(Faults::default());
        assert_eq!(c.list_keys(&ns, None).await.expect("list").len(), 30);
        let dropped = h.log().iter().filter(|r| r.status == 0).count();
        assert!(dropped > 0, "the fault injection did fire");
        assert!(c.stats().count("put_value", 0) as usize >= dropped);
        assert!(c.stats().retries > 0);

        // Every connection dropped → Retryable, no HTTP status, bounded attempts.
        h.set_faults(Faults {
            reset_rate: 1.0,
            ..Faults::default()
        });
        let mut config = h.client_config();
        config.max_retries = 2;
        let strict = Client::new(config).expect("client");
        h.clear_log();
        let e = strict.list_scripts().await.expect_err("always dropped");
        assert_eq!(e.kind, ErrorKind::Retryable);
        assert_eq!(e.status, None);
        assert!(!e.to_string().contains(DEFAULT_TOKEN), "token leaked: {e}");
        assert_eq!(strict.stats().requests, 3);
        assert_eq!(strict.stats().count("list_scripts", 0), 3);
        let dropped: Vec<u16> = h.log().iter().map(|r| r.status).collect();
        assert_eq!(dropped, vec![0, 0, 0], "three connections, each dropped");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn slow_answers_time_out_as_retryable() {
    bounded(30, async {
        let h = Api::start(Faults {
            latency: Duration::from_millis(600),
            ..Faults::default()
        })
        .await;
        let mut config = h.client_config();
        config.timeout = Duration::from_millis(150);
        config.max_retries = 1;
        let c = Client::new(config).expect("client");
        let started = std::time::Instant::now();
        let e = c.list_scripts().await.expect_err("timeout");
        assert_eq!(e.kind, ErrorKind::Retryable);
        assert_eq!(e.status, None);
        assert!(e.to_string().contains("timed out"), "{e}");
        assert_eq!(c.stats().requests, 2);
        assert!(started.elapsed() < Duration::from_secs(2));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn secrets_are_put_listed_kept_by_uploads_and_deleted() {
    use lumierd::cloudflare::types::{SecretInfo, KEEP_SECRET_BINDINGS};
    use lumierd::cloudflare::Secret;
    bounded(30, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let canary = Secret::new("canary-client-secret-text");
        // No script: NotFound (10007), and the error never carries the text.
        let err = c
            .put_secret("api", "API_KEY", &canary)
            .await
            .expect_err("no script");
        assert_eq!((err.kind, err.errors[0].code), (ErrorKind::NotFound, 10007));
        assert!(
            !format!("{err} {err:?}").contains("canary-client"),
            "{err:?}"
        );

        let upload = ScriptUpload {
            metadata: ScriptMetadata {
                main_module: Some("index.js".into()),
                ..ScriptMetadata::default()
            },
            modules: vec![module("index.js", "export default {}")],
        };
        c.upload_script("api", &upload).await.expect("upload");
        let info = c.put_secret("api", "API_KEY", &canary).await.expect("put");
        let want = SecretInfo {
            name: "API_KEY".into(),
            kind: "secret_text".into(),
        };
        assert_eq!(info, want);
        assert_eq!(
            c.list_secrets("api").await.expect("list"),
            vec![want.clone()]
        );

        // An upload that keeps secrets (what wrangler sends) leaves it; its Debug is redacted.
        let keeping = ScriptUpload {
            metadata: upload.metadata.clone().keep_secrets().keep_secrets(),
            ..upload.clone()
        };
        assert_eq!(keeping.metadata.keep_bindings, KEEP_SECRET_BINDINGS);
        c.upload_script("api", &keeping).await.expect("re-upload");
        assert_eq!(c.list_secrets("api").await.expect("list"), vec![want]);
        let settings = c.get_settings("api").await.expect("settings");
        assert_eq!(
            settings.bindings,
            vec![Binding::SecretText {
                name: "API_KEY".into(),
                text: None
            }]
        );

        // Delete: true, then false once gone; a missing script is still an error.
        assert!(c.delete_secret("api", "API_KEY").await.expect("delete"));
        assert!(!c.delete_secret("api", "API_KEY").await.expect("again"));
        assert!(c.list_secrets("api").await.expect("list").is_empty());
        assert_eq!(
            kind(c.delete_secret("none", "API_KEY").await),
            (ErrorKind::NotFound, vec![10007])
        );
        // One request per call: a secret change is not a re-upload.
        let log = h.log();
        assert_eq!(count(&log, "PUT", "/workers/scripts/api/secrets"), 2);
        assert_eq!(
            count(&log, "DELETE", "/workers/scripts/api/secrets/API_KEY"),
            2
        );
        assert_eq!(count(&log, "PUT", "/workers/scripts/api"), 2);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn workers_dev_subdomain_reads_and_toggles() {
    use lumierd::cloudflare::subdomain::workers_dev_url;
    use lumierd::cloudflare::types::ScriptSubdomain;
    bounded(30, async {
        let h = Api::start(Faults::default()).await;
        let c = h.client();
        let sub = c.get_account_subdomain().await.expect("account subdomain");
        assert_eq!(sub.as_deref(), Some("lumierd-local"));
        assert_eq!(
            workers_dev_url("api", "lumierd-local"),
            "https://api.lumierd-local.workers.dev"
        );
        assert_eq!(
            kind(c.get_script_subdomain("api").await),
            (ErrorKind::NotFound, vec![10007])
        );
        let upload = ScriptUpload {
            metadata: ScriptMetadata {
                main_module: Some("index.js".into()),
                ..ScriptMetadata::default()
            },
            modules: vec![module("index.js", "export default {}")],
        };
        c.upload_script("api", &upload).await.expect("upload");
        assert_eq!(
            c.get_script_subdomain("api").await.expect("get"),
            ScriptSubdomain::default()
        );
        let on = ScriptSubdomain {
            enabled: true,
            previews_enabled: true,
        };
        assert_eq!(c.set_script_subdomain("api", true).await.expect("on"), on);
        assert_eq!(c.get_script_subdomain("api").await.expect("get"), on);
        assert_eq!(
            c.set_script_subdomain("api", false).await.expect("off"),
            ScriptSubdomain::default()
        );
        // An account without a subdomain answers None, not an error.
        let deleted = h
            .http
            .delete(format!("{}/workers/subdomain", h.account()))
            .bearer_auth(DEFAULT_TOKEN)
            .send()
            .await
            .expect("delete the account subdomain");
        assert_eq!(deleted.status(), 204);
        assert_eq!(c.get_account_subdomain().await.expect("none"), None);
        h.stop().await;
    })
    .await;
}
