//! The notification outbox: a bounded FIFO of entries waiting for delivery, kept in the store
//! so that it survives a restart (at-least-once delivery, `crate::notify`).
//!
//! Trees: `outbox` maps a sequence number (sled's `generate_id`, big-endian, so key order is
//! push order) to the entry's bytes; `outbox_ids` maps an entry id to its sequence number, so
//! that the same id pushed twice (an event seen again after a restart) is queued once. Ids are
//! remembered for [`ID_MEMORY`] pushes after their own, delivered or not.
//!
//! Bounds: at most [`OUTBOX_CAP`] entries wait; a push beyond it drops the oldest entry (a
//! receiver that is down for days must not fill the disk).
//!
//! Durability: like [`Store::put`], a push or an ack is on disk at the next flush (the pass's
//! own flushes): an unflushed push is lost with the record whose change it announced, so the
//! next pass sees the change again and pushes it again; an unflushed ack means one more
//! delivery.

use super::{Store, StoreError};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most entries waiting; a push beyond it drops the oldest.
pub const OUTBOX_CAP: usize = 10_000;

/// How many pushes an entry id is remembered for (after its own push).
const ID_MEMORY: u64 = 50_000;

/// The ids are swept of forgotten ones every this many pushes.
const SWEEP_EVERY: u64 = 1024;

/// The outbox's trees and its length (kept here: sled's `len` walks the whole tree).
pub(crate) struct Outbox {
    entries: sled::Tree,
    ids: sled::Tree,
    len: AtomicUsize,
}

impl Outbox {
    pub(crate) fn open(db: &sled::Db) -> Result<Outbox, sled::Error> {
        let entries = db.open_tree("outbox")?;
        let ids = db.open_tree("outbox_ids")?;
        let len = AtomicUsize::new(entries.len());
        Ok(Outbox { entries, ids, len })
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; `dropped` older entries were dropped to stay within [`OUTBOX_CAP`].
    Queued { dropped: usize },
    /// An entry with this id was pushed before: nothing queued.
    Duplicate,
}

fn seq_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if bytes.len() == 8 {
        b.copy_from_slice(bytes);
    }
    u64::from_be_bytes(b)
}

impl Store {
    /// Queues `entry` under `id` unless that id was pushed within the last [`ID_MEMORY`]
    /// pushes. The entry is written before its id, so a crash in between can only repeat it.
    pub fn outbox_push(&self, id: &str, entry: &[u8]) -> Result<Pushed, StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.outbox_push(id, entry));
        }
        self.with(|t| {
            let o = &t.outbox;
            if o.ids.get(id)?.is_some() {
                return Ok(Pushed::Duplicate);
            }
            let seq = t.db.generate_id()?;
            let key = seq.to_be_bytes();
            o.entries.insert(key, entry)?;
            o.ids.insert(id, &key)?;
            let mut dropped = 0;
            if o.len.fetch_add(1, Ordering::SeqCst) + 1 > OUTBOX_CAP {
                while o.len.load(Ordering::SeqCst) > OUTBOX_CAP {
                    match o.entries.pop_min()? {
                        Some(_) => {
                            o.len.fetch_sub(1, Ordering::SeqCst);
                            dropped += 1;
                        }
                        None => break,
                    }
                }
            }
            if seq % SWEEP_EVERY == 0 {
                for item in o.ids.iter() {
                    let (id, at) = item?;
                    if seq_of(&at).saturating_add(ID_MEMORY) < seq {
                        o.ids.remove(id)?;
                    }
                }
            }
            Ok(Pushed::Queued { dropped })
        })
    }

    /// The first waiting entry, after `after` (a sequence number; `None` = from the start),
    /// for which `wanted` holds: `(sequence, bytes)`, in push order.
    pub fn outbox_next(
        &self,
        after: Option<u64>,
        mut wanted: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.outbox_next(after, &mut wanted));
        }
        self.with(|t| {
            let from = after.map_or(0, |s| s.saturating_add(1));
            for item in t.outbox.entries.range(from.to_be_bytes()..) {
                let (k, v) = item?;
                if wanted(&v) {
                    return Ok(Some((seq_of(&k), v.to_vec())));
                }
            }
            Ok(None)
        })
    }

    /// Removes a delivered (or undeliverable) entry. Its id stays remembered.
    pub fn outbox_ack(&self, seq: u64) -> Result<(), StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.outbox_ack(seq));
        }
        self.with(|t| {
            if t.outbox.entries.remove(seq.to_be_bytes())?.is_some() {
                t.outbox.len.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(())
        })
    }

    /// Entries waiting.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        if let Some(e) = self.etcd() {
            return self.on_etcd(e, |e| e.outbox_len());
        }
        self.with(|t| Ok(t.outbox.len.load(Ordering::SeqCst)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_dedupe_by_id_survive_reopen_and_ack_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(
                store.outbox_push("a", b"one").unwrap(),
                Pushed::Queued { dropped: 0 }
            );
            assert_eq!(store.outbox_push("a", b"again").unwrap(), Pushed::Duplicate);
            store.outbox_push("b", b"two").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.outbox_len().unwrap(), 2);
        let (first, bytes) = store.outbox_next(None, |_| true).unwrap().unwrap();
        assert_eq!(bytes, b"one");
        let (_, only_two) = store.outbox_next(None, |b| b == b"two").unwrap().unwrap();
        assert_eq!(only_two, b"two");
        store.outbox_ack(first).unwrap();
        assert_eq!(store.outbox_len().unwrap(), 1);
        let (_, bytes) = store.outbox_next(None, |_| true).unwrap().unwrap();
        assert_eq!(bytes, b"two");
        // Delivered ids stay remembered.
        assert_eq!(store.outbox_push("a", b"one").unwrap(), Pushed::Duplicate);
    }

    #[test]
    fn the_outbox_is_bounded_by_dropping_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut dropped = 0;
        for i in 0..OUTBOX_CAP + 3 {
            if let Pushed::Queued { dropped: d } = store
                .outbox_push(&i.to_string(), i.to_string().as_bytes())
                .unwrap()
            {
                dropped += d;
            }
        }
        assert_eq!(dropped, 3);
        assert_eq!(store.outbox_len().unwrap(), OUTBOX_CAP);
        let (_, oldest) = store.outbox_next(None, |_| true).unwrap().unwrap();
        assert_eq!(oldest, b"3");
    }
}
