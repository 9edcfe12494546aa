//! The integration tests' kit: the one way to start the local API, to run or spawn the real
//! `lumierd` binary and read what it prints, and to wait for something to become true.
//!
//! - [`Api::start`] serves the real [`LocalApi`] on `127.0.0.1:0` (stopped when dropped, or
//!   checked by [`Api::stop`]), with its base URL, a [`Client`] for it and its request log.
//! - [`Daemon::spawn`] runs the binary with stdout and stderr read line by line on threads into
//!   a buffer that [`Daemon::wait_for_line`] waits on; it is killed when dropped.
//! - [`eventually`] polls a probe until it reports success and panics with what was awaited and
//!   the last observation when the time is up. Tests never sleep a fixed time to wait for
//!   something: they wait, bounded, for an observable.

use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use lumierd::cloudflare::{Client, ClientConfig, RateLimit};
use lumierd::local_api::{
    Faults, LocalApi, LocalApiConfig, LocalApiError, LoggedRequest, DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The `lumierd` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lumierd"))
}

/// The repository root (where `examples/` lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// The first pause between two polls; it doubles up to [`POLL_MAX`], so a quick condition is
/// seen within milliseconds and a slow one does not burn the (shared) CPU.
const POLL_FIRST: Duration = Duration::from_millis(10);
/// The longest pause between two polls.
const POLL_MAX: Duration = Duration::from_millis(200);

/// Polls `probe` until it returns `Ok`, for at most `within`; returns the value.
///
/// `Err` carries the current observation; on timeout the test panics with `what` and the last
/// observation. The probe runs at least once, and once more at the deadline.
pub async fn eventually<T, O, F, Fut>(within: Duration, what: &str, probe: F) -> T
where
    O: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, O>>,
{
    poll(POLL_MAX, within, what, probe).await
}

/// [`eventually`] with pauses of at most `every` between polls, for a condition that must be
/// caught soon after it holds (before it moves on).
pub async fn eventually_every<T, O, F, Fut>(
    every: Duration,
    within: Duration,
    what: &str,
    probe: F,
) -> T
where
    O: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, O>>,
{
    poll(every, within, what, probe).await
}

