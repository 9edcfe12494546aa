//! The local API's data (namespaces, values, scripts) and its persistence, behind a narrow API:
//! [`Store::read`] for queries and [`Store::mutate`] for changes.
//!
//! Persistence: with a data directory, every successful mutation writes a whole JSON snapshot
//! of the state to `state.json.tmp`, fsyncs it, renames it over `state.json` and fsyncs the
//! directory, before the request is answered. This is crash-safe (a reader sees the old or the
//! new snapshot, never a torn one) and simple, at the cost of O(state size) work per mutation:
//! fine for development and tests (kilobytes to a few megabytes), not meant for large data.
//! Snapshots carry a generation number so that concurrent writers never replace a newer
//! snapshot with an older one. The folder is private (0700) and its files 0600, also when
//! an older build left them open (see `private_fs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::envelope::ApiError;
use super::history::{DeploymentRec, VersionRec};
use super::private_fs;
use super::LocalApiError;
use crate::cloudflare::types::Binding;

/// Version of the snapshot format; bumped on incompatible changes.
const FORMAT: u32 = 1;
const SNAPSHOT_FILE: &str = "state.json";
const SNAPSHOT_TMP: &str = "state.json.tmp";

/// Everything the local API knows. Field order in the maps is the order of the keys.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Data {
    #[serde(default)]
    pub format: u32,
    /// Namespaces by id.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceRec>,
    /// Scripts by name.
    #[serde(default)]
    pub scripts: BTreeMap<String, ScriptRec>,
    /// Counts uploads, so that every upload gets a distinct etag.
    #[serde(default)]
    pub upload_counter: u64,
    /// The last `modified_on` handed out (µs since the epoch), to keep them strictly increasing.
    #[serde(default)]
    pub last_stamp_micros: i64,
    /// The account's workers.dev subdomain (`GET/PUT/DELETE …/workers/subdomain`).
    #[serde(default)]
    pub account_subdomain: AccountSubdomain,
    /// Module contents of versions by SHA-256 (hex), stored once however many versions share
    /// them (see [`super::history`]).
    #[serde(default)]
    pub module_blobs: BTreeMap<String, ModuleBlob>,
}

/// The bytes of one module, serialized as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleBlob(#[serde(with = "hex_bytes")] pub Vec<u8>);

/// The account's workers.dev subdomain: [`AccountSubdomain::DEFAULT`] until set or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSubdomain {
    /// `None` after a DELETE: the account has none (GET answers 404/10007).
    pub name: Option<String>,
}

impl AccountSubdomain {
    /// The subdomain of a fresh emulator, so `wrangler deploy` needs no registration step.
    pub const DEFAULT: &'static str = "lumierd-local";
}

impl Default for AccountSubdomain {
    fn default() -> Self {
        AccountSubdomain {
            name: Some(Self::DEFAULT.to_owned()),
        }
    }
}

