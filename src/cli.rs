//! The command line: clap definitions, and the mapping of every outcome to an exit code
//! (0 success, 1 runtime failure, 2 usage or invalid manifests).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "lumierd", version, about = "GitOps controller for Cloudflare Workers and KV")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate manifests only (no network, no state).
    Validate {
        /// The manifests directory.
        dir: PathBuf,
    },
    /// Print the JSON Schema of the manifest format.
    Schema,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate { .. } | Command::Schema => 2,
    }
}
