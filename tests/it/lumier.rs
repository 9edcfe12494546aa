//! Lumier `$config` TypeScript files as manifests (issue 18), through the real binary: the
//! seed's program converges both stages, `render` round-trips, every error class names the
//! TypeScript file, line and column, refused imports and globals, the CPU and memory bounds,
//! and a failing config deletes nothing while the daemon runs (and an edit reloads).

use crate::support::{eventually, eventually_blocking, run_in, run_once, Api, Daemon, Output};
use lumierd::local_api::Faults;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The "Basic Usage" block of the seed's kv.md, with `KV.existing` added (its id is `{ID}`).
const SEED: &str = r#"import { $config, Worker, KV } from "lumier";

export default $config({
  app() {
    return { name: "my-app", protect: ["production"] };
  },
  run(ctx) {
    const cache = KV("cache");
    const legacy = KV.existing("legacy", {
      id: "{ID}",
    });

    Worker("api", {
      entry: "src/index.ts",
      bindings: {
        CACHE: cache,
        LEGACY: legacy,
        STAGE: ctx.stage,
      },
    });
  },
});
"#;

const POINTER: &str = "lumier: lumier.config.ts\nstages: [staging, production]\n";

const WORKER: &str = "import { env } from \"cloudflare:workers\";\n\nexport default {\n  async fetch(request: Request): Promise<Response> {\n    const value = await env.CACHE.get(\"key\");\n    return Response.json({ value });\n  },\n};\n";

/// `dir/m/`: the pointer document, the config `config` and the worker `src/index.ts`.
fn project(dir: &Path, config: &str) {
    let m = dir.join("m");
    std::fs::create_dir_all(m.join("src")).unwrap();
    std::fs::write(m.join("lumier.yaml"), POINTER).unwrap();
    std::fs::write(m.join("lumier.config.ts"), config).unwrap();
    std::fs::write(m.join("src/index.ts"), WORKER).unwrap();
}

fn lumierd(dir: &Path, args: &[&str]) -> Output {
    run_in(dir, args, Duration::from_secs(120))
}

