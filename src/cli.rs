//! The command line: clap definitions, and the mapping of every outcome to an exit code
//! (0 success, 1 runtime failure, 2 usage or invalid manifests). `anyhow` lives here only.

use crate::cloudflare::limiter::Budget;
use crate::cloudflare::{ClientConfig, RateLimit};
use crate::manifest::{self, DriftMode, LoadError};
use crate::runtime::change::{Action, Change};
use crate::runtime::controller::Policy;
use crate::runtime::daemon::{self, DaemonError, RunConfig};
use crate::runtime::provider::ProviderConfig;
use crate::status;
use crate::store::Store;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (network, state, a resource that did not converge).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage or invalid manifests.
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "lumierd",
    version,
    about = "GitOps controller for Cloudflare Workers and KV namespaces",
    long_about = "lumierd watches a folder of stage manifests and keeps Cloudflare KV namespaces and \
                  Workers as they declare, against the real Cloudflare API or an embedded local one."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the manifests, reconcile continuously, serve the admin API.
    Run(Box<RunArgs>),
    /// Dry run: show what would be created, updated, deleted, adopted; changes nothing.
    Plan(PlanArgs),
    /// Parse and validate manifests only (no network, no state).
    Validate {
        /// The manifests folder.
        dir: PathBuf,
        /// Accept a folder with no stage manifest (else an error: an empty folder would
        /// delete every resource).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Print the YAML stage manifests equivalent to the Lumier configs (`lumier:` pointer
    /// documents) under DIR, one document per config and stage.
    Render {
        /// The manifests folder.
        dir: PathBuf,
        /// Only this stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Show every resource's state (works whether or not the daemon runs).
    Status(StatusArgs),
    /// Print the JSON Schema of the manifest format.
    Schema,
    /// Serve the local Cloudflare-compatible API on its own.
    Emulator(EmulatorArgs),
    /// Copy the state (records, load error, last pass, outbox, installation id) from one
    /// store to another, e.g. `--from sled:/var/lib/lumierd --to etcd://127.0.0.1:2379/lumierd`.
    /// Stop the daemon first; the destination must hold no records.
    MigrateState {
        #[arg(long, value_name = "URL", value_parser = parse_store)]
        from: crate::store::Location,
        #[arg(long, value_name = "URL", value_parser = parse_store)]
        to: crate::store::Location,
    },
    /// Probe a daemon's admin API (for container health checks): exit 0 if URL answers 2xx
    /// within 2 s, else 1.
    Healthcheck {
        /// The URL to GET.
        #[arg(default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    /// Internal: evaluate one stage of a Lumier config (a request on stdin, the answer on
    /// stdout), run by lumierd itself so a config that crashes the engine cannot end it.
    #[command(name = "__eval-lumier", hide = true)]
    EvalLumier,
}

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

pub use crate::logging::LogFormat;

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

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    crate::memory::tune_malloc();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate { dir, allow_empty } => validate(&dir, allow_empty),
        Command::Schema => schema(),
        Command::Render { dir, stage } => render(&dir, stage.as_deref()),
        Command::Run(args) => cmd_run(*args),
        Command::Plan(args) => cmd_plan(args),
        Command::Status(args) => cmd_status(args),
        Command::Emulator(args) => cmd_emulator(args),
        Command::Healthcheck { url } => cmd_healthcheck(&url),
        Command::MigrateState { from, to } => cmd_migrate_state(&from, &to),
        Command::EvalLumier => crate::lumier::sandbox::serve(),
    }
}

fn validate(dir: &std::path::Path, allow_empty: bool) -> i32 {
    let options = manifest::LoadOptions { allow_empty };
    match crate::source::load_with(dir, &options) {
        Ok(loaded) => {
            for file in &loaded.unclassified {
                eprintln!(
                    "note: {}: a worker module, not a stage manifest",
                    manifest::text::escape(&file.display)
                );
            }
            println!("ok: {}", loaded.desired.summary());
            EXIT_OK
        }
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} problem{} in manifests under {}",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" },
                manifest::text::escape(&dir.display().to_string())
            );
            EXIT_USAGE
        }
        Err(e @ (LoadError::Root { .. } | LoadError::Empty { .. })) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

