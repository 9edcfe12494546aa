//! The fleet benchmark harness, shared by `benches/fleet.rs` (`cargo bench --bench fleet`) and
//! the small-N run of the test suite (`tests/it/bench.rs`).
//!
//! It generates a fleet (S stages × K namespaces × W workers, each worker binding B namespaces
//! and one plain-text var) into a temp dir, serves a local Cloudflare API in this process (so
//! its request log can be read and it can be edited "out of band" as another client would),
//! runs the real `lumierd run --api-url …` binary against it over loopback, and measures API
//! requests, writes, wall times, RSS and CPU, each beside its lower bound.
//!
//! How a daemon pass is observed: `lumierd run --log-format json` logs one `pass done` line per
//! pass on stderr; a reader thread turns each into an event stamped with the `Instant` it was
//! read. Resyncs are triggered with SIGHUP (reload + pass). Request times come from the local
//! API's request-log file (`ts` = completion time, microseconds).

#![allow(dead_code)]

pub mod memory;

use anyhow::{anyhow, bail, Context, Result};
use lumierd::local_api::{
    Faults, LocalApi, LocalApiConfig, LoggedRequest, RateLimitModel, DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

// ───────────────────────────── configuration ─────────────────────────────

/// Cloudflare's global API budget: 1200 requests per 5 minutes per token.
pub const CF_BUDGET: u32 = 1200;
pub const CF_WINDOW: Duration = Duration::from_secs(300);
/// lumierd's default `--api-reserve` (src/cloudflare/limiter/budget.rs `RateLimit::default`): the
/// share of the budget it leaves to other clients.
pub const RESERVE_PERCENT: u32 = 10;

/// What lumierd may spend per window: the budget less the reserve (rounded up).
pub fn allowance() -> usize {
    (CF_BUDGET - (CF_BUDGET * RESERVE_PERCENT).div_ceil(100)) as usize
}
/// The daemon's `--concurrency` default.
pub const DAEMON_CONCURRENCY: usize = 8;

/// The shape of a generated fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub stages: usize,
    pub kv: usize,
    pub workers: usize,
    /// KV namespaces each worker binds (≤ kv).
    pub binds: usize,
}

impl Shape {
    /// Resources in the fleet.
    pub fn n(&self) -> usize {
        self.stages * (self.kv + self.workers)
    }
    pub fn namespaces(&self) -> usize {
        self.stages * self.kv
    }
    pub fn scripts(&self) -> usize {
        self.stages * self.workers
    }
    /// What a cold converge sends besides one create per resource: one `POST …/subdomain`
    /// per worker (`workersDev` defaults to on, as with wrangler) and one read of the
    /// account's subdomain (once per pass, for the `url` output).
    pub fn routes(&self) -> usize {
        self.scripts() + usize::from(self.scripts() > 0)
    }
    /// A shape of about `n` resources with `kv` namespaces and `workers` workers per stage.
    pub fn for_n(n: usize, kv: usize, workers: usize, binds: usize) -> Shape {
        let per = (kv + workers).max(1);
        Shape {
            stages: n.div_ceil(per).max(1),
            kv,
            workers,
            binds: binds.min(kv),
        }
    }
    pub fn describe(&self) -> String {
        format!(
            "{} stages × ({} namespaces + {} workers binding {} each)",
            self.stages, self.kv, self.workers, self.binds
        )
    }
}

/// Which scenarios to run and with what knobs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `lumierd` binary (`env!("CARGO_BIN_EXE_lumierd")`).
    pub bin: PathBuf,
    /// Fleet for scenarios 1–4.
    pub shape: Shape,
    pub scenarios: BTreeSet<u8>,
    /// Injected per-request latency (scenarios 1, 2, 4, the second half of 3, and 5).
    pub latency: Duration,
    /// Cloudflare's rate-limit model is time-compressed by this factor for scenarios 1 and 6:
    /// `1200 requests per 300 s / scale`. 1 = the real model.
    pub rl_scale: f64,
    /// Scenario 7: the fleet size of the cold converge that spans several windows, and the
    /// time compression of its rate-limit model.
    pub windows_n: usize,
    pub windows_rl_scale: f64,
    /// Edits per latency setting in scenario 3.
    pub edits: usize,
    pub debounce: Duration,
    /// Percentage of N changed out of band in scenario 4.
    pub drift_pct: f64,
    /// Fleet sizes for scenario 5.
    pub mem_n: Vec<usize>,
    /// Idle window for the CPU measure of scenario 5.
    pub idle: Duration,
    /// Print progress to stderr.
    pub verbose: bool,
}

impl Config {
    pub fn rate_model(&self) -> RateLimitModel {
        model(self.rl_scale)
    }
}

/// Cloudflare's model, time-compressed `scale` times.
pub fn model(scale: f64) -> RateLimitModel {
    RateLimitModel {
        requests: CF_BUDGET,
        window: CF_WINDOW.div_f64(scale.max(1e-6)),
    }
}

/// `--api-budget` for a daemon facing `model`.
fn budget_args(model: RateLimitModel) -> Vec<String> {
    vec![
        "--api-budget".into(),
        format!("{}/{}ms", model.requests, model.window.as_millis()),
    ]
}

// ───────────────────────────── results ─────────────────────────────

/// One row of a scenario table.
#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub bound: String,
    pub ratio: Option<f64>,
    pub target: String,
}

/// One checked target.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub pass: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Table {
    fn new(title: impl Into<String>) -> Table {
        Table {
            title: title.into(),
            ..Table::default()
        }
    }
    fn row(&mut self, figure: &str, measured: String, bound: String, ratio: Option<f64>) {
        self.rows.push(Row {
            figure: figure.into(),
            measured,
            bound,
            ratio,
            target: String::new(),
        });
    }
    fn checked(&mut self, target: String, pass: bool) {
        if let Some(r) = self.rows.last_mut() {
            r.target = format!("{target}  {}", if pass { "PASS" } else { "MISS" });
        }
    }
    fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn render(&self) -> String {
        let head = ["figure", "measured", "lower bound", "ratio", "target"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.clone(),
                    r.measured.clone(),
                    r.bound.clone(),
                    r.ratio.map_or("–".into(), |x| format!("{x:.2}")),
                    r.target.clone(),
                ]
            })
            .collect();
        let mut w = head.map(|h| h.chars().count());
        for c in &cells {
            for i in 0..5 {
                w[i] = w[i].max(c[i].chars().count());
            }
        }
        let line = |c: &[String; 5]| {
            let mut s = String::from("|");
            for i in 0..5 {
                let pad = w[i] - c[i].chars().count();
                if i == 0 || i == 4 {
                    let _ = write!(s, " {}{} |", c[i], " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{} |", " ".repeat(pad), c[i]);
                }
            }
            s
        };
        let mut out = format!("\n### {}\n\n", self.title);
        out.push_str(&line(&head.map(String::from)));
        out.push('\n');
        let mut sep = String::from("|");
        for (i, wi) in w.iter().enumerate() {
            let dashes = "-".repeat(*wi);
            if i == 0 || i == 4 {
                let _ = write!(sep, " {dashes} |");
            } else {
                let _ = write!(sep, " {}: |", &dashes[1..]);
            }
        }
        out.push_str(&sep);
        out.push('\n');
        for c in &cells {
            out.push_str(&line(c));
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n- {n}");
        }
        out
    }
}

/// Exact figures a test may assert on.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub cold_requests: Option<usize>,
    pub cold_writes: Option<usize>,
    pub cold_429: Option<usize>,
    pub list_pages: usize,
    pub resync_requests: Vec<usize>,
    pub resync_writes: Vec<usize>,
    pub naive_resync_requests: Option<usize>,
    pub drift_requests: Option<usize>,
    pub drift_bound: Option<usize>,
    pub drift_writes: Option<usize>,
    pub drift_changed: Option<usize>,
    pub drift_left: Option<usize>,
    pub edit_uploads: Vec<usize>,
    /// Scenario 6: lumierd's requests and 429s beside a second client.
    pub shared_requests: Option<usize>,
    pub shared_429: Option<usize>,
    /// Scenario 7: lumierd's requests per window of the API's model, and its 429s.
    pub window_requests: Vec<usize>,
    pub windows_429: Option<usize>,
    pub edit_ms: Vec<f64>,
    pub startup_requests: Vec<(usize, usize)>,
    pub peak_rss_kb: Vec<(usize, u64)>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub header: String,
    pub tables: Vec<Table>,
    pub targets: Vec<Target>,
    pub figures: Figures,
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = self.header.clone();
        for t in &self.tables {
            out.push_str(&t.render());
        }
        out.push_str("\n### Targets\n\n");
        for t in &self.targets {
            let verdict = match t.pass {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "NOT RUN",
            };
            let _ = writeln!(out, "- {verdict:7} {} — {}", t.name, t.measured);
        }
        out
    }
    fn target(&mut self, name: &str, measured: String, pass: Option<bool>) {
        self.targets.push(Target {
            name: name.into(),
            measured,
            pass,
        });
    }
}

