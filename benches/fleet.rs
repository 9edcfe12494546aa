//! `cargo bench --bench fleet [-- OPTIONS]`: API requests, latency, memory and CPU of the real
//! `lumierd run` against an in-process local Cloudflare API, each figure beside its lower
//! bound. See BENCH.md.
//!
//! Options (or the environment variable in brackets):
//!   --n N               resources for scenarios 1–4 [BENCH_N] (default 1000)
//!   --kv K --workers W  per stage [BENCH_KV, BENCH_WORKERS] (default 10, 10)
//!   --binds B           namespaces each worker binds [BENCH_BINDS] (default 2)
//!   --scenarios LIST    e.g. 1,2,3,4,5,6,7 [BENCH_SCENARIOS] (default all)
//!   --latency-ms MS     injected per-request latency [BENCH_LATENCY_MS] (default 30)
//!   --rl-scale X        time-compress the 1200/300 s rate-limit model X times [BENCH_RL_SCALE] (default 1)
//!   --windows-n N       fleet size of scenario 7 (several budget windows) [BENCH_WINDOWS_N] (default 5000)
//!   --windows-rl-scale X  its model's time compression [BENCH_WINDOWS_RL_SCALE] (default --rl-scale)
//!   --edits E           edits per latency setting in scenario 3 [BENCH_EDITS] (default 50)
//!   --debounce-ms MS    the daemon's --debounce [BENCH_DEBOUNCE_MS] (default 200)
//!   --drift-pct P       share of N changed out of band in scenario 4 [BENCH_DRIFT_PCT] (default 1)
//!   --mem-n LIST        fleet sizes of scenario 5 [BENCH_MEM_N] (default 1000,10000)
//!   --idle-secs S       idle CPU window of scenario 5 [BENCH_IDLE_SECS] (default 60)
//!   --out FILE          also write the report there [BENCH_OUT]
//!
//! Profiling and comparison: BENCH_DAEMON_WRAP="heaptrack -o /tmp/h" runs the daemon under a
//! tool (with BENCH_TIMEOUT_SCALE=20 for slow tools); BENCH_LUMIERD_BIN=PATH measures another
//! build of lumierd.

// A measuring tool, not the product: a failed set-up panics with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A scenario reads top to bottom; the 80-line rule (Cargo.toml [lints]) is for the product.
#![allow(clippy::too_many_lines)]

#[path = "harness/mod.rs"]
mod harness;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` / `--all-targets` runs this binary without `--bench`: do nothing.
    if !args.iter().any(|a| a == "--bench") && std::env::var_os("BENCH_FORCE").is_none() {
        println!("fleet benchmark: run it with `cargo bench --bench fleet`");
        return;
    }
    let opt = |name: &str, env: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .or_else(|| std::env::var(env).ok())
    };
    let num = |name: &str, env: &str, default: f64| -> f64 {
        opt(name, env).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: `{v}` is not a number"))
        })
    };
    let list = |name: &str, env: &str, default: &str| -> Vec<usize> {
        opt(name, env)
            .unwrap_or_else(|| default.to_owned())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: `{s}` is not a number"))
            })
            .collect()
    };
    let n = num("--n", "BENCH_N", 1000.0) as usize;
    let kv = num("--kv", "BENCH_KV", 10.0) as usize;
    let workers = num("--workers", "BENCH_WORKERS", 10.0) as usize;
    let binds = num("--binds", "BENCH_BINDS", 2.0) as usize;
    let cfg = harness::Config {
        // BENCH_LUMIERD_BIN: measure another build (e.g. a candidate fix) with this harness.
        bin: std::env::var_os("BENCH_LUMIERD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lumierd"))),
        shape: harness::Shape::for_n(n, kv, workers, binds),
        scenarios: list("--scenarios", "BENCH_SCENARIOS", "1,2,3,4,5,6,7")
            .into_iter()
            .map(|s| s as u8)
            .collect::<BTreeSet<u8>>(),
        latency: Duration::from_millis(num("--latency-ms", "BENCH_LATENCY_MS", 30.0) as u64),
        rl_scale: num("--rl-scale", "BENCH_RL_SCALE", 1.0),
        windows_n: num("--windows-n", "BENCH_WINDOWS_N", 5000.0) as usize,
        windows_rl_scale: num(
            "--windows-rl-scale",
            "BENCH_WINDOWS_RL_SCALE",
            num("--rl-scale", "BENCH_RL_SCALE", 1.0),
        ),
        edits: num("--edits", "BENCH_EDITS", 50.0) as usize,
        debounce: Duration::from_millis(num("--debounce-ms", "BENCH_DEBOUNCE_MS", 200.0) as u64),
        drift_pct: num("--drift-pct", "BENCH_DRIFT_PCT", 1.0),
        mem_n: list("--mem-n", "BENCH_MEM_N", "1000,10000"),
        idle: Duration::from_secs_f64(num("--idle-secs", "BENCH_IDLE_SECS", 60.0)),
        verbose: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = match rt.block_on(harness::run(&cfg)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleet benchmark failed: {e:#}");
            std::process::exit(1);
        }
    };
    rt.shutdown_timeout(Duration::from_secs(10));
    let text = report.render();
    println!("{text}");
    if let Some(out) = opt("--out", "BENCH_OUT") {
        if let Err(e) = std::fs::write(&out, &text) {
            eprintln!("cannot write {out}: {e}");
        }
    }
}
