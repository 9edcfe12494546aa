//! The controller end to end: the real `lumierd` binary against a local API served in this
//! test process (so the test can read its request log and edit it "out of band" as another
//! client would), over loopback.

use crate::support::{eventually, eventually_every, repo, run_in, Api, Daemon};
use lumierd::local_api::{Faults, RateLimitModel, DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn spawn_run(dir: &Path, api: &Api, extra: &[&str]) -> Daemon {
    spawn_run_on(dir, "m", api, extra)
}

/// `lumierd run` on the manifests folder `manifests` (resync 1 h unless `extra` says).
fn spawn_run_on(dir: &Path, manifests: &str, api: &Api, extra: &[&str]) -> Daemon {
    let resync = if extra.contains(&"--resync") {
        vec![]
    } else {
        vec!["--resync", "1h"]
    };
    let mut args = vec![
        "run",
        "--manifests",
        manifests,
        "--state",
        "state",
        "--api-url",
        &api.base,
        "--debounce",
        "100ms",
    ];
    args.extend(resync);
    args.extend_from_slice(extra);
    Daemon::spawn_env(dir, &args, &[("RUST_LOG", "info")])
}

fn once(dir: &Path, api: &Api, extra: &[&str]) -> crate::support::Output {
    let mut args = vec![
        "run",
        "--once",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
    ];
    args.extend_from_slice(extra);
    run_in(dir, &args, Duration::from_secs(120))
}

fn status(dir: &Path) -> Value {
    try_status(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn try_status(dir: &Path) -> Result<Value, String> {
    let out = run_in(
        dir,
        &["status", "--json", "--state", "state"],
        Duration::from_secs(30),
    );
    if out.code != 0 {
        return Err(format!("{out:?}"));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
}

fn resource<'a>(status: &'a Value, stage: &str, name: &str) -> Option<&'a Value> {
    status["resources"]
        .as_array()?
        .iter()
        .find(|r| r["stage"] == stage && r["name"] == name)
}

/// Polls `status` until `pred` holds, for at most `secs` seconds.
async fn wait_status(dir: &Path, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(secs), what, || async {
        // Before the daemon has created its state, status fails: keep polling.
        match tokio::task::block_in_place(|| try_status(dir)) {
            Ok(s) if pred(&s) => Ok(s),
            other => Err(other),
        }
    })
    .await
}

fn all_ready(s: &Value) -> bool {
    let list = s["resources"].as_array().cloned().unwrap_or_default();
    !list.is_empty() && list.iter().all(|r| r["state"] == "Ready")
}

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";

/// A manifests folder `m/` with one stage: kv `cache`, worker `api` binding it and `${stage}`.
fn fleet(dir: &Path, stage: &str, protect: bool, extra: &str) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    let protect = if protect {
        format!("  protect: [{stage}]\n")
    } else {
        String::new()
    };
    std::fs::write(
        m.join(format!("{stage}.yaml")),
        format!(
            "app:\n  name: shop\n{protect}stage: {stage}\nresources:\n  cache: {{ type: kv }}\n  api:\n    type: worker\n    entry: index.js\n    bindings:\n      CACHE: {{ kv: cache }}\n      STAGE: \"${{stage}}\"\n{extra}"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_converge_with_the_embedded_api() {
    let dir = tempfile::tempdir().unwrap();
    let examples = repo().join("examples");
    let out = run_in(
        dir.path(),
        &[
            "run",
            "--once",
            "--manifests",
            examples.to_str().unwrap(),
            "--state",
            "state",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("local API: http://127.0.0.1:"),
        "{}",
        out.stdout
    );
    let s = status(dir.path());
    let list = s["resources"].as_array().unwrap();
    // Per stage: kv cache and legacy, worker api and the worker auth it binds as a service.
    assert_eq!(list.len(), 8, "{s:#}");
    for r in list {
        assert_eq!(r["state"], "Ready", "{r:#}");
        match r["type"].as_str().unwrap() {
            "kv" => assert_eq!(
                r["output"]["namespaceId"].as_str().unwrap().len(),
                32,
                "{r:#}"
            ),
            _ => {
                assert_eq!(
                    r["output"]["scriptName"],
                    format!(
                        "my-app-{}-{}",
                        r["stage"].as_str().unwrap(),
                        r["name"].as_str().unwrap()
                    )
                );
                assert!(r["output"]["etag"].as_str().is_some_and(|e| !e.is_empty()));
            }
        }
    }
    // workersDev: api by default (on, with its URL), auth written `false` (no URL).
    let api = resource(&s, "staging", "api").unwrap();
    assert!(api["output"]["url"].as_str().is_some(), "{api:#}");
    let auth = resource(&s, "staging", "auth").unwrap();
    assert!(auth["output"].get("url").is_none(), "{auth:#}");
    // The existing namespace keeps its declared id.
    let legacy = resource(&s, "production", "legacy").unwrap();
    assert_eq!(
        legacy["output"]["namespaceId"],
        "5f0c7d3e9a2b4c1d8e6f7a0b1c2d3e4f"
    );
    // A second pass against the persisted embedded API changes nothing.
    let again = run_in(
        dir.path(),
        &[
            "run",
            "--once",
            "--manifests",
            examples.to_str().unwrap(),
            "--state",
            "state",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stdout.contains("create "), "{}", again.stdout);
    // plan agrees: nothing to do.
    let plan = run_in(
        dir.path(),
        &[
            "plan",
            "--manifests",
            examples.to_str().unwrap(),
            "--state",
            "state",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(plan.stdout.trim(), "no changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_fleet_resync_reads_lists_only() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    // 100 resources: 5 stages × (10 namespaces + 10 workers, each binding two namespaces).
    for s in 0..5 {
        let mut text = format!("app: {{ name: fleet }}\nstage: s{s}\nresources:\n");
        for k in 0..10 {
            text.push_str(&format!("  kv{k}: {{ type: kv }}\n"));
        }
        for w in 0..10 {
            text.push_str(&format!(
                "  w{w}:\n    type: worker\n    entry: index.js\n    bindings:\n      A: {{ kv: kv{w} }}\n      B: {{ kv: kv{} }}\n",
                (w + 1) % 10
            ));
        }
        std::fs::write(m.join(format!("s{s}.yaml")), text).unwrap();
    }
    let cold = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(cold.code, 0, "{cold:?}");
    let cold_writes = api.writes().len();
    // One create per resource, plus one `POST …/subdomain` per worker: `workersDev`
    // defaults to on (as wrangler), so each new script's workers.dev route is turned on.
    assert_eq!(
        cold_writes, 150,
        "one create per resource + one route per worker"
    );
    api.clear_log();
    // Timestamps have whole seconds: wait until the clock is past the second of the cold
    // pass's last record, so that a record the resync did not touch would be seen as older.
    let cold_last = status(dir.path())["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["lastReconciled"].as_str().unwrap().to_owned())
        .max()
        .unwrap();
    let warm_started = eventually(Duration::from_secs(3), "the next second", || async {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        if now > cold_last {
            Ok(now)
        } else {
            Err((now, &cold_last))
        }
    })
    .await;
    let warm = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(warm.code, 0, "{warm:?}");
    let log = api.log();
    assert!(
        log.len() <= 5,
        "a resync of 100 unchanged resources sent {} requests: {log:?}",
        log.len()
    );
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    // The resync rewrote no record, yet status shows every resource reconciled by it.
    let resources = status(dir.path())["resources"].as_array().unwrap().clone();
    assert_eq!(resources.len(), 100);
    for r in &resources {
        let at = r["lastReconciled"].as_str().unwrap();
        assert!(
            at >= warm_started.as_str(),
            "{r} (resync started {warm_started})"
        );
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_converge_prune_and_protected_stages_retain() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "dev", false, "");
    fleet(dir.path(), "prod", true, "");
    let d = spawn_run(dir.path(), &api, &[]);
    wait_status(dir.path(), 60, "all ready", |s| {
        all_ready(s) && s["resources"].as_array().unwrap().len() == 4
    })
    .await;

    // plan, while the daemon holds the store, works from the daemon's records.
    let plan = tokio::task::block_in_place(|| {
        run_in(
            dir.path(),
            &[
                "plan",
                "--manifests",
                "m",
                "--state",
                "state",
                "--api-url",
                &api.base,
            ],
            Duration::from_secs(60),
        )
    });
    assert_eq!(
        (plan.code, plan.stdout.trim()),
        (0, "no changes"),
        "{plan:?}"
    );

    // Add a namespace: it converges.
    fleet(dir.path(), "dev", false, "  sessions: { type: kv }\n");
    wait_status(dir.path(), 30, "sessions ready", |s| {
        resource(s, "dev", "sessions").is_some_and(|r| r["state"] == "Ready")
    })
    .await;
    assert!(api.namespace_id("shop-dev-sessions").await.is_some());

    // Remove it again: pruned, on the provider too.
    fleet(dir.path(), "dev", false, "");
    wait_status(dir.path(), 30, "sessions pruned", |s| {
        resource(s, "dev", "sessions").is_none()
    })
    .await;
    assert!(api.namespace_id("shop-dev-sessions").await.is_none());

    // In the protected stage, a removed resource is retained, not deleted.
    let m = dir.path().join("m");
    std::fs::write(
        m.join("prod.yaml"),
        "app:\n  name: shop\n  protect: [prod]\nstage: prod\nresources:\n  cache: { type: kv }\n",
    )
    .unwrap();
    wait_status(dir.path(), 30, "api retained", |s| {
        resource(s, "prod", "api").is_some_and(|r| r["state"] == "Retained")
    })
    .await;
    assert!(api
        .scripts()
        .await
        .iter()
        .any(|s| s["id"] == "shop-prod-api"));

    // An invalid manifest keeps the last good state and deletes nothing.
    let before = api.writes().len();
    std::fs::write(
        m.join("dev.yaml"),
        "app: { name: shop }\nstage: dev\nresources:\n  cache: { type: nope }\n",
    )
    .unwrap();
    let s = wait_status(dir.path(), 30, "load error shown", |s| {
        s["loadError"].is_string()
    })
    .await;
    assert!(
        s["loadError"]
            .as_str()
            .unwrap()
            .contains("unknown type `nope`"),
        "{s:#}"
    );
    // A full pass on the last good state (SIGHUP: rescan, then resync everything), waited
    // for by its log line, writes nothing either.
    // (Blocking waits: off the runtime's worker, which serves the local API.)
    let mark = d.mark();
    d.signal("HUP");
    tokio::task::block_in_place(|| {
        let (hup, _) = d.wait_for_line_since(mark, "SIGHUP: reloading", Duration::from_secs(30));
        d.wait_for_line_since(hup, "pass done", Duration::from_secs(30));
    });
    assert_eq!(
        api.writes().len(),
        before,
        "nothing written while manifests are invalid"
    );
    assert!(api.namespace_id("shop-dev-cache").await.is_some());
    assert!(resource(&status(dir.path()), "dev", "api").is_some_and(|r| r["state"] == "Ready"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_changes_are_detected_recorded_and_corrected() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "dev", false, "");
    let _d = spawn_run(dir.path(), &api, &["--resync", "1s"]);
    wait_status(dir.path(), 60, "all ready", all_ready).await;
    let acct = api.account();
    let drift_count = |s: &Value, name: &str| {
        resource(s, "dev", name).map_or(0, |r| r["drift"]["count"].as_u64().unwrap_or(0))
    };

    // 1. Namespace renamed out of band → renamed back.
    let id = api.namespace_id("shop-dev-cache").await.unwrap();
    api.send(
        api.http
            .put(format!("{acct}/storage/kv/namespaces/{id}"))
            .json(&json!({"title": "hijacked"})),
    )
    .await;
    let s = wait_status(dir.path(), 30, "rename drift", |s| {
        drift_count(s, "cache") >= 1
    })
    .await;
    let last = &resource(&s, "dev", "cache").unwrap()["drift"]["last"];
    assert_eq!(
        last["changes"][0], "title: shop-dev-cache → hijacked",
        "{last:#}"
    );
    wait_status(dir.path(), 30, "title restored", |_| true).await;
    eventually(Duration::from_secs(20), "title restored", || async {
        match api.namespace_id("shop-dev-cache").await {
            Some(got) if got == id => Ok(()),
            _ => Err(api.namespaces().await),
        }
    })
    .await;

    // 2. Worker bindings patched out of band → put back.
    let form = reqwest::multipart::Form::new().text(
        "settings",
        json!({"bindings": [{"type": "plain_text", "name": "STAGE", "text": "evil"}]}).to_string(),
    );
    api.send(
        api.http
            .patch(format!("{acct}/workers/scripts/shop-dev-api/settings"))
            .multipart(form),
    )
    .await;
    let s = wait_status(dir.path(), 30, "settings drift", |s| {
        drift_count(s, "api") >= 1
    })
    .await;
    let changes = resource(&s, "dev", "api").unwrap()["drift"]["last"]["changes"].clone();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!(format!("bindings.CACHE: kv:{id} → (removed)"))),
        "{changes:#}"
    );
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "bindings.STAGE: text:dev → text:evil"),
        "{changes:#}"
    );
    eventually(Duration::from_secs(20), "bindings restored", || async {
        let settings = api.get("/workers/scripts/shop-dev-api/settings").await;
        let b = settings["result"]["bindings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if b.iter()
            .any(|x| x["name"] == "CACHE" && x["namespace_id"] == id.as_str())
            && b.iter().any(|x| x["name"] == "STAGE" && x["text"] == "dev")
        {
            Ok(())
        } else {
            Err(settings)
        }
    })
    .await;

    // 3. Namespace deleted out of band → recreated with a new id, and the worker rebound.
    // (The worker binds it, so the provider refuses a plain delete: unbind first, as a person would.)
    let form =
        reqwest::multipart::Form::new().text("settings", json!({"bindings": []}).to_string());
    api.send(
        api.http
            .patch(format!("{acct}/workers/scripts/shop-dev-api/settings"))
            .multipart(form),
    )
    .await;
    api.send(
        api.http
            .delete(format!("{acct}/storage/kv/namespaces/{id}")),
    )
    .await;
    let s = wait_status(dir.path(), 30, "namespace recreated", |s| {
        resource(s, "dev", "cache")
            .is_some_and(|r| r["output"]["namespaceId"].as_str().is_some_and(|n| n != id))
    })
    .await;
    let new_id = resource(&s, "dev", "cache").unwrap()["output"]["namespaceId"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(20), "worker rebound", || async {
        let settings = api.get("/workers/scripts/shop-dev-api/settings").await;
        let b = settings["result"]["bindings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if b.iter()
            .any(|x| x["name"] == "CACHE" && x["namespace_id"] == new_id.as_str())
        {
            Ok(())
        } else {
            Err(settings)
        }
    })
    .await;

    // 4. Script re-uploaded with other content → re-uploaded as declared.
    let meta =
        json!({"main_module": "index.js", "bindings": [], "compatibility_date": "2025-01-01"});
    let form = reqwest::multipart::Form::new()
        .text("metadata", meta.to_string())
        .part(
            "index.js",
            reqwest::multipart::Part::bytes(
                b"export default { fetch() { return new Response('pwned') } }".to_vec(),
            )
            .file_name("index.js")
            .mime_str("application/javascript+module")
            .unwrap(),
        );
    let before = drift_count(&status(dir.path()), "api");
    api.send(
        api.http
            .put(format!("{acct}/workers/scripts/shop-dev-api"))
            .multipart(form),
    )
    .await;
    let s = wait_status(dir.path(), 30, "content drift", |s| {
        drift_count(s, "api") > before
    })
    .await;
    let changes = resource(&s, "dev", "api").unwrap()["drift"]["last"]["changes"].to_string();
    assert!(changes.contains("content: "), "{changes}");

    // 5. Script deleted → re-uploaded.
    api.send(
        api.http
            .delete(format!("{acct}/workers/scripts/shop-dev-api")),
    )
    .await;
    wait_status(dir.path(), 30, "script recreated", |s| {
        drift_count(s, "api") > before + 1
    })
    .await;
    eventually(Duration::from_secs(20), "script recreated", || async {
        let scripts = api.scripts().await;
        if scripts.iter().any(|s| s["id"] == "shop-dev-api") {
            Ok(())
        } else {
            Err(scripts)
        }
    })
    .await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_records_drift_and_writes_nothing() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "dev", false, "");
    let d = spawn_run(dir.path(), &api, &["--drift", "report", "--resync", "1s"]);
    wait_status(dir.path(), 60, "all ready", all_ready).await;
    let id = api.namespace_id("shop-dev-cache").await.unwrap();
    api.clear_log();
    api.send(
        api.http
            .put(format!("{}/storage/kv/namespaces/{id}", api.account()))
            .json(&json!({"title": "renamed"})),
    )
    .await;
    let s = wait_status(dir.path(), 30, "drift reported", |s| {
        resource(s, "dev", "cache").is_some_and(|r| r["state"] == "Drifted")
    })
    .await;
    assert_eq!(resource(&s, "dev", "cache").unwrap()["drift"]["count"], 1);
    // Two more passes (resyncs, 1 s apart) after the drift was recorded, seen in the log.
    tokio::task::block_in_place(|| {
        let (first, _) = d.wait_for_line_since(d.mark(), "pass done", Duration::from_secs(30));
        d.wait_for_line_since(first + 1, "pass done", Duration::from_secs(30));
    });
    let s = status(dir.path());
    assert_eq!(
        resource(&s, "dev", "cache").unwrap()["drift"]["count"],
        1,
        "one drift is recorded once"
    );
    assert_eq!(
        api.writes(),
        vec![format!(
            "PUT /client/v4/accounts/{DEFAULT_ACCOUNT_ID}/storage/kv/namespaces/{id}"
        )],
        "only the out-of-band write"
    );
    assert_eq!(
        api.namespace_id("renamed").await.as_deref(),
        Some(id.as_str())
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_converge_never_duplicates() {
    let faults = Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    };
    let api = Api::start(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    let mut text = String::from("app: { name: crash }\nstage: dev\nresources:\n");
    for k in 0..30 {
        text.push_str(&format!("  kv{k}: {{ type: kv }}\n  w{k}:\n    type: worker\n    entry: index.js\n    bindings: {{ K: {{ kv: kv{k} }} }}\n"));
    }
    std::fs::write(m.join("dev.yaml"), text).unwrap();
    let mut daemon = spawn_run(dir.path(), &api, &["--concurrency", "4"]);
    // Kill it once some, but not all, namespaces exist.
    // Polled every 20 ms: the kill must land while the daemon is still creating.
    let every = Duration::from_millis(20);
    eventually_every(
        every,
        Duration::from_secs(60),
        "5 namespaces created",
        || async {
            let n = api.namespaces().await.len();
            if n >= 5 {
                Ok(())
            } else {
                Err(n)
            }
        },
    )
    .await;
    tokio::task::block_in_place(|| daemon.kill());
    assert!(
        api.namespaces().await.len() < 30,
        "killed too late to test anything"
    );
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    let titles: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = titles.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(titles.len(), 30, "{titles:?}");
    assert_eq!(unique.len(), 30, "duplicates: {titles:?}");
    assert_eq!(api.scripts().await.len(), 30);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_through_500s_resets_and_429s() {
    let faults = Faults {
        error_rate: 0.2,
        reset_rate: 0.1,
        rate_limit: Some(RateLimitModel {
            requests: 5,
            window: Duration::from_secs(3),
        }),
        ..Faults::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(faults).await;
    fleet(dir.path(), "dev", false, "");
    fleet(dir.path(), "qa", false, "");
    // Another client of the account spends the window's budget just before lumierd starts, so
    // lumierd's first requests meet 429s with Retry-After (lumierd itself reads the `Ratelimit`
    // header and would not run into them alone).
    for _ in 0..50 {
        let r = api
            .http
            .get(format!("{}/storage/kv/namespaces", api.account()))
            .bearer_auth(DEFAULT_TOKEN)
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 429) {
            break;
        }
    }
    let lumierd_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    // The client gives up on a resource after its bounded retries; the next pass picks it up.
    let out = if out.code == 0 {
        out
    } else {
        tokio::task::block_in_place(|| once(dir.path(), &api, &[]))
    };
    assert_eq!(out.code, 0, "{out:?}");
    // The 500s are drawn at random: should none have reached lumierd yet, run more passes
    // (each a full resync through the same faults) until one has, and that pass converged.
    let lumierd_met_a_500 = || {
        api.timed_log()
            .iter()
            .any(|r| r.start >= lumierd_started && r.status == 500)
    };
    let mut passes = 0;
    while !lumierd_met_a_500() {
        passes += 1;
        assert!(passes <= 30, "no injected 500 reached lumierd in 30 passes");
        let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
        if out.code != 0 && lumierd_met_a_500() {
            // The pass that met the 500 gave up on something: the next one picks it up.
            let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
            assert_eq!(out.code, 0, "{out:?}");
        }
    }
    api.set_faults(Faults::default());
    let s = status(dir.path());
    assert!(all_ready(&s), "{s:#}");
    let titles: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles.len(), 2, "no duplicates under faults: {titles:?}");

    // (start, end, status) of every request, from the log file's completion times.
    let timed: Vec<(f64, f64, u16)> = api
        .timed_log()
        .iter()
        .map(|r| (r.start, r.end, r.status))
        .collect();
    assert!(timed.iter().any(|r| r.2 == 500), "5xx were injected");
    let timed: Vec<(f64, f64, u16)> = timed
        .into_iter()
        .filter(|r| r.0 >= lumierd_started)
        .collect();
    assert!(
        timed.iter().any(|r| r.2 == 500),
        "5xx were injected into lumierd's requests: {timed:?}"
    );
    let limited: Vec<f64> = timed.iter().filter(|r| r.2 == 429).map(|r| r.1).collect();
    assert!(
        !limited.is_empty(),
        "the rate-limit model answered lumierd 429s: {timed:?}"
    );
    // Retry-After (whole seconds, at least 1) is honoured: after a 429 went out, no request
    // starts until a second has passed (50 ms allowed for requests already on their way).
    for t in &limited {
        let early: Vec<_> = timed
            .iter()
            .filter(|r| r.0 > t + 0.05 && r.0 < t + 0.95)
            .collect();
        assert!(
            early.is_empty(),
            "requests sent {early:?} within a second of a 429 at {t}"
        );
    }
    api.stop().await;
}

/// git-sync style: the manifests root is a symlink swapped atomically to a new checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_symlink_swap_of_the_root_is_followed() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let stage = |extra: &str| {
        format!("app: {{ name: sync }}\nstage: dev\nresources:\n  cache: {{ type: kv }}\n{extra}")
    };
    for (rev, extra) in [("rev1", ""), ("rev2", "  sessions: { type: kv }\n")] {
        std::fs::create_dir_all(dir.path().join(rev)).unwrap();
        std::fs::write(dir.path().join(rev).join("dev.yaml"), stage(extra)).unwrap();
    }
    std::os::unix::fs::symlink("rev1", dir.path().join("current")).unwrap();
    // The daemon runs with a 1 h resync: only the watcher can make it see the swap.
    let _d = spawn_run_on(dir.path(), "current", &api, &[]);
    wait_status(dir.path(), 60, "rev1 ready", |s| {
        all_ready(s) && s["resources"].as_array().unwrap().len() == 1
    })
    .await;

    std::os::unix::fs::symlink("rev2", dir.path().join("current.tmp")).unwrap();
    std::fs::rename(dir.path().join("current.tmp"), dir.path().join("current")).unwrap();
    wait_status(dir.path(), 30, "rev2 applied", |s| {
        resource(s, "dev", "sessions").is_some_and(|r| r["state"] == "Ready")
    })
    .await;

    // Edits inside the new target are watched too.
    std::fs::write(
        dir.path().join("rev2/dev.yaml"),
        stage("  sessions: { type: kv }\n  more: { type: kv }\n"),
    )
    .unwrap();
    wait_status(dir.path(), 30, "edit in rev2 applied", |s| {
        resource(s, "dev", "more").is_some_and(|r| r["state"] == "Ready")
    })
    .await;
    api.stop().await;
}

/// Removing more resources than `--max-prune` deletes nothing until approved; a protected
/// stage stays protected even when its whole app leaves the manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_cap_holds_and_protection_outlives_the_manifest() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    let mut many = String::from("app: { name: bulk }\nstage: dev\nresources:\n");
    for k in 0..4 {
        many.push_str(&format!("  kv{k}: {{ type: kv }}\n"));
    }
    std::fs::write(m.join("bulk.yaml"), &many).unwrap();
    std::fs::write(
        m.join("prod.yaml"),
        "app:\n  name: keep\n  protect: [prod]\nstage: prod\nresources:\n  cache: { type: kv }\n",
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(api.namespaces().await.len(), 5);

    // Both files gone: 4 deletions are over a cap of 3, so nothing is deleted; `keep` is
    // protected although no manifest mentions its app any more.
    std::fs::write(
        m.join("bulk.yaml"),
        "app: { name: bulk }\nstage: dev\nresources: {}\n",
    )
    .unwrap();
    std::fs::remove_file(m.join("prod.yaml")).unwrap();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &["--max-prune", "3"]));
    assert_eq!(out.code, 1, "held deletions are not converged: {out:?}");
    assert_eq!(
        api.namespaces().await.len(),
        5,
        "nothing deleted over the cap"
    );
    let s = status(dir.path());
    let held = resource(&s, "dev", "kv0").unwrap();
    assert_eq!(held["state"], "Deleting", "{held:#}");
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .contains("run once with --max-prune 4"),
        "{held:#}"
    );
    assert_eq!(resource(&s, "prod", "cache").unwrap()["state"], "Retained");

    // Approved by raising the cap for one run.
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &["--max-prune", "4"]));
    assert_eq!(out.code, 0, "{out:?}");
    let titles: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, vec!["keep-prod-cache".to_string()]);
    let s = status(dir.path());
    assert!(resource(&s, "dev", "kv0").is_none());
    assert_eq!(resource(&s, "prod", "cache").unwrap()["state"], "Retained");
    api.stop().await;
}

/// Titles of the namespaces on the account, sorted.
async fn titles(api: &Api) -> Vec<String> {
    let mut t: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_outlives_the_document_that_stated_it_and_lifting_it_needs_approval() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "production", true, "");
    fleet(dir.path(), "dev", false, "");
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        titles(&api).await,
        ["shop-dev-cache", "shop-production-cache"]
    );

    // The document carrying `protect: [production]` goes; `dev` (no `protect`) remains:
    // production stays protected as recorded.
    let m = dir.path().join("m");
    std::fs::remove_file(m.join("production.yaml")).unwrap();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        titles(&api).await,
        ["shop-dev-cache", "shop-production-cache"]
    );
    let scripts = api.scripts().await;
    assert_eq!(scripts.len(), 2, "production's worker kept: {scripts:?}");
    let s = status(dir.path());
    assert_eq!(
        resource(&s, "production", "cache").unwrap()["state"],
        "Retained"
    );
    assert_eq!(
        resource(&s, "production", "api").unwrap()["state"],
        "Retained"
    );

    // Protection lifted (`protect: []`) in the same change as the removal: held, naming the
    // approval; nothing deleted.
    fleet(dir.path(), "dev", false, "");
    let dev = std::fs::read_to_string(m.join("dev.yaml")).unwrap();
    std::fs::write(
        m.join("dev.yaml"),
        dev.replace("name: shop\n", "name: shop\n  protect: []\n"),
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 1, "held deletions are not converged: {out:?}");
    assert_eq!(
        titles(&api).await,
        ["shop-dev-cache", "shop-production-cache"]
    );
    let s = status(dir.path());
    let held = resource(&s, "production", "cache").unwrap();
    assert_eq!(held["state"], "Deleting", "{held:#}");
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .contains("--approve-delete shop/production"),
        "{held:#}"
    );

    // Approved for that stage: deleted (worker first), dev untouched.
    let out = tokio::task::block_in_place(|| {
        once(dir.path(), &api, &["--approve-delete", "shop/production"])
    });
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(titles(&api).await, ["shop-dev-cache"]);
    assert_eq!(api.scripts().await.len(), 1);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_no_manifest_declares_any_more_is_deleted_only_when_approved() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("gone.yaml"),
        "app: { name: gone }\nstage: dev\nresources:\n  a: { type: kv }\n  b: { type: kv }\n",
    )
    .unwrap();
    std::fs::write(
        m.join("stay.yaml"),
        "app: { name: stay }\nstage: dev\nresources:\n  c: { type: kv }\n",
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(titles(&api).await.len(), 3);

    // Under the prune cap, but it is everything the app declared: held.
    std::fs::remove_file(m.join("gone.yaml")).unwrap();
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(titles(&api).await.len(), 3, "nothing deleted");
    let s = status(dir.path());
    let held = resource(&s, "dev", "a").unwrap();
    assert_eq!(held["state"], "Deleting", "{held:#}");
    assert!(
        held["message"]
            .as_str()
            .unwrap()
            .contains("run once with --approve-delete gone"),
        "{held:#}"
    );

    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &["--approve-delete", "gone"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(titles(&api).await, ["stay-dev-c"]);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_installation_takes_nothing_of_the_first_without_adopt() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(
        dir.path(),
        "dev",
        false,
        "  solo: { type: worker, entry: index.js }\n",
    );
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    let uploads = |api: &Api| {
        api.log()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/workers/scripts/shop-dev-api"))
            .count()
    };
    assert_eq!(uploads(&api), 1);

    // Another installation (its own state folder) on the same account and manifests.
    let other = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            "state2",
            "--api-url",
            &api.base,
        ];
        args.extend_from_slice(extra);
        run_in(dir.path(), &args, Duration::from_secs(120))
    };
    let out = tokio::task::block_in_place(|| other(&[]));
    assert_eq!(out.code, 1, "refused, so not converged: {out:?}");
    assert_eq!(
        uploads(&api),
        1,
        "the script of the first installation was left alone"
    );
    let s = tokio::task::block_in_place(|| {
        run_in(
            dir.path(),
            &["status", "--json", "--state", "state2"],
            Duration::from_secs(30),
        )
    });
    let s: Value = serde_json::from_str(&s.stdout).unwrap();
    // The namespace is refused (naming --adopt); the worker waits for it.
    let cache = resource(&s, "dev", "cache").unwrap();
    assert_eq!(cache["state"], "Error", "{cache:#}");
    assert!(
        cache["message"]
            .as_str()
            .unwrap()
            .contains("lumierd run --adopt"),
        "{cache:#}"
    );
    assert_eq!(resource(&s, "dev", "api").unwrap()["state"], "Pending");
    // A worker that binds nothing: refused as another installation's script.
    let solo = resource(&s, "dev", "solo").unwrap();
    assert_eq!(solo["state"], "Error", "{solo:#}");
    let message = solo["message"].as_str().unwrap();
    assert!(
        message.contains("another installation") && message.contains("lumierd run --adopt"),
        "{solo:#}"
    );

    // The first installation keeps working (no flip-flop), and an explicit adoption moves
    // both objects to the second.
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?} {:#}", status(dir.path()));
    assert_eq!(uploads(&api), 1);
    let out = tokio::task::block_in_place(|| other(&["--adopt"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("adopt shop/dev/cache"), "{out:?}");
    assert_eq!(
        uploads(&api),
        2,
        "adopting the script re-uploads it with this installation's tag"
    );
    assert_eq!(api.namespaces().await.len(), 1, "no duplicate");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_folder_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = tokio::task::block_in_place(|| {
        run_in(
            &repo(),
            &[
                "run",
                "--once",
                "--manifests",
                "examples",
                "--state",
                state.to_str().unwrap(),
            ],
            Duration::from_secs(120),
        )
    });
    assert_eq!(out.code, 0, "{out:?}");
    let mut todo = vec![state.clone()];
    let mut files = 0;
    while let Some(d) = todo.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
            }
        }
    }
    assert!(
        files >= 4,
        "records, local API data, token, installation id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_resource_shows_in_status_from_the_first_pass() {
    // A slow API and one reconcile at a time: the first pass takes seconds.
    let api = Api::start(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    let mut doc = String::from("app: { name: slow }\nstage: dev\nresources:\n");
    for k in 0..6 {
        doc.push_str(&format!("  kv{k}: {{ type: kv }}\n"));
    }
    std::fs::write(m.join("slow.yaml"), doc).unwrap();
    let _daemon = spawn_run(dir.path(), &api, &["--concurrency", "1"]);
    // While the pass is still under way, status already lists all six, the rest Pending.
    let s = wait_status(dir.path(), 60, "all six listed, some still pending", |s| {
        let list = s["resources"].as_array().cloned().unwrap_or_default();
        list.len() == 6 && list.iter().any(|r| r["state"] == "Pending")
    })
    .await;
    let pending: Vec<&Value> = s["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "Pending")
        .collect();
    assert!(
        pending
            .iter()
            .all(|r| r["type"] == "kv" && r["output"].is_null()),
        "{s:#}"
    );
    wait_status(dir.path(), 60, "all ready", all_ready).await;
    api.stop().await;
}
