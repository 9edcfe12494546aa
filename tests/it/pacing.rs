//! Pacing and debounce end to end (issue #15): the real `lumierd` binary against the local
//! API with its rate-limit model, over loopback.

use crate::support::{run, run_in, Api, Daemon};
use lumierd::local_api::{Faults, RateLimitModel, DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN};
use std::path::Path;
use std::time::{Duration, Instant};

/// A manifests folder `m/` with `kv` namespaces and one worker binding the first.
fn fleet(dir: &Path, kv: usize) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), worker("v0")).unwrap();
    let mut text = String::from("app: { name: pace }\nstage: dev\nresources:\n");
    for k in 0..kv {
        text.push_str(&format!("  kv{k}: {{ type: kv }}\n"));
    }
    text.push_str(
        "  api:\n    type: worker\n    entry: index.js\n    bindings: { K: { kv: kv0 } }\n",
    );
    std::fs::write(m.join("dev.yaml"), text).unwrap();
}

fn worker(version: &str) -> String {
    format!("export default {{ fetch() {{ return new Response(\"{version}\") }} }}\n")
}

/// A small budget (12 per 2 s window, 25 % reserved: 9 for lumierd) and a fleet that needs
/// three windows; another client of the same account spends 2 requests first. lumierd never
/// gets a 429, never sends more than the budget less the reserve in a window of the API's
/// model, and leaves the reserve to the other client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converge_under_a_small_budget_gets_no_429_and_keeps_the_reserve() {
    let window = Duration::from_secs(2);
    let api = Api::start(Faults {
        rate_limit: Some(RateLimitModel {
            requests: 12,
            window,
        }),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), 20);
    // The other client opens the API's window.
    let verify = format!("{}/tokens/verify", api.account());
    for _ in 0..2 {
        let r = api
            .http
            .get(&verify)
            .bearer_auth(DEFAULT_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| {
        run_in(
            dir.path(),
            &[
                "run",
                "--once",
                "--manifests",
                "m",
                "--state",
                "state",
                "--api-url",
                &api.base,
                "--api-budget",
                "12/2s",
                "--api-reserve",
                "25%",
            ],
            Duration::from_secs(60),
        )
    });
    assert_eq!(out.code, 0, "{out:?}");
    let log = api.log();
    let timed = api.timed_log();
    assert_eq!(log.len(), timed.len());
    // 20 namespaces + 1 worker + the two lists, and the other client's 2; and the worker's
    // workers.dev route (`workersDev` defaults to on): its POST and the account's subdomain.
    assert_eq!(log.len(), 2 + 21 + 2 + 2, "{log:#?}");
    assert!(log.iter().all(|r| r.status != 429), "{log:#?}");
    // Requests per window of the model (fixed windows from the first counted request).
    let first = timed.iter().map(|t| t.start).fold(f64::INFINITY, f64::min);
    let last = timed.iter().map(|t| t.start).fold(first, f64::max);
    let windows = ((last - first) / window.as_secs_f64()) as usize + 1;
    let mut ours = vec![0usize; windows];
    let mut all = vec![0usize; windows];
    for (r, t) in log.iter().zip(&timed) {
        let i = ((t.start - first) / window.as_secs_f64()) as usize;
        all[i] += 1;
        if !r.path.ends_with("/tokens/verify") {
            ours[i] += 1;
        }
    }
    assert!(ours.iter().all(|n| *n <= 9), "lumierd per window: {ours:?}");
    assert!(
        all.iter().all(|n| *n <= 12 - 3),
        "everyone per window: {all:?}"
    );
    assert_eq!(ours.iter().sum::<usize>(), 25, "{ours:?}");
    // Three windows' worth, with a second of rounding each (`t` is whole seconds).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    api.stop().await;
}

/// With a long debounce, an edit after a quiet period still starts its pass at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_starts_a_pass_without_waiting_for_the_debounce() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), 1);
    let daemon = Daemon::spawn_env(
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
            "1h",
            "--debounce",
            "20s",
        ],
        &[
            ("RUST_LOG", "info"),
            ("CLOUDFLARE_ACCOUNT_ID", DEFAULT_ACCOUNT_ID),
        ],
    );
    // (`pass done changes=`: the `ready: … first pass done` line follows the first one.)
    daemon.wait_for_line("pass done changes=", Duration::from_secs(30));
    let mark = daemon.mark();
    api.clear_log();
    let saved = Instant::now();
    std::fs::write(dir.path().join("m/index.js"), worker("v1")).unwrap();
    // Well within the 20 s debounce.
    daemon.wait_for_line_since(mark, "pass done changes=", Duration::from_secs(10));
    let took = saved.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let uploads = api
        .log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/workers/scripts/pace-dev-api"))
        .count();
    assert_eq!(uploads, 1, "{:#?}\n{}", api.log(), daemon.stderr());
    drop(daemon);
    api.stop().await;
}

#[test]
fn budget_and_reserve_flags_are_checked() {
    for args in [
        ["--api-budget", "0/5m"],
        ["--api-budget", "1200"],
        ["--api-reserve", "100%"],
        ["--api-reserve", "ten"],
    ] {
        let mut all = vec!["run", "--once"];
        all.extend(args);
        let out = run(&all);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(args[0]), "{args:?}: {}", out.stderr);
    }
}
