//! The store's operations on etcd (layout in [`super::etcd`]): records, meta values, the
//! outbox, and the fence that guards record writes with the leader's key.
//!
//! The outbox has several writers when replicas share a prefix: every replica pushes (a
//! manifest load it saw fail, the leader change it saw), the leader pushes what its passes
//! find. Pushes are therefore transactions on the sequence number and the id
//! ([`EtcdStore::outbox_push`]): no push overwrites another, an event seen by two replicas is
//! queued once. Delivery is the leader's alone (`crate::notify::deliver`), so an entry is
//! POSTed by one replica, not by each.

use super::etcd::{prefix_end, EtcdError, EtcdUrl, Gateway, Kv};
use super::{Pushed, StoreError, OUTBOX_CAP, SCHEMA_VERSION};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;
use std::sync::{Mutex, PoisonError};

/// Records read per range call.
const PAGE: usize = 500;

/// How many pushes an outbox id is remembered for (as in sled's outbox).
const ID_MEMORY: u64 = 50_000;

/// The ids are swept of forgotten ones every this many pushes.
const SWEEP_EVERY: u64 = 1024;

/// How many sequence numbers one push tries when other replicas take them first.
const PUSH_ATTEMPTS: u32 = 16;

/// A fence: record writes succeed only while `key` still has this create revision (the
/// leader key this replica created under its lease). A replica that lost its lease can then
/// never overwrite a record the new leader wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: Vec<u8>,
    pub create_revision: i64,
}

pub struct EtcdStore {
    gw: Gateway,
    /// The next outbox sequence number (None until read from etcd).
    next_seq: Mutex<Option<u64>>,
    fence: Mutex<Option<Fence>>,
}

