//! The operator's one-off commands: `healthcheck` (a container probe of the admin API) and
//! `migrate-state` (copy the state from one store to another).

use std::time::Duration;

use super::{EXIT_FAILURE, EXIT_OK};

/// `lumierd healthcheck URL`: GET with a 2 s timeout; 0 on a 2xx answer, else 1.
pub(super) fn cmd_healthcheck(url: &str) -> i32 {
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

/// `lumierd migrate-state --from URL --to URL`.
pub(super) fn cmd_migrate_state(from: &crate::store::Location, to: &crate::store::Location) -> i32 {
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
