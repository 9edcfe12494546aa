//! `lumierd plan`: what a pass would do, changing nothing.

use super::change::{Action, Change};
use super::controller::{Controller, Policy};
use super::daemon::{ask, DaemonError, RunConfig};
use super::provider::Provider;
use crate::manifest::ResourceKey;
use crate::metrics::Metrics;
use crate::source;
use crate::store::installation::installation_id;
use crate::store::read_only::read_shared;
use crate::store::{Location, Record, Store};
use std::path::Path;
use std::sync::Arc;

/// The store plan works on, and the installation id it plans as. Plan writes only to a
/// scratch copy, never to the state it reads:
///
/// | state | plan reads | works on |
/// | --- | --- | --- |
/// | `--store etcd://…` | the shared records and installation id, read-only ([`read_shared`]) | a scratch sled copy |
/// | a daemon runs on `--state` | its records, over the status socket | a scratch sled copy |
/// | `--state` (or `--store sled:DIR`) with no daemon | the folder itself | that folder |
/// | nothing yet | — | an empty scratch store |
async fn plan_store(cfg: &RunConfig, scratch: &Path) -> Result<(Store, String), DaemonError> {
    let local_id = || -> Result<String, DaemonError> {
        // A fresh state has none yet: every tagged script then shows as another
        // installation's, as `run` would see it without `--adopt`.
        Ok(installation_id(&cfg.state, false)
            .map_err(|e| DaemonError::Io(format!("installation id: {e}")))?
            .unwrap_or_default())
    };
    let copy = |records: &[(ResourceKey, Record)]| -> Result<Store, DaemonError> {
        let store = Store::open(scratch)?;
        for (key, record) in records {
            store.put(key, record)?;
        }
        Ok(store)
    };
    if let Some(Location::Etcd(url)) = &cfg.store {
        // Read-only, and no election: plan never takes the lease nor writes etcd.
        let url = url.clone();
        let shared = tokio::task::spawn_blocking(move || read_shared(&url))
            .await
            .map_err(|e| DaemonError::Io(e.to_string()))??;
        let id = match shared.installation_id {
            Some(id) => id,
            None => local_id()?,
        };
        return Ok((copy(&shared.records)?, id));
    }
    let dir = match &cfg.store {
        Some(Location::Sled(dir)) => dir.clone(),
        _ => cfg.state.clone(),
    };
    // A running daemon holds the store (sled has one writer): plan then works on a scratch
    // copy of the daemon's records, asked over the status socket.
    let store = match ask(&cfg.state, "records").await {
        Some(records) => {
            let records: Vec<(ResourceKey, Record)> = serde_json::from_value(records)
                .map_err(|e| DaemonError::Io(format!("the daemon's records: {e}")))?;
            copy(&records)?
        }
        None if dir.join("db").exists() => Store::open(&dir)?,
        None => Store::open(scratch)?,
    };
    Ok((store, local_id()?))
}

/// `lumierd plan`: what a pass would do, changing nothing. Returns the changes.
pub async fn plan(cfg: RunConfig) -> Result<Vec<Change>, DaemonError> {
    let snap = source::load_with(&cfg.manifests, &cfg.load)?;
    // A private folder of our own (mkdtemp: a fresh name, mode 0700), never a predictable
    // path another user could have made first.
    let scratch_dir = tempfile::Builder::new()
        .prefix("lumierd-plan-")
        .tempdir()
        .map_err(|e| DaemonError::Io(format!("plan's scratch folder: {e}")))?;
    let (store, installation) = plan_store(&cfg, scratch_dir.path()).await?;
    // Plan changes nothing, not even the sandbox: no seeding.
    let provider = Provider::start(&cfg.provider, &cfg.state, &[]).await?;
    let controller = Controller {
        client: provider.client.clone(),
        store,
        installation,
        policy: Policy {
            act: false,
            ..cfg.policy
        },
        metrics: Arc::new(Metrics::new()),
        events: None,
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