/// A script's workers.dev route (`…/scripts/{name}/subdomain`); off for a new script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptSubdomain {
    pub enabled: bool,
    pub previews_enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceRec {
    pub id: String,
    pub title: String,
    /// Keys in byte order (the order the key list returns).
    #[serde(default)]
    pub values: BTreeMap<String, ValueRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValueRec {
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl ValueRec {
    /// True while the value is visible at `now` (unix seconds).
    pub fn is_live(&self, now: u64) -> bool {
        self.expiration.is_none_or(|e| e > now)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleRec {
    pub name: String,
    pub content_type: String,
    #[serde(with = "hex_bytes")]
    pub content: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScriptRec {
    pub name: String,
    pub modules: Vec<ModuleRec>,
    /// Entry module of a module Worker.
    #[serde(default)]
    pub main_module: Option<String>,
    /// Entry part of a service-worker script.
    #[serde(default)]
    pub body_part: Option<String>,
    /// Bindings as uploaded, secret texts included (never returned by the API).
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default)]
    pub compatibility_date: Option<String>,
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub usage_model: String,
    #[serde(default)]
    pub logpush: bool,
    #[serde(default)]
    pub tail_consumers: Vec<serde_json::Value>,
    pub etag: String,
    pub created_micros: i64,
    pub modified_micros: i64,
    /// Versions, oldest first (see [`super::history`]); the live fields above are the
    /// deployed one.
    #[serde(default)]
    pub versions: Vec<VersionRec>,
    /// Deployments, oldest first; the last one is serving.
    #[serde(default)]
    pub deployments: Vec<DeploymentRec>,
    /// Number of the newest version (versions are numbered from 1, never reused).
    #[serde(default)]
    pub version_counter: u64,
    /// The client that last deployed: `wrangler` or `api` (see [`super::history::client_of`]).
    #[serde(default = "api_client")]
    pub last_deployed_from: String,
    #[serde(default)]
    pub subdomain: ScriptSubdomain,
}

fn api_client() -> String {
    "api".to_owned()
}

impl ScriptRec {
    pub fn has_modules(&self) -> bool {
        self.main_module.is_some()
    }
}

impl Data {
    /// A fresh timestamp (µs since the epoch), strictly greater than every one handed out before.
    pub fn next_stamp(&mut self) -> i64 {
        let now = now_micros();
        let stamp = now.max(self.last_stamp_micros.saturating_add(1));
        self.last_stamp_micros = stamp;
        stamp
    }

    /// Names of the scripts with a `kv_namespace` binding to `namespace_id`.
    pub fn scripts_binding(&self, namespace_id: &str) -> Vec<String> {
        self.scripts
            .values()
            .filter(|s| {
                s.bindings.iter().any(|b| {
                    matches!(b, Binding::KvNamespace { namespace_id: id, .. } if id == namespace_id)
                })
            })
            .map(|s| s.name.clone())
            .collect()
    }
}

/// The shared, optionally persisted state.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    data: Mutex<Data>,
    /// Generation of the in-memory data; bumped by each successful mutation.
    generation: Mutex<u64>,
    persist: Option<Persister>,
}

#[derive(Debug)]
struct Persister {
    dir: PathBuf,
    /// Generation of the newest snapshot on disk; also serializes the writers.
    written: Mutex<u64>,
}

impl Store {
    /// Opens the store: in memory only (`None`), or loaded from (and saved to) `dir`, which is
    /// created if missing.
    pub fn open(dir: Option<&Path>) -> Result<Store, LocalApiError> {
        let (data, persist) = match dir {
            None => (Data::default(), None),
            Some(dir) => {
                private_fs::private_dir(dir)?;
                let file = dir.join(SNAPSHOT_FILE);
                private_fs::tighten_file(&file)?;
                let data = match std::fs::read(&file) {
                    Ok(bytes) => {
                        let data: Data = serde_json::from_slice(&bytes).map_err(|source| {
                            LocalApiError::Corrupt {
                                path: file.clone(),
                                source,
                            }
                        })?;
                        if data.format > FORMAT {
                            return Err(LocalApiError::UnsupportedFormat {
                                path: file,
                                found: data.format,
                                supported: FORMAT,
                            });
                        }
                        data
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data::default(),
                    Err(source) => return Err(LocalApiError::Io { path: file, source }),
                };
                (
                    data,
                    Some(Persister {
                        dir: dir.to_path_buf(),
                        written: Mutex::new(0),
                    }),
                )
            }
        };
        Ok(Store {
            inner: Arc::new(StoreInner {
                data: Mutex::new(data),
                generation: Mutex::new(0),
                persist,
            }),
        })
    }

    /// Runs a query against the state.
    pub fn read<R>(&self, f: impl FnOnce(&Data) -> R) -> R {
        f(&lock(&self.inner.data))
    }

    /// Runs a change against the state and, when it succeeds, persists the new state before
    /// returning. The closure must validate before it modifies: on `Err` nothing is persisted,
    /// and whatever it changed stays in memory.
    pub async fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Data) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let (result, snapshot) = {
            let mut data = lock(&self.inner.data);
            let result = f(&mut data)?;
            let mut generation = lock(&self.inner.generation);
            *generation += 1;
            let snapshot = match &self.inner.persist {
                None => None,
                Some(_) => {
                    data.format = FORMAT;
                    let bytes = serde_json::to_vec(&*data)
                        .map_err(|e| ApiError::internal(format!("snapshot: {e}")))?;
                    Some((*generation, bytes))
                }
            };
            (result, snapshot)
        };
        if let Some((generation, bytes)) = snapshot {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || inner.write_snapshot(generation, &bytes))
                .await
                .map_err(|e| ApiError::internal(format!("persist task: {e}")))?
                .map_err(|e| ApiError::internal(format!("persist: {e}")))?;
        }
        Ok(result)
    }
}

impl StoreInner {
    /// Writes `bytes` as the snapshot of `generation` unless a newer one is already on disk.
    fn write_snapshot(&self, generation: u64, bytes: &[u8]) -> Result<(), LocalApiError> {
        let Some(persist) = &self.persist else {
            return Ok(());
        };
        let mut written = lock(&persist.written);
        if *written >= generation {
            return Ok(());
        }
        let tmp = persist.dir.join(SNAPSHOT_TMP);
        let file = persist.dir.join(SNAPSHOT_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LocalApiError::Io { path, source }
        };
        {
            use std::io::Write;
            let mut f = private_fs::create_file(&tmp)?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &file).map_err(io(&file))?;
        // Make the rename durable. Directories can't be fsynced on every platform; a failure
        // here is not fatal for the snapshot itself.
        if let Ok(d) = std::fs::File::open(&persist.dir) {
            let _ = d.sync_all();
        }
        *written = generation;
        Ok(())
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state is only
/// modified by closures that validate first, so it stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 in UTC with microseconds, e.g. `2022-05-05T05:15:11.602148Z`.
pub fn rfc3339_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Serde helper: bytes as a lowercase hex string (compact and JSON-safe).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_651_727_711_602_148),
            "2022-05-05T05:15:11.602148Z"
        );
        assert_eq!(
            rfc3339_micros(951_825_600_000_001),
            "2000-02-29T12:00:00.000001Z"
        );
    }
}
