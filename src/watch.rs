//! File-system watching: notify → a "something changed" signal. The caller debounces and
//! rescans the whole root, so editor temp files, a `git pull` touching many files and an
//! atomic symlink swap (git-sync) all end in one consistent reload.

use notify::{RecursiveMode, Watcher};
use std::path::Path;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
#[error("watching {path}: {source}")]
pub struct WatchError {
    path: String,
    #[source]
    source: notify::Error,
}

/// Keeps the watcher alive; dropping it stops watching.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `root` recursively, and its parent folder (not recursively) so that swapping a
/// symlinked root is seen too. Each event sends `()` (extra events are dropped while one is
/// pending: the receiver rescans everything anyway).
pub fn watch(root: &Path) -> Result<(Watch, mpsc::Receiver<()>), WatchError> {
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.try_send(());
        }
    })
    .map_err(|source| WatchError {
        path: root.display().to_string(),
        source,
    })?;
    watcher
        .watch(root, RecursiveMode::Recursive)
        .map_err(|source| WatchError {
            path: root.display().to_string(),
            source,
        })?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Best effort: the parent may be unreadable; the periodic resync still rescans.
        let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
    }
    Ok((Watch { _watcher: watcher }, rx))
}
