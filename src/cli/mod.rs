//! The command line: clap definitions ([`args`]), one file per command, and the mapping of
//! every outcome to an exit code (0 success, 1 runtime failure, 2 usage or invalid manifests).
//! `anyhow` lives here only.
//!
//! | command | file |
//! | --- | --- |
//! | `run` | `run` (and `config`, shared with `plan`: flags → the daemon's configuration) |
//! | `plan` | `plan` |
//! | `validate`, `render`, `schema` | `manifests` |
//! | `status` | `status` |
//! | `emulator` | `emulator` |
//! | `healthcheck`, `migrate-state` | `maintenance` |

mod args;
mod config;
mod emulator;
mod maintenance;
mod manifests;
mod plan;
mod run;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use args::parse_store;
pub use args::{
    parse_duration, Common, DriftArg, EmulatorArgs, LogFormat, PlanArgs, Provider, RunArgs,
    StatusArgs,
};

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
        Command::Validate { dir, allow_empty } => manifests::validate(&dir, allow_empty),
        Command::Schema => manifests::schema(),
        Command::Render { dir, stage } => manifests::render(&dir, stage.as_deref()),
        Command::Run(args) => run::cmd_run(*args),
        Command::Plan(args) => plan::cmd_plan(args),
        Command::Status(args) => status::cmd_status(args),
        Command::Emulator(args) => emulator::cmd_emulator(args),
        Command::Healthcheck { url } => maintenance::cmd_healthcheck(&url),
        Command::MigrateState { from, to } => maintenance::cmd_migrate_state(&from, &to),
        Command::EvalLumier => crate::lumier::sandbox::serve(),
    }
}

/// The state folder: `--state`, else `$STATE_DIRECTORY` (systemd), else `./.lumierd`.
fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".lumierd"))
}

/// The multi-threaded runtime the commands that talk to an API run on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
