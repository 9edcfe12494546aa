//! A worker script in comparable form: the facts lumierd applies, desires and reads back, and
//! the readable diff between two of them.

use crate::cloudflare::types::{Binding, ScriptSettings, KEEP_SECRET_BINDINGS};
use crate::manifest::{canonical_json, SecretsMode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A binding in comparable form: `kv:<id>`, `text:<value>`, `json:<canonical JSON>`,
/// `service:<script>`, or the type of another kind.
pub fn binding_fact(b: &Binding) -> Option<(String, String)> {
    let name = b.name()?.to_owned();
    let fact = match b {
        Binding::KvNamespace { namespace_id, .. } => format!("kv:{namespace_id}"),
        Binding::PlainText { text, .. } => format!("text:{text}"),
        Binding::SecretText { .. } => "secret_text".to_owned(),
        Binding::Other(v) => {
            let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("unknown");
            match kind {
                "json" => format!(
                    "json:{}",
                    canonical_json(v.get("json").unwrap_or(&serde_json::Value::Null))
                ),
                "service" => format!(
                    "service:{}",
                    v.get("service")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                ),
                other => other.to_owned(),
            }
        }
    };
    Some((name, fact))
}

pub(super) fn facts_of(settings: &ScriptSettings, content_hash: String) -> WorkerFacts {
    WorkerFacts {
        content_hash,
        bindings: settings.bindings.iter().filter_map(binding_fact).collect(),
        compatibility_date: settings.compatibility_date.clone().unwrap_or_default(),
        compatibility_flags: settings.compatibility_flags.clone(),
        secrets: BTreeMap::new(),
        workers_dev: None,
    }
}

/// Whether a binding fact is a secret's (`secret_text`, `secret_key`).
fn is_secret_fact(fact: &str) -> bool {
    KEEP_SECRET_BINDINGS.contains(&fact)
}

/// Sorts the secrets among the facts read from the remote (as `bindings`, type only, since a
/// secret's text is never read back):
/// - a secret lumierd applied (`applied.secrets`) moves to `secrets` with the applied hash (its
///   value cannot be read; present is all that can be checked), so one deleted out of band is
///   missing there: drift;
/// - one declared but not applied yet is dropped (the manifest change applies it);
/// - one that a plain binding of the same name is declared for stays in `bindings` (drift);
/// - any other was set outside lumierd: under `secrets: keep` it is dropped and returned
///   (sorted) to be listed as unmanaged; under `exclusive` it stays in `bindings`: drift.
pub fn split_unmanaged_secrets(
    mut remote: WorkerFacts,
    applied: &WorkerFacts,
    desired: &WorkerFacts,
    mode: SecretsMode,
) -> (WorkerFacts, Vec<String>) {
    let secret_names: Vec<String> = remote
        .bindings
        .iter()
        .filter(|(_, fact)| is_secret_fact(fact))
        .map(|(name, _)| name.clone())
        .collect();
    let mut unmanaged = Vec::new();
    for name in secret_names {
        if let Some(hash) = applied.secrets.get(&name) {
            remote.bindings.remove(&name);
            remote.secrets.insert(name, hash.clone());
        } else if desired.secrets.contains_key(&name) {
            remote.bindings.remove(&name);
        } else if applied.bindings.contains_key(&name) || desired.bindings.contains_key(&name) {
            // A declared plain binding replaced by a secret: drift.
        } else if mode == SecretsMode::Keep {
            remote.bindings.remove(&name);
            unmanaged.push(name);
        }
    }
    (remote, unmanaged)
}

/// `facts` without its declared secrets and workers.dev route: what only an upload changes.
pub fn upload_facts(facts: &WorkerFacts) -> WorkerFacts {
    WorkerFacts {
        secrets: BTreeMap::new(),
        workers_dev: None,
        ..facts.clone()
    }
}

/// A worker's spec in comparable form: what is applied (kept in its record), and what is
/// desired. Stored as v1 stored `applied` (its `spec_hash` is no longer read).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkerFacts {
    #[serde(default)]
    pub content_hash: String,
    /// binding name → `kv:<namespace id>` | `text:<value>` | `<type>` for other kinds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bindings: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compatibility_date: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatibility_flags: Vec<String>,
    /// Declared secret name → `hmac-sha256:<hex>` of its value under the state folder's key
    /// (see `crate::secrets`): a rotation is seen, the value is never kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The workers.dev route, when the manifest manages it (`workersDev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_dev: Option<bool>,
}

/// Field-level differences from `from` to `to`, one readable line each
/// (`bindings.CACHE: kv:a → kv:b`). Plain-text values are shown; a declared secret shows
/// its name only (`secrets.API_KEY: changed`), never its value or hash.
pub fn worker_diff(from: &WorkerFacts, to: &WorkerFacts) -> Vec<String> {
    let mut out = Vec::new();
    if from.content_hash != to.content_hash {
        out.push(format!(
            "content: {} → {}",
            short(&from.content_hash),
            short(&to.content_hash)
        ));
    }
    for (name, value) in &from.bindings {
        match to.bindings.get(name) {
            None => out.push(format!("bindings.{name}: {value} → (removed)")),
            Some(v) if v != value => out.push(format!("bindings.{name}: {value} → {v}")),
            Some(_) => {}
        }
    }
    for (name, value) in &to.bindings {
        if !from.bindings.contains_key(name) {
            out.push(format!("bindings.{name}: (none) → {value}"));
        }
    }
    for (name, hash) in &from.secrets {
        match to.secrets.get(name) {
            None => out.push(format!("secrets.{name}: set → (removed)")),
            Some(h) if h != hash => out.push(format!("secrets.{name}: changed")),
            Some(_) => {}
        }
    }
    for name in to.secrets.keys() {
        if !from.secrets.contains_key(name) {
            out.push(format!("secrets.{name}: (none) → set"));
        }
    }
    if from.workers_dev != to.workers_dev {
        let show = |v: Option<bool>| v.map_or("(unmanaged)".to_owned(), |b| b.to_string());
        out.push(format!(
            "workersDev: {} → {}",
            show(from.workers_dev),
            show(to.workers_dev)
        ));
    }
    if from.compatibility_date != to.compatibility_date {
        out.push(format!(
            "compatibility_date: {} → {}",
            from.compatibility_date, to.compatibility_date
        ));
    }
    if from.compatibility_flags != to.compatibility_flags {
        out.push(format!(
            "compatibility_flags: [{}] → [{}]",
            from.compatibility_flags.join(", "),
            to.compatibility_flags.join(", ")
        ));
    }
    out
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
