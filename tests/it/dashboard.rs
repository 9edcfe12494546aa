//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) loads `GET /` of a running daemon and the test reads the DOM it built; a
//! screenshot is made into the test's temp folder (kept in `$LUMIERD_SCREENSHOT_DIR` when
//! set). Without Chromium the browser tests fail under `CI=true` and are skipped otherwise.
//! Also: the admin token, and the page's size and render time at 10,000 resources.

use crate::support::{eventually, Api, Daemon};
use lumierd::local_api::{Faults, DEFAULT_TOKEN};
use lumierd::store::{DriftEvent, Record, State, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium binary on PATH, if any. Under `CI=true` a missing one fails the test.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed (CI installs Debian's `chromium` in .ci/run)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot=…`), bounded by
/// 60 s; its stdout, and how long it took.
fn browse(chrome: &Path, profile: &Path, url: &str, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let deadline = started + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    (reader.join().unwrap(), took)
}

fn keep_screenshot(shot: &Path, name: &str) {
    assert!(
        std::fs::metadata(shot)
            .map(|m| m.len() > 1000)
            .unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );
    if let Some(dir) = std::env::var_os("LUMIERD_SCREENSHOT_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(shot, Path::new(&dir).join(name));
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";

/// `m/{stage}.yaml` of app `shop`: kv `cache`, kv `watched` (drift: report), worker `api`.
fn stage(dir: &Path, stage: &str, protect: bool, extra: &str) {
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
            "app:\n  name: shop\n{protect}stage: {stage}\nresources:\n  watched: {{ type: kv, drift: report }}\n  api:\n    type: worker\n    entry: index.js\n{extra}"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_drifted_failed_and_retained_resources_in_chromium() {
    let Some(chrome) = chromium() else { return };
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    stage(dir.path(), "dev", false, "  taken: { type: kv }\n");
    stage(dir.path(), "prod", true, "  old: { type: kv }\n");
    // `dev/taken`'s title belongs to a namespace lumierd did not make: an Error.
    api.send(
        api.http
            .post(format!("{}/storage/kv/namespaces", api.account()))
            .json(&json!({ "title": "shop-dev-taken" })),
    )
    .await;
    let d = Daemon::spawn_env(
        dir.path(),
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
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[("CLOUDFLARE_API_TOKEN", DEFAULT_TOKEN)],
    );
    let admin =
        tokio::task::block_in_place(|| d.stdout_line("admin API:", Duration::from_secs(30)));
    let status = |q: &'static str| {
        let url = format!("{admin}/status{q}");
        async move {
            http()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    eventually(Duration::from_secs(60), "dev/taken in Error", || async {
        let s = status("?state=Error").await;
        if s["total"] == 1 {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    // Drift (report mode), a retained resource (removed from a protected stage), and a
    // manifest that does not load, whose file name is markup.
    let id = api.namespace_id("shop-prod-watched").await.unwrap();
    api.send(
        api.http
            .put(format!("{}/storage/kv/namespaces/{id}", api.account()))
            .json(&json!({ "title": "<b>moved</b>" })),
    )
    .await;
    eventually(Duration::from_secs(30), "prod/watched drifted", || async {
        let s = status("?state=Drifted").await;
        if s["total"] == 1 {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    stage(dir.path(), "prod", true, "");
    eventually(Duration::from_secs(30), "prod/old retained", || async {
        let s = status("?state=Retained").await;
        if s["total"] == 1 {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    let evil = "<img src=x onerror=alert(1)>.yaml";
    std::fs::write(
        dir.path().join("m").join(evil),
        "app: { name: shop }\nstage: dev\nresources:\n  x: { type: nope }\n",
    )
    .unwrap();
    eventually(Duration::from_secs(30), "load error", || async {
        let s = status("?limit=1").await;
        if s["loadError"].is_string() {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
    // The drift's history is in the status JSON too.
    let s = status("?state=Drifted").await;
    assert_eq!(
        s["resources"][0]["drift"]["history"][0]["changes"][0],
        "title: shop-prod-watched → <b>moved</b>",
        "{s:#}"
    );

    let profile = dir.path().join("chromium");
    let (dom, took) = tokio::task::block_in_place(|| {
        browse(&chrome, &profile, &format!("{admin}/"), &["--dump-dom"])
    });
    let row = |key: &str| -> String {
        let at = dom
            .find(&format!("data-key=\"{key}\""))
            .unwrap_or_else(|| panic!("{key} not shown:\n{dom}"));
        let end = dom[at..].find("</tr>").map_or(dom.len(), |e| at + e);
        dom[at..end].to_owned()
    };
    let drifted = row("shop/prod/watched");
    assert!(drifted.contains("data-state=\"Drifted\""), "{drifted}");
    assert!(drifted.contains("1 drift event"), "{drifted}");
    assert!(
        drifted.contains("title: shop-prod-watched → &lt;b&gt;moved&lt;/b&gt;"),
        "{drifted}"
    );
    assert!(drifted.contains("reported"), "{drifted}");
    let failed = row("shop/dev/taken");
    assert!(failed.contains("data-state=\"Error\""), "{failed}");
    assert!(failed.contains("next retry"), "{failed}");
    assert!(
        failed.contains("shop-dev-taken"),
        "the error names the title: {failed}"
    );
    let retained = row("shop/prod/old");
    assert!(retained.contains("data-state=\"Retained\""), "{retained}");
    let api_row = row("shop/dev/api");
    assert!(
        api_row.contains("scriptName: <code>shop-dev-api</code>"),
        "{api_row}"
    );
    assert!(row("shop/dev/watched").contains("namespaceId: <code>"));
    // Counts, passes, budget, and the load error with its place, escaped.
    assert!(
        dom.contains("Error 1</span>") && dom.contains("Retained 1</span>"),
        "{dom}"
    );
    assert!(dom.contains("<table id=\"passes\">"), "{dom}");
    assert!(dom.contains("API budget: "), "{dom}");
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;.yaml:4:14: unknown type"),
        "{dom}"
    );
    assert!(
        !dom.contains("<img") && !dom.contains("<b>moved"),
        "markup got through:\n{dom}"
    );
    // The script ran (it stamps the document).
    assert!(dom.contains("data-rendered=\""), "{dom}");
    eprintln!("dashboard (4 stages' resources): chromium --dump-dom took {took:?}");

    // Live: with virtual time past the refresh period, the page has fetched its live part
    // again and swapped it in (the rows are still there, escaped as before).
    let (dom, _) = tokio::task::block_in_place(|| {
        browse(
            &chrome,
            &profile,
            &format!("{admin}/"),
            &["--virtual-time-budget=7000", "--dump-dom"],
        )
    });
    assert!(dom.contains("data-refreshed=\""), "no refresh ran:\n{dom}");
    assert!(dom.contains("data-key=\"shop/dev/taken\""), "{dom}");
    assert!(
        !dom.contains("<img") && !dom.contains("<b>moved"),
        "markup got through:\n{dom}"
    );

    // Filtered by state in the browser: only the failed one.
    let (dom, _) = tokio::task::block_in_place(|| {
        browse(
            &chrome,
            &profile,
            &format!("{admin}/?state=Error"),
            &["--dump-dom"],
        )
    });
    assert!(dom.contains("data-key=\"shop/dev/taken\""), "{dom}");
    assert!(!dom.contains("data-key=\"shop/prod/watched\""), "{dom}");
    assert!(dom.contains("1–1 of 1 matching"), "{dom}");

    let shot = dir.path().join("dashboard.png");
    tokio::task::block_in_place(|| {
        browse(
            &chrome,
            &profile,
            &format!("{admin}/"),
            &[
                "--window-size=1280,1000",
                &format!("--screenshot={}", shot.display()),
            ],
        )
    });
    keep_screenshot(&shot, "dashboard.png");
    drop(d);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything_but_healthz() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    let secret = "adm-token-5b1e0c";
    std::fs::write(dir.path().join("token"), format!("{secret}\n")).unwrap();
    let d = Daemon::spawn_env(
        dir.path(),
        &[
            "run",
            "--manifests",
            "m",
            "--state",
            "state",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-allow-remote",
            "--admin-token-file",
            "token",
        ],
        &[("RUST_LOG", "debug")],
    );
    let admin =
        tokio::task::block_in_place(|| d.stdout_line("admin API:", Duration::from_secs(30)));
    let get = |path: &str, auth: Option<String>| {
        let mut req = http().get(format!("{admin}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/healthz", None).await, 200);
    for path in ["/", "/status", "/metrics", "/readyz"] {
        assert_eq!(get(path, None).await, 401, "{path}");
        assert_eq!(get(path, Some("Bearer wrong".into())).await, 401, "{path}");
    }
    assert_eq!(get("/status", Some(format!("Bearer {secret}"))).await, 200);
    assert_eq!(get("/", Some(format!("Bearer {secret}"))).await, 200);
    // A browser: HTTP Basic with the token as password.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("me:{secret}"));
    assert_eq!(get("/", Some(format!("Basic {basic}"))).await, 200);
    let r = http().get(format!("{admin}/")).send().await.unwrap();
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let logs = format!("{}{}", d.stdout(), d.stderr());
    assert!(!logs.contains(secret), "token logged:\n{logs}");

    // Without --admin-allow-remote the token file is refused (loopback needs none).
    let out = crate::support::run_in(
        dir.path(),
        &[
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            "state2",
            "--admin-token-file",
            "token",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 2, "{out:?}");
}

/// 10,000 records written straight into a state folder (no provider needed), served by a
/// daemon whose manifests do not load (so no pass rewrites them): the page's size and
/// Chromium's time to load it, printed (README's dashboard paragraph quotes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_stays_small_and_quick_at_10000_resources() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("state")).unwrap();
        let states = [
            State::Ready,
            State::Ready,
            State::Ready,
            State::Drifted,
            State::Error,
            State::Retained,
        ];
        for i in 0..N {
            let key = lumierd::manifest::ResourceKey {
                app: format!("app{:02}", i / 1000),
                stage: format!("stage{}", (i / 100) % 10),
                name: format!("res{i:05}"),
            };
            let state = states[i % states.len()];
            let mut rec = Record {
                state,
                message: if state == State::Error {
                    "HTTP 500 from the API".into()
                } else {
                    String::new()
                },
                last_error: (state == State::Error).then(|| "HTTP 500 from the API".into()),
                ..Record::default()
            };
            if state == State::Drifted {
                for _ in 0..3 {
                    rec.push_drift(DriftEvent {
                        at: lumierd::time::Timestamp::now(),
                        changes: vec![format!("title: {} → renamed", key.name)],
                        corrected: false,
                    });
                }
            }
            store.put(&key, &rec).unwrap();
        }
        store.flush().unwrap();
    }
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    std::fs::write(dir.path().join("m/broken.yaml"), "app: [\n").unwrap();
    let d = Daemon::spawn_env(
        dir.path(),
        &[
            "run",
            "--manifests",
            "m",
            "--state",
            "state",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let admin =
        tokio::task::block_in_place(|| d.stdout_line("admin API:", Duration::from_secs(30)));
    let fetch = |q: &'static str| {
        let url = format!("{admin}/{q}");
        async move {
            let t = Instant::now();
            let body = http().get(url).send().await.unwrap().text().await.unwrap();
            (body, t.elapsed())
        }
    };
    let (page, served) = fetch("").await;
    assert!(
        page.contains("10000 resources"),
        "{}",
        &page[..page.len().min(3000)]
    );
    assert!(page.contains("1–100 of 10000 matching"));
    let (last, _) = fetch("?offset=9900").await;
    assert!(last.contains("9901–10000 of 10000 matching"));
    let (errors, _) = fetch("?state=Error&app=app03").await;
    let want = (3000..4000).filter(|i| i % 6 == 4).count();
    assert!(
        errors.contains(&format!("1–100 of {want} matching")),
        "{}",
        &errors[..errors.len().min(3000)]
    );
    let (fragment, fragment_took) = fetch("?fragment=1").await;
    assert!(page.len() < 200_000, "page is {} bytes", page.len());
    eprintln!(
        "dashboard at {N} resources: page {} bytes (fragment {} bytes), served in {served:?} (fragment {fragment_took:?})",
        page.len(),
        fragment.len()
    );
    let Some(chrome) = chromium() else { return };
    let profile = dir.path().join("chromium");
    let (dom, took) = tokio::task::block_in_place(|| {
        browse(&chrome, &profile, &format!("{admin}/"), &["--dump-dom"])
    });
    let rendered: f64 = dom
        .split("data-rendered=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no render stamp in the DOM"));
    assert_eq!(dom.matches("<tr data-key=").count(), 100);
    eprintln!("dashboard at {N} resources in chromium: script ran {rendered} ms after navigation start; --dump-dom took {took:?} in all");
    // A figure (README), not an assertion: tests assert no timings.
    assert!(rendered > 0.0, "the page's script ran");
    let shot = dir.path().join("dashboard-10000.png");
    tokio::task::block_in_place(|| {
        browse(
            &chrome,
            &profile,
            &format!("{admin}/?state=Drifted"),
            &[
                "--window-size=1280,1000",
                &format!("--screenshot={}", shot.display()),
            ],
        )
    });
    keep_screenshot(&shot, "dashboard-10000.png");
    drop(d);
}
