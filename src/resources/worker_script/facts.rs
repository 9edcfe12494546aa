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
    }
}

/// Whether a binding fact is a secret's (`secret_text`, `secret_key`).
fn is_secret_fact(fact: &str) -> bool {
    KEEP_SECRET_BINDINGS.contains(&fact)
}

/// Splits out of the facts read from the remote the secrets that lumierd does not manage:
/// under `secrets: keep`, a remote secret that neither the applied nor the desired bindings
/// name was set outside lumierd; it is not drift and is returned (sorted) to be listed as
/// unmanaged. Under `exclusive` nothing is split: an undeclared secret is drift.
pub fn split_unmanaged_secrets(
    mut remote: WorkerFacts,
    applied: &WorkerFacts,
    desired: &WorkerFacts,
    mode: SecretsMode,
) -> (WorkerFacts, Vec<String>) {
    if mode == SecretsMode::Exclusive {
        return (remote, Vec::new());
    }
    let unmanaged: Vec<String> = remote
        .bindings
        .iter()
        .filter(|(name, fact)| {
            is_secret_fact(fact)
                && !applied.bindings.contains_key(*name)
                && !desired.bindings.contains_key(*name)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in &unmanaged {
        remote.bindings.remove(name);
    }
    (remote, unmanaged)
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
}

/// Field-level differences from `from` to `to`, one readable line each
/// (`bindings.CACHE: kv:a → kv:b`). Plain-text values are shown; lumierd manages no secrets.
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
