//! `lumierd migrate-state`: copies one store into another (sled ⇄ etcd), so that a
//! single-host install can move to replicas and back. The daemon must be stopped (a sled
//! folder in use is locked anyway). The destination must hold no records: a migration never
//! merges two histories.

use super::{installation, Location, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{to} already holds {count} records; migrate only into an empty store")]
    NotEmpty { to: String, count: usize },
    #[error("installation id: {0}")]
    Installation(#[from] std::io::Error),
}

/// Copies records, the load error, the last pass, the waiting notifications and the
/// installation id from `from` to `to`; returns how many records were copied.
pub fn migrate(from: &Location, to: &Location) -> Result<usize, MigrateError> {
    if let Location::Sled(dir) = from {
        if !dir.join("db").exists() {
            return Err(StoreError::Flush(format!("no sled state in {}", dir.display())).into());
        }
    }
    let src = Store::open_at(from)?;
    if let Location::Sled(dir) = to {
        std::fs::create_dir_all(dir)?;
    }
    let dst = Store::open_at(to)?;
    let count = dst.keys()?.len();
    if count > 0 {
        return Err(MigrateError::NotEmpty {
            to: to.to_string(),
            count,
        });
    }
    // The installation id first: the scripts already uploaded carry it in their tag.
    let id = match from {
        Location::Sled(dir) => installation::installation_id(dir, false)?,
        Location::Etcd(_) => src
            .meta_get("installation_id")?
            .map(|v| String::from_utf8_lossy(&v).trim().to_owned()),
    };
    if let Some(id) = id {
        match to {
            Location::Sled(dir) => installation::write_installation_id(dir, &id)?,
            Location::Etcd(_) => {
                dst.shared_installation_id(&id)?;
            }
        }
    }
    let mut n = 0;
    for item in src.records() {
        let (key, record) = item?;
        dst.put(&key, &record)?;
        n += 1;
    }
    dst.set_load_error(src.load_error()?.as_deref())?;
    if let Some(at) = src.last_pass()? {
        dst.set_last_pass(at)?;
    }
    let mut after = None;
    while let Some((seq, entry)) = src.outbox_next(after, |_| true)? {
        dst.outbox_push(&format!("migrated-{seq}"), &entry)?;
        after = Some(seq);
    }
    dst.flush()?;
    Ok(n)
}
