//! File-system watching: notify → a "something changed" signal. The caller debounces and
//! rescans the whole root, so editor temp files, a `git pull` touching many files and an
//! atomic symlink swap (git-sync) all end in one consistent reload.
//!
//! A root that is a symlink is watched through its current target; the parent folder is
//! watched too, so swapping the link is seen, and the watch then moves to the new target.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
#[error("watching {path}: {source}; pass an existing folder with --manifests")]
pub struct WatchError {
    path: String,
    #[source]
    source: notify::Error,
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

/// Watches `root` recursively (and its parent, not recursively). Each burst of events sends
/// `()`; extra events are dropped while one is pending, since the receiver rescans everything.
/// Must be called within a tokio runtime.
pub fn watch(root: &Path) -> Result<(Watch, mpsc::Receiver<()>), WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads (lumierd's own rescans open every file) are not changes.
        if let Ok(event) = event {
            if !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(event.paths);
            }
        }
    })
    .map_err(|e| error(root, e))?;
    let mut target: PathBuf = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    watcher
        .watch(&target, RecursiveMode::Recursive)
        .map_err(|e| error(root, e))?;
    // The folder holding the root (not its target): where a symlink swap happens.
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    if let Some(parent) = absolute.parent() {
        // Best effort: the parent may be unreadable; the periodic resync still rescans.
        let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
    }
    let (tx, rx) = mpsc::channel(1);
    let root = absolute;
    let task = tokio::spawn(async move {
        while let Some(paths) = raw_rx.recv().await {
            // The parent folder's other entries are none of our business.
            let ours = paths.is_empty()
                || paths
                    .iter()
                    .any(|p| p.starts_with(&root) || p.starts_with(&target));
            if !ours {
                continue;
            }
            // A swapped symlink root: move the recursive watch to the new target.
            if let Ok(now) = std::fs::canonicalize(&root) {
                if now != target {
                    let _ = watcher.unwatch(&target);
                    if watcher.watch(&now, RecursiveMode::Recursive).is_ok() {
                        tracing::info!(root = %root.display(), target = %now.display(), "manifests root moved; watching the new target");
                    }
                    target = now;
                }
            }
            let _ = tx.try_send(());
        }
    });
    Ok((Watch { task }, rx))
}
