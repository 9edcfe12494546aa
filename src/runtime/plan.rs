//! `lumierd plan`: what a pass would do, changing nothing.

use super::change::{Action, Change};
use super::controller::{Controller, Policy};
use super::daemon::{ask, DaemonError, RunConfig};
use super::provider::Provider;
use crate::metrics::Metrics;
use crate::source;
use crate::store::Store;
use std::sync::Arc;

/// `lumierd plan`: what a pass would do, changing nothing. Returns the changes.
pub async fn plan(cfg: RunConfig) -> Result<Vec<Change>, DaemonError> {
    let snap = source::load_with(&cfg.manifests, &cfg.load)?;
    // A running daemon holds the store (sled has one writer): plan then works on a scratch
    // copy of the daemon's records, asked over the status socket.
    // A private folder of our own (mkdtemp: a fresh name, mode 0700), never a predictable
    // path another user could have made first.
    let scratch_dir = tempfile::Builder::new()
        .prefix("lumierd-plan-")
        .tempdir()
        .map_err(|e| DaemonError::Io(format!("plan's scratch folder: {e}")))?;
    let scratch = scratch_dir.path().to_path_buf();
    let from_daemon = ask(&cfg.state, "records").await;
    let store = match &from_daemon {
        Some(records) => {
            let records: Vec<(crate::manifest::ResourceKey, crate::store::Record)> =
                serde_json::from_value(records.clone())
                    .map_err(|e| DaemonError::Io(format!("the daemon's records: {e}")))?;
            let store = Store::open(&scratch)?;
            for (key, record) in &records {
                store.put(key, record)?;
            }
            store
        }
        None if cfg.state.join("db").exists() => Store::open(&cfg.state)?,
        None => Store::open(&scratch)?,
    };
    // Plan changes nothing, not even the sandbox: no seeding.
    let provider = Provider::start(&cfg.provider, &cfg.state, &[]).await?;
    let controller = Controller {
        client: provider.client.clone(),
        store,
        // A fresh state has none yet: every tagged script then shows as another
        // installation's, as `run` would see it without `--adopt`.
        installation: crate::store::installation::installation_id(&cfg.state, false)
            .map_err(|e| DaemonError::Io(format!("installation id: {e}")))?
            .unwrap_or_default(),
        policy: Policy {
            act: false,
            ..cfg.policy
        },
        metrics: Arc::new(Metrics::new()),
    };
    let report = controller.pass(&snap).await;
    provider.stop().await;
    drop(controller);
    drop(scratch_dir);
    let mut changes = report?.changes;
    for (key, bundle) in snap.bundles() {
        if let Some(c) = changes
            .iter_mut()
            .find(|c| &c.key == key && matches!(c.action, Action::Create | Action::Update))
        {
            c.details.extend(
                crate::worker::describe(bundle)
                    .into_iter()
                    .map(|m| format!("module {m}")),
            );
        }
    }
    Ok(changes)
}