// ───────────────────────────── fleet generation ─────────────────────────────

/// A generated fleet on disk.
pub struct Fleet {
    pub shape: Shape,
    /// The work dir: manifests under `m/`, state under `state/`.
    pub dir: PathBuf,
    pub workers: Vec<WorkerRef>,
}

#[derive(Debug, Clone)]
pub struct WorkerRef {
    pub script: String,
    pub file: PathBuf,
}

pub const APP: &str = "fleet";

fn stage_name(s: usize) -> String {
    format!("s{s:04}")
}

fn worker_source(script: &str, version: usize) -> String {
    format!(
        "// {script}\nexport default {{\n  async fetch(request, env) {{\n    const hit = await env.K0.get(\"greeting\");\n    return new Response(hit ?? \"{script} v{version}\");\n  }},\n}};\n"
    )
}

impl Fleet {
    /// Writes the manifests of `shape` under `dir/m`.
    pub fn write(dir: &Path, shape: Shape) -> Result<Fleet> {
        let m = dir.join("m");
        let mut workers = Vec::new();
        for s in 0..shape.stages {
            let stage = stage_name(s);
            let src = m.join("src").join(&stage);
            std::fs::create_dir_all(&src)?;
            let mut text = format!("app: {{ name: {APP} }}\nstage: {stage}\nresources:\n");
            for k in 0..shape.kv {
                let _ = writeln!(text, "  kv{k:02}: {{ type: kv }}");
            }
            for w in 0..shape.workers {
                let script = format!("{APP}-{stage}-w{w:02}");
                let file = src.join(format!("w{w:02}.js"));
                std::fs::write(&file, worker_source(&script, 0))?;
                let _ = write!(
                    text,
                    "  w{w:02}:\n    type: worker\n    entry: src/{stage}/w{w:02}.js\n    bindings:\n      STAGE: \"${{stage}}\"\n"
                );
                for b in 0..shape.binds {
                    let _ = writeln!(text, "      K{b}: {{ kv: kv{:02} }}", (w + b) % shape.kv);
                }
                workers.push(WorkerRef { script, file });
            }
            std::fs::write(m.join(format!("{stage}.yaml")), text)?;
        }
        Ok(Fleet {
            shape,
            dir: dir.to_path_buf(),
            workers,
        })
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.join("m")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Builds the converged state in-process, without the daemon's client-side pacing: the
    /// library's `Controller::pass` (the same code `lumierd run --once` runs) with an unlimited
    /// client. Used where the real daemon's cold converge would take too long (N = 10,000).
    pub async fn seed(&self, api: &Api) -> Result<Duration> {
        use lumierd::cloudflare::{Client, ClientConfig, RateLimit};
        use lumierd::runtime::controller::{Controller, Policy};
        let started = Instant::now();
        let snap = lumierd::source::load(&self.manifests()).map_err(|e| anyhow!("{e}"))?;
        std::fs::create_dir_all(self.state())?;
        let store = lumierd::store::Store::open(&self.state())?;
        let mut cfg = ClientConfig::new(api.base.clone(), DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN);
        cfg.rate = RateLimit::unlimited();
        let controller = Controller {
            client: Client::new(cfg)?,
            store: store.clone(),
            installation: lumierd::store::installation::installation_id(&self.state(), true)?
                .unwrap_or_default(),
            policy: Policy {
                drift: lumierd::manifest::DriftMode::Correct,
                max_prune: 10,
                concurrency: DAEMON_CONCURRENCY,
                act: true,
                approve_delete: Vec::new(),
                adopt: false,
            },
            metrics: Default::default(),
            events: None,
        };
        let mut converged = false;
        for _ in 0..3 {
            let report = controller.pass(&snap).await?;
            if report.converged {
                converged = true;
                break;
            }
        }
        store.flush()?;
        drop(controller);
        drop(store);
        if !converged {
            bail!("seeding did not converge");
        }
        Ok(started.elapsed())
    }
}

// ───────────────────────────── the local API ─────────────────────────────

/// A local Cloudflare API served by this process.
pub struct Api {
    pub api: LocalApi,
    pub base: String,
    pub http: reqwest::Client,
    pub log_file: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A request of the log file, with its completion time.
#[derive(Debug, Clone)]
pub struct TimedRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub ts: SystemTime,
    /// Arrival → answer, in the local API.
    pub duration: Duration,
}

impl Api {
    pub async fn start(log_file: PathBuf) -> Result<Api> {
        let api = LocalApi::open(LocalApiConfig {
            token: DEFAULT_TOKEN.into(),
            account_id: DEFAULT_ACCOUNT_ID.into(),
            data_dir: None,
            faults: Faults::default(),
            request_log: Some(log_file.clone()),
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let api = api.clone();
            async move {
                let _ = api
                    .serve(listener, async move {
                        let _ = rx.await;
                    })
                    .await;
            }
        });
        Ok(Api {
            api,
            base: format!("http://{addr}/client/v4"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()?,
            log_file,
            stop: Some(tx),
            server: Some(server),
        })
    }

    pub fn set_faults(&self, latency: Duration, rate: Option<RateLimitModel>) {
        self.api.set_faults(Faults {
            latency,
            rate_limit: rate,
            ..Faults::default()
        });
    }

    pub fn account(&self) -> String {
        format!("{}/accounts/{DEFAULT_ACCOUNT_ID}", self.base)
    }

    pub fn log(&self) -> Vec<LoggedRequest> {
        self.api.request_log()
    }

    pub fn clear(&self) {
        self.api.clear_request_log();
    }

    /// Byte length of the request-log file (a tail starts there).
    pub fn log_offset(&self) -> u64 {
        std::fs::metadata(&self.log_file).map_or(0, |m| m.len())
    }

    /// Complete lines of the request-log file from `*offset` on; advances `*offset`.
    pub fn tail(&self, offset: &mut u64) -> Vec<TimedRequest> {
        let mut out = Vec::new();
        let Ok(mut f) = std::fs::File::open(&self.log_file) else {
            return out;
        };
        if f.seek(SeekFrom::Start(*offset)).is_err() {
            return out;
        }
        let mut buf = String::new();
        if f.read_to_string(&mut buf).is_err() {
            return out;
        }
        let complete = buf.rfind('\n').map_or(0, |i| i + 1);
        *offset += complete as u64;
        for line in buf[..complete].lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let ts = v["ts"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            if let Some(ts) = ts {
                out.push(TimedRequest {
                    method: v["method"].as_str().unwrap_or("").to_owned(),
                    path: v["path"].as_str().unwrap_or("").to_owned(),
                    status: v["status"].as_u64().unwrap_or(0) as u16,
                    ts,
                    duration: Duration::from_secs_f64(
                        v["duration_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1000.0,
                    ),
                });
            }
        }
        out
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let r = req.bearer_auth(DEFAULT_TOKEN).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("HTTP {status}: {v}");
        }
        Ok(v)
    }

    /// Every namespace `(id, title)`.
    pub async fn namespaces(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for page in 1.. {
            let v = self
                .send(self.http.get(format!(
                    "{}/storage/kv/namespaces?per_page=1000&page={page}",
                    self.account()
                )))
                .await?;
            let items = v["result"].as_array().cloned().unwrap_or_default();
            let n = items.len();
            for i in items {
                out.push((
                    i["id"].as_str().unwrap_or("").to_owned(),
                    i["title"].as_str().unwrap_or("").to_owned(),
                ));
            }
            if n < 1000 {
                break;
            }
        }
        Ok(out)
    }

    pub async fn rename_namespace(&self, id: &str, title: &str) -> Result<()> {
        self.send(
            self.http
                .put(format!("{}/storage/kv/namespaces/{id}", self.account()))
                .json(&json!({ "title": title })),
        )
        .await
        .map(|_| ())
    }

    /// Replaces a script's bindings with one plain-text var, as a dashboard edit would.
    pub async fn patch_settings(&self, script: &str) -> Result<()> {
        let form = reqwest::multipart::Form::new().text(
            "settings",
            json!({"bindings": [{"type": "plain_text", "name": "STAGE", "text": "edited-out-of-band"}]})
                .to_string(),
        );
        self.send(
            self.http
                .patch(format!(
                    "{}/workers/scripts/{script}/settings",
                    self.account()
                ))
                .multipart(form),
        )
        .await
        .map(|_| ())
    }

    /// The naive refresh: one GET per resource (namespace get / script settings get), 8 at a
    /// time like the daemon. Returns (requests, non-2xx answers, wall time).
    pub async fn naive_sweep(&self, urls: &[String]) -> (usize, usize, Duration) {
        use futures_util::stream::{self, StreamExt};
        let started = Instant::now();
        let failed: usize = stream::iter(urls.iter().cloned())
            .map(|u| {
                let http = self.http.clone();
                async move {
                    match http.get(u).bearer_auth(DEFAULT_TOKEN).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            0usize
                        }
                        _ => 1,
                    }
                }
            })
            .buffer_unordered(DAEMON_CONCURRENCY)
            .fold(0, |a, b| async move { a + b })
            .await;
        (urls.len(), failed, started.elapsed())
    }

