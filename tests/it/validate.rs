//! `lumierd validate` and `lumierd schema` on the examples and the corpus of invalid manifests.

use crate::support::{repo, run, run_in};
use std::path::Path;
use std::time::Duration;

#[test]
fn examples_validate() {
    let out = run(&["validate", "examples"]);
    assert_eq!(out.code, 0, "{out:?}");
    // Per stage: kv cache and legacy (existing), worker api, worker auth (api's service).
    assert_eq!(out.stdout.trim(), "ok: 1 app, 2 stages, 8 resources");
}

/// Every case under tests/corpus/invalid has one defect; `expect` holds the error line
/// (`file:line:col: message`, the message possibly cut short) that validate must print.
#[test]
fn invalid_corpus_is_rejected_with_located_messages() {
    let corpus = repo().join("tests/corpus/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expect = std::fs::read_to_string(case.join("expect")).expect("expect file");
        let expect = expect.trim();
        let dir = format!("tests/corpus/invalid/{name}");
        let out = run(&["validate", &dir]);
        let want = format!("{dir}/{expect}");
        if out.code != 2 || !out.stderr.lines().any(|l| l.starts_with(&want)) {
            failures.push(format!(
                "{name}: want exit 2 and a line starting\n  {want}\ngot exit {} and\n{}",
                out.code, out.stderr
            ));
        }
        assert!(
            out.stdout.is_empty(),
            "{name}: nothing on stdout on failure: {}",
            out.stdout
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        "app: { name: shop, protect: prod }\nstage: prod\nresources:\n  a: { type: kv, existing: { id: x } }\n  b: { type: nope }\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 2);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("./m.yaml:"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", out.stderr);
    assert!(
        lines[0].starts_with("./m.yaml:1:29: `app.protect` must be a list of strings"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("./m.yaml:4:34: `existing.id` `x` is not a namespace id"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("./m.yaml:5:14: unknown type `nope`"),
        "{lines:?}"
    );
}

#[test]
fn a_file_over_one_mebibyte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("app: { name: shop }\nstage: prod\nresources:\n");
    for i in 0..60_000 {
        text.push_str(&format!("  kv{i:05}: {{ type: kv }}\n"));
    }
    assert!(text.len() > 1 << 20);
    std::fs::write(dir.path().join("big.yaml"), text).unwrap();
    let out = run_in(dir.path(), &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "./big.yaml:1:1: file is larger than 1024 KiB; split it into several manifest files"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn hidden_folders_are_skipped_json_modules_accepted_and_json_manifests_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/broken.yaml"), "{{{{").unwrap();
    std::fs::create_dir_all(root.join("node_modules/x")).unwrap();
    std::fs::write(root.join("node_modules/x/package.yaml"), "{{{{").unwrap();
    // Not a manifest, but a module the worker imports: accepted.
    std::fs::write(root.join("data.json"), r#"{"greeting": "hello"}"#).unwrap();
    std::fs::write(
        root.join("index.js"),
        "import data from \"./data.json\";\nexport default { fetch() { return new Response(data.greeting); } };\n",
    )
    .unwrap();
    std::fs::write(
        root.join("stage.json"),
        r#"{"app": {"name": "shop"}, "stage": "prod", "resources": {"cache": {"type": "kv"}, "api": {"type": "worker", "entry": "index.js"}}}"#,
    )
    .unwrap();
    std::fs::write(
        root.join("more.yml"),
        "---\napp: { name: shop }\nstage: prod\nresources: { sessions: { type: kv } }\n---\napp: { name: blog }\nstage: dev\n",
    )
    .unwrap();
    let out = run_in(root, &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "ok: 2 apps, 2 stages, 3 resources");
    assert!(
        out.stderr
            .contains("./data.json: a worker module, not a stage manifest"),
        "{}",
        out.stderr
    );
}

/// A JSON file that is not a manifest and no worker imports is an error (before, it was
/// skipped with a note, so a manifest with `App`/`Stage` keys pruned what it declared);
/// `.lumierdignore` excludes paths on purpose.
#[test]
fn json_that_is_neither_manifest_nor_module_is_an_error_unless_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("m.yaml"),
        "app: { name: shop }\nstage: prod\nresources: { c: { type: kv } }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("typo.json"),
        r#"{"App": {"name": "shop"}, "Stage": "dev", "Resources": {}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(root.join("web/fixtures")).unwrap();
    std::fs::write(root.join("web/package.json"), r#"{"name": "web"}"#).unwrap();
    std::fs::write(root.join("web/fixtures/a.json"), "[1, 2]").unwrap();
    let out = run_in(root, &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 2, "{out:?}");
    for want in [
        "./typo.json:1:1: not a stage manifest: it has `App` but no `app` (keys are lowercase; did you mean `app`?), and no worker imports it as a module",
        "./web/package.json:1:1: not a stage manifest (no `app`, `stage` or `resources`), and no worker imports it",
        "./web/fixtures/a.json:1:1: not a stage manifest (no `app`, `stage` or `resources`)",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.stderr);
    }

    std::fs::write(
        root.join(".lumierdignore"),
        "# not manifests\npackage.json\nfixtures/\n/typo.json\n",
    )
    .unwrap();
    let out = run_in(root, &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "ok: 1 app, 1 stage, 1 resource");
}

/// An empty manifests folder is an error naming the fix (before, it loaded as an empty fleet
/// and a daemon deleted everything); `--allow-empty` accepts it.
#[test]
fn an_empty_folder_is_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "nothing here\n").unwrap();
    std::fs::write(dir.path().join("only-comments.yaml"), "# nothing\n---\n").unwrap();
    let out = run_in(dir.path(), &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("error: no stage manifests under `.`")
            && out.stderr.contains("pass --allow-empty"),
        "{}",
        out.stderr
    );
    let out = run_in(
        dir.path(),
        &["validate", "--allow-empty", "."],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "ok: 0 apps, 0 stages, 0 resources");
}

#[test]
fn symlinked_folder_inside_the_root_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::write(
        root.join("real/m.yaml"),
        "app: { name: shop }\nstage: prod\nresources: { c: { type: kv } }\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
    let out = run_in(root, &["validate", "."], Duration::from_secs(30));
    // Both paths name one folder: it is read once, so `c` is not declared twice.
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "ok: 1 app, 1 stage, 1 resource");
}

#[test]
fn missing_folder_is_a_usage_error() {
    let out = run(&["validate", "no/such/folder"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("manifests folder `no/such/folder`"),
        "{}",
        out.stderr
    );
}

#[test]
fn schema_accepts_examples_and_rejects_invalid_documents() {
    let out = run(&["schema"]);
    assert_eq!(out.code, 0, "{out:?}");
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let validator = jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");

    let mut checked = 0;
    for entry in walk(&repo().join("examples")) {
        if !entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        for doc in lumierd::manifest::yaml::parse(&text).unwrap() {
            let json = doc.root.to_json();
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", entry.display());
            checked += 1;
        }
    }
    assert!(checked >= 2);

    // Structural defects of the corpus fail the schema too.
    let structural = [
        "01-unknown-top-key",
        "02-missing-app",
        "03-missing-app-name",
        "04-missing-stage",
        "05-missing-type",
        "06-unknown-type",
        "07-wrong-type-stage",
        "08-number-needs-quotes",
        "13-existing-id-short",
        "14-existing-on-worker",
        "15-existing-without-id",
        "16-binding-not-identifier",
        "32-bad-drift",
        "34-json-unknown-key",
        "36-binding-number",
        "39-worker-without-entry",
        "29-resources-not-mapping",
        "47-compat-flag-whitespace",
    ];
    for case in structural {
        let dir = repo().join("tests/corpus/invalid").join(case);
        let file = ["m.yaml", "m.json"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let docs = lumierd::manifest::yaml::parse(&text).unwrap();
        assert!(
            docs.iter().any(|d| !validator.is_valid(&d.root.to_json())),
            "{case} passes the schema but the loader rejects it"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn bad_durations_are_usage_errors_that_say_the_fix() {
    let out = run(&["run", "--resync", "0s", "--once"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("too short for a resync period; use 1s or more"),
        "{}",
        out.stderr
    );
    let out = run(&["run", "--debounce", "soon", "--once"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("write e.g. 250ms, 30s, 5m or 1h"),
        "{}",
        out.stderr
    );
}

/// User text reaches the terminal escaped: a newline in a key or a file name cannot forge a
/// second `file:line:col:` line, an ANSI escape is shown, not obeyed.
#[test]
fn control_characters_in_keys_and_file_names_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x\nforged.yaml:9:9: fake\u{1b}[2J.yaml"),
        "app: { name: shop }\nstage: prod\n\"k\\u001b]0;title\\u0007\\r\\n\": 1\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["validate", "."], Duration::from_secs(30));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains('\r'),
        "{:?}",
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one diagnostic and the summary: {lines:?}");
    assert_eq!(
        lines[0],
        "./x\\nforged.yaml:9:9: fake\\u{1b}[2J.yaml:3:1: unknown key `k\\u{1b}]0;title\\u{7}\\r\\n` in a stage manifest; allowed keys: app, stage, resources, drift"
    );
}

#[allow(unsafe_code)] // mkfifo on a valid C path
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A FIFO named like a manifest (or linked as one) is refused, never opened blocking: before,
/// `validate` waited on it forever.
#[test]
fn a_fifo_named_like_a_manifest_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("m.yaml"),
        "app: { name: shop }\nstage: prod\nresources: { c: { type: kv } }\n",
    )
    .unwrap();
    mkfifo(&root.join("hang.yaml"));
    mkfifo(&root.join("pipe"));
    std::os::unix::fs::symlink(root.join("pipe"), root.join("link.json")).unwrap();
    let out = run_in(root, &["validate", "."], Duration::from_secs(20));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "./hang.yaml:1:1: this is not a regular file (a FIFO, socket or device); lumierd reads only regular files"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "./link.json:1:1: cannot read this file: it is a FIFO (named pipe), not a regular file"
        ),
        "{}",
        out.stderr
    );
}

/// `.lumierdignore` is read like a manifest: a link out of the root is refused.
#[test]
fn an_ignore_file_linked_from_outside_the_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("m");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("m.yaml"),
        "app: { name: shop }\nstage: prod\nresources: { c: { type: kv } }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("outside"), "*.yaml\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join(".lumierdignore")).unwrap();
    let out = run_in(dir.path(), &["validate", "m"], Duration::from_secs(30));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("m/.lumierdignore:1:1: symlink resolves outside the manifests root"),
        "{}",
        out.stderr
    );
}

#[test]
fn schema_accepts_a_lumier_pointer_document_and_only_a_whole_one() {
    let out = run(&["schema"]);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");
    let ok =
        serde_json::json!({ "lumier": "lumier.config.ts", "stages": ["staging", "production"] });
    assert!(validator.is_valid(&ok));
    for bad in [
        serde_json::json!({ "lumier": "lumier.config.ts" }),
        serde_json::json!({ "lumier": "lumier.config.ts", "stages": [] }),
        serde_json::json!({ "lumier": "x.ts", "stages": ["a"], "app": { "name": "a" } }),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}
