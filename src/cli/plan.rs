//! `lumierd plan`: a dry run against the provider; exit 0 no changes, 1 changes, 2 refusals
//! or errors.

use std::time::Duration;

use super::args::{LogFormat, PlanArgs};
use super::config::{check_local_api_listen, run_config};
use super::{runtime, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::manifest::DriftMode;
use crate::runtime::change::{Action, Change};
use crate::runtime::controller::Policy;
use crate::runtime::daemon::DaemonError;

/// `lumierd plan`: what a pass would do, printed; changes nothing.
pub(super) fn cmd_plan(args: PlanArgs) -> i32 {
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
