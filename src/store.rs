//! The state store: sled behind a narrow typed API. Nothing else touches sled.
//!
//! Layout (schema version [`SCHEMA_VERSION`]): tree `meta` holds `schema_version` and the last
//! manifest load error; tree `resources` maps `app \0 stage \0 name` to a JSON [`Record`].
//! Every write that must survive a crash (the create-pending marker) is flushed before the
//! caller goes on; the others are flushed at the end of each pass.

use crate::manifest::ResourceKey;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The layout version this build writes. Older layouts are migrated on open; newer are refused.
pub const SCHEMA_VERSION: u32 = 1;
/// Drift events kept per resource.
pub const DRIFT_HISTORY: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store at {path}: {source}; only one lumierd process can open a state folder at a time: is another one using it?")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "state store: a record is not readable ({0}); move the state folder away to start afresh"
    )]
    Decode(#[from] serde_json::Error),
    #[error("state store at {path} has schema version {found}, newer than this lumierd understands ({SCHEMA_VERSION}); upgrade lumierd")]
    TooNew { path: String, found: u32 },
}

/// The state of a resource, as shown by `status` (CONTRACT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum State {
    #[default]
    Pending,
    Ready,
    Drifted,
    Error,
    Retained,
    Deleting,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Ready => "Ready",
            State::Drifted => "Drifted",
            State::Error => "Error",
            State::Retained => "Retained",
            State::Deleting => "Deleting",
        }
    }
}

/// One detected drift: when, and what differed (one line per field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// RFC 3339.
    pub at: String,
    pub changes: Vec<String>,
    /// Whether it was corrected (`correct` mode) or only reported.
    pub corrected: bool,
}

/// What lumierd last saw of the remote object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// KV namespace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<String>,
    /// KV namespace title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Script etag and modified_on, as the script list shows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
}

/// The spec lumierd last applied (secrets never included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Hash of the whole desired spec.
    pub spec_hash: String,
    /// Worker: hash of the uploaded modules and their names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Worker: binding name → `kv:<namespace id>` or `text:<value>`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bindings: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatibility_flags: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// Everything lumierd keeps about one resource (its key is the sled key, not repeated here).
/// Fields at their default are left out of the stored JSON: 10,000 records are held in memory
/// by sled, so every byte counts ten thousand times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `kv` or `worker`.
    pub kind: String,
    /// Whether the resource is an `existing` namespace (never created or deleted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub existing: bool,
    /// Whether its stage was protected when last declared: if its whole app disappears from
    /// the manifests, this alone keeps it from being deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protected: bool,
    pub state: State,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Hash of the desired spec seen last.
    #[serde(default)]
    pub desired_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    #[serde(default)]
    pub observed: Observed,
    /// Set (and flushed) before a non-idempotent create; cleared once the result is recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_pending: bool,
    /// Last error, with Cloudflare's codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u32>,
    /// Consecutive failures (drives backoff); 0 after a success.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// RFC 3339: when the next retry is due, while failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The drift lines currently standing (report mode), so one drift is recorded once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_drift: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_count: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_history: Vec<DriftEvent>,
}

impl Record {
    /// Whether `other` is this record with at most a different `last_reconciled`.
    pub fn same_apart_from_time(&self, other: &Record) -> bool {
        // Destructured in full (no `..`): a field added to Record must be placed here, so it
        // can never be forgotten by the pass's write-on-change check. No clone per record.
        let Record {
            kind,
            existing,
            protected,
            state,
            message,
            desired_hash,
            applied,
            observed,
            create_pending,
            last_error,
            error_codes,
            failures,
            next_retry,
            created_at,
            open_drift,
            drift_count,
            drift_history,
            last_reconciled: _,
        } = self;
        *kind == other.kind
            && *existing == other.existing
            && *protected == other.protected
            && *state == other.state
            && *message == other.message
            && *desired_hash == other.desired_hash
            && *applied == other.applied
            && *observed == other.observed
            && *create_pending == other.create_pending
            && *last_error == other.last_error
            && *error_codes == other.error_codes
            && *failures == other.failures
            && *next_retry == other.next_retry
            && *created_at == other.created_at
            && *open_drift == other.open_drift
            && *drift_count == other.drift_count
            && *drift_history == other.drift_history
    }

