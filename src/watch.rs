//! File-system watching: notify → a "something relevant changed" signal. The caller debounces
//! and rescans the whole root, so editor temp files, a `git pull` touching many files and an
//! atomic symlink swap (git-sync) all end in one consistent reload.
//!
//! What is watched, and how it follows the folder:
//! - the root's current target (the root itself, or where its symlink points), recursively;
//! - the folder holding the root, not recursively: a symlink swap, a removal, a re-creation
//!   or a rename back of the root happen there. Any event on the root's own name re-adds the
//!   recursive watch on whatever the root now is (a removed folder loses its inotify watch; a
//!   recreated one is a new inode);
//! - while the root does not exist (git-sync clones after the pod starts), its nearest
//!   existing ancestor, so its appearance is seen.
//!
//! Which changes wake the caller ([`Filter::relevant`], so a daemon never loops on its own
//! writes, e.g. `lumierd run 2> lumierd.log` inside the manifests folder):
//!
//! | path (relative to the root) | wakes |
//! | --- | --- |
//! | under an ignored folder (the state folder) | never |
//! | a file of a worker's module graph, or a module-type file in one of its folders ([`ModulePaths`]) | yes |
//! | with a hidden component (`.git/…`, `.lumierd/…`) or under `node_modules/` | no (the loader skips them), except `.lumierdignore` |
//! | the root itself, a folder, or a name without extension (a folder renamed or removed) | yes |
//! | `*.yaml`, `*.yml`, `*.json`, `.lumierdignore` | yes |
//! | `*.age` (a `{ secret: { age } }` file: the next pass decrypts and compares it) | yes |
//! | `*.js`, `*.ts`, … (module types) while the graph is unknown (no [`ModulePaths`], or not set yet) | yes (be safe) |
//! | anything else (`*.log`, `*.swp`, …) | no |
//!
//! Reads never wake it (lumierd's own rescans open every file).

use notify::event::{CreateKind, RemoveKind};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
#[error("watching {path}: {source}; pass an existing folder with --manifests")]
pub struct WatchError {
    path: String,
    #[source]
    source: notify::Error,
}

/// Manifest file endings.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];
/// Endings of files whose edit changes what a pass sends though no load reads them: age
/// secrets, decrypted by each pass.
const SECRET_EXTENSIONS: [&str; 1] = ["age"];
/// The ignore file's name.
const IGNORE_FILE: &str = ".lumierdignore";
/// Extensions of the files a worker's module graph can hold (`worker::resolve::ModuleKind`).
const MODULE_EXTENSIONS: [&str; 8] = ["js", "mjs", "ts", "mts", "json", "txt", "html", "wasm"];

/// The files of the current worker module graphs, shared with the watch and updated by the
/// daemon after each load. Cheap to clone. It starts unknown: while it is (before the first
/// successful load, and after a failed one, whose graph may reach files the last good one
/// did not), every module-type file wakes the watch, so fixing a broken import is seen.
#[derive(Debug, Clone, Default)]
pub struct ModulePaths(Arc<RwLock<Option<PathHashes>>>);

/// A set of paths kept as 64-bit keyed hashes (`Path`'s own `Hash`, so `a/./b` = `a/b`), not
/// as copies: at N = 10,000 resources the set holds 5,500 paths (every worker's entry file
/// and its folder), 0.44 MB of heap as `PathBuf`s and 0.1 MB as hashes (BENCH.md, fourth
/// round). A collision (2^-64 per lookup) can only wake the watch for an unrelated file:
/// one reload that finds nothing changed.
#[derive(Debug, Default)]
struct PathHashes {
    keys: RandomState,
    set: HashSet<u64>,
}

impl PathHashes {
    fn insert(&mut self, path: &Path) {
        let h = self.keys.hash_one(path);
        self.set.insert(h);
    }

    fn contains(&self, path: &Path) -> bool {
        self.set.contains(&self.keys.hash_one(path))
    }
}

impl ModulePaths {
    /// After a successful load: the set becomes `sources` (canonical paths of every module of
    /// every worker bundle) and their folders, since a new module-type file in such a folder
    /// may now win an import's resolution (`./lib` → a new `lib.ts`).
    pub fn set_sources<'a>(&self, sources: impl IntoIterator<Item = &'a Path>) {
        let mut set = PathHashes::default();
        for path in sources {
            if let Some(parent) = path.parent() {
                set.insert(parent);
            }
            set.insert(path);
        }
        set.set.shrink_to_fit();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
    }

    /// After a failed load: the graph is unknown again.
    pub fn set_unknown(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a module-type file at `path` may belong to a graph: `None` when unknown.
    fn covers(&self, path: &Path) -> Option<bool> {
        let set = self.0.read().unwrap_or_else(|e| e.into_inner());
        let set = set.as_ref()?;
        Some(
            set.contains(path)
                || (path.parent().is_some_and(|p| set.contains(p))
                    && has_extension(path, &MODULE_EXTENSIONS)),
        )
    }
}

