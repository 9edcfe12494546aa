//! Worker bindings on a real account (issue #13): the real `lumierd` binary against the local
//! API over loopback; the "third party" is the real client, as `wrangler secret put` would be.

use crate::support::{run_in, run_once, Api, Output};
use lumierd::cloudflare::Secret;
use lumierd::local_api::Faults;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";
pub(crate) const SCRIPT: &str = "shop-dev-api";

/// `m/dev.yaml`: kv `cache` and worker `api` (binding it and `${stage}`), plus `extra` lines
/// in the worker.
pub(crate) fn manifests(dir: &Path, extra: &str) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    if !m.join("index.js").exists() {
        std::fs::write(m.join("index.js"), WORKER).unwrap();
    }
    std::fs::write(
        m.join("dev.yaml"),
        format!(
            "app: {{ name: shop }}\nstage: dev\nresources:\n  cache: {{ type: kv }}\n  api:\n    type: worker\n    entry: index.js\n{extra}    bindings:\n      CACHE: {{ kv: cache }}\n      STAGE: \"${{stage}}\"\n"
        ),
    )
    .unwrap();
}

/// One `run --once` pass; it must succeed.
fn once(dir: &Path, api: &Api) -> Output {
    let out = run_once(dir, api, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    out
}

fn worker_status(dir: &Path) -> Value {
    let out = run_in(
        dir,
        &["status", "--json", "--state", "state"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    s["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "api")
        .cloned()
        .unwrap()
}

pub(crate) async fn secret_names(api: &Api) -> Vec<String> {
    api.client()
        .list_secrets(SCRIPT)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_set_outside_lumierd_survives_passes_and_code_edits() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), "");
    tokio::task::block_in_place(|| once(dir.path(), &api));
    api.client()
        .put_secret(SCRIPT, "API_KEY", &Secret::new("third-party-value"))
        .await
        .unwrap();
    api.clear_log();
    for pass in 0..3 {
        tokio::task::block_in_place(|| once(dir.path(), &api));
        assert!(api.writes().is_empty(), "pass {pass}: {:?}", api.writes());
        let reads = api.log().len();
        // The first pass after the put reads the changed script's settings and content once;
        // the next ones only list.
        if pass > 0 {
            assert!(reads <= 3, "pass {pass} sent {reads}: {:?}", api.log());
        }
        api.clear_log();
    }
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(w["state"], "Ready", "{w:#}");
    assert_eq!(w["drift"]["count"], 0, "{w:#}");
    assert_eq!(
        w["output"]["unmanagedSecrets"],
        serde_json::json!(["API_KEY"])
    );
    assert_eq!(secret_names(&api).await, vec!["API_KEY".to_string()]);

    // An edit of the code re-uploads the script; the secret stays.
    std::fs::write(
        dir.path().join("m/index.js"),
        WORKER.replace("hi", "edited"),
    )
    .unwrap();
    tokio::task::block_in_place(|| once(dir.path(), &api));
    let uploads: Vec<String> = api
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("PUT") && w.ends_with(SCRIPT))
        .collect();
    assert_eq!(uploads.len(), 1, "{:?}", api.writes());
    assert_eq!(secret_names(&api).await, vec!["API_KEY".to_string()]);
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(w["drift"]["count"], 0, "{w:#}");
    assert_eq!(
        w["output"]["unmanagedSecrets"],
        serde_json::json!(["API_KEY"])
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_exclusive_removes_an_undeclared_secret() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), "    secrets: exclusive\n");
    tokio::task::block_in_place(|| once(dir.path(), &api));
    api.client()
        .put_secret(SCRIPT, "API_KEY", &Secret::new("third-party-value"))
        .await
        .unwrap();
    tokio::task::block_in_place(|| once(dir.path(), &api));
    assert!(secret_names(&api).await.is_empty());
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(w["drift"]["count"], 1, "{w:#}");
    assert_eq!(
        w["drift"]["last"]["changes"][0], "bindings.API_KEY: (none) → secret_text",
        "{w:#}"
    );
    api.stop().await;
}

