//! Operations, end to end against the real binary: the admin API (`/healthz`, `/readyz`,
//! `/metrics`, `/status`), signals (SIGHUP reload, SIGTERM graceful stop), sd_notify, logs.

use crate::support::{eventually, eventually_blocking, repo, run_in, Daemon, Launch};
use lumierd::local_api::DEFAULT_ACCOUNT_ID;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Polls `url` until it answers `code`, for at most `secs`.
async fn wait_code(url: &str, code: u16, secs: u64) {
    eventually(
        Duration::from_secs(secs),
        &format!("{url} to answer {code}"),
        || async {
            match get(url).await {
                (got, _) if got == code => Ok(()),
                other => Err(other),
            }
        },
    )
    .await
}

/// A parsed scrape: `name{labels}` → value, checked against the exposition format's rules.
#[derive(Debug)]
struct Scrape {
    types: HashMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses text format 0.0.4, asserting that every family has HELP and TYPE before its
    /// samples, counters are named `_total`, and every value is a number.
    fn parse(text: &str) -> Scrape {
        let mut helps = HashMap::new();
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP text");
                assert!(!help.trim().is_empty(), "{line}: empty HELP");
                assert!(
                    helps.insert(name.to_owned(), ()).is_none(),
                    "HELP twice: {name}"
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE kind");
                assert!(
                    helps.contains_key(name),
                    "{name}: TYPE without HELP before it"
                );
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} not named _total");
                }
                assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
                continue;
            }
            assert!(!line.starts_with('#'), "stray comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("{line}: bad value")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
                None => (series, BTreeMap::new()),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "{line}: sample without HELP/TYPE"
            );
            samples.push((name.to_owned(), labels, value));
        }
        for name in helps.keys() {
            assert!(types.contains_key(name), "{name}: HELP without TYPE");
        }
        Scrape { types, samples }
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(
            chars.next(),
            Some('"'),
            "label {name}: value not quoted in {s}"
        );
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape in {s}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

async fn scrape(admin: &str) -> Scrape {
    let r = http().get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    Scrape::parse(&r.text().await.unwrap())
}