    /// When this resource was last reconciled, given when the last complete pass ran
    /// (`last_pass`, RFC 3339): a healthy record is not rewritten by a pass that changes
    /// nothing, so that pass's time stands for it. A failing or waiting one was not
    /// necessarily reconciled by that pass, and keeps its own time.
    pub fn reconciled_at<'a>(&'a self, last_pass: Option<&'a str>) -> Option<&'a str> {
        let own = self.last_reconciled.as_deref();
        let healthy = matches!(self.state, State::Ready | State::Drifted)
            && self.failures == 0
            && self.next_retry.is_none();
        match (own, last_pass) {
            // RFC 3339 in UTC with the same precision: the text orders like the time.
            (Some(own), Some(pass)) if healthy && pass > own => Some(pass),
            (own, _) => own,
        }
    }

    /// Appends a drift event, keeping the last [`DRIFT_HISTORY`].
    pub fn push_drift(&mut self, event: DriftEvent) {
        self.drift_count += 1;
        self.drift_history.push(event);
        let excess = self.drift_history.len().saturating_sub(DRIFT_HISTORY);
        self.drift_history.drain(..excess);
    }
}

/// The store handle. Cheap to clone (sled trees are `Arc`s).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    resources: sled::Tree,
}

fn encode_key(key: &ResourceKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.app.len() + key.stage.len() + key.name.len() + 2);
    out.extend_from_slice(key.app.as_bytes());
    out.push(0);
    out.extend_from_slice(key.stage.as_bytes());
    out.push(0);
    out.extend_from_slice(key.name.as_bytes());
    out
}