fn render(dir: &std::path::Path, stage: Option<&str>) -> i32 {
    let options = manifest::LoadOptions { allow_empty: true };
    let loaded = match manifest::load_with(dir, &options) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} problem(s) in manifests under {}",
                diags.len(),
                manifest::text::escape(&dir.display().to_string())
            );
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let chosen: Vec<_> = loaded
        .lumier_rendered
        .iter()
        .filter(|r| stage.is_none_or(|s| s == r.stage))
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "error: no Lumier config{} under {}; a manifest document `lumier: lumier.config.ts` with `stages: [...]` points at one",
            stage.map(|s| format!(" with stage `{}`", manifest::text::escape(s))).unwrap_or_default(),
            manifest::text::escape(&dir.display().to_string())
        );
        return EXIT_USAGE;
    }
    let mut out = std::io::stdout().lock();
    for r in chosen {
        if let Err(e) = out.write_all(r.yaml.as_bytes()) {
            eprintln!("error: writing the manifests: {e}");
            return EXIT_FAILURE;
        }
    }
    EXIT_OK
}

fn schema() -> i32 {
    let schema = manifest::schema::manifest_schema();
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer_pretty(&mut out, &schema)
        .and_then(|()| writeln!(out).map_err(serde_json::Error::io))
    {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: writing the schema: {e}");
            EXIT_FAILURE
        }
    }
}

/// `HOSTNAME:PID`, the default `--instance-id`.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

fn parse_store(s: &str) -> Result<crate::store::Location, String> {
    crate::store::Location::parse(s).map_err(|e| e.to_string())
}

fn cmd_migrate_state(from: &crate::store::Location, to: &crate::store::Location) -> i32 {
    match crate::store::migrate::migrate(from, to) {
        Ok(n) => {
            println!("migrated {n} records from {from} to {to}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_FAILURE
        }
    }
}

fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".lumierd"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn provider_config(common: &Common) -> anyhow::Result<ProviderConfig> {
    let rate = RateLimit {
        budget: Some(common.api_budget),
        reserve_percent: common.api_reserve,
    };
    rate.validate()
        .map_err(|e| anyhow::anyhow!("--api-budget/--api-reserve: {e}"))?;
    match (common.provider, &common.api_url) {
        (Provider::Local, None) => Ok(ProviderConfig::Embedded {
            listen: common.local_api_listen,
        }),
        (Provider::Local, Some(url)) => Ok(ProviderConfig::Remote {
            base_url: url.clone(),
            account_id: std::env::var("CLOUDFLARE_ACCOUNT_ID")
                .unwrap_or_else(|_| crate::local_api::DEFAULT_ACCOUNT_ID.to_owned()),
            token: std::env::var("CLOUDFLARE_API_TOKEN")
                .unwrap_or_else(|_| crate::local_api::DEFAULT_TOKEN.to_owned()),
            rate,
        }),
        (Provider::Cloudflare, url) => {
            let token = read_token()?;
            let account_id = std::env::var("CLOUDFLARE_ACCOUNT_ID").map_err(|_| {
                anyhow::anyhow!(
                    "--provider cloudflare needs CLOUDFLARE_ACCOUNT_ID (the 32-hex account id)"
                )
            })?;
            Ok(ProviderConfig::Remote {
                base_url: url
                    .clone()
                    .unwrap_or_else(|| ClientConfig::CLOUDFLARE_BASE_URL.to_owned()),
                account_id,
                token,
                rate,
            })
        }
    }
}

/// The API token: `CLOUDFLARE_API_TOKEN`, or systemd's credential `cloudflare-api-token`.
fn read_token() -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("CLOUDFLARE_API_TOKEN") {
        if !t.is_empty() {
            return Ok(t);
        }
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = PathBuf::from(dir).join("cloudflare-api-token");
        if let Ok(t) = std::fs::read_to_string(&path) {
            return Ok(t.trim().to_owned());
        }
    }
    anyhow::bail!("--provider cloudflare needs CLOUDFLARE_API_TOKEN (or the systemd credential `cloudflare-api-token`)")
}

