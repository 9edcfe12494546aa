//! The sled backend: the database in `STATE/db` and its trees, opened with the schema check,
//! kept private (0700/0600), cleaned of snapshots sled did not finish, and reopened after a
//! failure. Only this module and the typed API in [`super`] touch sled.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::{outbox, Store, StoreError, SCHEMA_VERSION};

/// The open sled database and its trees.
pub(crate) struct Trees {
    pub(super) db: sled::Db,
    pub(crate) meta: sled::Tree,
    pub(super) resources: sled::Tree,
    /// Notifications waiting for delivery ([`outbox`]).
    pub(super) outbox: outbox::Outbox,
}

impl Trees {
    pub(super) fn open(dir: &Path) -> Result<Trees, StoreError> {
        let path = dir.display().to_string();
        let db = open_db(dir).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let meta = db.open_tree("meta")?;
        let resources = db.open_tree("resources")?;
        let found = match meta.get("schema_version")? {
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0),
            None => SCHEMA_VERSION,
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path, found });
        }
        // Version 1 is the first layout: nothing older exists to migrate yet. A future layout
        // change adds its migration step here, from `found` up to SCHEMA_VERSION.
        if found != SCHEMA_VERSION || meta.get("schema_version")?.is_none() {
            meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
            db.flush()?;
        }
        let outbox = outbox::Outbox::open(&db)?;
        Ok(Trees {
            db,
            meta,
            resources,
            outbox,
        })
    }
}

/// How long an open waits for the lock that a just-dropped handle of this process still
/// holds (sled's background flusher lets go of it a moment after the last handle is dropped:
/// a reopen after a failure, a test reopening its store).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Removes snapshots sled did not finish writing (`snap.*.generating`: it renames a snapshot
/// once it is whole). sled 0.34 takes them for snapshots when it opens, so one cut off by a full
/// disk would make the store unopenable for good ("Read corrupted data"), in this process and
/// every later one.
fn remove_unfinished_snapshots(db_dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(db_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "state store: removing a snapshot sled did not finish");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    remove_unfinished_snapshots(&dir.join("db"))?;
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(8 << 20)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Makes `dir` (created if missing) mode 0700 and every file below it 0600, folders 0700.
pub(super) fn private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Runs `op` on the trees; a sled error marks the store failed (and the next operation
    /// reopens it).
    pub(crate) fn with<T>(
        &self,
        op: impl FnOnce(&Trees) -> Result<T, sled::Error>,
    ) -> Result<T, StoreError> {
        if self.etcd().is_some() {
            // Every public operation branches to etcd first; never open a sled folder here.
            return Err(StoreError::Flush(
                "a sled operation on an etcd store (a bug: please report it)".into(),
            ));
        }
        if !self.can_write() {
            self.reopen()?;
        }
        let guard = self
            .shared
            .trees
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(trees) = guard.as_ref() else {
            return Err(StoreError::Flush(
                "the store is closed after a failure".into(),
            ));
        };
        op(trees).map_err(|e| {
            self.shared.failed.store(true, Ordering::SeqCst);
            tracing::error!(error = %e, "state store failed; it is reopened at the next use");
            e.into()
        })
    }

    /// Drops the failed database and opens it again. Unflushed writes are gone (by design:
    /// only flushed ones count).
    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self
            .shared
            .trees
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.shared.failed.load(Ordering::SeqCst) && guard.is_some() {
            return Ok(()); // another clone reopened it meanwhile
        }
        *guard = None; // releases sled's lock before the new open takes it
        let trees = Trees::open(&self.shared.dir)?;
        *guard = Some(trees);
        self.shared.failed.store(false, Ordering::SeqCst);
        tracing::info!("state store reopened");
        Ok(())
    }
}