    /// The URLs of the naive sweep over the whole fleet.
    pub async fn naive_urls(&self, fleet: &Fleet) -> Result<Vec<String>> {
        let prefix = format!("{APP}-");
        let mut urls: Vec<String> = self
            .namespaces()
            .await?
            .into_iter()
            .filter(|(_, t)| t.starts_with(&prefix))
            .map(|(id, _)| format!("{}/storage/kv/namespaces/{id}", self.account()))
            .collect();
        for w in &fleet.workers {
            urls.push(format!(
                "{}/workers/scripts/{}/settings",
                self.account(),
                w.script
            ));
        }
        Ok(urls)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// `METHOD route` with ids replaced, for the request breakdowns.
pub fn route(method: &str, path: &str) -> String {
    let rest = path
        .strip_prefix(&format!("/client/v4/accounts/{DEFAULT_ACCOUNT_ID}"))
        .unwrap_or(path);
    let mut parts: Vec<&str> = rest.split('/').collect();
    for i in 1..parts.len() {
        if matches!(parts[i - 1], "namespaces" | "scripts") {
            parts[i] = "{id}";
        }
    }
    format!("{method} {}", parts.join("/"))
}

/// `n× route, …` for a slice of the request log.
pub fn breakdown(log: &[LoggedRequest]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in log {
        let mut k = route(&r.method, &r.path);
        if r.status != 200 {
            let _ = write!(k, " → {}", r.status);
        }
        *by.entry(k).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn writes(log: &[LoggedRequest]) -> usize {
    log.iter().filter(|r| r.method != "GET").count()
}

// ───────────────────────────── the daemon ─────────────────────────────

/// A `pass done` line of the daemon's log.
#[derive(Debug, Clone)]
pub struct Pass {
    pub at: Instant,
    pub changes: u64,
    pub converged: bool,
    pub took_ms: u64,
}

/// A running `lumierd run`; killed when dropped.
pub struct Daemon {
    child: Child,
    pub pid: u32,
    pub spawned: Instant,
    pub spawned_wall: SystemTime,
    passes: mpsc::UnboundedReceiver<Pass>,
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl Daemon {
    pub fn spawn(bin: &Path, fleet: &Fleet, api: &Api, debounce: Duration) -> Result<Daemon> {
        Daemon::spawn_with(bin, fleet, api, debounce, &[])
    }

    /// [`Daemon::spawn`] with more `lumierd run` arguments.
    pub fn spawn_with(
        bin: &Path,
        fleet: &Fleet,
        api: &Api,
        debounce: Duration,
        extra: &[String],
    ) -> Result<Daemon> {
        let debounce = format!("{}ms", debounce.as_millis());
        // For profiling: BENCH_DAEMON_WRAP="heaptrack -o /tmp/h" runs the daemon under a tool
        // (the pid, RSS and CPU figures are then the wrapper's).
        let wrap: Vec<String> = std::env::var("BENCH_DAEMON_WRAP")
            .map(|w| w.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        let mut cmd = match wrap.split_first() {
            Some((tool, args)) => {
                let mut c = Command::new(tool);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["run", "--manifests"])
            .arg(fleet.manifests())
            .arg("--state")
            .arg(fleet.state())
            .args(["--api-url", &api.base, "--resync", "1h", "--debounce"])
            .arg(&debounce)
            .args(["--log-format", "json", "--log-level", "info"])
            .args(extra)
            .current_dir(&fleet.dir)
            .env("CLOUDFLARE_API_TOKEN", DEFAULT_TOKEN)
            .env("CLOUDFLARE_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for v in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(v);
        }
        let spawned = Instant::now();
        let spawned_wall = SystemTime::now();
        let mut child = cmd.spawn().context("spawn lumierd")?;
        let mut pid = child.id();
        if !wrap.is_empty() {
            // Signals and /proc figures must reach the daemon, not the wrapper.
            pid = find_daemon(&fleet.state(), pid)?;
        }
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, passes) = mpsc::unbounded_channel();
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                if line.contains("pass done") {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    // Fields are nested under `fields`, or flattened into the event.
                    let f = if v["fields"].is_object() {
                        &v["fields"]
                    } else {
                        &v
                    };
                    let _ = tx.send(Pass {
                        at,
                        changes: f["changes"].as_u64().unwrap_or(0),
                        converged: f["converged"].as_bool().unwrap_or(false),
                        took_ms: f["took_ms"].as_u64().unwrap_or(0),
                    });
                }
                let mut l = keep.lock().unwrap_or_else(|p| p.into_inner());
                l.push_back(line);
                if l.len() > 40 {
                    l.pop_front();
                }
            }
        });
        Ok(Daemon {
            child,
            pid,
            spawned,
            spawned_wall,
            passes,
            lines,
        })
    }

    /// The last lines the daemon logged (for error messages).
    pub fn recent_log(&self) -> String {
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the next `pass done`.
    pub async fn next_pass(&mut self, timeout: Duration) -> Result<Pass> {
        // Under a profiler (BENCH_DAEMON_WRAP) everything is slower: BENCH_TIMEOUT_SCALE=10.
        let scale: f64 = std::env::var("BENCH_TIMEOUT_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0);
        let timeout = timeout.mul_f64(scale.max(1.0));
        match tokio::time::timeout(timeout, self.passes.recv()).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => bail!("lumierd exited; last log lines:\n{}", self.recent_log()),
            Err(_) => bail!(
                "no pass finished within {timeout:?}; last log lines:\n{}",
                self.recent_log()
            ),
        }
    }

    /// Waits for a converged pass.
    pub async fn converged(&mut self, timeout: Duration) -> Result<Pass> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self.next_pass(left).await?;
            if p.converged {
                return Ok(p);
            }
        }
    }

    /// Drops pass events already received.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.passes.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    /// Waits until no pass finishes for `quiet`; returns how many did meanwhile.
    pub async fn settle(&mut self, quiet: Duration) -> usize {
        let mut n = 0;
        while let Ok(Some(_)) = tokio::time::timeout(quiet, self.passes.recv()).await {
            n += 1;
        }
        n
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let ok = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {} failed", self.pid);
        }
        Ok(())
    }

    /// A resync now (SIGHUP: reload the manifests and run a pass).
    pub fn hup(&self) -> Result<()> {
        self.signal("-HUP")
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        let _ = self.signal("-TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kb(&self) -> u64 {
        proc_status_kb(self.pid, "VmHWM:")
    }
    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid, "VmRSS:")
    }