/// Refuses a non-loopback `--local-api-listen` without `--local-api-allow-remote` (the embedded
/// API holds the sandbox's data; like `--admin-listen`, leaving this host is a decision).
fn check_local_api_listen(common: &Common) -> Result<(), String> {
    match common.local_api_listen {
        Some(addr) if !crate::admin::is_local(&addr) && !common.local_api_allow_remote => {
            Err(format!(
                "error: --local-api-listen {addr} is not a loopback address; serving the \
                 embedded API beyond this host needs --local-api-allow-remote (clients then \
                 need the token in STATE/local-api/token)"
            ))
        }
        _ => Ok(()),
    }
}

/// Refuses `lumierd emulator --listen` on a non-loopback address without `--allow-remote`,
/// and with it but without `--token` (the default token is written in this README).
fn check_emulator_listen(args: &EmulatorArgs) -> Result<(), String> {
    if crate::admin::is_local(&args.listen) {
        return Ok(());
    }
    if !args.allow_remote {
        return Err(format!(
            "error: --listen {} is not a loopback address; serving the emulator beyond this \
             host needs --allow-remote (and a --token of your own)",
            args.listen
        ));
    }
    if args.token.as_deref().is_none_or(str::is_empty) {
        return Err(
            "error: --allow-remote needs --token (or LUMIERD_EMULATOR_TOKEN): the default \
             token is public"
                .to_owned(),
        );
    }
    Ok(())
}

fn run_config(
    common: &Common,
    once: bool,
    policy: Policy,
    resync: Duration,
    debounce: Duration,
) -> anyhow::Result<RunConfig> {
    let state = state_dir(common.state.clone());
    // Declared secrets are hashed under the state folder's key (made on first use).
    crate::secrets::configure(crate::secrets::SecretsConfig {
        dir: common.secrets_dir.clone(),
        age_identity: common.age_identity.clone(),
        hasher: crate::secrets::load_or_create_key(&state)?,
    });
    Ok(RunConfig {
        manifests: common.manifests.clone(),
        state,
        store: common.store.clone(),
        instance_id: default_instance_id(),
        lease_ttl: crate::runtime::leader::DEFAULT_TTL,
        once,
        resync,
        debounce,
        policy,
        provider: provider_config(common)?,
        admin_listen: None,
        load: manifest::LoadOptions {
            allow_empty: common.allow_empty,
        },
        stuck_after: crate::metrics::STUCK_AFTER,
        serve: None,
        admin_token: None,
        notify: Vec::new(),
    })
}

/// `--serve` needs the embedded provider (workerd's KV bindings read and write the local
/// API's store; a remote API's namespaces are out of its reach), the daemon (not `--once`)
/// and a loopback address (the edge has no authentication).
fn check_serve(args: &RunArgs) -> Result<(), String> {
    let Some(addr) = args.serve else {
        return Ok(());
    };
    if args.common.provider != Provider::Local || args.common.api_url.is_some() {
        return Err(format!(
            "--serve {addr} runs the workers against the embedded local API (their KV bindings \
             read and write its store); it is refused with --provider cloudflare or --api-url, \
             whose namespaces the local runtime cannot reach"
        ));
    }
    if args.once {
        return Err("--serve keeps serving while the daemon runs; drop --once".into());
    }
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--serve {addr}: the local edge serves loopback addresses only (it has no \
             authentication), e.g. --serve 127.0.0.1:8788"
        ));
    }
    Ok(())
}