/// Which changes are relevant (see the module's table).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    ignored: Vec<PathBuf>,
    modules: Option<ModulePaths>,
}

impl Filter {
    /// Never wake for anything under `folder` (the state folder). Both the path as given
    /// (made absolute) and its canonical form are ignored.
    pub fn ignore(mut self, folder: &Path) -> Filter {
        if let Ok(abs) = std::path::absolute(folder) {
            self.ignored.push(abs);
        }
        if let Ok(canonical) = std::fs::canonicalize(folder) {
            self.ignored.push(canonical);
        }
        self
    }

    /// Wake for module-type files only when they are in (or beside) a worker's module graph.
    pub fn modules(mut self, paths: ModulePaths) -> Filter {
        self.modules = Some(paths);
        self
    }

    /// Whether a change of `path` (of event `kind`) below `base` (the watched root or its
    /// target) may change what a load gives.
    pub fn relevant(&self, path: &Path, base: &Path, kind: &EventKind) -> bool {
        if self.ignored.iter().any(|i| path.starts_with(i)) {
            return false;
        }
        let graph = self.modules.as_ref().and_then(|m| m.covers(path));
        if graph == Some(true) {
            return true;
        }
        let Ok(rel) = path.strip_prefix(base) else {
            return false;
        };
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let skipped = rel.components().any(|c| match c {
            Component::Normal(part) => {
                let part = part.to_str().unwrap_or("");
                part == "node_modules" || (part.starts_with('.') && part != IGNORE_FILE)
            }
            _ => false,
        });
        if skipped {
            return false;
        }
        if rel.as_os_str().is_empty()
            || name == IGNORE_FILE
            || has_extension(path, &MANIFEST_EXTENSIONS)
            || has_extension(path, &SECRET_EXTENSIONS)
            || matches!(
                kind,
                EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
            )
            || path.extension().is_none()
        {
            return true;
        }
        if graph.is_none() && has_extension(path, &MODULE_EXTENSIONS) {
            return true;
        }
        // A folder whose name has a dot (`v1.2/`), renamed into place.
        path.is_dir()
    }
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// Keeps the watch alive; dropping it stops watching.
pub struct Watch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(root: &Path, source: notify::Error) -> WatchError {
    WatchError {
        path: root.display().to_string(),
        source,
    }
}

/// What is watched now, and how to move it when the root changes.
struct Tracker {
    /// The root as given, made absolute (its parent is where swaps happen).
    root: PathBuf,
    /// The root's canonical target, watched recursively; `None` while it does not exist.
    target: Option<PathBuf>,
    /// The folder watched non-recursively: the root's parent, or while that is missing, the
    /// nearest existing ancestor.
    anchor: Option<PathBuf>,
}

impl Tracker {
    /// Brings the watches in line with the file system; `force` re-adds the recursive watch
    /// even when the target's path is unchanged (the folder itself was removed or replaced).
    /// Returns whether the target changed (then what a load gives may have changed too).
    fn ensure(&mut self, watcher: &mut impl Watcher, force: bool) -> bool {
        // The anchor first, then the root: a folder that appears in between is seen either
        // way (by the check, or as an event in the anchor). Repeated while a deeper ancestor
        // appeared meanwhile (`mkdir -p`).
        for _ in self.root.ancestors() {
            let anchor = self.root.ancestors().skip(1).find(|a| a.is_dir());
            if anchor == self.anchor.as_deref() {
                break;
            }
            let old = self.anchor.take();
            // Best effort: the folder may be unreadable; the periodic resync still rescans.
            if let Some(anchor) = anchor {
                if watcher.watch(anchor, RecursiveMode::NonRecursive).is_ok() {
                    self.anchor = Some(anchor.to_path_buf());
                }
            }
            if let Some(old) = old.filter(|o| Some(o.as_path()) != anchor) {
                let _ = watcher.unwatch(&old);
            }
        }
        let now = std::fs::canonicalize(&self.root)
            .ok()
            .filter(|p| p.is_dir());
        let moved = now != self.target;
        if force || moved {
            if let Some(old) = self.target.take() {
                let _ = watcher.unwatch(&old);
            }
            match now {
                Some(now) => match watcher.watch(&now, RecursiveMode::Recursive) {
                    Ok(()) => {
                        tracing::info!(root = %self.root.display(), target = %now.display(), "watching the manifests folder");
                        self.target = Some(now);
                    }
                    Err(e) => {
                        tracing::warn!(root = %self.root.display(), error = %e, "cannot watch the manifests folder; the periodic resync still rescans");
                    }
                },
                None => {
                    tracing::warn!(root = %self.root.display(), "the manifests folder does not exist; waiting for it to appear")
                }
            }
        }
        moved
    }

    /// Whether `path` is the root itself (as given or as its target was).
    fn is_root(&self, path: &Path) -> bool {
        path == self.root || self.target.as_deref() == Some(path)
    }