/// `m/dev.yaml` with workers `web` (binding `auth` as a service and a JSON var) and `auth`.
fn service_manifests(dir: &Path, flags: &str) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    std::fs::write(
        m.join("dev.yaml"),
        format!(
            "app: {{ name: shop }}\nstage: dev\nresources:\n  cache: {{ type: kv }}\n  auth:\n    type: worker\n    entry: index.js\n  web:\n    type: worker\n    entry: index.js\n    bindings:\n      AUTH: {{ service: auth }}\n      FLAGS: {{ json: {flags} }}\n"
        ),
    )
    .unwrap();
}

/// The script named by each write of `method` (`PUT` upload, `DELETE`), in the order sent.
fn scripts_written(api: &Api, method: &str) -> Vec<String> {
    api.writes()
        .into_iter()
        .filter_map(|w| {
            let (m, path) = w.split_once(' ')?;
            let (_, name) = path.split_once("/workers/scripts/")?;
            (m == method && !name.contains('/')).then(|| name.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_binding_orders_create_before_and_delete_after_its_dependent() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    service_manifests(dir.path(), "{ beta: true, limit: 10 }");
    tokio::task::block_in_place(|| once(dir.path(), &api));
    assert_eq!(
        scripts_written(&api, "PUT"),
        vec!["shop-dev-auth".to_string(), "shop-dev-web".to_string()],
        "{:?}",
        api.writes()
    );
    let settings = api.client().get_settings("shop-dev-web").await.unwrap();
    let text = serde_json::to_value(&settings.bindings)
        .unwrap()
        .to_string();
    assert!(text.contains(r#""service":"shop-dev-auth""#), "{text}");
    assert!(text.contains(r#""type":"json""#), "{text}");

    // Both removed: the dependent goes first, although `auth` sorts before `web`.
    api.clear_log();
    std::fs::write(
        dir.path().join("m/dev.yaml"),
        "app: { name: shop }\nstage: dev\nresources:\n  cache: { type: kv }\n",
    )
    .unwrap();
    tokio::task::block_in_place(|| once(dir.path(), &api));
    assert_eq!(
        scripts_written(&api, "DELETE"),
        vec!["shop-dev-web".to_string(), "shop-dev-auth".to_string()],
        "{:?}",
        api.writes()
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_var_compares_by_value_and_its_drift_is_corrected() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    service_manifests(dir.path(), "{ beta: true, limit: 10 }");
    tokio::task::block_in_place(|| once(dir.path(), &api));
    let acct = api.account();
    let patch = |flags: Value| {
        let form = reqwest::multipart::Form::new().text(
            "settings",
            serde_json::json!({"bindings": [
                {"type": "service", "name": "AUTH", "service": "shop-dev-auth"},
                {"type": "json", "name": "FLAGS", "json": flags},
            ]})
            .to_string(),
        );
        api.http
            .patch(format!("{acct}/workers/scripts/shop-dev-web/settings"))
            .multipart(form)
    };
    // The same value, keys in another order: no drift, nothing written.
    api.send(patch(
        serde_json::from_str(r#"{"limit": 10, "beta": true}"#).unwrap(),
    ))
    .await;
    api.clear_log();
    tokio::task::block_in_place(|| once(dir.path(), &api));
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    let web = |dir: &Path| {
        let out = run_in(
            dir,
            &["status", "--json", "--state", "state"],
            Duration::from_secs(30),
        );
        let s: Value = serde_json::from_str(&out.stdout).unwrap();
        s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "web")
            .cloned()
            .unwrap()
    };
    let w = tokio::task::block_in_place(|| web(dir.path()));
    assert_eq!(w["drift"]["count"], 0, "{w:#}");

    // Another value: drift, named by value, and put back.
    api.send(patch(serde_json::json!({"beta": false, "limit": 10})))
        .await;
    tokio::task::block_in_place(|| once(dir.path(), &api));
    let w = tokio::task::block_in_place(|| web(dir.path()));
    assert_eq!(w["drift"]["count"], 1, "{w:#}");
    assert_eq!(
        w["drift"]["last"]["changes"][0],
        r#"bindings.FLAGS: json:{"beta":true,"limit":10} → json:{"beta":false,"limit":10}"#,
        "{w:#}"
    );
    let settings = api.client().get_settings("shop-dev-web").await.unwrap();
    let text = serde_json::to_value(&settings.bindings)
        .unwrap()
        .to_string();
    assert!(text.contains(r#""beta":true"#), "{text}");
    api.stop().await;
}

/// One `lumierd ARGS` in `dir` with `env` (and `RUST_LOG=trace`) to its end: (exit code,
/// stdout + stderr).
pub(crate) fn lumierd_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut all = vec![("RUST_LOG", "trace")];
    all.extend_from_slice(env);
    let mut d = crate::support::Daemon::spawn_env(dir, args, &all);
    let code = d.exit(Duration::from_secs(120));
    (code, format!("{}\n{}", d.stdout(), d.stderr()))
}

/// Every file under `dir` whose bytes contain `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_secrets_converge_rotate_with_one_put_come_back_and_are_never_stored() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    let canary = "canary-7f3a9c1e5b-secret-value";
    let file_canary = "canary-file-41d2c8a0e6-value";
    let rotated = "canary-rotated-0b9e77d3f1";
    std::fs::write(creds.join("db-password"), format!("{file_canary}\n")).unwrap();
    manifests(dir.path(), "");
    // Bindings with the two declared secrets.
    let yaml = std::fs::read_to_string(dir.path().join("m/dev.yaml")).unwrap()
        + "      API_KEY: { secret: { env: LUMIERD_IT_API_KEY } }\n      DB_PASSWORD: { secret: { file: db-password } }\n";
    std::fs::write(dir.path().join("m/dev.yaml"), yaml).unwrap();
    let creds_s = creds.to_str().unwrap().to_owned();
    let run = |value: Option<&str>| {
        let args = vec![
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &api.base,
            "--secrets-dir",
            &creds_s,
        ];
        let env: Vec<(&str, &str)> = value
            .map(|v| ("LUMIERD_IT_API_KEY", v))
            .into_iter()
            .collect();
        lumierd_env(dir.path(), &args, &env)
    };
    let mut output = String::new();
    let (code, out) = tokio::task::block_in_place(|| run(Some(canary)));
    assert_eq!(code, 0, "{out}");
    output.push_str(&out);
    let mut names = secret_names(&api).await;
    names.sort();
    assert_eq!(
        names,
        vec!["API_KEY".to_string(), "DB_PASSWORD".to_string()]
    );

    // Unchanged: nothing written.
    api.clear_log();
    let (code, out) = tokio::task::block_in_place(|| run(Some(canary)));
    assert_eq!(code, 0, "{out}");
    output.push_str(&out);
    assert!(api.writes().is_empty(), "{:?}", api.writes());

    // Rotated: plan says so by name; run sends one PUT …/secrets and no upload.
    let plan = tokio::task::block_in_place(|| {
        lumierd_env(
            dir.path(),
            &[
                "plan",
                "--manifests",
                "m",
                "--state",
                "state",
                "--api-url",
                &api.base,
                "--secrets-dir",
                &creds_s,
            ],
            &[("LUMIERD_IT_API_KEY", rotated)],
        )
    });
    assert!(plan.1.contains("secrets.API_KEY: changed"), "{}", plan.1);
    output.push_str(&plan.1);
    api.clear_log();
    let (code, out) = tokio::task::block_in_place(|| run(Some(rotated)));
    assert_eq!(code, 0, "{out}");
    output.push_str(&out);
    assert_eq!(
        api.writes(),
        vec![format!(
            "PUT /client/v4/accounts/{}/workers/scripts/{SCRIPT}/secrets",
            lumierd::local_api::DEFAULT_ACCOUNT_ID
        )],
    );

    // Deleted out of band: drift, put back.
    assert!(api.client().delete_secret(SCRIPT, "API_KEY").await.unwrap());
    let (code, out) = tokio::task::block_in_place(|| run(Some(rotated)));
    assert_eq!(code, 0, "{out}");
    output.push_str(&out);
    assert!(secret_names(&api).await.contains(&"API_KEY".to_string()));
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(
        w["drift"]["last"]["changes"][0], "secrets.API_KEY: set → (removed)",
        "{w:#}"
    );

    // The variable unset: an Error on the worker naming it; the kv converges, the remote
    // secret is left alone, nothing is written.
    api.clear_log();
    let (code, out) = tokio::task::block_in_place(|| run(None));
    assert_ne!(code, 0, "{out}");
    output.push_str(&out);
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(w["state"], "Error", "{w:#}");
    let message = w.to_string();
    assert!(message.contains("LUMIERD_IT_API_KEY"), "{w:#}");
    assert!(secret_names(&api).await.contains(&"API_KEY".to_string()));

    assert!(output.contains("TRACE"), "the runs logged at trace level");
    // The values are nowhere: state folder, trace logs, plan, status, the request log.
    let status = run_in(
        dir.path(),
        &["status", "--json", "--state", "state"],
        Duration::from_secs(30),
    );
    for value in [canary, file_canary, rotated] {
        assert_eq!(
            files_containing(&dir.path().join("state"), value),
            Vec::<String>::new(),
            "{value}"
        );
        assert!(!output.contains(value), "{value} in the output");
        assert!(!status.stdout.contains(value), "{value} in status");
        assert!(
            !format!("{:?}", api.log()).contains(value),
            "{value} in the request log"
        );
    }

    // The daemon's /metrics and /status, once its first pass is done.
    let args = [
        "run",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
        "--secrets-dir",
        &creds_s,
        "--resync",
        "1h",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    let mut d = crate::support::Daemon::spawn_env(
        dir.path(),
        &args,
        &[("LUMIERD_IT_API_KEY", rotated), ("RUST_LOG", "trace")],
    );
    let admin = d.stdout_line("admin API: ", Duration::from_secs(30));
    let http = reqwest::Client::new();
    crate::support::eventually(Duration::from_secs(60), "ready", || async {
        match http.get(format!("{admin}/readyz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut scraped = String::new();
    for path in ["/metrics", "/status"] {
        let r = http.get(format!("{admin}{path}")).send().await.unwrap();
        scraped.push_str(&r.text().await.unwrap());
    }
    assert!(scraped.contains("lumierd_reconciles_total"), "{scraped}");
    d.signal("TERM");
    d.exit(Duration::from_secs(30));
    let logs = format!("{}\n{}", d.stdout(), d.stderr());
    for value in [canary, file_canary, rotated] {
        assert!(!scraped.contains(value), "{value} in /metrics or /status");
        assert!(!logs.contains(value), "{value} in the daemon's trace logs");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_dev_is_on_by_default_converges_its_route_shows_the_url_and_corrects_a_flip() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Not written: on, as with wrangler.
    manifests(dir.path(), "");
    tokio::task::block_in_place(|| once(dir.path(), &api));
    let client = api.client();
    assert!(client.get_script_subdomain(SCRIPT).await.unwrap().enabled);
    let sub = client.get_account_subdomain().await.unwrap().unwrap();
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(
        w["output"]["url"],
        format!("https://{SCRIPT}.{sub}.workers.dev"),
        "{w:#}"
    );

    // An unchanged resync reads no route (the audit is hourly by default).
    api.clear_log();
    tokio::task::block_in_place(|| once(dir.path(), &api));
    let log = api.log();
    assert!(
        log.iter().all(|r| !r.path.ends_with("/subdomain")),
        "{log:?}"
    );

    // Flipped out of band (not versioned: the list does not show it): the audit finds it.
    client.set_script_subdomain(SCRIPT, false).await.unwrap();
    let args = [
        "run",
        "--once",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
    ];
    let (code, out) = tokio::task::block_in_place(|| {
        lumierd_env(dir.path(), &args, &[("LUMIERD_ROUTE_AUDIT_SECS", "0")])
    });
    assert_eq!(code, 0, "{out}");
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert_eq!(
        w["drift"]["last"]["changes"][0], "workersDev: true → false",
        "{w:#}"
    );
    assert!(client.get_script_subdomain(SCRIPT).await.unwrap().enabled);

    // Turned off in the manifest: one POST, no re-upload; the url goes.
    manifests(dir.path(), "    workersDev: false\n");
    api.clear_log();
    tokio::task::block_in_place(|| once(dir.path(), &api));
    assert_eq!(
        api.writes(),
        vec![format!(
            "POST /client/v4/accounts/{}/workers/scripts/{SCRIPT}/subdomain",
            lumierd::local_api::DEFAULT_ACCOUNT_ID
        )]
    );
    assert!(!client.get_script_subdomain(SCRIPT).await.unwrap().enabled);
    let w = tokio::task::block_in_place(|| worker_status(dir.path()));
    assert!(w["output"].get("url").is_none(), "{w:#}");
    api.stop().await;
}