fn cmd_run(args: RunArgs) -> i32 {
    if let Some(level) = args.log_level.as_deref() {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
            eprintln!(
                "error: --log-level `{level}`: {e}; write e.g. info, debug or lumierd=debug,warn"
            );
            return EXIT_USAGE;
        }
    }
    if let Some(addr) = args.admin_listen {
        if !crate::admin::is_local(&addr) && !args.admin_allow_remote {
            eprintln!(
                "error: --admin-listen {addr} is not a loopback address; the admin API has no \
                 authentication, so serving it beyond this host needs --admin-allow-remote \
                 (and a firewall or NetworkPolicy)"
            );
            return EXIT_USAGE;
        }
    }
    if let Err(e) = check_local_api_listen(&args.common) {
        eprintln!("{e}");
        return EXIT_USAGE;
    }
    if let Err(why) = check_serve(&args) {
        eprintln!("error: {why}");
        return EXIT_USAGE;
    }
    for url in &args.notify {
        // The URL may carry a token (Slack's do): never echoed.
        let ok = reqwest::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            eprintln!("error: --notify needs an http:// or https:// URL (the value given is not one; it is not shown, as it may hold a token)");
            return EXIT_USAGE;
        }
    }
    let admin_token = match args
        .admin_token_file
        .as_deref()
        .map(crate::admin::AdminToken::from_file)
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    crate::logging::init(args.log_format, args.log_level.as_deref());
    crate::fdlimit::raise_nofile_logged();
    crate::fdlimit::private_umask();
    let policy = Policy {
        drift: args.drift.into(),
        max_prune: args.max_prune,
        concurrency: args.concurrency,
        act: true,
        approve_delete: args.approve_delete.clone(),
        adopt: args.adopt,
    };
    let outcome = (|| -> anyhow::Result<Result<bool, DaemonError>> {
        let mut cfg = run_config(&args.common, args.once, policy, args.resync, args.debounce)?;
        cfg.admin_listen = args.admin_listen;
        cfg.stuck_after = args.stuck_after;
        cfg.serve = args.serve.map(|listen| crate::edge::ServeConfig {
            listen,
            workerd: args.workerd.clone(),
        });
        cfg.admin_token = admin_token;
        cfg.notify = args.notify.clone();
        if let Some(id) = &args.instance_id {
            cfg.instance_id = id.clone();
        }
        cfg.lease_ttl = args.lease_ttl;
        let rt = runtime()?;
        let result = rt.block_on(daemon::run(cfg));
        // A flush stuck on a frozen disk runs on a blocking thread: don't wait for it.
        rt.shutdown_timeout(Duration::from_secs(1));
        Ok(result)
    })();
    match outcome {
        Ok(Ok(true)) => EXIT_OK,
        Ok(Ok(false)) => {
            eprintln!("lumierd: not everything converged; see `lumierd status`");
            EXIT_FAILURE
        }
        Ok(Err(DaemonError::Manifests(e))) => {
            eprintln!("{e}");
            EXIT_USAGE
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

/// `lumierd healthcheck URL`: GET with a 2 s timeout; 0 on a 2xx answer, else 1.
fn cmd_healthcheck(url: &str) -> i32 {
    let outcome = (|| -> anyhow::Result<reqwest::StatusCode> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let status = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async { client.get(url).send().await.map(|r| r.status()) })?;
        Ok(status)
    })();
    match outcome {
        Ok(status) if status.is_success() => EXIT_OK,
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e:#}");
            EXIT_FAILURE
        }
    }
}