    /// Whether `path` is below the root (or the root itself), and relevant for `filter`.
    fn relevant(&self, filter: &Filter, path: &Path, kind: &EventKind) -> bool {
        [Some(self.root.as_path()), self.target.as_deref()]
            .into_iter()
            .flatten()
            .any(|base| filter.relevant(path, base, kind))
    }
}

/// [`watch_filtered`] with the default [`Filter`] (nothing ignored, no module graph known).
pub fn watch(root: &Path) -> Result<(Watch, mpsc::Receiver<()>), WatchError> {
    watch_filtered(root, Filter::default())
}

/// Watches `root` (which need not exist yet: see the module doc) and sends `()` after each
/// burst of relevant events; extra events are dropped while one is pending, since the
/// receiver rescans everything. Must be called within a tokio runtime.
pub fn watch_filtered(
    root: &Path,
    filter: Filter,
) -> Result<(Watch, mpsc::Receiver<()>), WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (lumierd's own rescans open every file) are not changes.
        if let Ok(event) = event {
            if !matches!(event.kind, EventKind::Access(_)) {
                let _ = raw_tx.send(event);
            }
        }
    })
    .map_err(|e| error(root, e))?;
    let mut tracker = Tracker {
        root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
        target: None,
        anchor: None,
    };
    let _ = tracker.ensure(&mut watcher, false);
    if tracker.target.is_none() {
        tracing::warn!(root = %tracker.root.display(), "the manifests folder does not exist; waiting for it to appear");
    }
    if tracker.target.is_none() && tracker.anchor.is_none() {
        return Err(error(
            root,
            notify::Error::generic("neither the folder nor any folder above it can be watched"),
        ));
    }
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        while let Some(event) = raw_rx.recv().await {
            // The root itself came, went or was replaced: move the watches; a rescan follows.
            let touches_root = event.paths.iter().any(|p| tracker.is_root(p))
                || (event.paths.is_empty() && event.need_rescan());
            // (`mkdir -p a/m` seen as `a` appearing: the root came with it.)
            let moved = tracker.ensure(&mut watcher, touches_root);
            let relevant = touches_root
                || moved
                || event.need_rescan()
                || event
                    .paths
                    .iter()
                    .any(|p| tracker.relevant(&filter, p, &event.kind));
            if relevant {
                let _ = tx.try_send(());
            }
        }
    });
    Ok((Watch { task }, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, ModifyKind};

    #[test]
    fn relevance_table() {
        let base = Path::new("/m");
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        let plain = Filter::default().ignore(Path::new("/m/state"));
        let modules = ModulePaths::default();
        modules.set_sources([Path::new("/m/w/index.ts"), Path::new("/m/w/lib/a.wasm")]);
        let unknown = plain.clone().modules(ModulePaths::default());
        let graph = plain.clone().modules(modules);
        let cases: &[(&Filter, &str, &EventKind, bool)] = &[
            (&plain, "/m/dev.yaml", &modify, true),
            (&plain, "/m/a/b/dev.yml", &modify, true),
            (&plain, "/m/prod.json", &modify, true),
            (&plain, "/m/.lumierdignore", &modify, true),
            (&plain, "/m/app/secrets/key.age", &modify, true),
            (&graph, "/m/app/secrets/key.age", &modify, true),
            (&plain, "/m", &modify, true),
            (&plain, "/m/stage2", &EventKind::Any, true),
            (
                &plain,
                "/m/v1.2",
                &EventKind::Create(CreateKind::Folder),
                true,
            ),
            (&plain, "/m/lumierd.log", &modify, false),
            (&plain, "/m/dev.yaml.swp", &modify, false),
            (&plain, "/m/state/db", &modify, false),
            (&plain, "/m/state/local-api/x.json", &modify, false),
            (&plain, "/m/.lumierd/db", &modify, false),
            (&plain, "/m/.git/HEAD", &modify, false),
            (&plain, "/m/.env.yaml", &modify, false),
            (&plain, "/m/node_modules/x/package.json", &modify, false),
            (&plain, "/elsewhere/dev.yaml", &modify, false),
            // No module graph known: every module-type file wakes.
            (&plain, "/m/w/index.ts", &modify, true),
            (&plain, "/m/other/x.js", &modify, true),
            // A known graph: its files and new module files beside them only.
            (&graph, "/m/w/index.ts", &modify, true),
            (&graph, "/m/w/lib/a.wasm", &modify, true),
            (&graph, "/m/w/new.ts", &modify, true),
            (&graph, "/m/other/x.js", &modify, false),
            (&graph, "/m/w/notes.md", &modify, false),
            (&graph, "/m/dev.yaml", &modify, true),
            // Not loaded yet (or the last load failed): every module-type file wakes.
            (&unknown, "/m/other/x.js", &modify, true),
            (&unknown, "/m/w/notes.md", &modify, false),
        ];
        for (filter, path, kind, want) in cases {
            assert_eq!(
                filter.relevant(Path::new(path), base, kind),
                *want,
                "{path}"
            );
        }
    }
}