fn status(dir: &Path) -> Result<Value, String> {
    let out = lumierd(dir, &["status", "--json", "--state", "state"]);
    if out.code != 0 {
        return Err(format!("{out:?}"));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
}

fn resources(s: &Value) -> Vec<(String, String, String)> {
    let mut list: Vec<_> = s["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap_or("").to_owned(),
                r["name"].as_str().unwrap_or("").to_owned(),
                r["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

async fn existing_namespace(api: &Api) -> String {
    let v = api
        .send(
            api.http
                .post(format!("{}/storage/kv/namespaces", api.account()))
                .json(&json!({ "title": "legacy-cache" })),
        )
        .await;
    v["result"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_program_converges_both_stages_and_render_round_trips() {
    let api = Api::start(Faults::default()).await;
    let id = existing_namespace(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, &SEED.replace("{ID}", &id));

    let out = tokio::task::block_in_place(|| lumierd(d, &["validate", "m"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("1 app, 2 stages, 6 resources"),
        "{out:?}"
    );

    let out = tokio::task::block_in_place(|| run_once(d, &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    let s = tokio::task::block_in_place(|| status(d)).unwrap();
    let expected: Vec<(String, String, String)> = ["production", "staging"]
        .iter()
        .flat_map(|stage| {
            ["api", "cache", "legacy"]
                .iter()
                .map(move |n| (stage.to_string(), n.to_string(), "Ready".to_owned()))
        })
        .collect();
    assert_eq!(resources(&s), expected, "{s:#}");
    for title in ["my-app-staging-cache", "my-app-production-cache"] {
        assert!(api.namespace_id(title).await.is_some(), "{title}");
    }
    let scripts: Vec<String> = api
        .scripts()
        .await
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        scripts.contains(&"my-app-staging-api".to_owned()),
        "{scripts:?}"
    );
    assert!(
        scripts.contains(&"my-app-production-api".to_owned()),
        "{scripts:?}"
    );

    // render: deterministic, one document per stage, and the stage filter.
    let all = tokio::task::block_in_place(|| lumierd(d, &["render", "m"]));
    assert_eq!(all.code, 0, "{all:?}");
    let again = tokio::task::block_in_place(|| lumierd(d, &["render", "m"]));
    assert_eq!(all.stdout, again.stdout, "the same files render the same");
    assert_eq!(
        all.stdout.matches("\n---\n").count() + 1,
        2,
        "{}",
        all.stdout
    );
    assert!(all.stdout.contains("STAGE: \"staging\""), "{}", all.stdout);
    assert!(
        all.stdout.contains("protect: [\"production\"]"),
        "{}",
        all.stdout
    );
    let one = tokio::task::block_in_place(|| lumierd(d, &["render", "m", "--stage", "production"]));
    assert_eq!(one.code, 0, "{one:?}");
    assert!(
        one.stdout.contains("stage: \"production\"") && !one.stdout.contains("stage: \"staging\"")
    );
    let none = tokio::task::block_in_place(|| lumierd(d, &["render", "m", "--stage", "qa"]));
    assert_eq!(none.code, 2, "{none:?}");

    // The rendered YAML replaces the pointer: valid, and it converges to the same resources
    // without a single write.
    let m = d.join("m");
    std::fs::remove_file(m.join("lumier.yaml")).unwrap();
    std::fs::write(m.join("rendered.yaml"), &all.stdout).unwrap();
    let out = tokio::task::block_in_place(|| lumierd(d, &["validate", "m"]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("1 app, 2 stages, 6 resources"),
        "{out:?}"
    );
    let writes = api.writes().len();
    let out = tokio::task::block_in_place(|| run_once(d, &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    let s2 = tokio::task::block_in_place(|| status(d)).unwrap();
    assert_eq!(resources(&s2), expected, "{s2:#}");
    assert_eq!(
        api.writes()[writes..],
        [] as [String; 0],
        "the YAML form is the same fleet"
    );
    api.stop().await;
}

/// `validate` on a project whose config is `config` (and extra files): its stderr.
fn invalid(config: &str, files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), config);
    for (path, text) in files {
        let p = dir.path().join("m").join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // A runaway config that the engine did not stop would hit `lumierd`'s deadline here.
    let out = lumierd(dir.path(), &["validate", "m"]);
    assert_eq!(out.code, 2, "{out:?}");
    out.stderr
}

/// A config whose `run` body is `body` (line 6 of the file is the body's first line).
fn with_run(body: &str) -> String {
    format!(
        "import {{ $config, Worker, KV }} from \"lumier\";\ntype Ctx = {{ stage: string }};\nexport default $config({{\n  app() {{ return {{ name: \"my-app\" }}; }},\n  run(ctx: Ctx) {{\n{body}\n  }},\n}});\n"
    )
}

/// (the `run` body, the expected diagnostic, extra files (path under `m/`, text)).
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn each_error_class_names_the_typescript_file_line_and_column() {
    let cases: &[Case] = &[
        // A thrown exception: at the throw's `Error`.
        ("    throw new Error(\"no stage\");", "m/lumier.config.ts:6:15: uncaught Error: no stage (evaluating the Lumier config for stage `staging`)", &[]),
        // A syntax error, at the TypeScript position (before any type stripping).
        ("    const = 1;", "m/lumier.config.ts:6:11: syntax error", &[]),
        // Calls of the wrong shape, at the call.
        ("    KV();", "m/lumier.config.ts:6:5: KV(…) needs a name", &[]),
        ("    const n: number = 1;\n    Worker(\"api\", { bindings: {} });", "m/lumier.config.ts:7:5: Worker(\"api\", …) needs `entry`", &[]),
        // The same validation as YAML, with the same messages, at the call.
        ("    KV(\"cache\");\n    KV(\"cache\");", "m/lumier.config.ts:7:5: resource `cache` of stage my-app/staging is declared twice: here and at m/lumier.config.ts:6:5", &[]),
        ("    Worker(\"api\", { entry: \"src/missing.ts\" });", "m/lumier.config.ts:6:5: `entry` `src/missing.ts` does not exist", &[]),
        ("    Worker(\"api\", { entry: \"src/index.ts\", bindings: { C: KV.existing(\"c\", { id: \"nope\" }) } });", "m/lumier.config.ts:6:", &[]),
        // An exception in an imported file names that file.
        ("    helper();", "m/lib/helper.ts:2:13: uncaught TypeError: bad", &[("lib/helper.ts", "export function helper(): void {\n  throw new TypeError(\"bad\");\n}\n")]),
    ];
    for (body, expected, files) in cases {
        let mut config = with_run(body);
        if body.contains("helper()") {
            config = format!("import {{ helper }} from \"./lib/helper\";\n{config}");
        }
        let err = invalid(&config, files);
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
    }
}

#[test]
fn runaway_loops_and_allocations_are_stopped_with_a_location() {
    let err = invalid(&with_run("    let i = 0;\n    while (true) { i++; }"), &[]);
    assert!(err.contains("m/lumier.config.ts:"), "{err}");
    assert!(err.contains("ran longer than 2 s"), "{err}");
    let err = invalid(
        &with_run("    let s = \"x\";\n    while (true) { s = s + s; }"),
        &[],
    );
    assert!(err.contains("m/lumier.config.ts:7:"), "{err}");
    assert!(err.contains("ran out of its 64 MB of memory"), "{err}");
    // This one crashes QuickJS (a SIGSEGV on its out-of-memory path, depending on the heap's
    // layout): the evaluating child dies, lumierd reports it for the config and goes on.
    let err = invalid(&with_run(RUNAWAY_ALLOCATION), &[]);
    assert!(err.contains("m/lumier.config.ts:"), "{err}");
    assert!(stopped(&err), "{err}");
}

/// A `run` body whose allocation runs away: with the Secret/Service helpers in the prelude it
/// crashes QuickJS with a SIGSEGV (it killed lumierd when configs were evaluated in process).
const RUNAWAY_ALLOCATION: &str =
    "    const a: string[] = [];\n    for (;;) { a.push(\"x\".repeat(1024) + a.length); }";

/// A `run` body that runs out of memory 200 times over (catching each error): it crashes
/// QuickJS in a daemon too, where [`RUNAWAY_ALLOCATION`]'s single out-of-memory error may
/// land on a heap layout that survives (an error object freed while its stack trace is
/// being added).
const REPEATED_OUT_OF_MEMORY: &str = "    const hold: string[] = [];\n    for (let round = 0; round < 200; round++) {\n      try {\n        for (;;) hold.push(\"x\".repeat(1024 + round) + hold.length);\n      } catch (e) {}\n      hold.length = Math.floor(hold.length * 0.995);\n    }";

/// Whether `err` says a config was stopped cleanly for what it allocated: the engine's
/// out-of-memory error, the evaluating child's death by a signal, or (on a machine so loaded
/// that the allocation takes longer than the CPU bound) the CPU bound.
fn stopped(err: &str) -> bool {
    err.contains("ran out of its 64 MB of memory")
        || err.contains("ran out of memory or crashed")
        || err.contains("ran longer than")
}

#[test]
fn imports_and_globals_beyond_lumier_and_the_root_are_refused() {
    for (import, why) in [
        ("import x from \"fs\";", "import `fs` is refused"),
        (
            "import * as x from \"node:fs\";",
            "import `node:fs` is refused",
        ),
        (
            "import { x } from \"https://example.com/x.js\";",
            "import `https://example.com/x.js` is refused",
        ),
        (
            "import x from \"../outside.ts\";",
            "import `../outside.ts` is refused: it leaves the manifests root",
        ),
    ] {
        // `used`: an import used only as a type would be stripped, never resolved.
        let config = format!(
            "{import}\nexport const used = x;\n{}",
            with_run("    KV(\"cache\");")
        );
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), &config);
        std::fs::write(dir.path().join("outside.ts"), "export default 1;\n").unwrap();
        let out = lumierd(dir.path(), &["validate", "m"]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains("m/lumier.config.ts:1:"),
            "{import}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(why), "{import}: {}", out.stderr);
    }
    for (expr, global) in [
        ("process.env.HOME", "`process`"),
        ("fetch(\"http://127.0.0.1/\")", "`fetch`"),
        ("Date.now()", "`Date`"),
        ("new Date()", "`Date`"),
        ("Math.random()", "`Math.random`"),
        ("require(\"fs\")", "`require`"),
        ("performance.now()", "`performance`"),
    ] {
        let err = invalid(
            &with_run(&format!(
                "    const x: unknown = {expr};\n    KV(String(x));"
            )),
            &[],
        );
        assert!(err.contains("m/lumier.config.ts:6:"), "{expr}: {err}");
        assert!(
            err.contains(&format!("{global} is not available in a Lumier config")),
            "{expr}: {err}"
        );
    }
    // Relative imports inside the root work (with or without the extension).
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "import {{ names }} from \"./lib/names\";\nimport {{ more }} from \"./lib/more.js\";\n{}",
        with_run("    for (const n of [...names, ...more]) KV(n);")
    );
    project(dir.path(), &config);
    std::fs::create_dir_all(dir.path().join("m/lib")).unwrap();
    std::fs::write(
        dir.path().join("m/lib/names.ts"),
        "export const names: string[] = [\"a\", \"b\"];\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("m/lib/more.js"),
        "export const more = [\"c\"];\n",
    )
    .unwrap();
    let out = lumierd(dir.path(), &["validate", "m"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2 stages, 6 resources"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_config_deletes_nothing_and_edits_of_the_config_or_its_imports_reload() {
    let api = Api::start(Faults::default()).await;
    let id = existing_namespace(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = SEED
        .replace("{ID}", &id)
        .replace(
            "import { $config, Worker, KV } from \"lumier\";",
            "import { $config, Worker, KV } from \"lumier\";\nimport { extra } from \"./extra\";",
        )
        .replace(
            "    const cache = KV(\"cache\");",
            "    const cache = KV(\"cache\");\n    extra.forEach((n) => KV(n));",
        );
    project(d, &seed);
    let m = d.join("m");
    std::fs::write(m.join("extra.ts"), "export const extra: string[] = [];\n").unwrap();
    let daemon = Daemon::spawn_env(
        d,
        &[
            "run",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &api.base,
            "--resync",
            "1h",
            "--debounce",
            "100ms",
        ],
        &[("RUST_LOG", "info")],
    );
    let ready = |n: usize| {
        move |s: &Value| {
            let list = resources(s);
            list.len() == n && list.iter().all(|r| r.2 == "Ready")
        }
    };
    wait(d, "6 ready", ready(6)).await;

    // A config that throws: a failed load naming the file and line; nothing is written.
    let before = api.writes().len();
    std::fs::write(
        m.join("lumier.config.ts"),
        seed.replace(
            "  run(ctx) {",
            "  run(ctx) {\n    throw new Error(\"broken\");",
        ),
    )
    .unwrap();
    let s = wait(d, "load error", |s| {
        s["loadError"]
            .as_str()
            .is_some_and(|e| e.contains("broken"))
    })
    .await;
    let e = s["loadError"].as_str().unwrap();
    assert!(e.contains("lumier.config.ts:9:"), "{e}");
    let mark = daemon.mark();
    daemon.signal("HUP");
    tokio::task::block_in_place(|| {
        let (hup, _) =
            daemon.wait_for_line_since(mark, "SIGHUP: reloading", Duration::from_secs(30));
        daemon.wait_for_line_since(hup, "pass done", Duration::from_secs(30));
    });
    assert_eq!(
        api.writes()[before..],
        [] as [String; 0],
        "nothing written while the config fails"
    );
    assert_eq!(
        resources(&tokio::task::block_in_place(|| status(d)).unwrap()).len(),
        6
    );

    // Fixed again: the load error clears.
    std::fs::write(m.join("lumier.config.ts"), &seed).unwrap();
    wait(d, "load error cleared", |s| s["loadError"].is_null()).await;

    // An edit of a file the config imports reloads: two more namespaces, one per stage.
    std::fs::write(
        m.join("extra.ts"),
        "export const extra: string[] = [\"sessions\"];\n",
    )
    .unwrap();
    wait(d, "sessions ready", ready(8)).await;
    assert!(api.namespace_id("my-app-staging-sessions").await.is_some());
    drop(daemon);
    api.stop().await;
}

async fn wait(dir: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(60), what, || async {
        match tokio::task::block_in_place(|| status(dir)) {
            Ok(s) if pred(&s) => Ok(s),
            other => Err(other),
        }
    })
    .await
}

/// A config whose `api` worker binds the `auth` worker, `Secret.env("SHOP_API_KEY")`,
/// `Secret.file("db-password")` and a JSON value.
fn with_helpers() -> String {
    with_run(
        "    const auth = Worker(\"auth\", { entry: \"src/index.ts\" });\n    Worker(\"api\", { entry: \"src/index.ts\", bindings: { AUTH: auth, KEY: Secret.env(\"SHOP_API_KEY\"), DB: Secret.file(\"db-password\"), FLAGS: { beta: true } } });",
    )
    .replace(
        "import { $config, Worker, KV } from \"lumier\";",
        "import { $config, Worker, KV, Secret } from \"lumier\";",
    )
}

/// A Worker handle binds as a service, `Secret.env`/`Secret.file` as secrets (their values
/// read by lumierd, never by the config): `render` shows the manifest forms, and they validate.
#[test]
fn worker_handles_and_secrets_bind_as_services_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &with_helpers());
    let out = lumierd(dir.path(), &["render", "m", "--stage", "staging"]);
    assert_eq!(out.code, 0, "{out:?}");
    for want in [
        "AUTH: { service: \"auth\" }",
        "secret: { env: \"SHOP_API_KEY\" }",
        "secret: { file: \"db-password\" }",
        "json: { beta: true }",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    // What it renders is a manifest lumierd accepts.
    let rendered = dir.path().join("rendered");
    std::fs::create_dir_all(rendered.join("src")).unwrap();
    std::fs::write(rendered.join("staging.yaml"), &out.stdout).unwrap();
    std::fs::write(rendered.join("src/index.ts"), WORKER).unwrap();
    let valid = lumierd(dir.path(), &["validate", "rendered"]);
    assert_eq!(valid.code, 0, "{valid:?}\n{}", out.stdout);
}

/// The helpers' bindings converge: the service binds the stage's `auth` script, the secrets
/// are uploaded from lumierd's environment and --secrets-dir, and their values appear in no
/// output (the config never sees them: its evaluating process has an empty environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_and_secret_bindings_of_a_config_converge_without_showing_the_values() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d, &with_helpers());
    std::fs::create_dir_all(d.join("secrets")).unwrap();
    std::fs::write(d.join("secrets/db-password"), "canary-db-value").unwrap();
    let args = [
        "run",
        "--once",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
        "--secrets-dir",
        "secrets",
    ];
    let env = [("SHOP_API_KEY", "canary-key-value"), ("RUST_LOG", "trace")];
    let mut run = Daemon::spawn_env(d, &args, &env);
    let code = tokio::task::block_in_place(|| run.exit(Duration::from_secs(120)));
    let output = format!("{}\n{}", run.stdout(), run.stderr());
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains("canary"), "{output}");
    let settings = api
        .client()
        .get_settings("my-app-staging-api")
        .await
        .unwrap();
    let bindings = serde_json::to_value(&settings.bindings).unwrap();
    let of = |name: &str| {
        bindings
            .as_array()
            .and_then(|list| list.iter().find(|b| b["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no binding {name}: {bindings}"))
    };
    assert_eq!(of("AUTH")["service"], "my-app-staging-auth", "{bindings}");
    assert_eq!(of("KEY")["type"], "secret_text", "{bindings}");
    assert_eq!(of("DB")["type"], "secret_text", "{bindings}");
    assert_eq!(of("FLAGS")["type"], "json", "{bindings}");
    assert!(!bindings.to_string().contains("canary"), "{bindings}");
    api.stop().await;
}

/// A config whose runaway allocation crashes the JavaScript engine (a SIGSEGV in QuickJS; it
/// took the daemon down when configs were evaluated in process) is a load error for the
/// config in both stages; the daemon keeps running, deletes nothing, and recovers on a fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_crashes_the_engine_is_a_load_error_and_the_daemon_keeps_running() {
    let api = Api::start(Faults::default()).await;
    let id = existing_namespace(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = SEED.replace("{ID}", &id);
    project(d, &seed);
    let m = d.join("m");
    let daemon = Daemon::spawn_env(
        d,
        &[
            "run",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &api.base,
            "--resync",
            "1h",
            "--debounce",
            "100ms",
        ],
        &[("RUST_LOG", "info")],
    );
    let six_ready = |s: &Value| {
        let list = resources(s);
        list.len() == 6 && list.iter().all(|r| r.2 == "Ready")
    };
    wait(d, "6 ready", six_ready).await;

    let before = api.writes().len();
    let runaway = seed.replace(
        "  run(ctx) {",
        &format!("  run(ctx) {{\n{RUNAWAY_ALLOCATION}"),
    );
    std::fs::write(m.join("lumier.config.ts"), runaway).unwrap();
    let s = wait(d, "load error", |s| {
        s["loadError"].as_str().is_some_and(stopped)
    })
    .await;
    let e = s["loadError"].as_str().unwrap();
    assert!(e.contains("m/lumier.config.ts:"), "{e}");
    assert!(
        e.contains("stage `staging`") && e.contains("stage `production`"),
        "{e}"
    );
    let mark = daemon.mark();
    let repeated = seed.replace(
        "  run(ctx) {",
        &format!("  run(ctx) {{\n{REPEATED_OUT_OF_MEMORY}"),
    );
    std::fs::write(m.join("lumier.config.ts"), repeated).unwrap();
    tokio::task::block_in_place(|| {
        let stay = "manifests not loaded, the last good ones stay in force";
        daemon.wait_for_line_since(mark, stay, Duration::from_secs(60));
    });
    let s = tokio::task::block_in_place(|| status(d)).unwrap();
    let e = s["loadError"].as_str().unwrap_or_default();
    assert!(stopped(e), "{e}");
    // Still running: a reload is answered with a pass, and that pass writes nothing.
    let mark = daemon.mark();
    daemon.signal("HUP");
    tokio::task::block_in_place(|| {
        let (hup, _) =
            daemon.wait_for_line_since(mark, "SIGHUP: reloading", Duration::from_secs(30));
        daemon.wait_for_line_since(hup, "pass done", Duration::from_secs(30));
    });
    assert_eq!(api.writes()[before..], [] as [String; 0], "nothing written");
    assert!(six_ready(
        &tokio::task::block_in_place(|| status(d)).unwrap()
    ));

    // Fixed: the load error clears and everything is still there.
    std::fs::write(m.join("lumier.config.ts"), &seed).unwrap();
    let s = wait(d, "load error cleared", |s| s["loadError"].is_null()).await;
    assert!(six_ready(&s), "{s}");
    drop(daemon);
    api.stop().await;
}

/// The process that evaluates a config inherits nothing from lumierd's environment (which
/// holds API tokens and secret values): it is `lumierd __eval-lumier` with an empty one.
#[test]
fn the_evaluating_process_inherits_no_environment() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &with_run("    while (true) {}"));
    let canary = ("CLOUDFLARE_API_TOKEN", "canary-token-for-the-evaluator");
    let mut validate = Daemon::spawn_env(dir.path(), &["validate", "m"], &[canary]);
    let parent = validate.pid().to_string();
    // The child runs the loop until the CPU bound stops it, one stage after the other.
    let environ = eventually_blocking(Duration::from_secs(60), "the evaluating child", || {
        let children = std::fs::read_dir("/proc").map_err(|e| e.to_string())?;
        children
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|pid| parent_of(pid).as_deref() == Some(parent.as_str()))
            .find_map(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let ours = String::from_utf8_lossy(&cmdline).contains("__eval-lumier");
                ours.then(|| std::fs::read(format!("/proc/{pid}/environ")).ok())?
            })
            .ok_or_else(|| "not running yet".to_owned())
    });
    assert!(environ.is_empty(), "{}", String::from_utf8_lossy(&environ));
    assert_eq!(validate.exit(Duration::from_secs(60)), 2);
    assert!(
        validate.stderr().contains("ran longer than 2 s"),
        "{}",
        validate.stderr()
    );
}

/// The parent process id of `pid` (field 4 of /proc/PID/stat, after the parenthesised name).
fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1).map(str::to_owned)
}

/// Every mistake in a pointer document is reported at once, at its line in the pointer.
#[test]
fn a_pointer_document_s_mistakes_are_reported_together_at_their_lines() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "lumier: lumier.config.ts\nstage: [x]\nstages: [staging, staging, 3]\n",
            &[
                "m/lumier.yaml:2:1: unknown key `stage` in a Lumier pointer; did you mean `stages`?",
                "m/lumier.yaml:3:", "stage `staging` is listed twice; remove one",
                "each stage must be a string, not",
            ],
        ),
        (
            "lumier: 3\n",
            &[
                "m/lumier.yaml:1:9: `lumier` must be the config's path (a string), not",
                "m/lumier.yaml:1:1: missing `stages`",
            ],
        ),
        (
            "lumier: missing.ts\nstages: []\n",
            &[
                "m/lumier.yaml:1:9: `lumier` `missing.ts` does not exist",
                "m/lumier.yaml:2:9: `stages` must be a non-empty list of stage names",
            ],
        ),
    ];
    for (pointer, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), &with_run("    KV(\"cache\");"));
        std::fs::write(dir.path().join("m/lumier.yaml"), pointer).unwrap();
        let out = lumierd(dir.path(), &["validate", "m"]);
        assert_eq!(out.code, 2, "{out:?}");
        for want in wanted {
            assert!(out.stderr.contains(want), "{want}:\n{}", out.stderr);
        }
    }
}

/// A regular expression that backtracks for ever runs inside QuickJS's regex engine, which
/// the engine's interrupt does not reach: the evaluating child's own limits stop it (when
/// configs were evaluated in process it hung lumierd's loader for good).
#[test]
fn a_regular_expression_that_backtracks_for_ever_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &with_run("    /(a+)+$/.test(\"a\".repeat(40) + \"b\");"),
    );
    let one_stage = "lumier: lumier.config.ts\nstages: [staging]\n";
    std::fs::write(dir.path().join("m/lumier.yaml"), one_stage).unwrap();
    let out = lumierd(dir.path(), &["validate", "m"]);
    assert_eq!(out.code, 2, "{out:?}");
    let err = out.stderr;
    assert!(err.contains("m/lumier.config.ts:1:1: the config"), "{err}");
    assert!(
        err.contains("ran longer than 10 s") || err.contains("used up its CPU time"),
        "{err}"
    );
}
