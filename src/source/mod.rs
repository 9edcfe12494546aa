//! A complete desired-state snapshot: the validated manifests plus every worker's built
//! modules. Built whole or not at all, so the controller never acts on a partial read.

use crate::manifest::{
    self, Desired, Diagnostic, LoadError, ResourceKey, ResourceSpec, WorkerSpec,
};
use crate::worker::{self, WorkerBundle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What a file looked like: its length and modification time (None: it is gone).
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// A built worker and the stamps of every file (and folder) its build read: while they all
/// match, a rebuild would give the same bundle. Folders are stamped so that a new file that
/// would now win an import's resolution (`./x` → a new `x.ts`) forces a rebuild too.
#[derive(Debug, Clone)]
struct Cached {
    bundle: Arc<WorkerBundle>,
    /// One per [`watched`] path of the bundle, in that order (the paths are not stored twice).
    stamps: Vec<Stamp>,
}

/// The files a bundle was built from and their folders, sorted, without repeats.
fn watched(bundle: &WorkerBundle) -> Vec<&Path> {
    let mut paths: Vec<&Path> = bundle
        .sources
        .iter()
        .map(PathBuf::as_path)
        .chain(bundle.sources.iter().filter_map(|p| p.parent()))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

impl Cached {
    fn new(bundle: Arc<WorkerBundle>) -> Cached {
        let stamps = watched(&bundle).into_iter().map(stamp).collect();
        Cached { bundle, stamps }
    }

    fn fresh(&self) -> bool {
        let paths = watched(&self.bundle);
        paths.len() == self.stamps.len()
            && paths
                .into_iter()
                .zip(&self.stamps)
                .all(|(p, s)| stamp(p) == *s)
    }
}

/// The desired state lumierd converges to.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Shared with the next snapshot when a reload finds the manifests unchanged.
    pub desired: Arc<Desired>,
    /// The canonical manifests root.
    pub root: PathBuf,
    /// JSON files that are not manifests (each a module of some worker, checked at load).
    pub unclassified: Vec<manifest::Unclassified>,
    /// The options of the first load, kept by every reload from this snapshot.
    options: manifest::LoadOptions,
    /// Built workers by entry path, reused by the next load while their files are unchanged.
    cache: HashMap<PathBuf, Cached>,
    /// The manifest files' fingerprint ([`manifest::Sources::fingerprint`]).
    fingerprint: [u8; 32],
    /// The Lumier configs and their imports, each with the SHA-256 of its content when read
    /// (None: unreadable): the manifest fingerprint does not cover them.
    lumier: Vec<(PathBuf, Option<[u8; 32]>)>,
}

/// The SHA-256 of a file's content (None when it cannot be read).
fn content_hash(path: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    std::fs::read(path).ok().map(|b| Sha256::digest(b).into())
}

impl Snapshot {
    /// The Lumier configs and the files they import (canonical paths): the daemon's watch
    /// must wake on their edits like on a worker's modules.
    pub fn lumier_sources(&self) -> impl Iterator<Item = &Path> {
        self.lumier.iter().map(|(p, _)| p.as_path())
    }

    /// Whether a Lumier config or a file it imports changed since this snapshot was read.
    fn lumier_changed(&self) -> bool {
        self.lumier.iter().any(|(p, h)| content_hash(p) != *h)
    }

    /// The built modules of a worker as declared (None if its entry was not built).
    pub fn worker_bundle(&self, spec: &WorkerSpec) -> Option<&Arc<WorkerBundle>> {
        self.cache.get(&spec.entry_path).map(|c| &c.bundle)
    }

    /// The fingerprint of `resource`'s desired spec in this snapshot (its built modules
    /// included), for change detection.
    pub fn spec_hash(&self, resource: &manifest::Resource) -> String {
        manifest::spec_hash(
            &resource.spec,
            self.bundle(&resource.key).map(|b| b.content_hash.as_str()),
        )
    }

    /// The built modules of the worker declared under `key` (None for anything else).
    pub fn bundle(&self, key: &ResourceKey) -> Option<&Arc<WorkerBundle>> {
        match &self.desired.resource(key)?.spec {
            ResourceSpec::Worker(spec) => self.worker_bundle(spec),
            _ => None,
        }
    }

    /// Every worker and its built modules, in key order.
    pub fn bundles(&self) -> impl Iterator<Item = (&ResourceKey, &Arc<WorkerBundle>)> {
        self.desired.resources().filter_map(|r| match &r.spec {
            ResourceSpec::Worker(spec) => self.worker_bundle(spec).map(|b| (&r.key, b)),
            _ => None,
        })
    }

    /// The resources whose desired spec differs from `before` (or that `before` lacks).
    pub fn changed_since(&self, before: &Snapshot) -> std::collections::HashSet<ResourceKey> {
        if Arc::ptr_eq(&self.desired, &before.desired) {
            // Same manifests, so the same specs: only workers whose bundle was rebuilt differ.
            return self
                .desired
                .resources()
                .filter(|r| {
                    let ResourceSpec::Worker(spec) = &r.spec else {
                        return false;
                    };
                    match (self.worker_bundle(spec), before.worker_bundle(spec)) {
                        (Some(new), Some(old)) => {
                            !Arc::ptr_eq(new, old) && new.content_hash != old.content_hash
                        }
                        (new, old) => new.is_some() != old.is_some(),
                    }
                })
                .map(|r| r.key.clone())
                .collect();
        }
        let hash = |snap: &Snapshot, r: &manifest::Resource| snap.spec_hash(r);
        self.desired
            .resources()
            .filter(|r| {
                before
                    .desired
                    .resource(&r.key)
                    .is_none_or(|old| hash(before, old) != hash(self, r))
            })
            .map(|r| r.key.clone())
            .collect()
    }
}

/// Loads the manifests under `root` and builds every worker's modules. Module errors are
/// reported like manifest errors, at the worker's declaration.
pub fn load(root: &Path) -> Result<Snapshot, LoadError> {
    load_with(root, &manifest::LoadOptions::default())
}

/// Like [`load`], as `options` say (e.g. `--allow-empty`); reloads from the snapshot keep them.
pub fn load_with(root: &Path, options: &manifest::LoadOptions) -> Result<Snapshot, LoadError> {
    build(root, manifest::read(root)?, None, options)
}

/// Like [`load`], reusing the workers of `previous` whose files did not change (a reload in
/// the daemon rebuilds only what an edit touched). Workers sharing an entry share a bundle.
pub fn load_after(root: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, LoadError> {
    let options = previous.map(|p| p.options).unwrap_or_default();
    build(root, manifest::read(root)?, previous, &options)
}

/// Reloads for the daemon. When no manifest file's content changed, the manifests are not
/// decoded again (the new snapshot shares `previous`'s [`Desired`]) and only the workers whose
/// files changed are rebuilt; when nothing changed at all, `previous` itself is returned (no
/// second snapshot in memory). Otherwise like [`load_after`].
pub fn reload(root: &Path, previous: &Arc<Snapshot>) -> Result<Arc<Snapshot>, LoadError> {
    let sources = manifest::read(root)?;
    if sources.has_problems()
        || sources.fingerprint != previous.fingerprint
        || previous.lumier_changed()
    {
        return build(root, sources, Some(previous), &previous.options).map(Arc::new);
    }
    let built = build_bundles(root, &previous.root, &previous.desired, Some(previous))?;
    check_unclassified(&previous.unclassified, &built.cache)?;
    if built.rebuilt == 0 {
        return Ok(Arc::clone(previous));
    }
    Ok(Arc::new(Snapshot {
        desired: Arc::clone(&previous.desired),
        root: previous.root.clone(),
        unclassified: previous.unclassified.clone(),
        options: previous.options,
        fingerprint: previous.fingerprint,
        lumier: previous.lumier.clone(),
        cache: built.cache,
    }))
}

fn build(
    root: &Path,
    sources: manifest::Sources,
    previous: Option<&Snapshot>,
    options: &manifest::LoadOptions,
) -> Result<Snapshot, LoadError> {
    let loaded = sources.decode_with(options)?;
    let built = build_bundles(root, &loaded.root, &loaded.desired, previous)?;
    check_unclassified(&loaded.unclassified, &built.cache)?;
    Ok(Snapshot {
        desired: Arc::new(loaded.desired),
        root: loaded.root,
        unclassified: loaded.unclassified,
        options: *options,
        fingerprint: loaded.fingerprint,
        lumier: loaded
            .lumier_files
            .iter()
            .map(|p| (p.clone(), content_hash(p)))
            .collect(),
        cache: built.cache,
    })
}

/// A JSON file that is not a manifest must be a module of some built worker.
fn check_unclassified(
    unclassified: &[manifest::Unclassified],
    cache: &HashMap<PathBuf, Cached>,
) -> Result<(), LoadError> {
    let modules: std::collections::HashSet<&Path> = cache
        .values()
        .flat_map(|c| c.bundle.sources.iter().map(PathBuf::as_path))
        .collect();
    let diags = manifest::unclassified_errors(unclassified, |p| modules.contains(p));
    if diags.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Invalid(diags))
    }
}

