//! The local edge (`run --serve`, issue #16): the real binary runs the real workerd over
//! loopback; the workers' KV bindings are checked against the local API's v4 routes.
//!
//! workerd comes from `LUMIERD_WORKERD`, else `PATH`, else `./node_modules/.bin`. Without it
//! these tests are skipped with a note, except under `CI=true` (where `.ci/run` installs it):
//! there a missing workerd fails them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{eventually, repo, run_in, Daemon};

const ACCOUNT: &str = lumierd::local_api::DEFAULT_ACCOUNT_ID;
const TOKEN: &str = lumierd::local_api::DEFAULT_TOKEN;
const LEGACY: &str = "5f0c7d3e9a2b4c1d8e6f7a0b1c2d3e4f";

/// The workerd binary, or `None` (skip) outside CI.
fn workerd() -> Option<PathBuf> {
    let explicit = std::env::var_os("LUMIERD_WORKERD").map(PathBuf::from);
    let found = lumierd::edge::find::locate(
        explicit.as_deref(),
        std::env::var_os("PATH").as_deref(),
        &repo(),
    );
    match found {
        Ok(p) => Some(p),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and workerd is missing (.ci/run installs it): {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A fresh client per test with no idle connections kept: a reload replaces the process that
/// accepted a kept-alive connection.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A running `lumierd run --serve` on `manifests` (relative to `dir`), with the local API's
/// and the edge's base URLs.
struct Served {
    daemon: Daemon,
    api: String,
    /// The embedded API's token (its data folder's token file).
    token: String,
    edge: String,
}

fn serve(dir: &Path, manifests: &str, workerd: &Path) -> Served {
    let daemon = Daemon::spawn(
        dir,
        &[
            "run",
            "--manifests",
            manifests,
            "--state",
            "state",
            "--debounce",
            "50ms",
            "--serve",
            "127.0.0.1:0",
            "--workerd",
            workerd.to_str().unwrap(),
        ],
    );
    let api = daemon.stdout_line("local API: ", Duration::from_secs(60));
    let api = api.split_whitespace().next().unwrap().to_owned();
    let edge = daemon.stdout_line("serving: ", Duration::from_secs(60));
    let token_file = lumierd::local_api::token_path(&dir.join("state/local-api"));
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_owned();
    Served {
        daemon,
        api,
        token,
        edge,
    }
}

impl Served {
    fn ns_url(&self, id: &str) -> String {
        format!("{}/accounts/{ACCOUNT}/storage/kv/namespaces/{id}", self.api)
    }

    async fn namespace_id(&self, title: &str) -> String {
        let list: Value = http()
            .get(format!(
                "{}/accounts/{ACCOUNT}/storage/kv/namespaces?per_page=100",
                self.api
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["title"] == title)
            .unwrap_or_else(|| panic!("no namespace {title}: {list}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `PUT …/values/{key}` through the v4 API.
    async fn put(&self, ns: &str, key: &str, value: &str, query: &str) {
        let r = http()
            .put(format!("{}/values/{key}{query}", self.ns_url(ns)))
            .bearer_auth(&self.token)
            .body(value.to_owned())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    /// `GET …/values/{key}` through the v4 API: (status, body).
    async fn get(&self, ns: &str, key: &str) -> (u16, String) {
        let r = http()
            .get(format!("{}/values/{key}", self.ns_url(ns)))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn keys(&self, ns: &str) -> Vec<Value> {
        let v: Value = http()
            .get(format!("{}/keys", self.ns_url(ns)))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["result"].as_array().unwrap().clone()
    }

    /// A worker's answer by the path form `/{app}/{stage}/{name}/…`: (status, body).
    async fn fetch(&self, path: &str) -> Result<(u16, String), String> {
        let r = http()
            .get(format!("{}{path}", self.edge))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            r.status().as_u16(),
            r.text().await.map_err(|e| e.to_string())?,
        ))
    }

    /// Polls the worker until its JSON answer satisfies `pred`.
    async fn wait_json(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(60), what, || async {
            match self.fetch(path).await {
                Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                    Ok(v) if pred(&v) => Ok(v),
                    other => Err(format!("{other:?}")),
                },
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }
}

fn status(dir: &Path) -> Result<Value, String> {
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

fn worker<'a>(status: &'a Value, stage: &str) -> Option<&'a Value> {
    status["resources"]
        .as_array()?
        .iter()
        .find(|r| r["stage"] == stage && r["type"] == "worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_are_served_live_with_kv_reload_and_failed_starts() {
    let Some(workerd) = workerd() else { return };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples"), &dir.path().join("m"));
    let s = serve(dir.path(), "m", &workerd);

    // Each stage's worker, by path and by Host.
    for stage in ["staging", "production"] {
        let v = s
            .wait_json(&format!("/my-app/{stage}/api/"), stage, |v| {
                v["stage"] == stage
            })
            .await;
        assert_eq!(v["app"], "my-app");
    }
    let by_host: Value = http()
        .get(format!("{}/", s.edge))
        .header("host", "my-app-production-api.localhost")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_host["stage"], "production");
    // A service binding: api answers `?whoami` through the auth worker.
    let (code, body) = s.fetch("/my-app/staging/api/?whoami").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"stage":"staging","authenticated":false}"#)
    );

    // KV, API → worker: a legacy value put through the v4 API is read by the worker, which
    // caches it; worker → API: the cached copy (with its TTL) is read through the v4 API.
    let cache = s.namespace_id("my-app-staging-cache").await;
    s.put(LEGACY, "u1", r#"{"name":"ada"}"#, "").await;
    let (code, body) = s.fetch("/my-app/staging/api/?id=u1").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"hit":false,"value":{"name":"ada"}}"#)
    );
    assert_eq!(
        s.get(&cache, "staging:user:u1").await,
        (200, r#"{"name":"ada"}"#.to_owned())
    );
    let keys = s.keys(&cache).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = keys[0]["expiration"].as_u64().unwrap();
    assert!(exp.abs_diff(now + 3600) < 120, "{keys:?}");
    // API → worker through the cache namespace itself.
    s.put(&cache, "staging:user:u2", r#"{"name":"grace"}"#, "")
        .await;
    let (code, body) = s.fetch("/my-app/staging/api/?id=u2").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"hit":true,"value":{"name":"grace"}}"#)
    );

    // The worker's status shows where it is served.
    let port = s.edge.rsplit(':').next().unwrap().to_owned();
    let st = tokio::task::block_in_place(|| status(dir.path())).unwrap();
    assert_eq!(
        worker(&st, "staging").unwrap()["output"]["localUrl"],
        format!("http://my-app-staging-api.localhost:{port}/")
    );

    // Edit the entry file: the new code answers (figure printed, not asserted).
    let entry = dir.path().join("m/my-app/src/index.ts");
    let original = std::fs::read_to_string(&entry).unwrap();
    let edited = original.replace("ok: true", "ok: true, edited: 1").replace(
        "const url = new URL(request.url);",
        "const url = new URL(request.url);\n    console.log(\"edge-log-check\", url.pathname);",
    );
    assert!(edited.contains("edited: 1") && edited.contains("edge-log-check"));
    // Meanwhile requests go on, each on a new connection: the reload refuses none.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, url) = (stop.clone(), format!("{}/my-app/production/api/", s.edge));
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http().get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("HTTP {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let t0 = Instant::now();
    std::fs::write(&entry, &edited).unwrap();
    s.wait_json("/my-app/staging/api/", "the edit served", |v| {
        v["edited"] == 1
    })
    .await;
    let live = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(failed.is_empty() && ok > 0, "{ok} ok, failed: {failed:?}");
    println!(
        "edge: edit → live in {} ms (debounce 50 ms, pass, upload, workerd restart); \
         {ok} requests during the reload, none refused",
        live.as_millis()
    );
    // The worker's console line is in lumierd's log with the worker's app, stage and name.
    // (The entry file is shared by both stages: wait for staging's line.)
    let line = s
        .daemon
        .wait_for_line("script=my-app-staging-api", Duration::from_secs(30));
    for field in [
        "app=my-app",
        "stage=staging",
        "resource=api",
        "edge-log-check /",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }

    // A version that fails to start in workerd (a top-level throw): the previous one keeps
    // serving and the worker's status shows workerd's error.
    let throwing = format!("throw new Error(\"boom at startup\");\n{edited}");
    std::fs::write(&entry, &throwing).unwrap();
    let st = eventually(
        Duration::from_secs(60),
        "the failed start in status",
        || async {
            let st = tokio::task::block_in_place(|| status(dir.path()))?;
            let msg = worker(&st, "staging").map(|w| w["message"].to_string());
            match msg {
                Some(m) if m.contains("boom at startup") => Ok(st),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let msg = worker(&st, "staging").unwrap()["message"].to_string();
    assert!(msg.contains("the previous one keeps serving"), "{msg}");
    let (code, body) = s.fetch("/my-app/staging/api/").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"edited\":1"), "{body}");
    // The other stage was not disturbed.
    let (code, _) = s.fetch("/my-app/production/api/").await.unwrap();
    assert_eq!(code, 200);

    // A syntax error is refused before upload (a manifest load error: the last good
    // manifests stay in force): the served version stays, status shows the error.
    std::fs::write(&entry, format!("{edited}\nexport const = ;\n")).unwrap();
    eventually(
        Duration::from_secs(60),
        "the syntax error in status",
        || async {
            let st = tokio::task::block_in_place(|| status(dir.path()))?;
            match st["loadError"].as_str() {
                Some(e) if e.contains("index.ts") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let (code, body) = s.fetch("/my-app/staging/api/").await.unwrap();
    assert_eq!((code, body.contains("\"edited\":1")), (200, true), "{body}");

    // Fixed: served again, and the error is gone.
    std::fs::write(&entry, original.replace("ok: true", "ok: true, edited: 2")).unwrap();
    s.wait_json("/my-app/staging/api/", "the fix served", |v| {
        v["edited"] == 2
    })
    .await;
    eventually(Duration::from_secs(30), "the error cleared", || async {
        let st = tokio::task::block_in_place(|| status(dir.path()))?;
        let m = worker(&st, "staging").unwrap()["message"].to_string();
        if m.contains("failed to start") || m.contains("index.ts") {
            Err(m)
        } else {
            Ok(())
        }
    })
    .await;

    // workerd killed behind lumierd's back is started again, without a pass.
    let workerd_pid = children(s.daemon.pid());
    assert_eq!(workerd_pid.len(), 1, "{workerd_pid:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &workerd_pid[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    s.wait_json("/my-app/staging/api/", "served again", |v| v["edited"] == 2)
        .await;
    s.daemon
        .wait_for_line("workerd exited on its own", Duration::from_secs(5));

    // SIGTERM stops workerd with lumierd.
    let running = children(s.daemon.pid());
    assert_eq!(running.len(), 1, "{running:?}");
    let mut daemon = s.daemon;
    daemon.signal("TERM");
    assert_eq!(daemon.exit(Duration::from_secs(15)), 0);
    eventually(Duration::from_secs(5), "workerd stopped", || async {
        let alive = Path::new(&format!("/proc/{}", running[0])).exists();
        if alive {
            Err(running[0])
        } else {
            Ok(())
        }
    })
    .await;
}

/// The child processes of `pid` (Linux: /proc/PID/task/*/children).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let text =
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// The seed's worker (`../shared/seed/kv.md`, "Worker Code") runs unchanged.
const SEED_WORKER: &str = r#"// src/index.ts
import { env } from "cloudflare:workers";

export default {
  async fetch(request: Request): Promise<Response> {
    // Get value
    const value = await env.CACHE.get("key");

    // Get with metadata
    const { value: data, metadata } = await env.CACHE.getWithMetadata("key");

    // Put value
    await env.CACHE.put("key", "value", {
      expirationTtl: 3600,  // 1 hour
      metadata: { version: 1 },
    });

    // Delete
    await env.CACHE.delete("key");

    // List keys
    const { keys } = await env.CACHE.list({ prefix: "user:" });

    return Response.json({ value, keys });
  },
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_worker_runs_unchanged() {
    let Some(workerd) = workerd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    std::fs::create_dir_all(m.join("src")).unwrap();
    std::fs::write(m.join("src/index.ts"), SEED_WORKER).unwrap();
    std::fs::write(
        m.join("dev.yaml"),
        "app:\n  name: seed\nstage: dev\nresources:\n  cache: { type: kv }\n  api:\n    type: worker\n    entry: src/index.ts\n    bindings:\n      CACHE: { kv: cache }\n  probe:\n    type: worker\n    entry: src/probe.js\n    bindings:\n      CACHE: { kv: cache }\n",
    )
    .unwrap();
    std::fs::write(m.join("src/probe.js"), PROBE_WORKER).unwrap();
    let s = serve(dir.path(), "m", &workerd);
    eventually(
        Duration::from_secs(60),
        "the seed worker served",
        || async {
            match s.fetch("/seed/dev/api/").await {
                Ok((200, body)) => Ok(body),
                other => Err(other),
            }
        },
    )
    .await;
    let cache = s.namespace_id("seed-dev-cache").await;
    s.put(&cache, "key", "from the API", "").await;
    s.put(&cache, "user:1", "ada", "?expiration_ttl=600").await;
    s.put(&cache, "other", "x", "").await;
    // Metadata set through the v4 API's multipart form is seen by `list`.
    let form = reqwest::multipart::Form::new()
        .text("value", "grace")
        .text("metadata", r#"{"role":"admin"}"#);
    let r = http()
        .put(format!("{}/values/user:2", s.ns_url(&cache)))
        .bearer_auth(&s.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);

    let (code, body) = s.fetch("/seed/dev/api/").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["value"], "from the API", "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    assert_eq!(keys[0]["name"], "user:1");
    assert!(keys[0]["expiration"].as_u64().is_some(), "{v}");
    assert_eq!(keys[1]["name"], "user:2");
    assert_eq!(
        keys[1]["metadata"],
        serde_json::json!({"role": "admin"}),
        "{v}"
    );
    // The worker put then deleted "key": gone for the API too.
    assert_eq!(s.get(&cache, "key").await.0, 404);

    // Metadata both ways, and the bulk read: a value the worker puts with a TTL and metadata
    // is seen by the v4 API with both; metadata put through the API is seen by the worker.
    let body = eventually(Duration::from_secs(60), "the probe served", || async {
        match s.fetch("/seed/dev/probe/").await {
            Ok((200, body)) => Ok(body),
            other => Err(other),
        }
    })
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["got"],
        serde_json::json!({"value": "grace", "metadata": {"role": "admin"}, "cacheStatus": null}),
        "{v}"
    );
    assert_eq!(
        v["many"],
        serde_json::json!({"user:1": "ada", "user:2": "grace", "missing": null}),
        "{v}"
    );
    assert_eq!(
        s.get(&cache, "probe").await,
        (200, "written by the worker".to_owned())
    );
    let meta: Value = http()
        .get(format!("{}/metadata/probe", s.ns_url(&cache)))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["result"],
        serde_json::json!({"by": "worker"}),
        "{meta}"
    );
    let keys = s.keys(&cache).await;
    let probe = keys.iter().find(|k| k["name"] == "probe").unwrap();
    assert!(probe["expiration"].as_u64().is_some(), "{keys:?}");

    // A script uploaded by another client (as wrangler does) with JSON, secret, plain-text
    // and service bindings is served with them after the next pass, at {script}.localhost.
    let metadata = serde_json::json!({
        "main_module": "extra.js",
        "compatibility_date": "2025-01-01",
        "bindings": [
            {"type": "json", "name": "J", "json": {"n": 1}},
            {"type": "secret_text", "name": "S", "text": "s3cret"},
            {"type": "plain_text", "name": "P", "text": "plain"},
            {"type": "service", "name": "SVC", "service": "seed-dev-probe"},
        ],
    });
    let part = reqwest::multipart::Part::bytes(EXTRA_WORKER.as_bytes().to_vec())
        .file_name("extra.js")
        .mime_str("application/javascript+module")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("metadata", metadata.to_string())
        .part("extra.js", part);
    let r = http()
        .put(format!(
            "{}/accounts/{ACCOUNT}/workers/scripts/extra",
            s.api
        ))
        .bearer_auth(&s.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    s.daemon.signal("HUP");
    let v = eventually(
        Duration::from_secs(60),
        "the extra script served",
        || async {
            let r = http()
                .get(format!("{}/", s.edge))
                .header("host", "extra.localhost")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => r.json::<Value>().await.map_err(|e| e.to_string()),
                code => Err(format!("{code}: {}", r.text().await.unwrap_or_default())),
            }
        },
    )
    .await;
    assert_eq!(
        v,
        serde_json::json!({"j": {"n": 1}, "s": "s3cret", "p": "plain", "via": {"got": {"value": "grace", "metadata": {"role": "admin"}, "cacheStatus": null}, "many": {"user:1": "ada", "user:2": "grace", "missing": null}}})
    );
    assert!(!s.daemon.stderr().contains("s3cret"), "a secret in the log");
}

/// Shows its JSON, secret and plain-text bindings and calls the probe through a service binding.
const EXTRA_WORKER: &str = r#"export default {
  async fetch(request, env) {
    const via = await (await env.SVC.fetch("http://probe/")).json();
    return Response.json({ j: env.J, s: env.S, p: env.P, via });
  },
};
"#;

/// Puts with a TTL and metadata, reads with metadata and in bulk.
const PROBE_WORKER: &str = r#"export default {
  async fetch(request, env) {
    await env.CACHE.put("probe", "written by the worker", { expirationTtl: 600, metadata: { by: "worker" } });
    const got = await env.CACHE.getWithMetadata("user:2");
    const many = await env.CACHE.get(["user:1", "user:2", "missing"]);
    return Response.json({ got, many: Object.fromEntries(many) });
  },
};
"#;

/// `--serve` is refused, naming why, where it cannot work; a missing workerd names the
/// install command. Needs no workerd.
#[test]
fn serve_is_refused_where_it_cannot_work_and_a_missing_workerd_names_the_install() {
    let dir = tempfile::tempdir().unwrap();
    let examples = repo().join("examples");
    let m = examples.to_str().unwrap();
    let base = ["run", "--manifests", m, "--state", "state"];
    for (extra, why) in [
        (
            &["--serve", "127.0.0.1:0", "--provider", "cloudflare"][..],
            "refused with --provider cloudflare or --api-url",
        ),
        (
            &[
                "--serve",
                "127.0.0.1:0",
                "--api-url",
                "http://127.0.0.1:9/client/v4",
            ][..],
            "refused with --provider cloudflare or --api-url",
        ),
        (&["--serve", "127.0.0.1:0", "--once"][..], "drop --once"),
        (&["--serve", "0.0.0.0:0"][..], "loopback addresses only"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run_in(dir.path(), &args, Duration::from_secs(30));
        assert_eq!(out.code, 2, "{extra:?}: {out:?}");
        assert!(out.stderr.contains(why), "{extra:?}: {}", out.stderr);
    }
    let args: Vec<&str> = base
        .iter()
        .chain(&["--serve", "127.0.0.1:0"])
        .copied()
        .collect();
    let mut d = Daemon::spawn_env(dir.path(), &args, &[("PATH", "/nonexistent")]);
    assert_eq!(d.exit(Duration::from_secs(30)), 1, "{}", d.stderr());
    assert!(
        d.stderr().contains("npm i -D workerd@1.20261117.1"),
        "{}",
        d.stderr()
    );
}

/// The KV binding protocol (what workerd sends for `env.NS.*`), spoken over loopback to the
/// local API's binding listener, checked against the v4 routes. Needs no workerd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_binding_protocol_shares_the_v4_apis_store() {
    use crate::support::Api;
    use lumierd::local_api::KV_BINDING_NAMESPACE_HEADER as NS;
    let api = Api::start(Default::default()).await;
    let id = "0123456789abcdef0123456789abcdef";
    api.local.seed_namespace(id, "t").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kv = format!("http://{}", listener.local_addr().unwrap());
    let router = api.local.kv_binding_router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let c = http();
    let v4 = format!("{}/accounts/{ACCOUNT}/storage/kv/namespaces/{id}", api.base);

    // put (key with a slash and a colon, TTL, metadata) → the v4 API reads it.
    let r = c
        .put(format!("{kv}/a%2Fb%3A1?urlencoded=true&expiration_ttl=300"))
        .header(NS, id)
        .header("cf-kv-metadata", r#"{"v":1}"#)
        .body("one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{v4}/values/a%2Fb%3A1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "one");
    // The v4 API writes → get answers the bytes and the metadata header.
    for k in ["k1", "k2", "k3"] {
        let form = reqwest::multipart::Form::new()
            .text("value", format!("v-{k}"))
            .text("metadata", r#"{"m":true}"#);
        let r = c
            .put(format!("{v4}/values/{k}"))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let r = c
        .get(format!("{kv}/k2?urlencoded=true"))
        .header(NS, id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cf-kv-metadata"], r#"{"m":true}"#);
    assert_eq!(r.text().await.unwrap(), "v-k2");
    // Missing → 404 (the binding's null); a TTL under 60 s → 400 as on the v4 API.
    let r = c
        .get(format!("{kv}/nope?urlencoded=true"))
        .header(NS, id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .put(format!("{kv}/short?urlencoded=true&expiration_ttl=10"))
        .header(NS, id)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // list pages with a cursor; metadata comes as JSON text, as workerd parses it.
    let page = |cursor: Option<String>| {
        let c = c.clone();
        let kv = kv.clone();
        async move {
            let mut url = format!("{kv}/?prefix=k&key_count_limit=2");
            if let Some(cur) = cursor {
                url.push_str(&format!("&cursor={cur}"));
            }
            c.get(url)
                .header(NS, id)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = page(None).await;
    assert_eq!(first["list_complete"], false, "{first}");
    assert_eq!(first["keys"][0]["name"], "k1");
    assert_eq!(first["keys"][0]["metadata"], r#"{"m":true}"#);
    let second = page(first["cursor"].as_str().map(str::to_owned)).await;
    assert_eq!(second["list_complete"], true, "{second}");
    assert_eq!(second["keys"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["keys"][0]["name"], "k3");
    // bulk get, delete, and an unknown namespace (500: the worker's call throws).
    let bulk: Value = c
        .post(format!("{kv}/bulk/get"))
        .header(NS, id)
        .body(r#"{"keys":["k1","zz"],"withMetadata":true}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        bulk,
        serde_json::json!({"k1": {"value": "v-k1", "metadata": {"m": true}}, "zz": null})
    );
    let r = c
        .delete(format!("{kv}/k1?urlencoded=true"))
        .header(NS, id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{v4}/values/k1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(format!("{kv}/k2?urlencoded=true"))
        .header(NS, "ffffffffffffffffffffffffffffffff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    server.abort();
    api.stop().await;
}
