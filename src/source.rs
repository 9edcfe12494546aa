//! A complete desired-state snapshot: the validated manifests plus every worker's built
//! modules. Built whole or not at all, so the controller never acts on a partial read.

use crate::manifest::{self, Desired, Diagnostic, LoadError, ResourceKey, ResourceSpec};
use crate::worker::{self, WorkerBundle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The desired state lumierd converges to.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub desired: Desired,
    /// Every worker's modules, built from its entry.
    pub bundles: BTreeMap<ResourceKey, Arc<WorkerBundle>>,
    /// The canonical manifests root.
    pub root: PathBuf,
    /// JSON files skipped as not being manifests.
    pub skipped: Vec<String>,
}

/// Loads the manifests under `root` and builds every worker's modules. Module errors are
/// reported like manifest errors, at the worker's declaration.
pub fn load(root: &Path) -> Result<Snapshot, LoadError> {
    let loaded = manifest::load(root)?;
    let mut bundles = BTreeMap::new();
    let mut diags = Vec::new();
    for resource in loaded.desired.resources() {
        let ResourceSpec::Worker(spec) = &resource.spec else {
            continue;
        };
        // The worker step shows paths under the root as the user spelled it.
        let entry = root.join(
            spec.entry_path
                .strip_prefix(&loaded.root)
                .unwrap_or(&spec.entry_path),
        );
        match worker::build(root, &entry) {
            Ok(bundle) => {
                bundles.insert(resource.key.clone(), Arc::new(bundle));
            }
            Err(e) => diags.push(Diagnostic {
                file: resource.origin.file.clone(),
                pos: resource.origin.pos,
                message: format!("worker `{}`: {e}", resource.key.name),
            }),
        }
    }
    if !diags.is_empty() {
        return Err(LoadError::Invalid(diags));
    }
    Ok(Snapshot {
        desired: loaded.desired,
        bundles,
        root: loaded.root,
        skipped: loaded.skipped,
    })
}
