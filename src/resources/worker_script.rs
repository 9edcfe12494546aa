//! A Worker script (`Worker("name", { entry, bindings })`), named `{app}-{stage}-{name}` and
//! tagged `lumierd:{app}:{stage}:{name}` so lumierd can tell its own scripts from others'.

use super::RemoteIndex;
use crate::cloudflare::types::{Binding, Module, Script, ScriptMetadata, ScriptSettings};
use crate::cloudflare::{ApiError, Client, ErrorKind, ScriptUpload};
use crate::manifest::ResourceKey;
use crate::runtime::plan::{ScriptSeen, WorkerFacts};
use crate::store::Observed;
use crate::worker::WorkerBundle;

/// The ownership tag of the script for `key`.
pub fn ownership_tag(key: &ResourceKey) -> String {
    format!("lumierd:{}:{}:{}", key.app, key.stage, key.name)
}

/// A binding in comparable form: `kv:<id>`, `text:<value>`, or the type of another kind.
pub fn binding_fact(b: &Binding) -> Option<(String, String)> {
    let name = b.name()?.to_owned();
    let fact = match b {
        Binding::KvNamespace { namespace_id, .. } => format!("kv:{namespace_id}"),
        Binding::PlainText { text, .. } => format!("text:{text}"),
        Binding::SecretText { .. } => "secret_text".to_owned(),
        Binding::Other(v) => v
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("unknown")
            .to_owned(),
    };
    Some((name, fact))
}

fn facts_of(settings: &ScriptSettings, content_hash: String) -> WorkerFacts {
    WorkerFacts {
        content_hash,
        bindings: settings.bindings.iter().filter_map(binding_fact).collect(),
        compatibility_date: settings.compatibility_date.clone().unwrap_or_default(),
        compatibility_flags: settings.compatibility_flags.clone(),
    }
}

/// What the remote script looks like relative to what lumierd recorded. Reads settings and
/// content only when the list shows the script changed since lumierd last saw it.
pub async fn observe(
    client: &Client,
    index: &RemoteIndex,
    key: &ResourceKey,
    observed: &Observed,
    applied: Option<&WorkerFacts>,
) -> Result<ScriptSeen, ApiError> {
    let name = key.provider_name();
    let Some(script) = index.script(&name) else {
        return Ok(ScriptSeen::Absent);
    };
    let Some(applied) = applied else {
        let tag = ownership_tag(key);
        let owned = script.tags.as_ref().is_some_and(|t| t.contains(&tag));
        return Ok(ScriptSeen::Unrecorded { owned });
    };
    let same_etag = observed.etag.as_deref() == Some(script.etag.as_str());
    if same_etag && observed.modified_on.as_deref() == Some(script.modified_on.as_str()) {
        return Ok(ScriptSeen::Unchanged);
    }
    let settings = client.get_settings(&name).await?;
    let content_hash = if same_etag {
        applied.content_hash.clone()
    } else {
        let content = client.get_content(&name).await?;
        let main = content.main_module.unwrap_or_default();
        let mut modules = content.modules;
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        crate::worker::content_hash(&main, &modules)
    };
    Ok(ScriptSeen::Changed {
        facts: facts_of(&settings, content_hash),
    })
}

/// Uploads the whole script (idempotent: PUT by name).
pub async fn upload(
    client: &Client,
    key: &ResourceKey,
    bundle: &WorkerBundle,
    bindings: Vec<Binding>,
    compatibility_date: &str,
    compatibility_flags: &[String],
) -> Result<Script, ApiError> {
    let upload = ScriptUpload {
        metadata: ScriptMetadata {
            main_module: Some(bundle.main_module.clone()),
            bindings,
            compatibility_date: Some(compatibility_date.to_owned()),
            compatibility_flags: compatibility_flags.to_vec(),
            tags: vec![ownership_tag(key)],
            ..ScriptMetadata::default()
        },
        modules: bundle.modules.iter().map(Module::clone).collect(),
    };
    client.upload_script(&key.provider_name(), &upload).await
}

/// Deletes the script; already gone is success.
pub async fn delete(client: &Client, name: &str) -> Result<(), ApiError> {
    match client.delete_script(name, false).await {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
