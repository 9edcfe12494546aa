//! The flags of every command (clap derive) and their value parsers: each parser names what
//! it expected and gives an example.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cloudflare::limiter::Budget;
use crate::manifest::DriftMode;

pub use crate::logging::LogFormat;

/// Which Cloudflare API to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// The embedded local Cloudflare-compatible API (no account needed).
    Local,
    /// The real Cloudflare API (needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID).
    Cloudflare,
}

/// Where the state lives and which API is used: shared by `run` and `plan`.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The manifests folder to watch.
    #[arg(long, default_value = ".")]
    pub manifests: PathBuf,
    /// The state folder (sled). Defaults to $STATE_DIRECTORY under systemd, else ./.lumierd.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Where the records live: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (replicas sharing
    /// state) or `sled:DIR`. Default: sled in the state folder.
    #[arg(long, value_name = "URL", value_parser = parse_store)]
    pub store: Option<crate::store::Location>,
    /// Which API to talk to.
    #[arg(long, value_enum, default_value_t = Provider::Local)]
    pub provider: Provider,
    /// Base URL of the Cloudflare API (e.g. a separately started `lumierd emulator`).
    #[arg(long)]
    pub api_url: Option<String>,
    /// Where the embedded local API listens (default: an ephemeral loopback port).
    /// A non-loopback address needs --local-api-allow-remote.
    #[arg(long)]
    pub local_api_listen: Option<SocketAddr>,
    /// Allow --local-api-listen on a non-loopback address (anyone who reaches it and holds
    /// the token in STATE/local-api/token can read and change the sandbox).
    #[arg(long)]
    pub local_api_allow_remote: bool,
    /// Accept a manifests folder with no stage manifest, and so delete every resource it
    /// managed (Argo CD's `allowEmpty`). Without it, an empty folder is an error and nothing
    /// is deleted.
    #[arg(long)]
    pub allow_empty: bool,
    /// The API's request budget, N/DURATION (Cloudflare: 1200 per 5 minutes per user). Spent
    /// at full speed, never beyond; the API's `Ratelimit` headers refine it. Not used with
    /// the embedded API.
    #[arg(long, default_value = "1200/5m", value_parser = parse_budget)]
    pub api_budget: Budget,
    /// Share of the budget left to the token's other clients (wrangler in CI, the dashboard).
    #[arg(long, default_value = "10%", value_parser = parse_reserve)]
    pub api_reserve: u8,
    /// The folder of `{ secret: { file: NAME } }` secrets (one file per secret, its content
    /// the value; a final newline is dropped). Defaults to $CREDENTIALS_DIRECTORY (systemd
    /// `LoadCredential=`); a Kubernetes Secret volume works the same.
    #[arg(long, value_name = "DIR", env = "CREDENTIALS_DIRECTORY")]
    pub secrets_dir: Option<PathBuf>,
    /// The age identity file (as `age-keygen` writes it) that decrypts `{ secret: { age:
    /// FILE } }` bindings. Read when a pass needs it; its keys are never printed.
    #[arg(long, value_name = "FILE", env = "LUMIERD_AGE_IDENTITY")]
    pub age_identity: Option<PathBuf>,
}

/// Parses `--api-budget`: `N/DURATION`, e.g. `1200/5m`.
fn parse_budget(s: &str) -> Result<Budget, String> {
    s.parse()
}

