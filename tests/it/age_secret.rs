//! `{ secret: { age: FILE } }` (issue #13): an age-encrypted file of the manifests tree,
//! decrypted in-process with `--age-identity`; the real binary against the local API. The
//! identity and the files are made here with the `age` crate itself.

use crate::bindings::{files_containing, lumierd_env, manifests, secret_names, SCRIPT};
use crate::support::{eventually, run_in, Api};
use age::secrecy::ExposeSecret;
use lumierd::local_api::Faults;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// `m/dev.yaml` as [`manifests`] writes it, plus `SIGNING_KEY` from the age file `file`
/// (relative to the manifest) and `more` resources.
fn with_age_secret(dir: &Path, file: &str, more: &str) {
    manifests(dir, "");
    let yaml = std::fs::read_to_string(dir.join("m/dev.yaml")).unwrap()
        + &format!("      SIGNING_KEY: {{ secret: {{ age: {file} }} }}\n{more}");
    std::fs::write(dir.join("m/dev.yaml"), yaml).unwrap();
}

/// Encrypts `value` (with a final newline, as `echo value | age -r …` does) to `key` into
/// `m/secrets/NAME`.
fn seal(dir: &Path, name: &str, key: &age::x25519::Identity, value: &str) {
    let sealed = age::encrypt(&key.to_public(), format!("{value}\n").as_bytes()).unwrap();
    std::fs::create_dir_all(dir.join("m/secrets")).unwrap();
    std::fs::write(dir.join("m/secrets").join(name), sealed).unwrap();
}