/// Scrapes until `pred` holds, for at most `secs`.
async fn wait_scrape(admin: &str, secs: u64, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    eventually(Duration::from_secs(secs), what, || async {
        let s = scrape(admin).await;
        if pred(&s) {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await
}

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";

/// A manifests folder `m/`: app `ops`, stage `dev`, kv `cache`, worker `api` binding it.
fn fleet(dir: &Path, app: &str, stage_var: &str) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    std::fs::write(
        m.join("dev.yaml"),
        format!(
            "app:\n  name: {app}\nstage: dev\nresources:\n  cache: {{ type: kv }}\n  api:\n    type: worker\n    entry: index.js\n    bindings:\n      CACHE: {{ kv: cache }}\n      STAGE: \"{stage_var}\"\n"
        ),
    )
    .unwrap();
}

/// `lumierd run` on `m/` with the embedded API and the admin API on an ephemeral port.
fn spawn_run(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Daemon, String) {
    let mut args = vec![
        "run",
        "--manifests",
        "m",
        "--state",
        "state",
        "--debounce",
        "100ms",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let p = Daemon::spawn_env(dir, &args, env);
    let admin = p.stdout_line("admin API: ", Duration::from_secs(30));
    (p, admin)
}

/// A separate `lumierd emulator` on an ephemeral port; returns it and its base URL.
fn spawn_emulator(dir: &Path, extra: &[&str]) -> (Daemon, String) {
    let mut args = vec!["emulator", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let p = Daemon::spawn(dir, &args);
    let base = p.stdout_line("base URL: ", Duration::from_secs(30));
    (p, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_parses_and_moves_with_reconciles_and_drift() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "ops", "dev");
    let (p, admin) = spawn_run(dir.path(), &["--resync", "1s"], &[]);
    let local_api = p.stdout_line("local API: ", Duration::from_secs(30));
    let local_api = local_api.split(' ').next().unwrap().to_owned();

    let (code, body) = get(&format!("{admin}/healthz")).await;
    assert_eq!((code, body.trim()), (200, "ok"));
    wait_code(&format!("{admin}/readyz"), 200, 60).await;

    let before = scrape(&admin).await;
    for family in [
        "lumierd_reconciles_total",
        "lumierd_reconcile_duration_seconds",
        "lumierd_drift_events_total",
        "lumierd_resources",
        "lumierd_queue_depth",
        "lumierd_cloudflare_requests_total",
        "lumierd_cloudflare_ratelimit_wait_seconds_total",
        "lumierd_manifest_load_failures_total",
        "lumierd_manifest_last_load_success_timestamp_seconds",
        "lumierd_reloads_total",
        "lumierd_ready",
    ] {
        assert!(before.types.contains_key(family), "{family} missing");
    }
    assert_eq!(
        before.types["lumierd_reconcile_duration_seconds"],
        "histogram"
    );
    assert_eq!(before.value("lumierd_ready", &[]), 1.0);
    let created = |s: &Scrape, kind| {
        s.value(
            "lumierd_reconciles_total",
            &[("kind", kind), ("result", "create")],
        )
    };
    assert_eq!(created(&before, "kv"), 1.0);
    assert_eq!(created(&before, "worker"), 1.0);
    assert_eq!(
        before.value("lumierd_resources", &[("state", "Ready")]),
        2.0
    );
    assert!(
        before.value(
            "lumierd_reconcile_duration_seconds_count",
            &[("kind", "worker")]
        ) >= 1.0
    );
    assert!(before.value("lumierd_manifest_last_load_success_timestamp_seconds", &[]) > 1.7e9);
    assert!(
        before.value(
            "lumierd_cloudflare_requests_total",
            &[("operation", "list_namespaces"), ("code", "200")]
        ) >= 1.0,
        "{:?}",
        before.samples
    );

    // /status is `status --json`.
    let (code, body) = get(&format!("{admin}/status")).await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    let resources = status["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "{status:#}");
    assert!(
        resources.iter().all(|r| r["state"] == "Ready"),
        "{status:#}"
    );
    let (_, body) = get(&format!("{admin}/status?stage=nope")).await;
    let none: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(none["resources"], json!([]));

    // A manifest edit: the worker is updated, counters move.
    fleet(dir.path(), "ops", "changed");
    let after = wait_scrape(&admin, 30, "a worker update", |s| {
        s.value(
            "lumierd_reconciles_total",
            &[("kind", "worker"), ("result", "update")],
        ) >= 1.0
    })
    .await;
    assert!(
        after.value("lumierd_cloudflare_requests_total", &[])
            > before.value("lumierd_cloudflare_requests_total", &[])
    );
    assert!(
        after.value("lumierd_manifest_last_load_success_timestamp_seconds", &[])
            >= before.value("lumierd_manifest_last_load_success_timestamp_seconds", &[])
    );

    // An out-of-band rename: one drift event on field `title`.
    let id = resources
        .iter()
        .find(|r| r["name"] == "cache")
        .and_then(|r| r["output"]["namespaceId"].as_str())
        .unwrap()
        .to_owned();
    let r = http()
        .put(format!(
            "{local_api}/accounts/{DEFAULT_ACCOUNT_ID}/storage/kv/namespaces/{id}"
        ))
        .bearer_auth(
            std::fs::read_to_string(dir.path().join("state/local-api/token"))
                .unwrap()
                .trim(),
        )
        .json(&json!({ "title": "renamed-out-of-band" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    wait_scrape(&admin, 30, "a title drift event", |s| {
        s.value(
            "lumierd_drift_events_total",
            &[("kind", "kv"), ("field", "title")],
        ) == 1.0
            && s.value(
                "lumierd_reconciles_total",
                &[("kind", "kv"), ("result", "correct")],
            ) == 1.0
    })
    .await;

    // A broken manifest counts as a load failure; the daemon stays ready on the last good one.
    std::fs::write(dir.path().join("m/broken.yaml"), "app: [\n").unwrap();
    wait_scrape(&admin, 30, "a load failure", |s| {
        s.value("lumierd_manifest_load_failures_total", &[]) >= 1.0
    })
    .await;
    wait_code(&format!("{admin}/readyz"), 200, 5).await;

    // The container health check.
    let hc = run_in(
        dir.path(),
        &["healthcheck", &format!("{admin}/healthz")],
        Duration::from_secs(10),
    );
    assert_eq!(hc.code, 0, "{hc:?}");
    drop(p);
    let hc = run_in(
        dir.path(),
        &["healthcheck", &format!("{admin}/healthz")],
        Duration::from_secs(10),
    );
    assert_eq!(hc.code, 1, "{hc:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_first_pass_and_sigterm_stops_within_10s() {
    let dir = tempfile::tempdir().unwrap();
    // Every request to this API takes 500 ms: the first pass takes seconds.
    let (_emu, base) = spawn_emulator(dir.path(), &["--latency", "500ms"]);
    fleet(dir.path(), "slow", "dev");
    let (mut p, admin) = spawn_run(dir.path(), &["--api-url", &base], &[]);
    let (code, _) = get(&format!("{admin}/readyz")).await;
    assert_eq!(code, 503, "ready before the first pass");
    let s = scrape(&admin).await;
    assert_eq!(s.value("lumierd_ready", &[]), 0.0);
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    let (_, body) = get(&format!("{admin}/status")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    let resources = status["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "{status:#}");
    assert!(resources.iter().all(|r| r["state"] == "Ready"));

    // SIGTERM while idle: exit 0 promptly.
    let start = Instant::now();
    p.signal("TERM");
    assert_eq!(p.exit(Duration::from_secs(10)), 0, "{}", p.stderr());
    assert!(start.elapsed() < Duration::from_secs(10));

    // SIGTERM in the middle of a slow first pass (new app, new state): still exit 0 in 10 s.
    let dir2 = tempfile::tempdir().unwrap();
    fleet(dir2.path(), "slow2", "dev");
    let (mut p, admin) = spawn_run(dir2.path(), &["--api-url", &base], &[]);
    let (code, _) = get(&format!("{admin}/readyz")).await;
    assert_eq!(code, 503);
    let start = Instant::now();
    p.signal("TERM");
    assert_eq!(p.exit(Duration::from_secs(10)), 0, "{}", p.stderr());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(p.stderr().contains("shutting down"), "{}", p.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rescans_the_manifests_and_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "hup", "dev");
    // A long resync, and no file edits: only the SIGHUP makes it rescan.
    let (p, admin) = spawn_run(dir.path(), &["--resync", "1h"], &[]);
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    let before = scrape(&admin).await;
    assert_eq!(before.value("lumierd_reloads_total", &[]), 0.0);
    let loaded = before.value("lumierd_manifest_last_load_success_timestamp_seconds", &[]);
    let passes = before.value("lumierd_passes_total", &[("result", "ok")]);

    p.signal("HUP");
    let after = wait_scrape(&admin, 30, "a reload and a pass", |s| {
        s.value("lumierd_reloads_total", &[]) == 1.0
            && s.value("lumierd_passes_total", &[("result", "ok")]) > passes
    })
    .await;
    assert!(
        after.value("lumierd_manifest_last_load_success_timestamp_seconds", &[]) > loaded,
        "the manifests were not rescanned"
    );
    assert!(
        p.stderr()
            .contains("SIGHUP: reloading manifests and resyncing"),
        "{}",
        p.stderr()
    );
    // Still alive and ready.
    wait_code(&format!("{admin}/readyz"), 200, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_after_the_first_pass_watchdog_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "notify", "dev");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut p, admin) = spawn_run(
        dir.path(),
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    // Datagrams, in order, until one carries `want`; the messages seen before it.
    let recv_until = |want: &str, secs: u64| -> Vec<String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        eventually_blocking(Duration::from_secs(secs), want, || {
            // The datagrams of the next 500 ms (each read waits at most the socket's 200 ms),
            // so the watchdog's pings never pile up between two polls.
            let probe = Instant::now();
            while probe.elapsed() < Duration::from_millis(500) {
                let Ok(n) = socket.recv(&mut buf) else {
                    break;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return Ok(seen.clone());
                }
            }
            Err(seen.clone())
        })
    };

    let before_ready = tokio::task::block_in_place(|| recv_until("READY=1", 60));
    // READY=1 is sent only once the first pass is done: /readyz agrees at once.
    let (code, _) = get(&format!("{admin}/readyz")).await;
    assert_eq!(code, 200, "READY=1 before /readyz: {before_ready:?}");
    let (_, body) = get(&format!("{admin}/status")).await;
    let status: Value = serde_json::from_str(&body).unwrap();
    assert!(
        status["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["lastReconciled"].is_string()),
        "{status:#}"
    );
    // The watchdog pings every WATCHDOG_USEC / 2.
    tokio::task::block_in_place(|| recv_until("WATCHDOG=1", 5));
    tokio::task::block_in_place(|| recv_until("WATCHDOG=1", 5));

    // SIGHUP: RELOADING=1, then READY=1 again.
    p.signal("HUP");
    tokio::task::block_in_place(|| recv_until("RELOADING=1", 10));
    tokio::task::block_in_place(|| recv_until("READY=1", 30));

    // SIGTERM: STOPPING=1, exit 0.
    p.signal("TERM");
    tokio::task::block_in_place(|| recv_until("STOPPING=1", 10));
    assert_eq!(p.exit(Duration::from_secs(10)), 0, "{}", p.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_app_stage_resource_action_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    const TOKEN: &str = "ops-test-secret-token-0123456789abcdef";
    let (_emu, base) = spawn_emulator(dir.path(), &["--token", TOKEN]);
    fleet(dir.path(), "logs", "dev");
    let mut p = Daemon::spawn_env(
        dir.path(),
        &[
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &base,
            "--log-format",
            "json",
            "--log-level",
            "trace",
        ],
        &[("CLOUDFLARE_API_TOKEN", TOKEN)],
    );
    // `exit` returns once both streams are read to their end.
    assert_eq!(p.exit(Duration::from_secs(60)), 0, "{}", p.stderr());
    let logs = p.stderr();
    assert!(logs.contains("pass done"), "{logs}");
    assert!(!logs.contains(TOKEN), "the API token was logged");
    let mut reconciled = 0;
    for line in logs.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["message"] == "reconciled" {
            reconciled += 1;
            assert_eq!(v["app"], "logs", "{line}");
            assert_eq!(v["stage"], "dev", "{line}");
            assert!(
                v["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("logs/dev/")),
                "{line}"
            );
            assert!(v["name"].is_string(), "{line}");
            assert_eq!(v["action"], "create", "{line}");
        }
    }
    assert_eq!(reconciled, 2, "{logs}");
}

#[test]
fn admin_listen_is_loopback_unless_allowed_and_bad_log_levels_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        &repo(),
        &[
            "run",
            "--manifests",
            "examples",
            "--state",
            dir.path().to_str().unwrap(),
            "--admin-listen",
            "0.0.0.0:9464",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--admin-allow-remote"), "{out:?}");
    let out = run_in(
        &repo(),
        &[
            "run",
            "--once",
            "--manifests",
            "examples",
            "--state",
            dir.path().to_str().unwrap(),
            "--log-level",
            "lumierd=loud",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--log-level"), "{out:?}");
}

/// Open descriptors of process `pid` (`/proc/PID/fd`).
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of process `pid`, in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `host:port` of an `http://host:port` URL.
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Rewrites `m/dev.yaml` of [`fleet`] with another `STAGE` value (a worker update).
fn edit_stage(dir: &Path, app: &str, stage_var: &str) {
    let tmp = dir.join("fleet-edit");
    fleet(&tmp, app, stage_var);
    std::fs::copy(tmp.join("m/dev.yaml"), dir.join("m/dev.yaml")).unwrap();
}

/// Worker updates counted so far.
async fn worker_updates(admin: &str) -> f64 {
    scrape(admin).await.value(
        "lumierd_reconciles_total",
        &[("kind", "worker"), ("result", "update")],
    )
}

/// Waits until the daemon has counted more than `before` worker updates.
async fn wait_worker_update(admin: &str, before: f64, secs: u64, what: &str) {
    wait_scrape(admin, secs, what, |s| {
        s.value(
            "lumierd_reconciles_total",
            &[("kind", "worker"), ("result", "update")],
        ) > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_are_bounded_and_idle_ones_closed() {
    use std::io::{Read, Write};
    // This test holds 1,100 sockets itself.
    lumierd::fdlimit::raise_nofile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "fds", "dev");
    let (p, admin) = spawn_run(dir.path(), &["--resync", "1h"], &[]);
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    let pid = p.pid();
    let base = fds(pid);
    let base_rss = rss_kib(pid);
    let addr = host_port(&admin);

    // 1,100 connections that never finish their request headers.
    let started = Instant::now();
    let held: Vec<std::net::TcpStream> = (0..1100)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let connect_ms = started.elapsed().as_millis();
    // Liveness still answers at once, and the edit is still applied.
    let started = Instant::now();
    let (code, _) = get(&format!("{admin}/healthz")).await;
    assert_eq!(code, 200);
    let healthz_ms = started.elapsed().as_millis();
    let bound = base + lumierd::admin::Limits::default().max_connections + 8;
    // The listener closes the evicted ones as it accepts new ones: on a loaded machine the
    // count can be over the cap for a moment, and must settle under it.
    let flooded = eventually(
        Duration::from_secs(10),
        &format!(
            "at most {bound} descriptors with 1,100 half-open admin connections (base {base})"
        ),
        || async move {
            match fds(pid) {
                n if n <= bound => Ok(n),
                n => Err(n),
            }
        },
    )
    .await;
    let flooded_rss = rss_kib(pid);
    let before = worker_updates(&admin).await;
    edit_stage(dir.path(), "fds", "edited");
    wait_worker_update(&admin, before, 30, "the edit applied under the flood").await;
    let peak = fds(pid);
    drop(held);

    // Idle keep-alive connections (fewer than the cap: none is evicted) are closed.
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.ends_with(b"ok\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "closed before the answer");
                got.extend_from_slice(&buf[..n]);
            }
            s
        })
        .collect();
    let opened = Instant::now();
    let with_idle = fds(pid);
    let limit = lumierd::admin::Limits::default().header_timeout + Duration::from_secs(5);
    // `base` was counted before the edit; since then the provider client may keep a pooled
    // keep-alive connection to the embedded API (its two ends are both in this process) and
    // a blocking-pool thread may hold a file: a slack of 4, far below the 40 being closed.
    eventually(limit, "idle keep-alive connections closed", || async move {
        match fds(pid) {
            n if n <= base + 4 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let closed_ms = opened.elapsed().as_millis();
    eprintln!(
        "figures: base {base} fds, {base_rss} KiB; 1,100 half-open (opened in {connect_ms} ms): \
         {flooded} fds (peak {peak}), {flooded_rss} KiB, /healthz after {healthz_ms} ms; 40 idle \
         keep-alive: {with_idle} fds, closed after {closed_ms} ms"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_socket_survives_descriptor_exhaustion_and_bounds_requests() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "sock", "dev");
    // 48 descriptors in all (it uses about 22 when idle), so admin clients can exhaust them.
    let p = Daemon::spawn_with(
        dir.path(),
        &[
            "run",
            "--manifests",
            "m",
            "--state",
            "state",
            "--resync",
            "1h",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        Launch {
            wrapper: &["prlimit", "--nofile=48:48"],
            ..Launch::default()
        },
    );
    let admin = p.stdout_line("admin API: ", Duration::from_secs(30));
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    let pid = p.pid();
    let addr = host_port(&admin);
    let held: Vec<std::net::TcpStream> = (0..60)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "the daemon out of descriptors",
        || async move {
            match fds(pid) {
                n if n >= 48 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;
    // A status client while no descriptor is left: its accept fails (EMFILE).
    let socket = dir
        .path()
        .join("state")
        .join(lumierd::runtime::status_socket::SOCKET);
    let mut waiting = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    waiting.write_all(b"status\n").unwrap();
    // Hold on until that accept has failed (asserted below, once the socket has answered).
    tokio::task::block_in_place(|| {
        p.printed_within("status socket: accept failed", Duration::from_secs(10))
    });
    drop(held);
    // The socket lives on: the waiting client is answered, and so is a new `status`.
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"resources\""), "{answer}");
    let out = run_in(
        dir.path(),
        &["status", "--state", "state", "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\"resources\""), "{out:?}");
    assert!(
        p.stderr()
            .contains("status socket: accept failed; going on"),
        "{}",
        p.stderr()
    );

    // A request line past 4 KiB is refused at once, not read for ever.
    let mut long = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    long.write_all(&[b'x'; 8192]).unwrap();
    let mut answer = String::new();
    let _ = long.read_to_string(&mut answer);
    assert!(answer.contains("longer than 4096 bytes"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_the_manifests_folder_when_renamed_back_or_recreated() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "follow", "dev");
    // A long resync: only the watch can bring the edits in.
    let (_p, admin) = spawn_run(dir.path(), &["--resync", "1h"], &[]);
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    let m = dir.path().join("m");
    let away = dir.path().join("m.away");

    std::fs::rename(&m, &away).unwrap();
    std::fs::rename(&away, &m).unwrap();
    let before = worker_updates(&admin).await;
    edit_stage(dir.path(), "follow", "after-rename");
    wait_worker_update(&admin, before, 20, "an edit after a rename back").await;

    std::fs::remove_dir_all(&m).unwrap();
    let before = worker_updates(&admin).await;
    fleet(dir.path(), "follow", "after-recreate");
    wait_worker_update(&admin, before, 20, "the recreated folder's manifests").await;
    let before = worker_updates(&admin).await;
    edit_stage(dir.path(), "follow", "edited-again");
    wait_worker_update(&admin, before, 20, "an edit in the recreated folder").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_manifests_folder_is_waited_for_by_run_but_not_by_once_or_validate() {
    let dir = tempfile::tempdir().unwrap();
    let once = run_in(
        dir.path(),
        &["run", "--once", "--manifests", "m", "--state", "once"],
        Duration::from_secs(30),
    );
    assert_ne!(once.code, 0, "{once:?}");
    let validate = run_in(
        dir.path(),
        &["validate", "--manifests", "m"],
        Duration::from_secs(30),
    );
    assert_ne!(validate.code, 0, "{validate:?}");

    // Neither the folder nor its parent exists yet.
    let p = Daemon::spawn(
        dir.path(),
        &[
            "run",
            "--manifests",
            "clone/m",
            "--state",
            "state",
            "--resync",
            "1h",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let admin = p.stdout_line("admin API: ", Duration::from_secs(30));
    let (code, _) = get(&format!("{admin}/readyz")).await;
    assert_eq!(code, 503, "ready without manifests");
    // A log line saying it waits.
    tokio::task::block_in_place(|| {
        p.wait_for_line("waiting for it to appear", Duration::from_secs(10))
    });
    // git-sync clones after the pod starts.
    fleet(&dir.path().join("clone"), "late", "dev");
    wait_code(&format!("{admin}/readyz"), 200, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_log_file_and_state_inside_the_manifests_folder_do_not_wake_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "quiet", "dev");
    let here = dir.path().join("m");
    // `cd man && lumierd run 2> lumierd.log`, with the default state `./.lumierd` inside too.
    let log = std::fs::File::create(here.join("lumierd.log")).unwrap();
    let p = Daemon::spawn_with(
        &here,
        &[
            "run",
            "--manifests",
            ".",
            "--debounce",
            "100ms",
            "--log-level",
            "debug",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        Launch {
            stderr: Some(log),
            ..Launch::default()
        },
    );
    let admin = p.stdout_line("admin API: ", Duration::from_secs(30));
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    assert!(here.join(".lumierd").is_dir(), "the state is not inside");
    let passes = |s: &Scrape| s.value("lumierd_passes_total", &[]);
    let initial = passes(&scrape(&admin).await);
    // Over a bounded window, every scrape still counts the initial pass(es) only.
    let window = Instant::now() + Duration::from_secs(3);
    while Instant::now() < window {
        let now = passes(&scrape(&admin).await);
        assert!(
            now <= initial + 1.0,
            "{now} passes after {initial}: the daemon wakes on its own writes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A manifest edit still wakes it.
    let before = worker_updates(&admin).await;
    edit_stage(dir.path(), "quiet", "edited");
    wait_worker_update(&admin, before, 20, "the edit applied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_a_daemon_is_stuck_when_its_socket_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "mute", "dev");
    let (_p, admin) = spawn_run(dir.path(), &["--resync", "1h"], &[]);
    wait_code(&format!("{admin}/readyz"), 200, 60).await;
    // The daemon holds the store; its socket is replaced by one that never answers.
    let socket = dir.path().join("state").join("lumierd.sock");
    std::fs::remove_file(&socket).unwrap();
    let _mute = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let start = Instant::now();
    let out = run_in(
        dir.path(),
        &["status", "--state", "state"],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("does not answer (it may be stuck)"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("use `lumierd status`"), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn run_raises_its_soft_open_files_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "nofile", "dev");
    let p = Daemon::spawn_with(
        dir.path(),
        &["run", "--manifests", "m", "--state", "state"],
        Launch {
            wrapper: &["prlimit", "--nofile=512:2048"],
            ..Launch::default()
        },
    );
    p.stdout_line("local API: ", Duration::from_secs(30));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["2048", "2048"], "{line}");
}