impl EtcdStore {
    pub fn open(url: &EtcdUrl) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore {
            gw: Gateway::connect(url.clone())?,
            next_seq: Mutex::new(None),
            fence: Mutex::new(None),
        };
        match store.meta_get("schema_version")? {
            Some(v) => {
                let found = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::TooNew {
                        path: url.to_string(),
                        found,
                    });
                }
            }
            None => store.meta_put("schema_version", SCHEMA_VERSION.to_string().as_bytes())?,
        }
        Ok(store)
    }

    /// Connects without writing anything (`plan --store`): a fresh prefix is read as empty,
    /// a newer schema is refused as by [`EtcdStore::open`].
    pub fn open_read_only(url: &EtcdUrl) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore {
            gw: Gateway::connect(url.clone())?,
            next_seq: Mutex::new(None),
            fence: Mutex::new(None),
        };
        let found = store.meta_get("schema_version")?.map(|v| {
            std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0)
        });
        match found {
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::TooNew {
                path: url.to_string(),
                found,
            }),
            _ => Ok(store),
        }
    }

    /// Guards every later record write with `fence` (None: unguarded, e.g. the CLI).
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner) = fence;
    }

    /// The installation id shared by every replica on this prefix: the one already there,
    /// else `proposed` (written only if no replica wrote one first).
    pub fn installation_id(&self, proposed: &str) -> Result<String, StoreError> {
        let key = self.meta("installation_id");
        self.gw.post(
            "/v3/kv/txn",
            json!({
                "compare": [{ "key": B64.encode(&key), "target": "CREATE", "result": "EQUAL",
                              "create_revision": "0" }],
                "success": [{ "request_put": { "key": B64.encode(&key),
                                               "value": B64.encode(proposed) } }],
            }),
        )?;
        let found = self.gw.get(&key)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&found).trim().to_owned())
    }

    fn res(&self, k: &[u8]) -> Vec<u8> {
        let mut rest = b"resources/".to_vec();
        rest.extend_from_slice(k);
        self.gw.key(&rest)
    }

    pub fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.gw.get(&self.res(k))?)
    }

    /// Writes a record, under the fence if one is set.
    pub fn put(&self, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
        let key = self.res(k);
        let fence = self
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match fence {
            None => Ok(self.gw.put(&key, v)?),
            Some(f) => {
                let out = self.gw.post(
                    "/v3/kv/txn",
                    json!({
                        "compare": [{ "key": B64.encode(&f.key), "target": "CREATE",
                                      "result": "EQUAL",
                                      "create_revision": f.create_revision.to_string() }],
                        "success": [{ "request_put": { "key": B64.encode(&key),
                                                       "value": B64.encode(v) } }],
                    }),
                )?;
                if out.get("succeeded").and_then(|s| s.as_bool()) == Some(true) {
                    Ok(())
                } else {
                    Err(EtcdError::Fenced.into())
                }
            }
        }
    }

    pub fn remove(&self, k: &[u8]) -> Result<(), StoreError> {
        self.gw.delete(&self.res(k))?;
        Ok(())
    }

    /// Every record as (key without prefix, value), in key order, read in pages.
    pub fn resources(&self) -> Result<Vec<Kv>, StoreError> {
        let base = self.res(b"");
        let end = prefix_end(&base);
        let mut from = base.clone();
        let mut out = Vec::new();
        loop {
            let page = self.gw.range(&from, &end, PAGE)?;
            let full = page.len() == PAGE;
            for (k, v) in page {
                from = k.clone();
                from.push(0);
                out.push((k[base.len()..].to_vec(), v));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    fn meta(&self, name: &str) -> Vec<u8> {
        self.gw.key(format!("meta/{name}").as_bytes())
    }

    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.gw.get(&self.meta(name))?)
    }

    pub fn meta_put(&self, name: &str, v: &[u8]) -> Result<(), StoreError> {
        Ok(self.gw.put(&self.meta(name), v)?)
    }

    pub fn meta_remove(&self, name: &str) -> Result<(), StoreError> {
        self.gw.delete(&self.meta(name))?;
        Ok(())
    }

    fn entry(&self, seq: u64) -> Vec<u8> {
        self.gw.key(format!("outbox/{seq:016x}").as_bytes())
    }

    fn entries(&self) -> (Vec<u8>, Vec<u8>) {
        let from = self.gw.key(b"outbox/");
        let end = prefix_end(&from);
        (from, end)
    }

    fn id_key(&self, id: &str) -> Vec<u8> {
        let mut rest = b"outbox_ids/".to_vec();
        rest.extend_from_slice(id.as_bytes());
        self.gw.key(&rest)
    }

    fn seq_of(&self, key: &[u8]) -> u64 {
        let (from, _) = self.entries();
        std::str::from_utf8(key.get(from.len()..).unwrap_or_default())
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    }

    /// As sled's outbox push: deduplicated by id, bounded by dropping the oldest — and safe
    /// with several writers (replicas sharing the prefix): the entry and its id are created
    /// together in one transaction that succeeds only if neither key exists yet, so a
    /// sequence number another replica took meanwhile is never overwritten (this replica
    /// re-reads the last one and tries the next, up to [`PUSH_ATTEMPTS`] times) and an id
    /// pushed by both is queued once.
    pub fn outbox_push(&self, id: &str, entry: &[u8]) -> Result<Pushed, StoreError> {
        let id_key = self.id_key(id);
        let (from, end) = self.entries();
        let mut attempt = 0;
        let seq = loop {
            let seq = self.next_seq(&from, &end)?;
            let entry_key = self.entry(seq);
            let absent = |k: &[u8]| {
                json!({ "key": B64.encode(k), "target": "CREATE", "result": "EQUAL",
                        "create_revision": "0" })
            };
            let out = self.gw.post(
                "/v3/kv/txn",
                json!({
                    "compare": [absent(&id_key), absent(&entry_key)],
                    "success": [
                        { "request_put": { "key": B64.encode(&entry_key), "value": B64.encode(entry) } },
                        { "request_put": { "key": B64.encode(&id_key),
                                           "value": B64.encode(format!("{seq:016x}")) } },
                    ],
                }),
            )?;
            if out.get("succeeded").and_then(|s| s.as_bool()) == Some(true) {
                break seq;
            }
            if self.gw.get(&id_key)?.is_some() {
                return Ok(Pushed::Duplicate);
            }
            // Another replica took `seq` meanwhile: the next try reads the last one again.
            attempt += 1;
            if attempt >= PUSH_ATTEMPTS {
                return Err(StoreError::Flush(format!(
                    "outbox: no free sequence number after {PUSH_ATTEMPTS} attempts (replicas pushing at once)"
                )));
            }
        };
        let mut dropped = 0;
        let len = self.gw.count(&from, &end)?;
        if len > OUTBOX_CAP {
            for (k, _) in self.gw.range(&from, &end, len - OUTBOX_CAP)? {
                if self.gw.delete(&k)? {
                    dropped += 1;
                }
            }
        }
        if seq % SWEEP_EVERY == 0 {
            let ids = self.gw.key(b"outbox_ids/");
            for (k, v) in self.gw.range(&ids, &prefix_end(&ids), 0)? {
                let at = std::str::from_utf8(&v)
                    .ok()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                if at.saturating_add(ID_MEMORY) < seq {
                    self.gw.delete(&k)?;
                }
            }
        }
        Ok(Pushed::Queued { dropped })
    }

    /// The next sequence number to try: past both the last one this replica pushed and the
    /// last entry in etcd (another replica's), so that entries stay in push order and a
    /// sequence number is not reused once its entry was delivered.
    fn next_seq(&self, from: &[u8], end: &[u8]) -> Result<u64, StoreError> {
        let last = self.gw.last(from, end)?.map_or(0, |k| self.seq_of(&k));
        let mut next = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = next.unwrap_or(1).max(last + 1);
        *next = Some(seq + 1);
        Ok(seq)
    }

    pub fn outbox_next(
        &self,
        after: Option<u64>,
        wanted: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let (_, end) = self.entries();
        let mut from = self.entry(after.map_or(0, |s| s.saturating_add(1)));
        loop {
            let page = self.gw.range(&from, &end, PAGE)?;
            let full = page.len() == PAGE;
            for (k, v) in page {
                if wanted(&v) {
                    return Ok(Some((self.seq_of(&k), v)));
                }
                from = k;
                from.push(0);
            }
            if !full {
                return Ok(None);
            }
        }
    }

    pub fn outbox_ack(&self, seq: u64) -> Result<(), StoreError> {
        self.gw.delete(&self.entry(seq))?;
        Ok(())
    }

    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        let (from, end) = self.entries();
        Ok(self.gw.count(&from, &end)?)
    }
}
