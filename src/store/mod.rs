//! The state store: a narrow typed API over sled. Nothing else touches sled.
//!
//! Layout (schema version [`SCHEMA_VERSION`]): tree `meta` holds `schema_version`, the last
//! manifest load error and the last pass's time; tree `resources` maps `app \0 stage \0 name`
//! to a JSON [`Record`]; trees `outbox` and `outbox_ids` hold the notifications waiting for
//! delivery (see [`Store::outbox_push`]).
//!
//! Durability: [`Store::put`] is in memory until the next flush; [`Store::put_durable`] waits
//! until the record is on disk, and the controller uses it before any provider write (the
//! write's outcome must be recordable first) and for each write's outcome. Flushes run on a
//! blocking thread, never on the async workers, so a frozen disk stalls a pass, not the
//! daemon.
//!
//! Backends: sled in the state folder (the default), or etcd under a key prefix
//! ([`etcd`], `--store etcd://…`), for replicas that share their state. Both serve the same
//! typed API; [`Location`] names one.
//!
//! Failure: after a sled error the store reports it ([`Store::can_write`], for readiness and
//! the watchdog) and the next operation reopens sled, so a store whose disk was full works
//! again once there is room.
//!
//! Parts: the typed API ([`Store`], here), the sled backend (`sled_trees`), the etcd backend
//! ([`etcd`], `etcd_ops`), record keys (`keys`), [`Record`]s (`record`), the notification
//! outbox (`outbox`), [`Location`] and [`StoreError`].

pub mod etcd;
pub mod installation;
pub mod migrate;
mod outbox;
pub mod read_only;
mod record;

mod error;
mod etcd_ops;
mod keys;
mod location;
mod sled_trees;
pub use error::StoreError;
pub use etcd_ops::Fence;
pub use location::Location;
pub use outbox::{Pushed, OUTBOX_CAP};
pub use record::{DriftEvent, Record, State, DRIFT_HISTORY};
pub(crate) use sled_trees::Trees;

use crate::manifest::ResourceKey;
use crate::time::Timestamp;
use keys::{decode_key, encode_key, resource_key};
use sled_trees::private;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The layout version this build writes. Older layouts are migrated on open; newer are refused.
pub const SCHEMA_VERSION: u32 = 1;

