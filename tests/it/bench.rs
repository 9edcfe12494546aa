//! The fleet benchmark's harness at N = 20, so it cannot rot: the same code as
//! `cargo bench --bench fleet` (benches/harness/mod.rs), every scenario, a few seconds. Times
//! are printed, not asserted; request counts are exact, so they are asserted.

#[path = "../../benches/harness/mod.rs"]
mod harness;

use harness::{Config, Shape};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_benchmark_small() {
    let shape = Shape {
        stages: 2,
        kv: 5,
        workers: 5,
        binds: 2,
    };
    let cfg = Config {
        bin: crate::support::bin(),
        shape,
        scenarios: [1, 2, 3, 4, 5, 6].into_iter().collect(),
        latency: Duration::from_millis(5),
        rl_scale: 1.0,
        windows_n: 20,
        windows_rl_scale: 1.0,
        edits: 3,
        debounce: Duration::from_millis(200),
        drift_pct: 1.0,
        // 20 reuses the fleet of scenarios 1–4; 30 is seeded in-process, as 10,000 is.
        mem_n: vec![20, 30],
        idle: Duration::from_secs(1),
        verbose: false,
    };
    let report = harness::run(&cfg).await.unwrap();
    println!("{}", report.render());
    let f = &report.figures;
    let n = shape.n();
    assert_eq!(n, 20);
    assert_eq!(f.list_pages, 2, "one namespace page and the script list");
    // `workersDev` defaults to on (as with wrangler): each of the 10 new workers' routes is
    // one `POST …/subdomain`, and the pass reads the account's subdomain once for the URLs.
    let routes = shape.scripts() + 1;
    assert_eq!(routes, 11);
    assert_eq!(
        f.cold_requests,
        Some(n + routes + 2),
        "one create per resource and route per worker, the subdomain, the lists"
    );
    assert_eq!(f.cold_writes, Some(n + shape.scripts()));
    assert_eq!(f.cold_429, Some(0));
    assert_eq!(
        f.shared_requests,
        Some(n + routes + 2),
        "beside a second client: the same"
    );
    assert_eq!(f.shared_429, Some(0), "and no 429 for lumierd");
    assert_eq!(
        f.resync_requests,
        vec![2, 2, 2],
        "a resync reads the lists only"
    );
    assert_eq!(f.resync_writes, vec![0, 0, 0]);
    assert_eq!(f.naive_resync_requests, Some(n));
    assert_eq!(f.drift_changed, Some(2));
    // The namespace's rename, the worker's upload and its route (a correction re-sends it).
    assert_eq!(
        f.drift_writes,
        Some(3),
        "one fix per drifted resource + the route"
    );
    assert_eq!(
        f.drift_requests, f.drift_bound,
        "lists + fixes + settings reads"
    );
    assert_eq!(f.drift_left, Some(0));
    assert_eq!(f.edit_uploads, vec![1; 6], "one upload per edit");
    assert_eq!(f.edit_ms.len(), 6);
    assert_eq!(f.startup_requests, vec![(20, 2), (30, 2)]);
    assert!(f.peak_rss_kb.iter().all(|(_, kb)| *kb > 0));
}