    /// utime + stime of the whole process so far.
    pub fn cpu(&self) -> Duration {
        proc_cpu(self.pid)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid of the `lumierd run` on `state` started under a wrapper process.
fn find_daemon(state: &Path, wrapper: u32) -> Result<u32> {
    let state = state.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for e in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_daemon = args.first().is_some_and(|a| a.ends_with("lumierd"))
                && args.iter().any(|a| a == "run")
                && args.contains(&state);
            if pid != wrapper && is_daemon {
                return Ok(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the daemon started under BENCH_DAEMON_WRAP was not found")
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn proc_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

// ───────────────────────────── statistics ─────────────────────────────

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Namespace list pages the client requests for `ns` namespaces (per_page = 1000; it stops
/// at the first page shorter than that).
pub fn ns_pages(ns: usize) -> usize {
    ns / 1000 + 1
}

/// List round trips on a pass's critical path: the namespace pages follow one another, and
/// the script list runs beside them (`tokio::join!` in the controller).
pub fn list_trips(ns: usize) -> u32 {
    u32::try_from(ns_pages(ns)).unwrap_or(u32::MAX)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn log(cfg: &Config, msg: impl AsRef<str>) {
    if cfg.verbose {
        eprintln!("[bench] {}", msg.as_ref());
    }
}

// ───────────────────────────── the run ─────────────────────────────

/// Machine facts for the report header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = proc_meminfo_kb("MemTotal:");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{nproc} CPUs ({cpu}), {:.1} GiB memory",
        mem as f64 / 1024.0 / 1024.0
    )
}

fn proc_meminfo_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the selected scenarios and returns the tables. Everything started is stopped.
pub async fn run(cfg: &Config) -> Result<Report> {
    let mut report = Report {
        header: format!(
            "lumierd fleet benchmark — {}\nscenarios 1–4: N = {} resources ({}); latency {} ms; debounce {} ms\n",
            machine(),
            cfg.shape.n(),
            cfg.shape.describe(),
            cfg.latency.as_millis(),
            cfg.debounce.as_millis()
        ),
        ..Report::default()
    };
    let main_scenarios = cfg.scenarios.iter().any(|s| (1..=4).contains(s));
    let mut main_state = None;
    if main_scenarios {
        main_state = Some(main_fleet(cfg, &mut report).await?);
    }
    if cfg.scenarios.contains(&5) {
        for &n in &cfg.mem_n {
            let reuse = main_state
                .as_ref()
                .filter(|m: &&MainState| m.fleet.shape.n() == n);
            scenario5(cfg, &mut report, n, reuse).await?;
        }
        let ten_k = report.figures.peak_rss_kb.iter().any(|(n, _)| *n >= 10_000);
        if !ten_k {
            for name in [
                "N = 10,000: peak RSS ≤ 40 MB",
                "N = 10,000: idle CPU ≤ 0.5 % of one core",
                "N = 10,000: start-up to ready ≤ 2 s",
            ] {
                report.target(name, "N = 10,000 not in --mem-n".into(), None);
            }
        }
    }
    if let Some(m) = main_state {
        m.api.stop().await;
        drop(m.tmp);
    }
    if cfg.scenarios.contains(&6) {
        scenario6(cfg, &mut report).await?;
    }
    if cfg.scenarios.contains(&7) {
        scenario7(cfg, &mut report).await?;
    }
    Ok(report)
}

struct MainState {
    tmp: tempfile::TempDir,
    fleet: Fleet,
    api: Api,
    /// Peak RSS of the daemon of scenario 1 (cold converge).
    cold_peak_kb: Option<u64>,
    /// Peak RSS of the daemon that ran scenarios 2–4 (start, resyncs, drift, edits).
    peak_kb: u64,
    cold_via_daemon: bool,
}

async fn main_fleet(cfg: &Config, report: &mut Report) -> Result<MainState> {
    let tmp = tempfile::Builder::new()
        .prefix("lumierd-bench-")
        .tempdir()?;
    let fleet = Fleet::write(tmp.path(), cfg.shape)?;
    let api = Api::start(tmp.path().join("requests.jsonl")).await?;
    let n = cfg.shape.n();
    let ns = cfg.shape.namespaces();
    report.figures.list_pages = ns_pages(ns) + 1;
    log(
        cfg,
        format!("fleet of {n} resources in {}", tmp.path().display()),
    );

    let cold_via_daemon = cfg.scenarios.contains(&1);
    let mut cold_peak_kb = None;
    if cold_via_daemon {
        let d = scenario1(cfg, report, &fleet, &api).await?;
        cold_peak_kb = Some(d.peak_rss_kb());
        // A fresh daemon for scenarios 2–4: the cold converge spent most of the window's
        // budget, which would otherwise pace later requests and be measured instead of the
        // controller.
        d.stop(Duration::from_secs(10));
    } else {
        log(
            cfg,
            "seeding the converged state in-process (scenario 1 not selected)",
        );
        let took = fleet.seed(&api).await?;
        log(cfg, format!("seeded in {took:?}"));
    }
    api.set_faults(cfg.latency, None);
    let mut daemon = Daemon::spawn(&cfg.bin, &fleet, &api, cfg.debounce)?;
    daemon.converged(Duration::from_secs(300)).await?;
    daemon.settle(Duration::from_millis(300)).await;

    if cfg.scenarios.contains(&2) {
        scenario2(cfg, report, &fleet, &api, &mut daemon).await?;
    }
    if cfg.scenarios.contains(&4) {
        scenario4(cfg, report, &fleet, &api, &mut daemon).await?;
    }
    if cfg.scenarios.contains(&3) {
        scenario3(cfg, report, &fleet, &api, &mut daemon).await?;
    }
    let peak_kb = daemon.peak_rss_kb();
    daemon.stop(Duration::from_secs(10));
    Ok(MainState {
        tmp,
        fleet,
        api,
        cold_peak_kb,
        peak_kb,
        cold_via_daemon,
    })
}

/// Scenario 1: cold converge through the real daemon, with latency and the rate-limit model.
async fn scenario1(cfg: &Config, report: &mut Report, fleet: &Fleet, api: &Api) -> Result<Daemon> {
    let shape = fleet.shape;
    let n = shape.n();
    let model = cfg.rate_model();
    api.set_faults(cfg.latency, Some(model));
    api.clear();
    let mut daemon = Daemon::spawn_with(&cfg.bin, fleet, api, cfg.debounce, &budget_args(model))?;
    // Each budget overrun waits for the next window.
    let windows = (n + shape.routes() + 2) / allowance();
    let deadline = Duration::from_secs(120) + model.window.mul_f64(windows as f64 * 1.5);
    log(
        cfg,
        format!("scenario 1: cold converge of {n} ({windows} budget windows to wait for)"),
    );
    let started = daemon.spawned;
    let pass = {
        let progress = async {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                log(
                    cfg,
                    format!(
                        "  … {} requests after {:.0} s",
                        api.log().len(),
                        started.elapsed().as_secs_f64()
                    ),
                );
            }
        };
        tokio::select! {
            p = daemon.converged(deadline) => p?,
            () = progress => unreachable!(),
        }
    };
    let wall = pass.at - started;
    let log_all = api.log();
    let first_req = {
        // The first request's completion, from the log file (for the load time).
        let mut off = 0;
        api.tail(&mut off).first().map(|r| r.ts)
    };
    let requests = log_all.len();
    let w = writes(&log_all);
    let limited = log_all.iter().filter(|r| r.status == 429).count();
    let pages = ns_pages(0) + 1;
    let calls = n + shape.routes();
    let bound = calls + pages;
    let allowed = (1.02 * calls as f64 + 5.0).floor() as usize;
    report.figures.cold_requests = Some(requests);
    report.figures.cold_writes = Some(w);
    report.figures.cold_429 = Some(limited);

    // Lower bound on the wall time: the list calls, then N creates `concurrency` at a time,
    // plus one whole window per budget overrun.
    let lat = cfg.latency.as_secs_f64();
    let wall_bound = cold_wall_bound(cfg, calls, bound, model);

    let mut t = Table::new(format!(
        "1. Cold converge of N = {n} (latency {} ms, rate-limit model {} req / {:.0} s = real 1200/300 s time-compressed ×{})",
        cfg.latency.as_millis(),
        model.requests,
        model.window.as_secs_f64(),
        cfg.rl_scale
    ));
    t.row(
        "API requests",
        requests.to_string(),
        format!(
            "{bound} (N creates + {} routes and their URL + {pages} list pages)",
            shape.routes()
        ),
        ratio(requests as f64, bound as f64),
    );
    t.checked(format!("≤ 1.02·that+5 = {allowed}"), requests <= allowed);
    let write_bound = n + shape.scripts();
    t.row(
        "writes",
        w.to_string(),
        format!("{write_bound} (N creates + 1 route per worker)"),
        ratio(w as f64, write_bound as f64),
    );
    t.row("429 answers", limited.to_string(), "0".into(), None);
    t.checked("= 0".into(), limited == 0);
    t.row(
        "wall time, spawn → converged pass",
        secs(wall),
        format!(
            "{} (lists + ⌈calls/{DAEMON_CONCURRENCY}⌉ × latency)",
            secs(Duration::from_secs_f64(wall_bound))
        ),
        ratio(wall.as_secs_f64(), wall_bound),
    );
    let wall_ok = wall.as_secs_f64() <= 3.0 * wall_bound;
    t.checked("≤ 3 × lower bound".into(), wall_ok);
    if let Some(first) = first_req {
        let load = first
            .duration_since(daemon.spawned_wall)
            .unwrap_or_default();
        t.row(
            "  of which spawn → first request done",
            secs(load),
            secs(cfg.latency),
            ratio(load.as_secs_f64(), lat),
        );
    }
    t.note(format!("requests: {}", breakdown(&log_all)));
    t.note(format!(
        "lumierd spends up to the budget less its reserve ({} of {CF_BUDGET} per window, --api-reserve {RESERVE_PERCENT}%) at full concurrency ({DAEMON_CONCURRENCY}), following the API's `Ratelimit` headers",
        allowance()
    ));

    // Naive baseline: create + read back one GET per resource.
    api.set_faults(cfg.latency, None);
    let urls = api.naive_urls(fleet).await?;
    api.clear();
    let (gets, failed, took) = api.naive_sweep(&urls).await;
    let naive = w + gets;
    t.row(
        "naive (Terraform-style): creates + 1 GET per resource",
        naive.to_string(),
        bound.to_string(),
        ratio(naive as f64, bound as f64),
    );
    t.row(
        "  naive GET sweep alone, measured wall time",
        secs(took),
        secs(Duration::from_secs_f64(
            lat * gets.div_ceil(DAEMON_CONCURRENCY) as f64,
        )),
        ratio(
            took.as_secs_f64(),
            lat * gets.div_ceil(DAEMON_CONCURRENCY) as f64,
        ),
    );
    if failed > 0 {
        t.note(format!("naive sweep: {failed} requests failed"));
    }
    t.note(format!(
        "Cloudflare budget per 5 min: lumierd cold converge {:.0} %, naive {:.0} % (> 100 % = 429s and a 5-minute block)",
        requests as f64 * 100.0 / CF_BUDGET as f64,
        naive as f64 * 100.0 / CF_BUDGET as f64
    ));
    report.tables.push(t);
    report.target(
        "cold converge: requests ≤ 1.02·(N + routes) + 5",
        format!("{requests} (target ≤ {allowed})"),
        Some(requests <= allowed),
    );
    report.target(
        "cold converge: no 429 under the rate-limit model",
        format!("{limited} × 429"),
        Some(limited == 0),
    );
    report.target(
        &format!("cold converge of N = {n}: wall time ≤ 3 × its lower bound"),
        format!(
            "{} vs {} (ratio {:.2})",
            secs(wall),
            secs(Duration::from_secs_f64(wall_bound)),
            wall.as_secs_f64() / wall_bound
        ),
        Some(wall_ok),
    );
    Ok(daemon)
}

/// The lower bound of a cold converge's wall time: the list calls, then N creates
/// `concurrency` at a time; past the budget less the reserve, one whole window per overrun
/// (the earlier windows hold the earlier waves) and the waves of the last window.
fn cold_wall_bound(cfg: &Config, n: usize, requests: usize, model: RateLimitModel) -> f64 {
    let lat = cfg.latency.as_secs_f64();
    let windows = requests.saturating_sub(1) / allowance();
    if windows == 0 {
        let waves = n.div_ceil(DAEMON_CONCURRENCY);
        return lat * (list_trips(0) as usize + waves) as f64;
    }
    let last = requests - windows * allowance();
    windows as f64 * model.window.as_secs_f64() + lat * last.div_ceil(DAEMON_CONCURRENCY) as f64
}

/// A second client of the same account (another CI job, the dashboard): it spends `share`
/// of the budget in each of its windows as fast as it can (8 at a time), waiting out a 429's
/// `Retry-After`, until `stop`. Its requests are `GET …/tokens/verify` (lumierd sends none).
/// Returns (requests answered, 429s).
async fn competitor(
    api_base: String,
    model: RateLimitModel,
    share: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let url = format!("{api_base}/accounts/{DEFAULT_ACCOUNT_ID}/tokens/verify");
    let per_window = (f64::from(model.requests) * share) as usize;
    let sent = AtomicUsize::new(0);
    let limited = AtomicUsize::new(0);
    while !stop.load(Ordering::SeqCst) {
        let window_start = Instant::now();
        futures_util::stream::iter(0..per_window)
            .for_each_concurrent(DAEMON_CONCURRENCY, |_| async {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(r) = http.get(&url).bearer_auth(DEFAULT_TOKEN).send().await else {
                        return;
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    if r.status().as_u16() != 429 {
                        return;
                    }
                    limited.fetch_add(1, Ordering::SeqCst);
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            })
            .await;
        let next = window_start + model.window;
        while Instant::now() < next && !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (sent.into_inner(), limited.into_inner())
}

/// Scenario 6: the cold converge of scenario 1 on a fresh fleet and API, while a second client
/// of the same account spends 50 % of the budget.
async fn scenario6(cfg: &Config, report: &mut Report) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lumierd-bench-shared-")
        .tempdir()?;
    let fleet = Fleet::write(tmp.path(), cfg.shape)?;
    let api = Api::start(tmp.path().join("requests.jsonl")).await?;
    let n = fleet.shape.n();
    let model = cfg.rate_model();
    api.set_faults(cfg.latency, Some(model));
    api.clear();
    log(
        cfg,
        format!("scenario 6: cold converge of {n} beside a client spending 50 % of the budget"),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = tokio::spawn(competitor(api.base.clone(), model, 0.5, Arc::clone(&stop)));
    let mut daemon = Daemon::spawn_with(&cfg.bin, &fleet, &api, cfg.debounce, &budget_args(model))?;
    let deadline = Duration::from_secs(120) + model.window.mul_f64(3.0);
    let pass = daemon.converged(deadline).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (other_sent, other_429) = other.await.unwrap_or((0, 0));
    let pass = pass?;
    let wall = pass.at - daemon.spawned;
    daemon.stop(Duration::from_secs(10));
    let log_all = api.log();
    let ours: Vec<&LoggedRequest> = log_all
        .iter()
        .filter(|r| !r.path.ends_with("/tokens/verify"))
        .collect();
    let limited = ours.iter().filter(|r| r.status == 429).count();
    let calls = n + fleet.shape.routes();
    let bound = calls + ns_pages(0) + 1;
    let wall_bound = cold_wall_bound(cfg, calls, bound, model);
    report.figures.shared_requests = Some(ours.len());
    report.figures.shared_429 = Some(limited);
    let mut t = Table::new(format!(
        "6. Cold converge of N = {n} while a second client spends 50 % of the budget (latency {} ms, model {} req / {:.0} s)",
        cfg.latency.as_millis(),
        model.requests,
        model.window.as_secs_f64()
    ));
    t.row(
        "lumierd: API requests",
        ours.len().to_string(),
        bound.to_string(),
        ratio(ours.len() as f64, bound as f64),
    );
    t.row(
        "lumierd: 429 answers",
        limited.to_string(),
        "0".into(),
        None,
    );
    t.checked("= 0".into(), limited == 0);
    t.row(
        "lumierd: wall time, spawn → converged pass",
        secs(wall),
        format!(
            "{} (alone; the other client's share may cost a window)",
            secs(Duration::from_secs_f64(wall_bound))
        ),
        ratio(wall.as_secs_f64(), wall_bound),
    );
    t.row(
        "second client: requests (429s)",
        format!("{other_sent} ({other_429})"),
        "–".into(),
        None,
    );
    t.note(format!(
        "the second client sends {} `GET /tokens/verify` per window of its own, 8 at a time from lumierd's start, and waits out a 429's Retry-After",
        CF_BUDGET / 2
    ));
    report.tables.push(t);
    report.target(
        "cold converge beside a client spending 50 % of the budget: no 429 for lumierd",
        format!("{limited} × 429; wall time {}", secs(wall)),
        Some(limited == 0),
    );
    api.stop().await;
    drop(tmp);
    Ok(())
}

/// Scenario 7: a cold converge of `windows_n` resources, more than one budget window: how much
/// of each window of the API's model lumierd spends, never more than the budget less the
/// reserve.
async fn scenario7(cfg: &Config, report: &mut Report) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("lumierd-bench-windows-")
        .tempdir()?;
    let shape = Shape::for_n(
        cfg.windows_n,
        cfg.shape.kv,
        cfg.shape.workers,
        cfg.shape.binds,
    );
    let fleet = Fleet::write(tmp.path(), shape)?;
    let api = Api::start(tmp.path().join("requests.jsonl")).await?;
    let n = shape.n();
    let model = model(cfg.windows_rl_scale);
    api.set_faults(cfg.latency, Some(model));
    api.clear();
    // Cold: the namespace list is one (empty) page.
    let pages = ns_pages(0) + 1;
    let calls = n + shape.routes();
    let bound = calls + pages;
    let windows = (bound - 1) / allowance();
    log(
        cfg,
        format!(
            "scenario 7: cold converge of {n}, {windows} budget windows of {:.0} s to wait for",
            model.window.as_secs_f64()
        ),
    );
    let mut daemon = Daemon::spawn_with(&cfg.bin, &fleet, &api, cfg.debounce, &budget_args(model))?;
    let deadline = Duration::from_secs(180) + model.window.mul_f64(windows as f64 * 1.5);
    let pass = daemon.converged(deadline).await?;
    let wall = pass.at - daemon.spawned;
    daemon.stop(Duration::from_secs(10));
    let mut off = 0;
    let timed = api.tail(&mut off);
    // The model's fixed windows start at the first counted request; a request is counted
    // when its latency is over (its answer time less its duration plus the latency).
    let checked: Vec<(SystemTime, u16)> = timed
        .iter()
        .map(|r| (r.ts - r.duration + cfg.latency, r.status))
        .collect();
    let limited = checked.iter().filter(|(_, s)| *s == 429).count();
    let start = checked
        .iter()
        .filter(|(_, s)| *s != 429)
        .map(|(t, _)| *t)
        .min();
    let mut per_window: Vec<usize> = Vec::new();
    if let Some(start) = start {
        for (t, status) in &checked {
            if *status == 429 {
                continue;
            }
            let i = (t.duration_since(start).unwrap_or_default().as_secs_f64()
                / model.window.as_secs_f64()) as usize;
            if per_window.len() <= i {
                per_window.resize(i + 1, 0);
            }
            per_window[i] += 1;
        }
    }
    report.figures.window_requests = per_window.clone();
    report.figures.windows_429 = Some(limited);
    let allowed = allowance();
    let max = per_window.iter().copied().max().unwrap_or(0);
    let full = per_window.len().saturating_sub(1);
    let min_full = per_window[..full].iter().copied().min().unwrap_or(allowed);
    let wall_bound = cold_wall_bound(cfg, calls, bound, model);
    let mut t = Table::new(format!(
        "7. Cold converge of N = {n} over several budget windows (latency {} ms, model {} req / {:.0} s = real ×{})",
        cfg.latency.as_millis(),
        model.requests,
        model.window.as_secs_f64(),
        cfg.windows_rl_scale
    ));
    t.row(
        "API requests",
        timed.len().to_string(),
        format!(
            "{bound} (N creates + {} routes and their URL + {pages} list pages)",
            shape.routes()
        ),
        ratio(timed.len() as f64, bound as f64),
    );
    t.row("429 answers", limited.to_string(), "0".into(), None);
    t.checked("= 0".into(), limited == 0);
    t.row(
        "windows of the API's model used",
        per_window.len().to_string(),
        (windows + 1).to_string(),
        ratio(per_window.len() as f64, (windows + 1) as f64),
    );
    t.row(
        "requests per window, max",
        max.to_string(),
        format!("{allowed} (budget less the reserve)"),
        ratio(max as f64, allowed as f64),
    );
    t.checked(format!("≤ {allowed}"), max <= allowed);
    t.row(
        "requests per full window (all but the last), min",
        if full > 0 {
            min_full.to_string()
        } else {
            "–".into()
        },
        allowed.to_string(),
        (full > 0).then(|| min_full as f64 / allowed as f64),
    );
    t.row(
        "wall time, spawn → converged pass",
        secs(wall),
        format!(
            "{} ({windows} windows + the last one's waves)",
            secs(Duration::from_secs_f64(wall_bound))
        ),
        ratio(wall.as_secs_f64(), wall_bound),
    );
    t.note(format!(
        "requests per window of the model: {}",
        per_window
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.tables.push(t);
    report.target(
        &format!("N = {n} cold over several windows: each window ≤ budget less reserve, 0 × 429"),
        format!("per window {:?} (≤ {allowed}), {limited} × 429", per_window),
        Some(max <= allowed && limited == 0),
    );
    api.stop().await;
    drop(tmp);
    Ok(())
}

/// Scenario 2: resyncs of the unchanged fleet, and the naive refresh beside them.
async fn scenario2(
    cfg: &Config,
    report: &mut Report,
    fleet: &Fleet,
    api: &Api,
    daemon: &mut Daemon,
) -> Result<()> {
    let n = fleet.shape.n();
    let pages = ns_pages(fleet.shape.namespaces()) + 1;
    let rounds = 3;
    log(
        cfg,
        format!("scenario 2: {rounds} resyncs of {n} unchanged resources"),
    );
    let mut reqs = Vec::new();
    let mut wr = Vec::new();
    let mut walls = Vec::new();
    let mut cpu = Vec::new();
    let mut last = Vec::new();
    for _ in 0..rounds {
        daemon.drain();
        api.clear();
        let c0 = daemon.cpu();
        let t0 = Instant::now();
        daemon.hup()?;
        let p = daemon.next_pass(Duration::from_secs(120)).await?;
        walls.push(p.at - t0);
        daemon.settle(Duration::from_millis(200)).await;
        cpu.push(daemon.cpu().saturating_sub(c0));
        last = api.log();
        reqs.push(last.len());
        wr.push(writes(&last));
    }
    report.figures.resync_requests = reqs.clone();
    report.figures.resync_writes = wr.clone();
    let max_r = *reqs.iter().max().unwrap_or(&0);
    let max_w = *wr.iter().max().unwrap_or(&0);
    let mut t = Table::new(format!(
        "2. Resync of N = {n} unchanged resources ({rounds} resyncs via SIGHUP, latency {} ms)",
        cfg.latency.as_millis()
    ));
    t.row(
        "API requests per resync (max)",
        max_r.to_string(),
        format!("{pages} (list pages)"),
        ratio(max_r as f64, pages as f64),
    );
    let check_n = n == 1000;
    if check_n {
        t.checked("≤ 5".into(), max_r <= 5);
    }
    t.row(
        "writes per resync (max)",
        max_w.to_string(),
        "0".into(),
        None,
    );
    if check_n {
        t.checked("= 0".into(), max_w == 0);
    }
    let wall = walls.iter().max().copied().unwrap_or_default();
    let wall_bound = cfg.latency * list_trips(fleet.shape.namespaces());
    t.row(
        "wall time per resync, SIGHUP → pass done (max)",
        secs(wall),
        secs(wall_bound),
        ratio(wall.as_secs_f64(), wall_bound.as_secs_f64()),
    );
    let cpu_max = cpu.iter().max().copied().unwrap_or_default();
    t.row(
        "daemon CPU per resync (max)",
        secs(cpu_max),
        "–".into(),
        None,
    );
    t.note(format!("requests of the last resync: {}", breakdown(&last)));
    t.note(format!(
        "CPU per resync amortised over the default 5 min resync: {:.3} % of one core",
        cpu_max.as_secs_f64() / 300.0 * 100.0
    ));

    let urls = api.naive_urls(fleet).await?;
    api.clear();
    let (gets, failed, took) = api.naive_sweep(&urls).await;
    report.figures.naive_resync_requests = Some(gets);
    t.row(
        "naive refresh: 1 GET per resource",
        gets.to_string(),
        pages.to_string(),
        ratio(gets as f64, pages as f64),
    );
    t.row(
        "  naive refresh wall time (8 at a time)",
        secs(took),
        secs(wall_bound),
        ratio(took.as_secs_f64(), wall_bound.as_secs_f64()),
    );
    if failed > 0 {
        t.note(format!("naive sweep: {failed} requests failed"));
    }
    t.note(format!(
        "Cloudflare budget per 5 min resync: lumierd {:.2} %, naive {:.1} %",
        max_r as f64 * 100.0 / CF_BUDGET as f64,
        gets as f64 * 100.0 / CF_BUDGET as f64
    ));
    report.tables.push(t);
    if check_n {
        report.target(
            "resync of unchanged N = 1,000: ≤ 5 requests, 0 writes",
            format!("{max_r} requests, {max_w} writes"),
            Some(max_r <= 5 && max_w == 0),
        );
    }
    Ok(())
}

/// Scenario 3: one-file edits → the upload of that script completes.
async fn scenario3(
    cfg: &Config,
    report: &mut Report,
    fleet: &Fleet,
    api: &Api,
    daemon: &mut Daemon,
) -> Result<()> {
    let n = fleet.shape.n();
    let mut t = Table::new(format!(
        "3. Edit one worker's source → its upload completes, N = {n} ({} edits per row, --debounce {} ms)",
        cfg.edits,
        cfg.debounce.as_millis()
    ));
    let mut version = 1;
    let mut no_latency_p50 = None;
    for latency in [Duration::ZERO, cfg.latency] {
        api.set_faults(latency, None);
        log(
            cfg,
            format!(
                "scenario 3: {} edits, latency {} ms",
                cfg.edits,
                latency.as_millis()
            ),
        );
        let mut ms = Vec::new();
        let mut reqs = Vec::new();
        let mut passes_ms = Vec::new();
        for e in 0..cfg.edits {
            let w = &fleet.workers[(e * 7919 + version) % fleet.workers.len()];
            daemon.drain();
            api.clear();
            let mut off = api.log_offset();
            let upload = format!(
                "/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/workers/scripts/{}",
                w.script
            );
            let t0 = SystemTime::now();
            std::fs::write(&w.file, worker_source(&w.script, version))?;
            version += 1;
            let deadline = Instant::now() + Duration::from_secs(60);
            let done = loop {
                if let Some(r) = api
                    .tail(&mut off)
                    .into_iter()
                    .find(|r| r.method == "PUT" && r.path == upload)
                {
                    break r;
                }
                if Instant::now() > deadline {
                    bail!(
                        "edit of {} not uploaded within 60 s; log:\n{}",
                        w.script,
                        daemon.recent_log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            if done.status != 200 {
                bail!("upload of {} answered {}", w.script, done.status);
            }
            let took = done.ts.duration_since(t0).unwrap_or_default();
            ms.push(took.as_secs_f64() * 1000.0);
            let p = daemon.next_pass(Duration::from_secs(60)).await?;
            passes_ms.push(p.took_ms as f64);
            // A late second file event may cause one more (list-only) pass: let it finish.
            daemon
                .settle(cfg.debounce + Duration::from_millis(150))
                .await;
            let l = api.log();
            reqs.push(l.len());
            report
                .figures
                .edit_uploads
                .push(l.iter().filter(|r| r.method == "PUT").count());
        }
        report.figures.edit_ms.extend(ms.iter().copied());
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let p50 = percentile(&sorted, 50.0);
        let p99 = percentile(&sorted, 99.0);
        // Leading edge: the first change after a quiet period starts the pass at once.
        let bound = latency.as_secs_f64() * 1000.0;
        let label = format!("latency {} ms", latency.as_millis());
        t.row(
            &format!("edit → uploaded, p50 ({label})"),
            format!("{p50:.0} ms"),
            format!("{bound:.0} ms (1 upload)"),
            ratio(p50, bound),
        );
        if latency.is_zero() {
            t.checked("≤ 40 ms".into(), p50 <= 40.0);
        }
        t.row(
            &format!("edit → uploaded, p99 ({label})"),
            format!("{p99:.0} ms"),
            format!("{bound:.0} ms"),
            ratio(p99, bound),
        );
        if latency.is_zero() {
            let allowed = cfg.debounce.as_secs_f64() * 1000.0 + 40.0;
            t.checked(format!("≤ debounce + 40 = {allowed:.0} ms"), p99 <= allowed);
            no_latency_p50 = Some((p50, p99, allowed));
        }
        let mut pm = passes_ms.clone();
        pm.sort_by(f64::total_cmp);
        t.row(
            &format!("  the pass alone (took_ms), p50 ({label})"),
            format!("{:.0} ms", percentile(&pm, 50.0)),
            format!("{:.0} ms", latency.as_secs_f64() * 1000.0),
            None,
        );
        let max_req = reqs.iter().max().copied().unwrap_or(0);
        t.row(
            &format!("  requests per edit, max ({label})"),
            max_req.to_string(),
            format!("1 (+{} list pages)", ns_pages(fleet.shape.namespaces()) + 1),
            ratio(max_req as f64, 1.0),
        );
    }
    t.note("t0 = just before the file write; done = `ts` of the script's PUT in the local API's request-log file (completion time)");
    report.tables.push(t);
    if let Some((p50, p99, allowed)) = no_latency_p50 {
        report.target(
            &format!("edit → uploaded, no injected latency (N = {n}): p50 ≤ 40 ms"),
            format!("p50 {p50:.0} ms"),
            Some(p50 <= 40.0),
        );
        report.target(
            &format!("edit → uploaded, no injected latency (N = {n}): p99 ≤ debounce + 40 ms"),
            format!("p99 {p99:.0} ms (target ≤ {allowed:.0} ms)"),
            Some(p99 <= allowed),
        );
    }
    api.set_faults(cfg.latency, None);
    Ok(())
}

/// Scenario 4: 1 % of N changed out of band; one resync finds and fixes them.
async fn scenario4(
    cfg: &Config,
    report: &mut Report,
    fleet: &Fleet,
    api: &Api,
    daemon: &mut Daemon,
) -> Result<()> {
    let n = fleet.shape.n();
    let d = ((n as f64 * cfg.drift_pct / 100.0).round() as usize).max(2);
    let d_ns = (d / 2).min(fleet.shape.namespaces());
    let d_w = (d - d_ns).min(fleet.workers.len());
    log(
        cfg,
        format!("scenario 4: {d_ns} namespaces renamed, {d_w} workers' settings patched"),
    );
    api.set_faults(Duration::ZERO, None);
    let prefix = format!("{APP}-");
    let ns: Vec<(String, String)> = api
        .namespaces()
        .await?
        .into_iter()
        .filter(|(_, t)| t.starts_with(&prefix))
        .collect();
    let step = (ns.len() / d_ns.max(1)).max(1);
    for (id, title) in ns.iter().step_by(step).take(d_ns) {
        api.rename_namespace(id, &format!("{title}-renamed"))
            .await?;
    }
    let wstep = (fleet.workers.len() / d_w.max(1)).max(1);
    for w in fleet.workers.iter().skip(1).step_by(wstep).take(d_w) {
        api.patch_settings(&w.script).await?;
    }
    api.set_faults(cfg.latency, None);
    daemon.drain();
    api.clear();
    let t0 = Instant::now();
    daemon.hup()?;
    let p = daemon.next_pass(Duration::from_secs(120)).await?;
    let wall = p.at - t0;
    daemon.settle(Duration::from_millis(200)).await;
    let l = api.log();
    let requests = l.len();
    let w = writes(&l);
    let pages = ns_pages(fleet.shape.namespaces()) + 1;
    // A drifted worker: its settings and its route read (the list shows it changed), then
    // put back: the upload and its route (a correction re-sends the route, whatever
    // drifted), plus one read of the account's subdomain for the pass.
    let route_calls = 2 * d_w + usize::from(d_w > 0);
    let bound = pages + d_ns + d_w + d_w + route_calls;
    let left = api
        .namespaces()
        .await?
        .iter()
        .filter(|(_, t)| t.ends_with("-renamed"))
        .count();
    report.figures.drift_requests = Some(requests);
    report.figures.drift_bound = Some(bound);
    report.figures.drift_writes = Some(w);
    report.figures.drift_changed = Some(d_ns + d_w);
    report.figures.drift_left = Some(left);
    let mut t = Table::new(format!(
        "4. Drift sweep: {} of N = {n} changed out of band ({d_ns} namespaces renamed, {d_w} workers' bindings patched), one resync, latency {} ms",
        d_ns + d_w,
        cfg.latency.as_millis()
    ));
    t.row(
        "API requests to find and fix",
        requests.to_string(),
        format!(
            "{bound} ({pages} list pages + {} fixes + {d_w} settings reads + {route_calls} route calls)",
            d_ns + d_w
        ),
        ratio(requests as f64, bound as f64),
    );
    t.row(
        "writes",
        w.to_string(),
        (d_ns + 2 * d_w).to_string(),
        ratio(w as f64, (d_ns + 2 * d_w) as f64),
    );
    let wall_bound = cfg.latency * (list_trips(fleet.shape.namespaces()) + 2);
    t.row(
        "wall time, SIGHUP → pass done",
        secs(wall),
        format!("{} (lists, read, fix)", secs(wall_bound)),
        ratio(wall.as_secs_f64(), wall_bound.as_secs_f64()),
    );
    t.row(
        "renamed namespaces left after the pass",
        left.to_string(),
        "0".into(),
        None,
    );
    let naive = n + d_ns + d_w;
    t.row(
        "naive (1 GET per resource + fixes)",
        naive.to_string(),
        bound.to_string(),
        ratio(naive as f64, bound as f64),
    );
    t.note(format!("requests: {}", breakdown(&l)));
    report.tables.push(t);
    Ok(())
}

/// Scenario 5: peak RSS, idle CPU, start-up to ready with the state already in sled.
async fn scenario5(
    cfg: &Config,
    report: &mut Report,
    n: usize,
    reuse: Option<&MainState>,
) -> Result<()> {
    let shape = Shape::for_n(n, cfg.shape.kv, cfg.shape.workers, cfg.shape.binds);
    let n = shape.n();
    let mut owned = None;
    let (fleet, api, prior_peak, how) = match reuse {
        Some(m) => (
            &m.fleet,
            &m.api,
            Some((m.cold_peak_kb, m.peak_kb)),
            if m.cold_via_daemon {
                "state from scenario 1's daemon cold converge"
            } else {
                "state seeded in-process"
            },
        ),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("lumierd-bench-")
                .tempdir()?;
            log(
                cfg,
                format!(
                    "scenario 5: writing and seeding a fleet of {n} in {}",
                    tmp.path().display()
                ),
            );
            let fleet = Fleet::write(tmp.path(), shape)?;
            let api = Api::start(tmp.path().join("requests.jsonl")).await?;
            let took = fleet.seed(&api).await?;
            log(cfg, format!("  seeded in {took:?}"));
            owned = Some((tmp, fleet, api));
            let o = owned.as_ref().map(|(_, f, a)| (f, a));
            let (f, a) = o.context("seeded fleet")?;
            (
                f,
                a,
                None,
                "state seeded in-process (library Controller::pass, unlimited client)",
            )
        }
    };
    api.set_faults(cfg.latency, None);
    api.clear();
    log(
        cfg,
        format!("scenario 5: N = {n}: start-up on the converged state"),
    );
    let mut daemon = Daemon::spawn(&cfg.bin, fleet, api, cfg.debounce)?;
    let sampler = memory::Sampler::start(daemon.pid);
    let first_req = async {
        loop {
            if !api.log().is_empty() {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(120), first_req)
        .await
        .map_err(|_| anyhow!("no request within 120 s; log:\n{}", daemon.recent_log()))?;
    let pass = daemon.next_pass(Duration::from_secs(120)).await?;
    let ready = pass.at - daemon.spawned;
    let to_first = first - daemon.spawned;
    let start_log = api.log();
    report.figures.startup_requests.push((n, start_log.len()));
    let rss_after_start = daemon.peak_rss_kb();
    daemon.settle(Duration::from_millis(300)).await;
    // Idle.
    let c0 = daemon.cpu();
    let w0 = Instant::now();
    tokio::time::sleep(cfg.idle).await;
    let idle_cpu = daemon.cpu().saturating_sub(c0);
    let window = w0.elapsed();
    let idle_pct = idle_cpu.as_secs_f64() / window.as_secs_f64() * 100.0;
    // One resync, for its CPU and memory.
    api.clear();
    let c1 = daemon.cpu();
    daemon.hup()?;
    daemon.next_pass(Duration::from_secs(120)).await?;
    daemon.settle(Duration::from_millis(200)).await;
    let resync_cpu = daemon.cpu().saturating_sub(c1);
    let peak = daemon.peak_rss_kb();
    let rss_now = daemon.rss_kb();
    let split_now = memory::now(daemon.pid);
    let split_peak = sampler.stop();
    daemon.stop(Duration::from_secs(10));
    report.figures.peak_rss_kb.push((n, peak));

    let pages = ns_pages(shape.namespaces()) + 1;
    let mut t = Table::new(format!(
        "5. Memory and CPU, N = {n} ({}; {how}; latency {} ms)",
        shape.describe(),
        cfg.latency.as_millis()
    ));
    let ten_k = n >= 10_000;
    if let Some((cold, kb)) = prior_peak {
        if let Some(cold) = cold {
            t.row(
                "peak RSS (VmHWM), daemon of scenario 1 (cold converge)",
                mib(cold),
                "–".into(),
                None,
            );
        }
        t.row(
            "peak RSS (VmHWM), daemon of scenarios 2–4 (resyncs, drift, edits)",
            mib(kb),
            "–".into(),
            None,
        );
    }
    t.row(
        "peak RSS (VmHWM), restarted daemon: start + first pass + idle + 1 resync",
        mib(peak),
        "–".into(),
        None,
    );
    if ten_k {
        t.checked("≤ 40 MB".into(), peak * 1024 <= 40_000_000);
    }
    t.row(
        "  VmHWM after the first pass / VmRSS at the end",
        format!("{} / {}", mib(rss_after_start), mib(rss_now)),
        "–".into(),
        None,
    );
    t.row(
        "  of which anonymous / file-backed (code): peak sampled / at the end",
        format!(
            "{} / {}; {} / {}",
            mib(split_peak.anon_kb),
            mib(split_peak.file_kb),
            mib(split_now.anon_kb),
            mib(split_now.file_kb)
        ),
        "–".into(),
        None,
    );
    t.row(
        &format!("idle CPU over {:.0} s (utime+stime)", window.as_secs_f64()),
        format!("{idle_pct:.3} % ({} ms)", idle_cpu.as_millis()),
        "0 %".into(),
        None,
    );
    if ten_k {
        t.checked("≤ 0.5 %".into(), idle_pct <= 0.5);
    }
    let bound = cfg.latency * list_trips(shape.namespaces());
    t.row(
        "start-up: spawn → first pass done (ready)",
        secs(ready),
        format!(
            "{} ({pages} list calls, {} in sequence)",
            secs(bound),
            list_trips(shape.namespaces())
        ),
        ratio(ready.as_secs_f64(), bound.as_secs_f64()),
    );
    if ten_k {
        t.checked("≤ 2 s".into(), ready <= Duration::from_secs(2));
    }
    t.row(
        "  spawn → first API request answered",
        secs(to_first),
        secs(cfg.latency),
        ratio(to_first.as_secs_f64(), cfg.latency.as_secs_f64()),
    );
    t.row(
        "  requests of the start-up pass",
        start_log.len().to_string(),
        pages.to_string(),
        ratio(start_log.len() as f64, pages as f64),
    );
    t.row("CPU of one resync pass", secs(resync_cpu), "–".into(), None);
    t.note("ready = the daemon logs `pass done` for its first pass (read from its stderr, `--log-format json`); both times are from spawn, so they include exec, manifest load and worker builds");
    t.note(format!(
        "idle window {} (set --idle-secs / BENCH_IDLE_SECS); no resync falls in it (--resync 1h)",
        secs(window)
    ));
    report.tables.push(t);
    if ten_k {
        report.target(
            "N = 10,000: peak RSS ≤ 40 MB",
            mib(peak),
            Some(peak * 1024 <= 40_000_000),
        );
        report.target(
            "N = 10,000: idle CPU ≤ 0.5 % of one core",
            format!("{idle_pct:.3} % over {}", secs(window)),
            Some(idle_pct <= 0.5),
        );
        report.target(
            "N = 10,000: start-up to ready ≤ 2 s",
            secs(ready),
            Some(ready <= Duration::from_secs(2)),
        );
    }
    if let Some((tmp, _fleet, api)) = owned {
        api.stop().await;
        drop(tmp);
    }
    Ok(())
}