/// Every worker's bundle by entry path, and how many had to be built (not reused from
/// `previous`).
struct Built {
    cache: HashMap<PathBuf, Cached>,
    rebuilt: usize,
}

/// Builds the bundle of every worker in `desired`, reusing `previous`'s while their files
/// are unchanged. `root` is the manifests root as given, `canonical` as resolved.
fn build_bundles(
    root: &Path,
    canonical: &Path,
    desired: &Desired,
    previous: Option<&Snapshot>,
) -> Result<Built, LoadError> {
    let mut cache: HashMap<PathBuf, Cached> = HashMap::new();
    let mut rebuilt = 0;
    let mut diags = Vec::new();
    for resource in desired.resources() {
        let ResourceSpec::Worker(spec) = &resource.spec else {
            continue;
        };
        // The worker step shows paths under the root as the user spelled it.
        let entry = root.join(
            spec.entry_path
                .strip_prefix(canonical)
                .unwrap_or(&spec.entry_path),
        );
        if let Some(hit) = cache.get(&spec.entry_path).or_else(|| {
            previous
                .and_then(|p| p.cache.get(&spec.entry_path))
                .filter(|c| c.fresh())
        }) {
            if !cache.contains_key(&spec.entry_path) {
                cache.insert(spec.entry_path.clone(), hit.clone());
            }
            continue;
        }
        rebuilt += 1;
        match worker::build(root, &entry) {
            Ok(bundle) => {
                cache.insert(spec.entry_path.clone(), Cached::new(Arc::new(bundle)));
            }
            Err(e) => diags.push(Diagnostic {
                file: resource.origin.file.to_string(),
                pos: resource.origin.pos,
                message: format!("worker `{}`: {e}", resource.key.name),
            }),
        }
    }
    if !diags.is_empty() {
        return Err(LoadError::Invalid(diags));
    }
    Ok(Built { cache, rebuilt })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ResourceKey {
        ResourceKey {
            app: "shop".into(),
            stage: "dev".into(),
            name: name.into(),
        }
    }

    #[test]
    fn reloads_reuse_unchanged_workers_and_rebuild_edited_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("index.js"),
            "import { f } from \"./lib\";\nexport default { fetch: f };\n",
        )
        .unwrap();
        std::fs::write(
            root.join("lib.js"),
            "export function f() { return new Response(\"a\"); }\n",
        )
        .unwrap();
        std::fs::write(root.join("other.js"), "export default {};\n").unwrap();
        std::fs::write(
            root.join("m.yaml"),
            "app: { name: shop }\nstage: dev\nresources:\n  a: { type: worker, entry: index.js }\n  b: { type: worker, entry: index.js }\n  c: { type: worker, entry: other.js }\n",
        )
        .unwrap();
        let first = load(root).unwrap();
        // Two workers with one entry share one build.
        assert!(Arc::ptr_eq(
            first.bundle(&key("a")).unwrap(),
            first.bundle(&key("b")).unwrap()
        ));

        let second = load_after(root, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(
            first.bundle(&key("a")).unwrap(),
            second.bundle(&key("a")).unwrap()
        ));
        assert!(Arc::ptr_eq(
            first.bundle(&key("c")).unwrap(),
            second.bundle(&key("c")).unwrap()
        ));

        // An edit of an imported file rebuilds exactly the workers that import it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(
            root.join("lib.js"),
            "export function f() { return new Response(\"bb\"); }\n",
        )
        .unwrap();
        let third = load_after(root, Some(&second)).unwrap();
        assert_ne!(
            third.bundle(&key("a")).unwrap().content_hash,
            second.bundle(&key("a")).unwrap().content_hash
        );
        assert!(Arc::ptr_eq(
            second.bundle(&key("c")).unwrap(),
            third.bundle(&key("c")).unwrap()
        ));

        // A new file that now wins an extensionless import (`./lib` → lib.ts) rebuilds too.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(
            root.join("lib.ts"),
            "export function f(): Response { return new Response(\"ts\"); }\n",
        )
        .unwrap();
        let fourth = load_after(root, Some(&third)).unwrap();
        let names: Vec<&str> = fourth
            .bundle(&key("a"))
            .unwrap()
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_ne!(
            fourth.bundle(&key("a")).unwrap().content_hash,
            third.bundle(&key("a")).unwrap().content_hash,
            "{names:?}"
        );
    }

    /// A JSON file is accepted only while a worker imports it, on the daemon's reload path
    /// too (where unchanged manifests are not decoded again).
    #[test]
    fn a_json_file_no_worker_imports_any_more_fails_the_reload() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("data.json"), "{}").unwrap();
        std::fs::write(
            root.join("index.js"),
            "import d from \"./data.json\";\nexport default { d };\n",
        )
        .unwrap();
        std::fs::write(
            root.join("m.yaml"),
            "app: { name: shop }\nstage: dev\nresources:\n  a: { type: worker, entry: index.js }\n",
        )
        .unwrap();
        let first = Arc::new(load(root).unwrap());
        // A different length: the build cache sees the edit whatever the clock's resolution.
        std::fs::write(root.join("index.js"), "export default {};\n").unwrap();
        let err = reload(root, &first).unwrap_err().to_string();
        assert!(
            err.contains("data.json:1:1: not a stage manifest")
                && err.contains("no worker imports it"),
            "{err}"
        );
    }

    #[test]
    fn reload_reuses_the_snapshot_only_while_nothing_it_was_built_from_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("index.js"), "export default {};\n").unwrap();
        let manifest = |var: &str| {
            format!(
                "app: {{ name: shop }}\nstage: dev\nresources:\n  a: {{ type: worker, entry: index.js, bindings: {{ V: {var} }} }}\n"
            )
        };
        std::fs::write(root.join("m.yaml"), manifest("one")).unwrap();
        let first = Arc::new(load(root).unwrap());

        let same = reload(root, &first).unwrap();
        assert!(Arc::ptr_eq(&first, &same), "nothing changed: no rebuild");

        // Same length, same second: the content decides, not the stamp.
        std::fs::write(root.join("m.yaml"), manifest("two")).unwrap();
        let edited = reload(root, &first).unwrap();
        assert!(!Arc::ptr_eq(&first, &edited));
        assert_ne!(first.desired, edited.desired);

        // A worker file edit alone rebuilds too.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("index.js"), "export default { a: 1 };\n").unwrap();
        let rebuilt = reload(root, &edited).unwrap();
        assert!(!Arc::ptr_eq(&edited, &rebuilt));
        assert!(
            Arc::ptr_eq(&edited.desired, &rebuilt.desired),
            "manifests unchanged: not decoded again"
        );
        assert_eq!(
            rebuilt.changed_since(&edited),
            std::collections::HashSet::from([key("a")])
        );
        assert_ne!(
            edited.bundle(&key("a")).unwrap().content_hash,
            rebuilt.bundle(&key("a")).unwrap().content_hash
        );

        // A new manifest file is seen; a broken one is an error (the caller keeps the old).
        std::fs::write(root.join("n.yaml"), "app: { name: shop }\nstage: prod\n").unwrap();
        let grown = reload(root, &rebuilt).unwrap();
        assert_eq!(grown.desired.stages.len(), 2);
        std::fs::write(root.join("n.yaml"), "app: [\n").unwrap();
        assert!(reload(root, &grown).is_err());
    }
}