/// Parses `--api-reserve`: a percentage below 100, `10%` or `10`.
fn parse_reserve(s: &str) -> Result<u8, String> {
    s.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p < 100)
        .ok_or_else(|| format!("`{s}` is not a percentage below 100; write e.g. 10%"))
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// One full reconcile pass, then exit 0 if everything converged, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// Period of the full resync (at least 1s).
    #[arg(long, default_value = "5m", value_parser = parse_resync)]
    pub resync: Duration,
    /// Quiet time after a file change before the manifests are re-read.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// What to do about out-of-band edits (a manifest's `drift:` overrides it).
    #[arg(long, value_enum, default_value_t = DriftArg::Correct)]
    pub drift: DriftArg,
    /// Most resources one pass may delete; a larger prune is held until approved.
    #[arg(long, default_value_t = 10)]
    pub max_prune: usize,
    /// Approve the held deletions of APP or APP/STAGE for this run: an app no manifest
    /// declares any more, or a stage whose protection was lifted in the same change that
    /// removed its resources. Repeatable.
    #[arg(long, value_name = "APP[/STAGE]")]
    pub approve_delete: Vec<String>,
    /// Take over objects lumierd has no record of but finds by their names: a KV namespace
    /// with a managed title, a Worker script of another installation (e.g. after the state
    /// folder was lost). Each adoption is logged.
    #[arg(long)]
    pub adopt: bool,
    /// Most resources reconciled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// A running pass that finishes no resource for this long is stuck (a frozen disk, a hung
    /// call): /healthz answers 503 and systemd's watchdog is no longer pinged.
    #[arg(long, default_value = "10m", value_parser = parse_stuck_after)]
    pub stuck_after: Duration,
    /// Admin HTTP listener (/healthz, /readyz, /metrics, /status); off by default.
    /// A non-loopback address needs --admin-allow-remote.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Allow --admin-listen on a non-loopback address (without --admin-token-file the admin
    /// API has no authentication: restrict who reaches it, e.g. with a NetworkPolicy).
    #[arg(long)]
    pub admin_allow_remote: bool,
    /// A file whose first line is a bearer token required on every admin path but /healthz
    /// (`Authorization: Bearer TOKEN`; browsers: HTTP Basic with TOKEN as the password).
    /// Needs --admin-allow-remote.
    #[arg(long, value_name = "FILE", requires = "admin_allow_remote")]
    pub admin_token_file: Option<PathBuf>,
    /// POST a JSON event (with a `text` line for Slack, Mattermost, Teams) to URL on drift,
    /// a resource entering or leaving Error, a held prune, a manifest load failure or
    /// recovery. Repeatable. Delivered at least once, from a queue in the state store.
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
    /// This replica's name, sent in the User-Agent of every provider request
    /// (`lumierd/VERSION (instance ID)`) and shown as the leader. Default: HOSTNAME:PID.
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// With an etcd store: the leader lease's TTL. The leader stops writing when it could
    /// not renew it by TTL − max(TTL/5, 1 s); a standby takes over within about TTL + 0.3 s
    /// after the leader dies, within 0.3 s after it stops (SIGTERM). At least 2 s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log level or filter (overrides RUST_LOG), e.g. `info` or `lumierd=debug`.
    #[arg(long)]
    pub log_level: Option<String>,
    /// The local edge: serve the converged workers on workerd at ADDR (loopback; port 0 picks
    /// one), as `http://{script}.localhost:PORT/` and `http://ADDR/{app}/{stage}/{name}/`.
    /// Embedded provider only.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<SocketAddr>,
    /// The workerd binary for --serve (default: `workerd` on PATH, else
    /// ./node_modules/.bin/workerd).
    #[arg(long, value_name = "PATH", requires = "serve")]
    pub workerd: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The state folder (sled). Defaults to $STATE_DIRECTORY under systemd, else ./.lumierd.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Read the records from this store instead (e.g. `etcd://HOST:PORT/PREFIX`, from any
    /// host, whether a daemon runs or not).
    #[arg(long, value_name = "URL", value_parser = parse_store)]
    pub store: Option<crate::store::Location>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this stage.
    #[arg(long)]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct EmulatorArgs {
    /// Address to listen on, e.g. 127.0.0.1:8787.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Persist everything in this folder (default: memory only).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The API token clients must send (default on loopback: the local development token
    /// `lumierd-local-token`; required with --allow-remote).
    #[arg(long, env = "LUMIERD_EMULATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow --listen on a non-loopback address (needs --token: the default token is public).
    #[arg(long)]
    pub allow_remote: bool,
    /// The account id (32 hex; default: the local development account).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Added latency per request.
    #[arg(long, value_parser = parse_duration)]
    pub latency: Option<Duration>,
    /// Fraction of requests answered with a 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fraction of requests whose connection is reset.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Fraction of write requests (POST/PUT/PATCH/DELETE) that are applied, then answered by a
    /// reset ("applied, answer lost").
    #[arg(long, default_value_t = 0.0)]
    pub applied_lost_rate: f64,
    /// Cloudflare's rate-limit model: `N/DURATION`, e.g. `1200/5m`.
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Append a JSON line per request to this file.
    #[arg(long)]
    pub request_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftArg {
    Correct,
    Report,
}

impl From<DriftArg> for DriftMode {
    fn from(d: DriftArg) -> Self {
        match d {
            DriftArg::Correct => DriftMode::Correct,
            DriftArg::Report => DriftMode::Report,
        }
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` (and combinations humantime accepts).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 250ms, 30s, 5m or 1h"))
}

/// A resync period: a duration of at least one second (a shorter one would spin).
fn parse_resync(s: &str) -> Result<Duration, String> {
    at_least_a_second(s, "a resync period")
}

/// Parses `--stuck-after`: under a second, every pass would read as stuck.
fn parse_stuck_after(s: &str) -> Result<Duration, String> {
    at_least_a_second(s, "--stuck-after (a pass would read as stuck at once)")
}

fn at_least_a_second(s: &str, what: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("`{s}` is too short for {what}; use 1s or more"));
    }
    Ok(d)
}

/// Parses `--store`, `--from`, `--to`: `etcd://HOST:PORT[,...]/PREFIX`, `sled:DIR` or a DIR.
pub(super) fn parse_store(s: &str) -> Result<crate::store::Location, String> {
    crate::store::Location::parse(s).map_err(|e| e.to_string())
}
