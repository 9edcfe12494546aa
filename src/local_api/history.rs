//! Worker versions and deployments: the records kept per script, how uploads, secret changes
//! and deployments create them, and how they are answered.
//!
//! Model (API-NOTES §7.3): every change of a script's code or versioned settings is a new
//! **version** (UUID, sequential `number`); a **deployment** says which versions serve traffic
//! (`strategy: "percentage"`). The script's live fields ([`ScriptRec`] modules, bindings,
//! compatibility) are those of the deployed version with the largest share (the first on a
//! tie); the emulator runs no traffic split.
//!
//! | change | version | deployment |
//! |---|---|---|
//! | `PUT …/scripts/{n}`, `PUT …/content`, settings PATCH of versioned fields | new | new, 100 % |
//! | secret PUT / DELETE / bulk PATCH | new (live + the change) | new, 100 % |
//! | `POST …/versions` | new | none |
//! | `POST …/deployments` | none | new |
//!
//! Only the newest [`MAX_VERSIONS`] versions and [`MAX_DEPLOYMENTS`] deployments are kept,
//! except that versions the latest deployment names are never dropped. A version refers to
//! its modules' contents by SHA-256 in [`Data::module_blobs`], so versions sharing code store
//! it once; [`gc`] drops contents no version refers to any more. Together these bound the
//! state file (rewritten whole on every mutation) to about one copy of each distinct module
//! among the kept versions.
//!
//! Secret texts live in version bindings like in the live bindings: persisted in the
//! emulator's data, never answered ([`public_binding`]).

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use sha2::{Digest, Sha256};

use super::envelope::ApiError;
use super::state::{rfc3339_micros, Data, ModuleBlob, ModuleRec, ScriptRec};
use crate::cloudflare::types::Binding;

/// Versions kept per script.
pub const MAX_VERSIONS: usize = 20;
/// Deployments kept per script.
pub const MAX_DEPLOYMENTS: usize = 20;
/// The author reported on versions and deployments (the emulator has no users).
const AUTHOR_EMAIL: &str = "local@lumierd.invalid";

/// One version: the script's code and versioned settings at the time it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRec {
    /// UUID (36 characters with hyphens).
    pub id: String,
    /// 1, 2, … per script.
    pub number: u64,
    pub created_micros: i64,
    /// Who made it: `wrangler` or `api`.
    pub source: String,
    /// `workers/message`, `workers/tag`, … as uploaded, plus `workers/triggered_by`.
    #[serde(default)]
    pub annotations: serde_json::Map<String, Value>,
    pub modules: Vec<VersionModule>,
    #[serde(default)]
    pub main_module: Option<String>,
    #[serde(default)]
    pub body_part: Option<String>,
    /// Secret texts included (never answered).
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default)]
    pub compatibility_date: Option<String>,
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    pub usage_model: String,
    pub etag: String,
}

/// A module of a version; its content is `Data::module_blobs[sha256]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionModule {
    pub name: String,
    pub content_type: String,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// One deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentRec {
    pub id: String,
    pub created_micros: i64,
    pub source: String,
    /// `(version id, percentage)`, percentages adding up to 100.
    pub versions: Vec<(String, f64)>,
    #[serde(default)]
    pub annotations: serde_json::Map<String, Value>,
}

/// A random (v4) UUID, lowercase with hyphens.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The client that sent a request, as `last_deployed_from` and `source` report it:
/// `wrangler` when the `User-Agent` starts with `wrangler` (wrangler sends
/// `wrangler/<version>`), else `api`. How the real API decides is undocumented (§7.3).
pub fn client_of(headers: &axum::http::HeaderMap) -> &'static str {
    let ua = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ua.to_ascii_lowercase().starts_with("wrangler") {
        "wrangler"
    } else {
        "api"
    }
}