fn decode_key(bytes: &[u8]) -> Option<ResourceKey> {
    let mut parts = bytes.split(|b| *b == 0);
    let app = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stage = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let name = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some(ResourceKey { app, stage, name })
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, migrating older layouts.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(8 << 20)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let meta = db.open_tree("meta")?;
        let resources = db.open_tree("resources")?;
        let store = Store {
            db,
            meta,
            resources,
        };
        let found = match store.meta.get("schema_version")? {
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
        store
            .meta
            .insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
        store.db.flush()?;
        Ok(store)
    }

    pub fn get(&self, key: &ResourceKey) -> Result<Option<Record>, StoreError> {
        match self.resources.get(encode_key(key))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes a record (durable at the next [`Store::flush`]).
    pub fn put(&self, key: &ResourceKey, record: &Record) -> Result<(), StoreError> {
        self.resources
            .insert(encode_key(key), serde_json::to_vec(record)?)?;
        Ok(())
    }

    /// Writes a record and waits until it is on disk (for the create-pending marker).
    pub fn put_durable(&self, key: &ResourceKey, record: &Record) -> Result<(), StoreError> {
        self.put(key, record)?;
        self.flush()
    }

    pub fn remove(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.resources.remove(encode_key(key))?;
        Ok(())
    }

    /// Every record's key, in key order (values are not decoded).
    pub fn keys(&self) -> Result<Vec<ResourceKey>, StoreError> {
        let mut out = Vec::new();
        for k in self.resources.iter().keys() {
            if let Some(key) = decode_key(&k?) {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<(ResourceKey, Record)>, StoreError> {
        self.records().collect()
    }

    /// Every record, in key order, decoded one at a time (memory stays at one record however
    /// many there are).
    pub fn records(&self) -> impl Iterator<Item = Result<(ResourceKey, Record), StoreError>> {
        self.resources.iter().filter_map(|item| {
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
    }

    /// The last manifest load error (None when the last load succeeded).
    pub fn load_error(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get("load_error")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_load_error(&self, error: Option<&str>) -> Result<(), StoreError> {
        // Written only when it changes: every reload sets it.
        if self.load_error()?.as_deref() == error {
            return Ok(());
        }
        match error {
            Some(e) => self.meta.insert("load_error", e.as_bytes())?,
            None => self.meta.remove("load_error")?,
        };
        Ok(())
    }

    /// When the last complete pass started (RFC 3339), if one has run.
    pub fn last_pass(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get("last_pass")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_last_pass(&self, at: &str) -> Result<(), StoreError> {
        self.meta.insert("last_pass", at.as_bytes())?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut r = Record {
                kind: "kv".into(),
                create_pending: true,
                ..Record::default()
            };
            r.observed.title = Some("shop-prod-cache".into());
            store.put_durable(&key("cache"), &r).unwrap();
            store.put(&key("api"), &Record::default()).unwrap();
            store.set_load_error(Some("bad.yaml:1:1: oops")).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 2);
        let cache = store.get(&key("cache")).unwrap().unwrap();
        assert!(cache.create_pending);
        assert_eq!(cache.observed.title.as_deref(), Some("shop-prod-cache"));
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
            store.meta.insert("schema_version", "99").unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap();
        assert!(
            err.to_string()
                .contains("schema version 99, newer than this lumierd understands"),
            "{err}"
        );
    }

    #[test]
    fn a_pass_that_changes_nothing_stands_for_healthy_records_only() {
        let at = |t: &str| Some(t.to_string());
        let ready = Record {
            state: State::Ready,
            last_reconciled: at("2026-11-25T10:00:00Z"),
            ..Record::default()
        };
        let restamped = Record {
            last_reconciled: at("2026-11-25T11:00:00Z"),
            ..ready.clone()
        };
        assert!(ready.same_apart_from_time(&restamped));
        let changed = Record {
            message: "x".into(),
            ..restamped.clone()
        };
        assert!(!ready.same_apart_from_time(&changed));

        let failing = Record {
            state: State::Error,
            failures: 2,
            next_retry: at("2026-11-25T12:00:00Z"),
            ..ready.clone()
        };
        let table: &[(&Record, Option<&str>, Option<&str>)] = &[
            (
                &ready,
                Some("2026-11-25T11:00:00Z"),
                Some("2026-11-25T11:00:00Z"),
            ),
            (
                &ready,
                Some("2026-11-25T09:00:00Z"),
                Some("2026-11-25T10:00:00Z"),
            ),
            (&ready, None, Some("2026-11-25T10:00:00Z")),
            (
                &failing,
                Some("2026-11-25T11:00:00Z"),
                Some("2026-11-25T10:00:00Z"),
            ),
            (&Record::default(), Some("2026-11-25T11:00:00Z"), None),
        ];
        for (i, (rec, pass, want)) in table.iter().enumerate() {
            assert_eq!(rec.reconciled_at(*pass), *want, "row {i}");
        }
    }

    #[test]
    fn records_written_by_earlier_builds_still_read() {
        // As stored before defaults were left out: the key repeated, every field present.
        let old = r#"{"key":{"app":"a","stage":"s","name":"kv"},"kind":"kv","existing":false,"protected":true,"state":"Ready","message":"","desired_hash":"h","observed":{"namespace_id":"id"},"create_pending":false,"error_codes":[],"failures":0,"last_reconciled":"2026-11-25T22:34:44Z","drift_count":0,"drift_history":[]}"#;
        let rec: Record = serde_json::from_str(old).unwrap();
        assert!(rec.protected);
        assert_eq!(rec.observed.namespace_id.as_deref(), Some("id"));
        let now = serde_json::to_string(&rec).unwrap();
        assert!(
            !now.contains("\"key\"") && !now.contains("error_codes"),
            "{now}"
        );
        assert_eq!(serde_json::from_str::<Record>(&now).unwrap(), rec);
    }

    #[test]
    fn drift_history_is_bounded() {
        let mut r = Record::default();
        for i in 0..30 {
            r.push_drift(DriftEvent {
                at: i.to_string(),
                changes: vec![],
                corrected: true,
            });
        }
        assert_eq!(r.drift_count, 30);
        assert_eq!(r.drift_history.len(), DRIFT_HISTORY);
        assert_eq!(r.drift_history[0].at, "10");
    }
}
