//! Notifications end to end: the real `lumierd` binary POSTs to a webhook receiver served in
//! this test process on loopback, which can fail on purpose.

use crate::support::{eventually, Api, Daemon};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use lumierd::local_api::{Faults, DEFAULT_TOKEN};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// In the webhook's path, as Slack's carry theirs: it must appear nowhere but in the request.
const HOOK_SECRET: &str = "T000-hook-secret-9f8e7d";

/// What the receiver saw, and how it answers.
#[derive(Default)]
pub(crate) struct Seen {
    /// Bodies answered 200, in arrival order.
    accepted: Vec<Value>,
    /// The User-Agent of each accepted body.
    agents: Vec<String>,
    /// POSTs answered with an error.
    pub(crate) refused: usize,
    /// Answer 503 to everything while set.
    pub(crate) down: bool,
    /// Answer 500 to this many more POSTs.
    fail_next: usize,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn hook(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> StatusCode {
    let mut s = seen.lock().unwrap();
    if s.down || s.fail_next > 0 {
        s.fail_next = s.fail_next.saturating_sub(1);
        s.refused += 1;
        return if s.down {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
    }
    s.accepted
        .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    s.agents.push(agent.to_owned());
    StatusCode::OK
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route(&format!("/hooks/{HOOK_SECRET}"), post(hook))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            url: format!("http://{addr}/hooks/{HOOK_SECRET}"),
            seen,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.seen.lock().unwrap())
    }

    /// The `text` of every accepted body of `kind`, in arrival order.
    pub(crate) fn texts(&self, kind: &str) -> Vec<String> {
        self.with(|s| {
            s.accepted
                .iter()
                .filter(|b| b["kind"] == kind)
                .filter_map(|b| b["text"].as_str().map(str::to_owned))
                .collect()
        })
    }

    /// Every accepted body with the User-Agent it came with, in arrival order.
    pub(crate) fn deliveries(&self) -> Vec<(Value, String)> {
        self.with(|s| s.accepted.iter().cloned().zip(s.agents.clone()).collect())
    }

    /// Waits until a body of `kind` was accepted; returns it.
    pub(crate) async fn accepted(&self, kind: &str, secs: u64) -> Value {
        eventually(Duration::from_secs(secs), kind, || async {
            self.with(|s| {
                s.accepted
                    .iter()
                    .find(|b| b["kind"] == kind)
                    .cloned()
                    .ok_or_else(|| {
                        s.accepted
                            .iter()
                            .map(|b| b["kind"].clone())
                            .collect::<Vec<_>>()
                    })
            })
        })
        .await
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";

/// `m/dev.yaml`: kv `cache`, kv `watched` (drift: report), worker `api`, plus `extra`.
fn manifests(dir: &Path, extra: &str) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    std::fs::write(
        m.join("dev.yaml"),
        format!(
            "app:\n  name: shop\nstage: dev\nresources:\n  cache: {{ type: kv }}\n  watched: {{ type: kv, drift: report }}\n  api:\n    type: worker\n    entry: index.js\n    bindings:\n      CACHE: {{ kv: cache }}\n{extra}"
        ),
    )
    .unwrap();
}

fn spawn(dir: &Path, api: &Api, hook: &str) -> Daemon {
    Daemon::spawn_env(
        dir,
        &[
            "run",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &api.base,
            "--resync",
            "1s",
            "--debounce",
            "100ms",
            "--max-prune",
            "0",
            "--admin-listen",
            "127.0.0.1:0",
            "--notify",
            hook,
        ],
        &[
            ("RUST_LOG", "info"),
            ("CLOUDFLARE_API_TOKEN", DEFAULT_TOKEN),
        ],
    )
}

async fn rename(api: &Api, title: &str, to: &str) {
    let id = api.namespace_id(title).await.unwrap();
    api.send(
        api.http
            .put(format!("{}/storage/kv/namespaces/{id}", api.account()))
            .json(&json!({ "title": to })),
    )
    .await;
}

async fn metric(admin: &str, line: &str) -> f64 {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_is_delivered_once_through_failures_and_a_restart() {
    let api = Api::start(Faults::default()).await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), "");
    let mut d1 = spawn(dir.path(), &api, &hook.url);
    let admin = d1.stdout_line("admin API:", Duration::from_secs(30));
    eventually(Duration::from_secs(60), "first pass", || async {
        match api.namespace_id("shop-dev-cache").await {
            Some(_) if metric(&admin, "lumierd_ready").await == 1.0 => Ok(()),
            other => Err(other),
        }
    })
    .await;

    // 1. Drift while the receiver is down; the daemon is killed before it gets through.
    hook.with(|s| s.down = true);
    rename(&api, "shop-dev-cache", "hijacked").await;
    eventually(Duration::from_secs(30), "failed deliveries", || async {
        let failed = metric(&admin, "lumierd_notify_deliveries_total{result=\"failed\"}").await;
        if failed >= 2.0 {
            Ok(())
        } else {
            Err(failed)
        }
    })
    .await;
    d1.kill();
    let logs1 = format!("{}{}", d1.stdout(), d1.stderr());

    // 2. Restarted, with a receiver that fails twice more before it accepts.
    hook.with(|s| {
        s.down = false;
        s.fail_next = 2;
    });
    let d2 = spawn(dir.path(), &api, &hook.url);
    let admin = d2.stdout_line("admin API:", Duration::from_secs(30));
    let drift = hook.accepted("drift_corrected", 60).await;
    assert_eq!(drift["app"], "shop");
    assert_eq!(drift["stage"], "dev");
    assert_eq!(drift["name"], "cache");
    assert_eq!(
        drift["details"][0], "title: shop-dev-cache → hijacked",
        "{drift:#}"
    );
    assert!(
        drift["text"]
            .as_str()
            .unwrap()
            .starts_with("lumierd: shop/dev/cache: drift corrected"),
        "{drift:#}"
    );
    assert!(hook.with(|s| s.refused) >= 4, "retried through failures");
    assert!(metric(&admin, "lumierd_notify_deliveries_total{result=\"failed\"}").await >= 2.0);

    // 3. Drift in report mode.
    rename(&api, "shop-dev-watched", "moved").await;
    let detected = hook.accepted("drift_detected", 30).await;
    assert_eq!(detected["name"], "watched");
    assert_eq!(detected["state"], "Drifted");

    // 4. A resource enters Error (its title is taken by a namespace lumierd did not make),
    //    then leaves it (the squatter is deleted).
    let squat = api
        .send(
            api.http
                .post(format!("{}/storage/kv/namespaces", api.account()))
                .json(&json!({ "title": "shop-dev-taken" })),
        )
        .await;
    let squat_id = squat["result"]["id"].as_str().unwrap().to_owned();
    manifests(dir.path(), "  taken: { type: kv }\n");
    let error = hook.accepted("error", 30).await;
    assert_eq!(error["name"], "taken");
    assert_eq!(error["state"], "Error");
    api.send(api.http.delete(format!(
        "{}/storage/kv/namespaces/{squat_id}",
        api.account()
    )))
    .await;
    let recovered = hook.accepted("recovered", 30).await;
    assert_eq!(recovered["name"], "taken");

    // 5. A manifest that does not load, then loads again.
    std::fs::write(
        dir.path().join("m/bad.yaml"),
        "app: { name: shop }\nstage: dev\nresources:\n  x: { type: nope }\n",
    )
    .unwrap();
    let failed = hook.accepted("load_failed", 30).await;
    let details = failed["details"].to_string();
    assert!(details.contains("bad.yaml:4:"), "{failed:#}");
    std::fs::remove_file(dir.path().join("m/bad.yaml")).unwrap();
    hook.accepted("load_recovered", 30).await;

    // 6. A removal held for approval (--max-prune 0).
    manifests(dir.path(), "");
    let held = hook.accepted("prune_held", 30).await;
    assert_eq!(held["name"], "taken");
    assert_eq!(held["state"], "Deleting");

    // Each kind once, no id twice, every body complete, nothing secret anywhere.
    let bodies = hook.with(|s| s.accepted.clone());
    let mut kinds: Vec<&str> = bodies.iter().map(|b| b["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "drift_corrected",
            "drift_detected",
            "error",
            "load_failed",
            "load_recovered",
            "prune_held",
            "recovered"
        ],
        "{bodies:#?}"
    );
    for b in &bodies {
        for field in ["id", "kind", "text", "at"] {
            assert!(b[field].is_string(), "{field} in {b:#}");
        }
        let text = b.to_string();
        assert!(!text.contains(DEFAULT_TOKEN), "API token in {text}");
        assert!(!text.contains(HOOK_SECRET), "webhook secret in {text}");
    }
    let logs = format!("{logs1}{}{}", d2.stdout(), d2.stderr());
    assert!(!logs.contains(HOOK_SECRET), "webhook URL logged:\n{logs}");
    assert!(!logs.contains(DEFAULT_TOKEN), "API token logged");
    drop(d2);
    for entry in std::fs::read_dir(dir.path().join("state/db")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let hit = bytes
                .windows(HOOK_SECRET.len())
                .any(|w| w == HOOK_SECRET.as_bytes());
            assert!(!hit, "webhook URL stored in {}", path.display());
        }
    }
    hook.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_sends_what_it_queued_before_it_exits() {
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    std::fs::write(dir.path().join("m/bad.yaml"), "app: [\n").unwrap();
    let url = hook.url.clone();
    let out = tokio::task::block_in_place(|| {
        crate::support::run_in(
            dir.path(),
            &[
                "run",
                "--once",
                "--manifests",
                "m",
                "--state",
                "state",
                "--notify",
                &url,
            ],
            Duration::from_secs(60),
        )
    });
    assert_eq!(out.code, 2, "{out:?}");
    let bodies = hook.with(|s| s.accepted.clone());
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["kind"], "load_failed");
    assert!(
        bodies[0]["details"][0]
            .as_str()
            .unwrap()
            .starts_with("m/bad.yaml:2:1: "),
        "{bodies:#?}"
    );
    hook.stop().await;
}