/// A version of `rec`'s live code and settings (not yet recorded).
pub fn snapshot(
    d: &mut Data,
    rec: &mut ScriptRec,
    source: &str,
    annotations: serde_json::Map<String, Value>,
) -> VersionRec {
    rec.version_counter += 1;
    let modules = rec
        .modules
        .iter()
        .map(|m| {
            let sha256 = hex::encode(Sha256::digest(&m.content));
            d.module_blobs
                .entry(sha256.clone())
                .or_insert_with(|| ModuleBlob(m.content.clone()));
            VersionModule {
                name: m.name.clone(),
                content_type: m.content_type.clone(),
                sha256,
            }
        })
        .collect();
    VersionRec {
        id: uuid(),
        number: rec.version_counter,
        created_micros: d.next_stamp(),
        source: source.to_owned(),
        annotations,
        modules,
        main_module: rec.main_module.clone(),
        body_part: rec.body_part.clone(),
        bindings: rec.bindings.clone(),
        compatibility_date: rec.compatibility_date.clone(),
        compatibility_flags: rec.compatibility_flags.clone(),
        usage_model: rec.usage_model.clone(),
        etag: rec.etag.clone(),
    }
}

/// Records `rec`'s live state as a new version and deploys it at 100 %; sets
/// `last_deployed_from`. Returns the version id (what the script PUT answers as
/// `deployment_id`).
pub fn record_deployed(
    d: &mut Data,
    rec: &mut ScriptRec,
    source: &str,
    annotations: serde_json::Map<String, Value>,
) -> String {
    let version = snapshot(d, rec, source, annotations);
    let id = version.id.clone();
    rec.versions.push(version);
    add_deployment(
        d,
        rec,
        source,
        vec![(id.clone(), 100.0)],
        Default::default(),
    );
    id
}

/// Appends a deployment and trims the history. Does not change the live fields.
pub fn add_deployment(
    d: &mut Data,
    rec: &mut ScriptRec,
    source: &str,
    versions: Vec<(String, f64)>,
    annotations: serde_json::Map<String, Value>,
) -> DeploymentRec {
    let dep = DeploymentRec {
        id: uuid(),
        created_micros: d.next_stamp(),
        source: source.to_owned(),
        versions,
        annotations,
    };
    rec.deployments.push(dep.clone());
    rec.last_deployed_from = source.to_owned();
    trim(rec);
    dep
}

/// Drops the oldest versions and deployments beyond the limits, keeping every version the
/// latest deployment names.
pub fn trim(rec: &mut ScriptRec) {
    if rec.deployments.len() > MAX_DEPLOYMENTS {
        let extra = rec.deployments.len() - MAX_DEPLOYMENTS;
        rec.deployments.drain(..extra);
    }
    let serving: Vec<String> = rec
        .deployments
        .last()
        .map(|d| d.versions.iter().map(|(id, _)| id.clone()).collect())
        .unwrap_or_default();
    let mut extra = rec.versions.len().saturating_sub(MAX_VERSIONS);
    rec.versions.retain(|v| {
        if extra > 0 && !serving.contains(&v.id) {
            extra -= 1;
            false
        } else {
            true
        }
    });
}

/// Drops module contents that no kept version refers to. Call after versions are trimmed or
/// a script is deleted.
pub fn gc(d: &mut Data) {
    let used: std::collections::BTreeSet<&str> = d
        .scripts
        .values()
        .flat_map(|s| s.versions.iter())
        .flat_map(|v| v.modules.iter().map(|m| m.sha256.as_str()))
        .collect();
    let unused: Vec<String> = d
        .module_blobs
        .keys()
        .filter(|k| !used.contains(k.as_str()))
        .cloned()
        .collect();
    for k in unused {
        d.module_blobs.remove(&k);
    }
}

