//! Worker bindings on a real account (issue #13): the real `lumierd` binary against the local
//! API over loopback; the "third party" is the real client, as `wrangler secret put` would be.

use crate::support::{run_in, Api, Output};
use lumierd::cloudflare::Secret;
use lumierd::local_api::Faults;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";
const SCRIPT: &str = "shop-dev-api";

/// `m/dev.yaml`: kv `cache` and worker `api` (binding it and `${stage}`), plus `extra` lines
/// in the worker.
fn manifests(dir: &Path, extra: &str) {
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
    let out = run_in(
        dir,
        &[
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &api.base,
        ],
        Duration::from_secs(120),
    );
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

async fn secret_names(api: &Api) -> Vec<String> {
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
