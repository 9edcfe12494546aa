//! A read-only look at a shared etcd store, for `lumierd plan --store etcd://…`: the records
//! and the installation id every replica shares, read without any write (no schema marker on
//! a fresh prefix, no installation id proposed, no lease, no fence). Plan then works on a
//! scratch copy, so the shared state is never written.

use super::etcd::EtcdUrl;
use super::etcd_ops::EtcdStore;
use super::{decode_key, Record, StoreError};
use crate::manifest::ResourceKey;

/// What plan needs of the shared state.
#[derive(Debug, Default)]
pub struct SharedState {
    /// Every record, in key order.
    pub records: Vec<(ResourceKey, Record)>,
    /// The installation id the replicas share (`None` before any replica ran).
    pub installation_id: Option<String>,
}

/// Reads the records and the shared installation id of the etcd store at `url`.
pub fn read_shared(url: &EtcdUrl) -> Result<SharedState, StoreError> {
    let store = EtcdStore::open_read_only(url)?;
    let mut records = Vec::new();
    for (k, v) in store.resources()? {
        if let Some(key) = decode_key(&k) {
            records.push((key, serde_json::from_slice(&v)?));
        }
    }
    let installation_id = store
        .meta_get("installation_id")?
        .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
        .filter(|id| !id.is_empty());
    Ok(SharedState {
        records,
        installation_id,
    })
}