async fn poll<T, O, F, Fut>(max_pause: Duration, within: Duration, what: &str, mut probe: F) -> T
where
    O: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, O>>,
{
    let deadline = Instant::now() + within;
    let mut pause = POLL_FIRST.min(max_pause);
    loop {
        let last = match probe().await {
            Ok(done) => return done,
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting for {what}; last observation: {last:#?}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(max_pause);
    }
}

/// [`eventually`] for a blocking probe, outside an async context (or inside `block_in_place`).
pub fn eventually_blocking<T, O, F>(within: Duration, what: &str, mut probe: F) -> T
where
    O: Debug,
    F: FnMut() -> Result<T, O>,
{
    let deadline = Instant::now() + within;
    let mut pause = POLL_FIRST;
    loop {
        let last = match probe() {
            Ok(done) => return done,
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {within:?} waiting for {what}; last observation: {last:#?}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
    }
}

// ---------------------------------------------------------------------------------------------
// The local API
// ---------------------------------------------------------------------------------------------

/// How long [`Api::stop`] lets the server finish in-flight requests.
const API_STOP: Duration = Duration::from_secs(20);

/// The real local API served in this test process on an ephemeral loopback port, so a test can
/// read its request log, change its faults, and act on it "out of band" as another client.
pub struct Api {
    /// The API itself (request log, faults, seeding).
    pub local: LocalApi,
    /// `http://127.0.0.1:PORT/client/v4`
    pub base: String,
    /// A plain HTTP client (no proxy, 20 s timeout) for raw requests.
    pub http: reqwest::Client,
    log_file: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), LocalApiError>>>,
    _dir: tempfile::TempDir,
}

/// One line of the request log file, with its times in seconds since the epoch.
#[derive(Debug, Clone)]
pub struct TimedRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The raw path, `/client/v4/…`.
    pub path: String,
    /// When the request arrived: completion time minus duration.
    pub start: f64,
    /// When the answer was complete.
    pub end: f64,
    /// The answer's status; 0 for a dropped connection.
    pub status: u16,
    /// The request's User-Agent (lumierd's names its instance).
    pub user_agent: String,
}

impl Api {
    /// The default account and token ([`DEFAULT_ACCOUNT_ID`], [`DEFAULT_TOKEN`]), in memory,
    /// with `faults`, logging every request to a file of its own as well.
    pub async fn start(faults: Faults) -> Api {
        let dir = tempfile::tempdir().expect("tempdir for the request log");
        let config = LocalApiConfig {
            token: DEFAULT_TOKEN.to_owned(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            data_dir: None,
            faults,
            request_log: Some(dir.path().join("requests.jsonl")),
        };
        Api::serve(config, dir).await
    }

    /// The API as `config` says (its data folder, its request log file, if any).
    pub async fn start_with(config: LocalApiConfig) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        Api::serve(config, dir).await
    }

    async fn serve(config: LocalApiConfig, dir: tempfile::TempDir) -> Api {
        let log_file = config.request_log.clone();
        let local = LocalApi::open(config).expect("open the local API");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(local.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        Api {
            local,
            base: format!("http://{addr}/client/v4"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
            log_file,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    /// `{base}/accounts/{DEFAULT_ACCOUNT_ID}`.
    pub fn account(&self) -> String {
        format!("{}/accounts/{DEFAULT_ACCOUNT_ID}", self.base)
    }

    /// A client config for this API: no client-side throttling, 20 ms backoff, 10 s timeout.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.base.clone(), DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN);
        config.rate = RateLimit::unlimited();
        config.backoff_base = Duration::from_millis(20);
        config.timeout = Duration::from_secs(10);
        config
    }

    /// The real client with [`Api::client_config`].
    pub fn client(&self) -> Client {
        Client::new(self.client_config()).expect("client")
    }

    /// Every request since start or the last [`Api::clear_log`].
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.local.request_log()
    }

    /// Empties the in-memory request log (not the file).
    pub fn clear_log(&self) {
        self.local.clear_request_log();
    }

    /// Replaces the fault knobs (rate-limit windows restart).
    pub fn set_faults(&self, faults: Faults) {
        self.local.set_faults(faults);
    }

    /// The logged requests that are not reads, as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// The request log file since start (never cleared), with times.
    pub fn timed_log(&self) -> Vec<TimedRequest> {
        let file = self
            .log_file
            .as_ref()
            .expect("this API has a request log file");
        let text = std::fs::read_to_string(file).expect("read the request log file");
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("a log line is JSON");
                let at = humantime::parse_rfc3339_weak(v["ts"].as_str().expect("ts"))
                    .expect("ts is RFC 3339");
                let end = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("after the epoch")
                    .as_secs_f64();
                TimedRequest {
                    method: v["method"].as_str().expect("method").to_owned(),
                    path: v["path"].as_str().expect("path").to_owned(),
                    start: end - v["duration_ms"].as_f64().expect("duration_ms") / 1000.0,
                    end,
                    status: u16::try_from(v["status"].as_u64().expect("status"))
                        .expect("a status fits u16"),
                    user_agent: v["user_agent"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// Sends `req` with the token; the answer's JSON body.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Value {
        let r = req.bearer_auth(DEFAULT_TOKEN).send().await.expect("send");
        r.json().await.expect("a JSON answer")
    }

    /// `GET {account}{path}`; the answer's JSON body.
    pub async fn get(&self, path: &str) -> Value {
        self.send(self.http.get(format!("{}{path}", self.account())))
            .await
    }

    /// Every namespace of the account (one page of 1000).
    pub async fn namespaces(&self) -> Vec<Value> {
        let v = self.get("/storage/kv/namespaces?per_page=1000").await;
        v["result"].as_array().cloned().unwrap_or_default()
    }

    /// Every script of the account.
    pub async fn scripts(&self) -> Vec<Value> {
        let v = self.get("/workers/scripts").await;
        v["result"].as_array().cloned().unwrap_or_default()
    }

    /// The id of the namespace titled `title`, if there is one.
    pub async fn namespace_id(&self, title: &str) -> Option<String> {
        self.namespaces()
            .await
            .iter()
            .find(|n| n["title"] == title)
            .map(|n| n["id"].as_str().expect("id").to_owned())
    }

    /// Stops serving and checks that the server ended cleanly within [`API_STOP`].
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(API_STOP, &mut server).await {
                Ok(joined) => joined.expect("the server task").expect("serve returns Ok"),
                Err(_) => {
                    server.abort();
                    panic!("the local API did not stop within {API_STOP:?}");
                }
            }
        }
    }
}

impl Drop for Api {
    /// Ends `serve` (a test that failed before [`Api::stop`] leaves no server behind).
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// How long a dropped or killed [`Daemon`] may take to be reaped.
const REAP: Duration = Duration::from_secs(10);

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The lines a process printed so far, and how many of its two streams are still open.
#[derive(Default)]
struct Lines {
    state: Mutex<LinesState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinesState {
    lines: Vec<(Stream, String)>,
    closed: u8,
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, LinesState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `from` line by line into the buffer until it closes.
    fn read(self: Arc<Self>, stream: Stream, from: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            // Bytes, not `lines()`: output that is not UTF-8 must not stop the reading (a
            // full pipe would block the process).
            let mut from = BufReader::new(from);
            let mut buf = Vec::new();
            while from.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf);
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let line = line.strip_suffix('\r').unwrap_or(line).to_owned();
                buf.clear();
                self.lock().lines.push((stream, line));
                self.changed.notify_all();
            }
            self.lock().closed += 1;
            self.changed.notify_all();
        });
    }

    /// Waits, at most until `deadline`, for `found` to find something in the lines.
    fn wait<T>(
        &self,
        deadline: Instant,
        mut found: impl FnMut(&LinesState) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(t) = found(&state) {
                return Some(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// How [`Daemon::spawn_with`] starts the binary, beyond its arguments.
#[derive(Default)]
pub struct Launch<'a> {
    /// A program and its arguments that run the binary (which follows them), e.g.
    /// `["prlimit", "--nofile=48:48"]`; empty: the binary itself.
    pub wrapper: &'a [&'a str],
    /// Variables set for it (after the kit's removals, so they win).
    pub env: &'a [(&'a str, &'a str)],
    /// A file its stderr goes to instead of the buffer ([`Daemon::stderr`] is then empty).
    pub stderr: Option<std::fs::File>,
}

/// A running `lumierd`: what it prints is read into a buffer as it comes; killed when dropped.
///
/// Its environment is the test's, minus the variables that would change its behaviour behind
/// the test's back (`NOTIFY_SOCKET`, `WATCHDOG_*`, `RUST_LOG`), plus what the test passes.
pub struct Daemon {
    child: Child,
    lines: Arc<Lines>,
}

impl Daemon {
    /// `lumierd ARGS` in `cwd`.
    pub fn spawn(cwd: &Path, args: &[&str]) -> Daemon {
        Daemon::spawn_env(cwd, args, &[])
    }

    /// `lumierd ARGS` in `cwd` with the variables `env` set.
    pub fn spawn_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_with(
            cwd,
            args,
            Launch {
                env,
                ..Launch::default()
            },
        )
    }

    /// `lumierd ARGS` in `cwd`, started as `launch` says (a wrapper program, variables, stderr
    /// to a file).
    pub fn spawn_with(cwd: &Path, args: &[&str], launch: Launch<'_>) -> Daemon {
        let mut cmd = match launch.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args).arg(bin());
                cmd
            }
            None => Command::new(bin()),
        };
        let stderr = match launch.stderr {
            Some(file) => Stdio::from(file),
            None => Stdio::piped(),
        };
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in launch.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lumierd");
        let lines = Arc::new(Lines::default());
        let out = child.stdout.take().expect("piped stdout");
        Arc::clone(&lines).read(Stream::Stdout, out);
        match child.stderr.take() {
            Some(err) => Arc::clone(&lines).read(Stream::Stderr, err),
            None => {
                // Redirected to a file: nothing to read here, count it as read to its end.
                lines.lock().closed += 1;
            }
        }
        Daemon { child, lines }
    }

    /// Its process id (the binary's own: a wrapper such as prlimit(1) execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many lines (both streams) were printed so far: a mark for [`Daemon::wait_for_line_since`].
    pub fn mark(&self) -> usize {
        self.lines.lock().lines.len()
    }

    /// The first line (either stream) containing `pattern`; panics with the output so far if
    /// none is printed within `within`.
    pub fn wait_for_line(&self, pattern: &str, within: Duration) -> String {
        self.wait_for_line_since(0, pattern, within).1
    }

    /// The first line from index `mark` on (see [`Daemon::mark`]) containing `pattern`, and its
    /// index; panics with the output so far if none is printed within `within`.
    pub fn wait_for_line_since(
        &self,
        mark: usize,
        pattern: &str,
        within: Duration,
    ) -> (usize, String) {
        let found = self.lines.wait(Instant::now() + within, |s| {
            s.lines
                .iter()
                .enumerate()
                .skip(mark)
                .find(|(_, (_, l))| l.contains(pattern))
                .map(|(i, (_, l))| (i, l.clone()))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no line containing `{pattern}` within {within:?}; output:\n{}",
                self.output()
            )
        })
    }

    /// Whether a line (either stream) containing `pattern` is printed within `within`: waits
    /// for it like [`Daemon::wait_for_line`], for a test that asserts on something else.
    pub fn printed_within(&self, pattern: &str, within: Duration) -> bool {
        self.lines
            .wait(Instant::now() + within, |s| {
                s.lines
                    .iter()
                    .any(|(_, l)| l.contains(pattern))
                    .then_some(())
            })
            .is_some()
    }

    /// How many lines (either stream) from index `mark` on (see [`Daemon::mark`]) contain
    /// `pattern`, now.
    pub fn count_since(&self, mark: usize, pattern: &str) -> usize {
        self.lines
            .lock()
            .lines
            .iter()
            .skip(mark)
            .filter(|(_, l)| l.contains(pattern))
            .count()
    }

    /// The rest of the first stdout line that starts with `prefix`, trimmed.
    pub fn stdout_line(&self, prefix: &str, within: Duration) -> String {
        let found = self.lines.wait(Instant::now() + within, |s| {
            s.lines.iter().find_map(|(stream, l)| {
                (*stream == Stream::Stdout)
                    .then(|| l.strip_prefix(prefix))
                    .flatten()
                    .map(|rest| rest.trim().to_owned())
            })
        });
        found.unwrap_or_else(|| {
            panic!(
                "no stdout line `{prefix}` within {within:?}; output:\n{}",
                self.output()
            )
        })
    }

    /// Everything printed on `stream` so far, one line each.
    fn text(&self, stream: Stream) -> String {
        let state = self.lines.lock();
        let mut text = String::new();
        for (_, line) in state.lines.iter().filter(|(s, _)| *s == stream) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        self.text(Stream::Stdout)
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.text(Stream::Stderr)
    }

    /// Both streams so far, for failure messages.
    fn output(&self) -> String {
        format!("stdout:\n{}stderr:\n{}", self.stdout(), self.stderr())
    }

    /// Sends signal `name` (`TERM`, `HUP`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// SIGKILL, then reaps it (bounded).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.try_exit(REAP);
    }

    /// Waits for it to exit and for its output to be read to the end; its exit code (-1 when
    /// killed by a signal). Kills it and panics when that takes longer than `within`.
    pub fn exit(&mut self, within: Duration) -> i32 {
        match self.try_exit(within) {
            Some(code) => code,
            None => {
                self.kill();
                panic!(
                    "lumierd did not finish within {within:?}; output:\n{}",
                    self.output()
                );
            }
        }
    }

    fn try_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        let mut pause = POLL_FIRST;
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code().unwrap_or(-1);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
        };
        // Both pipes close when it exits; wait for the readers to reach the end.
        self.lines
            .wait(deadline, |s| (s.closed == 2).then_some(()))?;
        Some(code)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a finished run printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `lumierd ARGS` in `cwd` to its end, killing it (and failing) past `deadline`.
pub fn run_in(cwd: &Path, args: &[&str], deadline: Duration) -> Output {
    let mut d = Daemon::spawn(cwd, args);
    let code = d.exit(deadline);
    Output {
        code,
        stdout: d.stdout(),
        stderr: d.stderr(),
    }
}

/// `lumierd run --once --manifests m --state state --api-url API EXTRA…` in `cwd`: one pass over
/// a test folder's `m/` against its local API, the state in `state/` (2 min deadline).
pub fn run_once(cwd: &Path, api: &Api, extra: &[&str]) -> Output {
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
    args.extend_from_slice(extra);
    run_in(cwd, &args, Duration::from_secs(120))
}

/// Runs `lumierd ARGS` in the repository root with a 60 s deadline.
pub fn run(args: &[&str]) -> Output {
    run_in(&repo(), args, Duration::from_secs(60))
}