/// Makes `v` the live code and settings of `rec`. 500 if a module's content is missing (a
/// corrupt state file).
pub fn apply(d: &Data, rec: &mut ScriptRec, v: &VersionRec) -> Result<(), ApiError> {
    let mut modules = Vec::with_capacity(v.modules.len());
    for m in &v.modules {
        let Some(ModuleBlob(content)) = d.module_blobs.get(&m.sha256) else {
            return Err(ApiError::internal(format!(
                "the content of module {:?} of version {} is missing",
                m.name, v.id
            )));
        };
        modules.push(ModuleRec {
            name: m.name.clone(),
            content_type: m.content_type.clone(),
            content: content.clone(),
        });
    }
    rec.modules = modules;
    rec.main_module = v.main_module.clone();
    rec.body_part = v.body_part.clone();
    rec.bindings = v.bindings.clone();
    rec.compatibility_date = v.compatibility_date.clone();
    rec.compatibility_flags = v.compatibility_flags.clone();
    rec.usage_model = v.usage_model.clone();
    rec.etag = v.etag.clone();
    Ok(())
}

/// True when the newest version is part of the latest deployment (secret edits require it:
/// 10215 otherwise). A script without recorded versions counts as deployed.
pub fn latest_is_deployed(rec: &ScriptRec) -> bool {
    match (rec.versions.last(), rec.deployments.last()) {
        (Some(v), Some(dep)) => dep.versions.iter().any(|(id, _)| *id == v.id),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// A binding as answered: secret texts and key material omitted.
pub fn public_binding(b: &Binding) -> Binding {
    match b {
        Binding::SecretText { name, .. } => Binding::SecretText {
            name: name.clone(),
            text: None,
        },
        Binding::Other(v) => {
            let mut v = v.clone();
            if let Some(obj) = v.as_object_mut() {
                if obj.get("type").and_then(Value::as_str) == Some("secret_key") {
                    obj.remove("key_base64");
                    obj.remove("key_jwk");
                }
            }
            Binding::Other(v)
        }
        other => other.clone(),
    }
}

/// A version as listed (`version-item-short`).
pub fn version_short(v: &VersionRec) -> Value {
    let created = rfc3339_micros(v.created_micros);
    let mut annotations = v.annotations.clone();
    annotations
        .entry("workers/triggered_by")
        .or_insert_with(|| json!("upload"));
    json!({
        "id": v.id,
        "number": v.number,
        "metadata": {
            "author_email": AUTHOR_EMAIL,
            "author_id": "00000000000000000000000000000000",
            "created_on": created,
            "modified_on": created,
            "source": v.source,
            "has_preview": false,
            "hasPreview": false,
        },
        "annotations": annotations,
    })
}

/// A version with its resources (`version-item-full`).
pub fn version_full(rec: &ScriptRec, v: &VersionRec) -> Value {
    let mut out = version_short(v);
    let bindings: Vec<Binding> = v.bindings.iter().map(public_binding).collect();
    out["resources"] = json!({
        "bindings": bindings,
        "script": {
            "etag": v.etag,
            "handlers": ["fetch"],
            "named_handlers": [],
            "last_deployed_from": rec.last_deployed_from,
        },
        "script_runtime": {
            "compatibility_date": v.compatibility_date,
            "compatibility_flags": v.compatibility_flags,
            "usage_model": v.usage_model,
            "limits": {"cpu_ms": 30000},
        },
    });
    out
}

/// A deployment as answered.
pub fn deployment_json(dep: &DeploymentRec) -> Value {
    let versions: Vec<Value> = dep
        .versions
        .iter()
        .map(|(id, pct)| json!({"version_id": id, "percentage": pct}))
        .collect();
    json!({
        "id": dep.id,
        "created_on": rfc3339_micros(dep.created_micros),
        "source": dep.source,
        "strategy": "percentage",
        "versions": versions,
        "annotations": dep.annotations,
        "author_email": AUTHOR_EMAIL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_shaped() {
        let a = uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, uuid());
    }

    #[test]
    fn secret_material_is_never_public() {
        let text = Binding::SecretText {
            name: "A".into(),
            text: Some("canary".into()),
        };
        let key = Binding::Other(
            json!({"type": "secret_key", "name": "K", "key_base64": "canary", "format": "raw"}),
        );
        for b in [text, key] {
            let out = serde_json::to_string(&public_binding(&b)).unwrap_or_default();
            assert!(!out.contains("canary"), "{out}");
            assert!(out.contains("\"name\""), "{out}");
        }
    }
}