/// Every resource of `status --json`, by name.
fn statuses(dir: &Path) -> (Value, String) {
    let out = run_in(
        dir,
        &["status", "--json", "--state", "state"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut by_name = serde_json::Map::new();
    for r in s["resources"].as_array().unwrap() {
        by_name.insert(r["name"].as_str().unwrap().to_owned(), r.clone());
    }
    (Value::Object(by_name), out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_secret_converges_rotates_follows_its_file_and_is_never_stored() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = age::x25519::Identity::generate();
    let key_text = key.to_string().expose_secret().to_owned();
    // Outside the manifests folder, as a deployment keeps it.
    let identity = dir.path().join("age-identity.txt");
    std::fs::write(&identity, format!("# made by the test\n{key_text}\n")).unwrap();
    let identity = identity.to_str().unwrap().to_owned();
    let (canary, rotated, watched) = (
        "canary-age-6c0d2f9a41",
        "canary-age-rotated-93be1d",
        "canary-age-watched-2a7e5c",
    );
    seal(dir.path(), "signing.age", &key, canary);
    with_age_secret(dir.path(), "secrets/signing.age", "");
    let once = |with_identity: bool| {
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
        if with_identity {
            args.extend(["--age-identity", identity.as_str()]);
        }
        lumierd_env(dir.path(), &args, &[])
    };
    let mut output = String::new();
    // The request log of every step (it is cleared between them).
    let mut requests = String::new();
    let secrets_put = vec![format!(
        "PUT /client/v4/accounts/{}/workers/scripts/{SCRIPT}/secrets",
        lumierd::local_api::DEFAULT_ACCOUNT_ID
    )];

    // Converges: the secret is set with the script.
    let (code, out) = tokio::task::block_in_place(|| once(true));
    assert_eq!(code, 0, "{out}");
    output.push_str(&out);
    assert!(secret_names(&api).await.contains(&"SIGNING_KEY".to_owned()));

    // Re-encrypted with another value: one PUT …/secrets, no re-upload.
    seal(dir.path(), "signing.age", &key, rotated);
    requests.push_str(&format!("{:?}", api.log()));
    api.clear_log();
    let (code, out) = tokio::task::block_in_place(|| once(true));
    assert_eq!(code, 0, "{out}");
    output.push_str(&out);
    assert_eq!(api.writes(), secrets_put);

    // The daemon: an edit of the .age file wakes it like a worker source's edit (resync 1 h).
    let args = [
        "run",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
        "--age-identity",
        &identity,
        "--resync",
        "1h",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    requests.push_str(&format!("{:?}", api.log()));
    api.clear_log();
    let mut d = crate::support::Daemon::spawn_env(dir.path(), &args, &[("RUST_LOG", "trace")]);
    let admin = d.stdout_line("admin API: ", Duration::from_secs(30));
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(60), "ready", || async {
        match http.get(format!("{admin}/readyz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    requests.push_str(&format!("{:?}", api.log()));
    api.clear_log();
    seal(dir.path(), "signing.age", &key, watched);
    eventually(Duration::from_secs(60), "the edit put", || async {
        let writes = api.writes();
        if writes == secrets_put {
            Ok(())
        } else {
            Err(writes)
        }
    })
    .await;
    d.signal("TERM");
    d.exit(Duration::from_secs(30));
    output.push_str(&format!("{}\n{}", d.stdout(), d.stderr()));

    // No identity: an Error on the worker naming the file and the fix; nothing written, the
    // remote secret left as it is.
    requests.push_str(&format!("{:?}", api.log()));
    api.clear_log();
    let (code, out) = tokio::task::block_in_place(|| once(false));
    assert_ne!(code, 0, "{out}");
    output.push_str(&out);
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    let (s, _) = tokio::task::block_in_place(|| statuses(dir.path()));
    assert_eq!(s["api"]["state"], "Error", "{s:#}");
    let m = s["api"].to_string();
    assert!(
        m.contains("secrets/signing.age") && m.contains("--age-identity"),
        "{m}"
    );

    // Encrypted to another identity: the Error names the file and the recipient to use.
    let other = age::x25519::Identity::generate();
    seal(dir.path(), "other.age", &other, "not-for-this-key");
    with_age_secret(dir.path(), "secrets/other.age", "");
    let (code, out) = tokio::task::block_in_place(|| once(true));
    assert_ne!(code, 0, "{out}");
    output.push_str(&out);
    let (s, _) = tokio::task::block_in_place(|| statuses(dir.path()));
    assert_eq!(s["api"]["state"], "Error", "{s:#}");
    let m = s["api"].to_string();
    let recipient = key.to_public().to_string();
    assert!(
        m.contains("secrets/other.age") && m.contains(&recipient),
        "{m}"
    );

    // Missing, in the same change as a new namespace: the namespace converges, the worker
    // is an Error naming the file, its remote secret stays.
    with_age_secret(dir.path(), "secrets/gone.age", "  sessions: { type: kv }\n");
    requests.push_str(&format!("{:?}", api.log()));
    api.clear_log();
    let (code, out) = tokio::task::block_in_place(|| once(true));
    assert_ne!(code, 0, "{out}");
    output.push_str(&out);
    let (s, status_text) = tokio::task::block_in_place(|| statuses(dir.path()));
    assert_eq!(s["sessions"]["state"], "Ready", "{s:#}");
    assert_eq!(s["api"]["state"], "Error", "{s:#}");
    assert!(s["api"].to_string().contains("secrets/gone.age"), "{s:#}");
    assert!(
        api.writes().iter().all(|w| !w.contains("/workers/")),
        "{:?}",
        api.writes()
    );
    assert!(secret_names(&api).await.contains(&"SIGNING_KEY".to_owned()));

    requests.push_str(&format!("{:?}", api.log()));
    assert!(output.contains("TRACE"), "the runs logged at trace level");
    // Neither the values nor the key are anywhere: state, trace logs, status, request log.
    for value in [canary, rotated, watched, key_text.as_str()] {
        assert_eq!(
            files_containing(&dir.path().join("state"), value),
            Vec::<String>::new(),
            "{value}"
        );
        assert!(!output.contains(value), "{value} in the output");
        assert!(!status_text.contains(value), "{value} in status");
        assert!(!requests.contains(value), "{value} in the request log");
    }
    api.stop().await;
}