fn cmd_plan(args: PlanArgs) -> i32 {
    if let Err(e) = check_local_api_listen(&args.common) {
        eprintln!("{e}");
        return EXIT_USAGE;
    }
    crate::logging::init(LogFormat::Human, Some("warn"));
    let policy = Policy {
        drift: DriftMode::Correct,
        max_prune: usize::MAX,
        concurrency: 8,
        act: false,
        approve_delete: Vec::new(),
        adopt: false,
    };
    let outcome = (|| -> anyhow::Result<Result<Vec<Change>, DaemonError>> {
        let cfg = run_config(
            &args.common,
            true,
            policy,
            Duration::from_secs(300),
            Duration::ZERO,
        )?;
        Ok(runtime()?.block_on(crate::runtime::plan::plan(cfg)))
    })();
    match outcome {
        Ok(Ok(changes)) if changes.is_empty() => {
            println!("no changes");
            EXIT_OK
        }
        Ok(Ok(changes)) => {
            for c in &changes {
                println!("{} {}", c.action, c.key);
                for d in &c.details {
                    println!("    {d}");
                }
            }
            let errors = changes.iter().any(|c| c.action == Action::Refuse);
            if errors {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            }
        }
        Ok(Err(DaemonError::Manifests(e))) => {
            eprintln!("{e}");
            EXIT_USAGE
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

fn cmd_status(args: StatusArgs) -> i32 {
    let state = state_dir(args.state);
    let outcome = (|| -> anyhow::Result<serde_json::Value> {
        if let Some(location) = &args.store {
            let store = Store::open_at(location)?;
            let mut v = status::status_json(&store, args.stage.as_deref())?;
            if let crate::store::Location::Etcd(url) = location {
                // Who leads (the leader key's value), for any replica's operator.
                let gw = crate::store::etcd::Gateway::connect(url.clone())?;
                let leader = gw
                    .get(&gw.key(b"leader"))?
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                v["leader"] = leader.unwrap_or(serde_json::Value::Null);
            }
            return Ok(v);
        }
        use crate::runtime::status_socket::{self, AskError};
        let rt = runtime()?;
        let request = format!("status {}", args.stage.as_deref().unwrap_or(""));
        // `None`: no daemon listens (none runs, or one is starting); an error: one is stuck.
        let ask = || match rt.block_on(status_socket::query(&state, &request)) {
            Ok(v) => Ok(Some(v)),
            Err(AskError::NoDaemon(_)) => Ok(None),
            Err(why @ AskError::NotAnswering { .. }) => Err(anyhow::anyhow!(
                "{why}; a lumierd daemon runs on this state folder but does not answer (it may \
                 be stuck): see its log, or restart it"
            )),
        };
        if let Some(v) = ask()? {
            return Ok(v);
        }
        if !state.join("db").exists() {
            anyhow::bail!(
                "no lumierd state in {}: run `lumierd run` first, or pass --state",
                state.display()
            );
        }
        match Store::open(&state) {
            Ok(store) => Ok(status::status_json(&store, args.stage.as_deref())?),
            Err(e) => {
                // A daemon that is starting holds the store before its socket is up.
                for _ in 0..50 {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Some(v) = ask()? {
                        return Ok(v);
                    }
                }
                Err(e.into())
            }
        }
    })();
    match outcome {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else {
                print!("{}", crate::replica::header(&v));
                print!("{}", status::render_table(&v));
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Parses the emulator's rate-limit model `N/DURATION`, e.g. `1200/5m`.
fn parse_rate_limit(s: &str) -> Result<crate::local_api::RateLimitModel, String> {
    let (n, window) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a rate limit; write N/DURATION, e.g. 1200/5m"))?;
    let requests = n
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("`{n}` is not a request count; write N/DURATION, e.g. 1200/5m"))?;
    Ok(crate::local_api::RateLimitModel {
        requests,
        window: parse_duration(window.trim())?,
    })
}

fn cmd_emulator(args: EmulatorArgs) -> i32 {
    if let Err(e) = check_emulator_listen(&args) {
        eprintln!("{e}");
        return EXIT_USAGE;
    }
    crate::logging::init(LogFormat::Human, None);
    let outcome = (|| -> anyhow::Result<()> {
        let rate_limit = args
            .rate_limit
            .as_deref()
            .map(parse_rate_limit)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let faults = crate::local_api::Faults {
            latency: args.latency.unwrap_or_default(),
            error_rate: args.error_rate,
            reset_rate: args.reset_rate,
            applied_lost_rate: args.applied_lost_rate,
            rate_limit,
        };
        let api = crate::local_api::LocalApi::open(crate::local_api::LocalApiConfig {
            token: args
                .token
                .unwrap_or_else(|| crate::local_api::DEFAULT_TOKEN.to_owned()),
            account_id: args
                .account_id
                .unwrap_or_else(|| crate::local_api::DEFAULT_ACCOUNT_ID.to_owned()),
            data_dir: args.data,
            faults,
            request_log: args.request_log,
        })?;
        let account = api.account_id().to_owned();
        runtime()?.block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            let addr = listener.local_addr()?;
            println!("base URL: http://{addr}/client/v4");
            println!("account id: {account}");
            let shutdown = async {
                use tokio::signal::unix::{signal, SignalKind};
                if let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                } else {
                    std::future::pending::<()>().await;
                }
            };
            api.serve(listener, shutdown).await?;
            Ok::<(), anyhow::Error>(())
        })
    })();
    match outcome {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}
