//! The command line: clap definitions, and the mapping of every outcome to an exit code
//! (0 success, 1 runtime failure, 2 usage or invalid manifests). `anyhow` lives here only.

use crate::manifest::{self, DriftMode, LoadError};
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
    Run(RunArgs),
    /// Dry run: show what would be created, updated, deleted, adopted; changes nothing.
    Plan(PlanArgs),
    /// Parse and validate manifests only (no network, no state).
    Validate {
        /// The manifests folder.
        dir: PathBuf,
    },
    /// Show every resource's state (works whether or not the daemon runs).
    Status(StatusArgs),
    /// Print the JSON Schema of the manifest format.
    Schema,
    /// Serve the local Cloudflare-compatible API on its own.
    Emulator(EmulatorArgs),
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
    /// Which API to talk to.
    #[arg(long, value_enum, default_value_t = Provider::Local)]
    pub provider: Provider,
    /// Base URL of the Cloudflare API (e.g. a separately started `lumierd emulator`).
    #[arg(long)]
    pub api_url: Option<String>,
    /// Where the embedded local API listens (default: an ephemeral loopback port).
    #[arg(long)]
    pub local_api_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// One full reconcile pass, then exit 0 if everything converged, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// Period of the full resync.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
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
    /// Most resources reconciled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Admin HTTP listener (/healthz, /readyz, /metrics, /status); off by default.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Log level or filter (overrides RUST_LOG), e.g. `info` or `lumierd=debug`.
    #[arg(long)]
    pub log_level: Option<String>,
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
    /// The API token clients must send (default: the local development token).
    #[arg(long, env = "LUMIERD_EMULATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Parses `250ms`, `30s`, `5m`, `1h` (and combinations humantime accepts).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 250ms, 30s, 5m or 1h"))
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate { dir } => validate(&dir),
        Command::Schema => schema(),
        Command::Run(_) => not_yet("run", 4),
        Command::Plan(_) => not_yet("plan", 4),
        Command::Status(_) => not_yet("status", 4),
        Command::Emulator(_) => not_yet("emulator", 3),
    }
}

fn not_yet(command: &str, issue: u32) -> i32 {
    eprintln!("lumierd {command}: not implemented yet (issue #{issue}); nothing was done");
    EXIT_USAGE
}

fn validate(dir: &std::path::Path) -> i32 {
    match manifest::load(dir) {
        Ok(loaded) => {
            for file in &loaded.skipped {
                eprintln!("note: {file}: skipped, not a stage manifest (no `app`, `stage` or `resources`)");
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
                dir.display()
            );
            EXIT_USAGE
        }
        Err(e @ LoadError::Root { .. }) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
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