/// The store handle. Cheap to clone: every clone shares one database (and one reopen).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// None after a failed reopen, until one succeeds.
    trees: RwLock<Option<Trees>>,
    /// Set by a failed sled operation, cleared by a successful reopen.
    failed: AtomicBool,
    /// Set for an etcd store: then `trees` stays None and every operation goes to etcd.
    etcd: Option<etcd_ops::EtcdStore>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, migrating older layouts.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        private(dir)
            .map_err(|e| StoreError::Flush(format!("state folder {}: {e}", dir.display())))?;
        let trees = Trees::open(dir)?;
        // sled made its files with the process umask: the records (and what they say about
        // the account) are the owner's only, also in a folder written by an older build.
        private(&dir.join("db"))
            .map_err(|e| StoreError::Flush(format!("state folder {}: {e}", dir.display())))?;
        Ok(Store {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                trees: RwLock::new(Some(trees)),
                failed: AtomicBool::new(false),
                etcd: None,
            }),
        })
    }

    /// Opens the store at `location` (see [`Store::open`] and [`Store::open_etcd`]).
    pub fn open_at(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sled(dir) => Store::open(dir),
            Location::Etcd(url) => Store::open_etcd(url),
        }
    }

    /// Connects to the etcd store at `url`, checking its schema version (and writing it on
    /// a fresh prefix).
    pub fn open_etcd(url: &etcd::EtcdUrl) -> Result<Store, StoreError> {
        let store = etcd_ops::EtcdStore::open(url)?;
        Ok(Store {
            shared: Arc::new(Shared {
                dir: PathBuf::new(),
                trees: RwLock::new(None),
                failed: AtomicBool::new(false),
                etcd: Some(store),
            }),
        })
    }

    /// For an etcd store, the installation id every replica shares (`proposed` if none was
    /// set: see [`installation`]); `None` for sled, whose id is the state folder's file.
    pub fn shared_installation_id(&self, proposed: &str) -> Result<Option<String>, StoreError> {
        match self.etcd() {
            Some(e) => self.on_etcd(e, |e| e.installation_id(proposed).map(Some)),
            None => Ok(None),
        }
    }

    /// Guards every later record write of an etcd store with `fence` (None lifts it): a
    /// write then fails with [`etcd::EtcdError::Fenced`] once the fence key changed. No-op
    /// for sled.
    pub fn set_fence(&self, fence: Option<Fence>) {
        if let Some(e) = self.etcd() {
            e.set_fence(fence);
        }
    }

    /// The etcd backend, when this store is one.
    pub(crate) fn etcd(&self) -> Option<&etcd_ops::EtcdStore> {
        self.shared.etcd.as_ref()
    }

    /// Runs an etcd operation; an unreachable etcd marks the store failed until a call
    /// succeeds again.
    pub(crate) fn on_etcd<T>(
        &self,
        e: &etcd_ops::EtcdStore,
        op: impl FnOnce(&etcd_ops::EtcdStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = op(e);
        match &out {
            Err(StoreError::Etcd(etcd::EtcdError::Unreachable { .. })) => {
                self.shared.failed.store(true, Ordering::SeqCst)
            }
            Ok(_) => self.shared.failed.store(false, Ordering::SeqCst),
            Err(_) => {}
        }
        out
    }

    /// Whether the store can write (no sled failure since the last successful reopen).
    pub fn can_write(&self) -> bool {
        !self.shared.failed.load(Ordering::SeqCst)
    }

    pub fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        let found = match self.etcd() {
            Some(e) => self.on_etcd(e, |e| e.get(&resource_key(key)))?,
            None => self
                .with(|t| t.resources.get(encode_key(key)))?
                .map(|v| v.to_vec()),
        };
        match found {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a record (durable at the next flush).
    pub fn put(&self, key: &ResourceKey, record: &Record) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record)?;
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.put(&resource_key(key), &value));
        }
        self.with(|t| t.resources.insert(encode_key(key), value))?;
        Ok(())
    }

    /// Writes a record and waits until it is on disk (before and after a provider write).
    pub async fn put_durable(&self, key: &ResourceKey, record: &Record) -> Result<(), StoreError> {
        if self.etcd().is_some() {
            // A network round trip: on a blocking thread, never on an async worker.
            let (store, key, record) = (self.clone(), key.clone(), record.clone());
            return tokio::task::spawn_blocking(move || store.put(&key, &record))
                .await
                .map_err(|e| StoreError::Flush(e.to_string()))?;
        }
        self.put(key, record)?;
        self.flush_durable().await
    }

    pub fn remove(&self, key: &ResourceKey) -> Result<(), StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.remove(&resource_key(key)));
        }
        self.with(|t| t.resources.remove(encode_key(key)))?;
        Ok(())
    }

    /// Every record's key, in key order (values are not decoded).
    pub fn keys(&self) -> Result<Vec<ResourceKey>, StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| {
                Ok(e.resources()?
                    .into_iter()
                    .filter_map(|(k, _)| decode_key(&k))
                    .collect())
            });
        }
        self.with(|t| {
            let mut out = Vec::new();
            for k in t.resources.iter().keys() {
                if let Some(key) = decode_key(&k?) {
                    out.push(key);
                }
            }
            Ok(out)
        })
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<(ResourceKey, Record)>, StoreError> {
        self.records().collect()
    }

    /// Every record, in key order, decoded one at a time (memory stays at one record however
    /// many there are).
    pub fn records(
        &self,
    ) -> Box<dyn Iterator<Item = Result<(ResourceKey, Record), StoreError>> + Send> {
        if let Some(e) = self.etcd() {
            // etcd: read in one consistent range (values are small; no lazy cursor there).
            return match self.on_etcd(e, |e| e.resources()) {
                Err(err) => Box::new(std::iter::once(Err(err))),
                Ok(kvs) => Box::new(kvs.into_iter().filter_map(|(k, v)| {
                    let key = decode_key(&k)?;
                    Some(
                        serde_json::from_slice(&v)
                            .map(|rec| (key, rec))
                            .map_err(Into::into),
                    )
                })),
            };
        }
        let tree = self.with(|t| Ok(t.resources.clone()));
        let (tree, failed) = match tree {
            Ok(tree) => (Some(tree), None),
            Err(e) => (None, Some(Err(e))),
        };
        Box::new(failed.into_iter().chain(tree.into_iter().flat_map(|tree| {
            tree.iter().filter_map(|item| {
                let (k, v) = match item {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(e.into())),
                };
                let key = decode_key(&k)?;
                Some(
                    serde_json::from_slice(&v)
                        .map(|rec| (key, rec))
                        .map_err(Into::into),
                )
            })
        })))
    }

    /// The last manifest load error (None when the last load succeeded).
    pub fn load_error(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta_get("load_error")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_load_error(&self, error: Option<&str>) -> Result<(), StoreError> {
        // Written only when it changes: every reload sets it.
        if self.load_error()?.as_deref() == error {
            return Ok(());
        }
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| match error {
                Some(v) => e.meta_put("load_error", v.as_bytes()),
                None => e.meta_remove("load_error"),
            });
        }
        self.with(|t| match error {
            Some(e) => t.meta.insert("load_error", e.as_bytes()),
            None => t.meta.remove("load_error"),
        })?;
        Ok(())
    }

    /// When the last complete pass started, if one has run.
    pub fn last_pass(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .meta_get("last_pass")?
            .and_then(|v| Timestamp::parse(&String::from_utf8_lossy(&v))))
    }

    /// A `meta` value, from either backend.
    pub(crate) fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.etcd() {
            Some(e) => self.on_etcd(e, |e| e.meta_get(name)),
            None => Ok(self.with(|t| t.meta.get(name))?.map(|v| v.to_vec())),
        }
    }

    pub fn set_last_pass(&self, at: Timestamp) -> Result<(), StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.meta_put("last_pass", at.to_string().as_bytes()));
        }
        self.with(|t| t.meta.insert("last_pass", at.to_string().as_bytes()))?;
        Ok(())
    }

    /// Waits until every write so far is on disk, on the calling thread (for synchronous
    /// callers: the CLI, shutdown). Async code uses [`Store::flush_durable`].
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.etcd().is_some() {
            return Ok(()); // etcd acknowledges a write once a quorum has it on disk
        }
        self.with(|t| t.db.flush())?;
        Ok(())
    }

    /// [`Store::flush`] on a blocking thread: a stalled disk stalls this call, not the
    /// async workers (signals, health checks and the admin API keep running).
    pub async fn flush_durable(&self) -> Result<(), StoreError> {
        if self.etcd().is_some() {
            return Ok(());
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| StoreError::Flush(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::kv_namespace::{KvObserved, KvStatus};
    use crate::resources::{Kind, Status};

    fn key(name: &str) -> ResourceKey {
        ResourceKey {
            app: "shop".into(),
            stage: "prod".into(),
            name: name.into(),
        }
    }

    #[test]
    fn records_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let r = Record {
                status: Status::Kv(KvStatus {
                    observed: KvObserved {
                        namespace_id: None,
                        title: Some("shop-prod-cache".into()),
                    },
                }),
                create_pending: true,
                ..Record::default()
            };
            store.put(&key("cache"), &r).unwrap();
            store.put(&key("api"), &Record::default()).unwrap();
            store.set_load_error(Some("bad.yaml:1:1: oops")).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 2);
        let cache = store.get(&key("cache")).unwrap().unwrap();
        assert!(cache.create_pending);
        let Status::Kv(kv) = &cache.status else {
            panic!("{cache:?}")
        };
        assert_eq!(kv.observed.title.as_deref(), Some("shop-prod-cache"));
        assert_eq!(
            store.load_error().unwrap().as_deref(),
            Some("bad.yaml:1:1: oops")
        );
        store.remove(&key("api")).unwrap();
        assert!(store.get(&key("api")).unwrap().is_none());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .with(|t| t.meta.insert("schema_version", "99"))
                .unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert!(
            err.to_string()
                .contains("schema version 99, newer than this lumierd understands"),
            "{err}"
        );
    }

    /// `tests/data/v1-state` is the state folder the v1 binary (before the kind contract) left
    /// after `run --once --manifests examples`: every record still reads, as its kind.
    #[test]
    fn a_store_written_by_v1_reads_with_typed_kind_state() {
        use crate::resources::worker_script::WorkerStatus;
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1-state");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db/blobs")).unwrap();
        for f in ["conf", "db"] {
            std::fs::copy(fixture.join("db").join(f), dir.path().join("db").join(f)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let records = store.all().unwrap();
        assert_eq!(records.len(), 6, "{records:?}");
        for (key, rec) in &records {
            assert_eq!(rec.state, State::Ready, "{key}");
            assert!(rec.last_reconciled.is_some() || store.last_pass().unwrap().is_some());
            match (key.name.as_str(), rec.kind(), &rec.status) {
                ("api", Kind::WorkerScript, Status::Worker(WorkerStatus { observed, applied })) => {
                    let applied = applied.as_ref().expect("v1 recorded what it uploaded");
                    assert_eq!(applied.content_hash.len(), 64, "{applied:?}");
                    assert!(applied.bindings.contains_key("CACHE"), "{applied:?}");
                    assert_eq!(applied.compatibility_date, "2025-01-01");
                    assert!(observed.etag.is_some() && observed.modified_on.is_some());
                }
                ("legacy", Kind::KvExisting, Status::Kv(kv))
                | ("cache", Kind::KvNamespace, Status::Kv(kv)) => {
                    assert!(kv.observed.namespace_id.is_some(), "{key}: {kv:?}")
                }
                other => panic!("unexpected record {other:?}"),
            }
        }
    }
}
