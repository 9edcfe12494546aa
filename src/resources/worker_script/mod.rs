//! A Worker script (`Worker("name", { entry, bindings })`), named `{app}-{stage}-{name}` and
//! tagged `lumierd:{app}:{stage}:{name}` so lumierd can tell its own scripts from others'.
//!
//! `facts.rs`: the comparable form of a script (what is applied, desired, seen) and its diff;
//! `decide.rs`: the pure decision table with its tests; this file: the kind's contract.

mod decide;
mod facts;

use crate::secrets::SecretValue;
pub use decide::{decide_script, Owner, ScriptSeen};
pub use facts::{binding_fact, split_unmanaged_secrets, worker_diff, WorkerFacts};
use facts::{facts_of, upload_facts};

use super::{Bound, Ctx, Decision, Kind, Reconciler, Rules, Status};
use crate::cloudflare::subdomain::workers_dev_url;
use crate::cloudflare::types::{Binding, Module, ScriptMetadata};
use crate::cloudflare::{ApiError, ErrorKind, ScriptUpload};
use crate::manifest::{provider_name, BindingSpec, ResourceKey, SecretsMode, WorkerSpec};
use crate::source::Snapshot;
use crate::worker::WorkerBundle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kind.
pub struct WorkerScript;

/// What a worker's record keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    #[serde(default)]
    pub observed: ScriptObserved,
    /// What lumierd last uploaded (None: never uploaded, or state lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<WorkerFacts>,
}

/// The script as the list showed it after lumierd's last upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptObserved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    /// Names of the remote secrets no binding declares (set outside lumierd), sorted, as last
    /// seen; kept by every upload under `secrets: keep`. Names only, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged_secrets: Vec<String>,
    /// `https://{script}.{account subdomain}.workers.dev`, as of when lumierd last turned the
    /// route on (the account subdomain is read then, not on every pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the workers.dev route was last read or set (Unix seconds): it is not versioned,
    /// so an unchanged script's route is re-read once per [`route_audit_every`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_checked: Option<u64>,
}

/// How often the workers.dev route of an unchanged script is re-read to find an
/// out-of-band flip: an hour (so a fleet's resync every 5 minutes reads 1/12 of the routes
/// per pass), or `LUMIERD_ROUTE_AUDIT_SECS`.
pub fn route_audit_every() -> u64 {
    std::env::var("LUMIERD_ROUTE_AUDIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An unchanged script: [`ScriptSeen::Unchanged`], unless its managed route is due for a
/// re-read; then the route as read, with everything else as applied.
async fn audit_route(
    cx: &Ctx<'_>,
    name: &str,
    applied: &WorkerFacts,
    observed: &ScriptObserved,
) -> Result<ScriptSeen, ApiError> {
    let now = unix_now();
    let due = observed
        .route_checked
        .is_none_or(|at| now.saturating_sub(at) >= route_audit_every());
    if applied.workers_dev.is_none() || !due {
        return Ok(ScriptSeen::Unchanged);
    }
    let enabled = cx.client.get_script_subdomain(name).await?.enabled;
    Ok(ScriptSeen::Changed {
        facts: WorkerFacts {
            workers_dev: Some(enabled),
            ..applied.clone()
        },
        now: Box::new(ScriptObserved {
            route_checked: Some(now),
            ..observed.clone()
        }),
    })
}

/// The upload's binding for a JSON var (`text` is canonical JSON from the manifest).
fn json_binding(name: &str, text: &str) -> Result<Binding, String> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("binding `{name}`: its JSON does not parse: {e}"))?;
    Ok(Binding::Other(serde_json::json!({
        "type": "json",
        "name": name,
        "json": json,
    })))
}

/// A worker resolved for one pass.
pub struct WorkerDesired {
    /// The provider name.
    pub script: String,
    pub tag: String,
    pub facts: WorkerFacts,
    pub bindings: Vec<Binding>,
    pub bundle: Arc<WorkerBundle>,
    pub secrets: SecretsMode,
    /// The declared secrets' values (read this pass; also inside `bindings`, with text).
    pub declared: Vec<(String, SecretValue)>,
}

/// The ownership tag of the script for `key`.
pub fn ownership_tag(key: &ResourceKey) -> String {
    format!("lumierd:{}:{}:{}", key.app, key.stage, key.name)
}

/// The tag of the installation (state folder) that uploaded a script.
pub fn installation_tag(installation: &str) -> String {
    format!("lumierd-installation:{installation}")
}

impl Reconciler for WorkerScript {
    type Spec = WorkerSpec;
    type Desired = WorkerDesired;
    type Status = WorkerStatus;
    type Observation = ScriptSeen;

    const KIND: Kind = Kind::WorkerScript;
    const DELETE_RANK: u8 = 0;

    fn dependencies(spec: &WorkerSpec) -> Vec<&str> {
        spec.dependencies()
    }

    fn desired(
        key: &ResourceKey,
        spec: &WorkerSpec,
        snap: &Snapshot,
        bound: &Bound,
    ) -> Result<WorkerDesired, String> {
        let bundle = snap
            .worker_bundle(spec)
            .ok_or_else(|| "the worker's modules were not built".to_owned())?;
        let mut bindings = Vec::with_capacity(spec.bindings.len());
        let mut facts = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let mut declared = Vec::new();
        for (name, b) in spec.bindings.iter() {
            match b {
                BindingSpec::Kv(target) => {
                    let id = bound.get(target).cloned().unwrap_or_default();
                    facts.insert(name.clone(), format!("kv:{id}"));
                    bindings.push(Binding::KvNamespace {
                        name: name.clone(),
                        namespace_id: id,
                    });
                }
                BindingSpec::Text(text) => {
                    facts.insert(name.clone(), format!("text:{text}"));
                    bindings.push(Binding::PlainText {
                        name: name.clone(),
                        text: text.clone(),
                    });
                }
                BindingSpec::Json(text) => {
                    facts.insert(name.clone(), format!("json:{text}"));
                    bindings.push(json_binding(name, text)?);
                }
                BindingSpec::Secret(source) => {
                    // The error names the source, never a value; nothing is sent for this
                    // worker this pass, so its remote secret stays as it is.
                    let (value, hash) = crate::secrets::resolve(source)
                        .map_err(|e| format!("secret binding `{name}`: {e}"))?;
                    secrets.insert(name.clone(), hash);
                    bindings.push(Binding::SecretText {
                        name: name.clone(),
                        text: Some(value.expose().to_owned()),
                    });
                    declared.push((name.clone(), value));
                }
                BindingSpec::Service(target) => {
                    // The bound worker's script name follows from the key; waiting for its
                    // published value (`bound`) only orders it first.
                    let script = provider_name(&key.app, &key.stage, target);
                    facts.insert(name.clone(), format!("service:{script}"));
                    bindings.push(Binding::Other(serde_json::json!({
                        "type": "service",
                        "name": name,
                        "service": script,
                    })));
                }
            }
        }
        Ok(WorkerDesired {
            script: key.provider_name(),
            tag: ownership_tag(key),
            facts: WorkerFacts {
                content_hash: bundle.content_hash.clone(),
                bindings: facts,
                compatibility_date: spec.compatibility_date.clone(),
                compatibility_flags: spec.compatibility_flags.clone(),
                secrets,
                workers_dev: Some(spec.workers_dev),
            },
            bindings,
            bundle: Arc::clone(bundle),
            secrets: spec.secrets,
            declared,
        })
    }

    fn status(status: &Status) -> Option<&WorkerStatus> {
        match status {
            Status::Worker(s) => Some(s),
            _ => None,
        }
    }

    fn wrap(status: WorkerStatus) -> Status {
        Status::Worker(status)
    }

    /// An empty value once uploaded: a service binding to this worker waits for it (the
    /// binding names the script by its key, so there is nothing else to pass).
    fn published(status: &WorkerStatus) -> Option<String> {
        status.applied.as_ref().map(|_| String::new())
    }

    /// The scripts this worker's service bindings name, as last uploaded.
    fn binds_recorded(status: &WorkerStatus) -> Vec<String> {
        status
            .applied
            .iter()
            .flat_map(|a| a.bindings.values())
            .filter_map(|fact| fact.strip_prefix("service:").map(str::to_owned))
            .collect()
    }

    /// Reads settings and content only when the list shows the script changed since lumierd
    /// last saw it.
    async fn observe(
        cx: &Ctx<'_>,
        desired: &WorkerDesired,
        status: &WorkerStatus,
    ) -> Result<ScriptSeen, ApiError> {
        let name = &desired.script;
        let Some(script) = cx.index.script(name) else {
            return Ok(ScriptSeen::Absent);
        };
        let Some(applied) = &status.applied else {
            let tags = script.tags.as_deref().unwrap_or_default();
            let owner = if !tags.contains(&desired.tag) {
                Owner::Nobody
            } else if tags.contains(&installation_tag(cx.installation)) {
                Owner::This
            } else {
                Owner::Other
            };
            return Ok(ScriptSeen::Unrecorded { owner });
        };
        let observed = &status.observed;
        let same_etag = observed.etag.as_deref() == Some(script.etag.as_str());
        if same_etag && observed.modified_on.as_deref() == Some(script.modified_on.as_str()) {
            return audit_route(cx, name, applied, observed).await;
        }
        let now = ScriptObserved {
            etag: Some(script.etag.clone()),
            modified_on: Some(script.modified_on.clone()),
            unmanaged_secrets: Vec::new(),
            url: status.observed.url.clone(),
            route_checked: None,
        };
        let settings = cx.client.get_settings(name).await?;
        let content_hash = if same_etag {
            applied.content_hash.clone()
        } else {
            let content = cx.client.get_content(name).await?;
            let main = content.main_module.unwrap_or_default();
            let mut modules = content.modules;
            modules.sort_by(|a, b| a.name.cmp(&b.name));
            crate::worker::content_hash(&main, &modules)
        };
        let (mut facts, unmanaged_secrets) = split_unmanaged_secrets(
            facts_of(&settings, content_hash),
            applied,
            &desired.facts,
            desired.secrets,
        );
        // The route is not versioned (flipping it leaves the list's etag as it was): it is read
        // here, with the settings, only when the list shows the script changed.
        let mut route_checked = status.observed.route_checked;
        if applied.workers_dev.is_some() {
            facts.workers_dev = Some(cx.client.get_script_subdomain(name).await?.enabled);
            route_checked = Some(unix_now());
        }
        Ok(ScriptSeen::Changed {
            facts,
            now: Box::new(ScriptObserved {
                unmanaged_secrets,
                route_checked,
                ..now
            }),
        })
    }

    fn decide(
        _: &ResourceKey,
        desired: &WorkerDesired,
        status: &WorkerStatus,
        seen: &ScriptSeen,
        rules: Rules,
    ) -> Decision {
        decide_script(
            &desired.script,
            status.applied.as_ref(),
            &desired.facts,
            seen,
            rules.mode,
            rules.adopt,
        )
    }

    fn up_to_date(_: &WorkerDesired, status: WorkerStatus) -> WorkerStatus {
        status
    }

    /// A script changed remotely but found as desired (a secret put by another tool, an
    /// identical re-upload): its new version and unmanaged secrets are recorded, so the next
    /// pass sees it unchanged and reads nothing.
    fn record_seen(mut status: WorkerStatus, seen: &ScriptSeen) -> WorkerStatus {
        if let ScriptSeen::Changed { now, .. } = seen {
            status.observed = (**now).clone();
        }
        status
    }

    fn adopt(_: &WorkerDesired, _: &str) -> WorkerStatus {
        WorkerStatus::default()
    }

    async fn create(cx: &Ctx<'_>, desired: &WorkerDesired) -> Result<WorkerStatus, ApiError> {
        let status = upload(cx, desired, Vec::new()).await?;
        route(cx, desired, None, true, status).await
    }

    async fn update(
        cx: &Ctx<'_>,
        desired: &WorkerDesired,
        status: &WorkerStatus,
    ) -> Result<WorkerStatus, ApiError> {
        let applied = status.applied.as_ref();
        // Nothing changed in the manifest: this puts drift back, whatever it was.
        let correction = applied == Some(&desired.facts);
        let before = applied.and_then(|a| a.workers_dev);
        if let Some(applied) = applied.filter(|_| !correction) {
            if upload_facts(applied) == upload_facts(&desired.facts) {
                let status = put_secrets(cx, desired, applied, status).await?;
                return route(cx, desired, before, false, status).await;
            }
        }
        let kept = match desired.secrets {
            SecretsMode::Keep => status.observed.unmanaged_secrets.clone(),
            SecretsMode::Exclusive => Vec::new(),
        };
        let mut uploaded = upload(cx, desired, kept).await?;
        uploaded.observed.url = status.observed.url.clone();
        uploaded.observed.route_checked = status.observed.route_checked;
        route(cx, desired, before, correction, uploaded).await
    }

    async fn delete(cx: &Ctx<'_>, _: &WorkerStatus) -> Result<(), ApiError> {
        let name = cx.key.provider_name();
        if cx.index.script(&name).is_none() {
            return Ok(());
        }
        match cx.client.delete_script(&name, false).await {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn output(key: &ResourceKey, status: &WorkerStatus) -> Option<serde_json::Value> {
        status.observed.etag.as_ref().map(|etag| {
            let mut out = serde_json::json!({
                "type": "worker",
                "name": key.name,
                "scriptName": key.provider_name(),
                "etag": etag,
            });
            if let Some(url) = &status.observed.url {
                out["url"] = serde_json::json!(url);
            }
            if !status.observed.unmanaged_secrets.is_empty() {
                out["unmanagedSecrets"] = serde_json::json!(status.observed.unmanaged_secrets);
            }
            out
        })
    }
}

/// Puts the workers.dev route as declared when the manifest manages it and it changed
/// (`before` is what was applied) or `force` (a create, a drift correction): one `POST
/// …/subdomain`, and when on the account's subdomain for the URL (one `GET
/// /workers/subdomain` per pass, shared by the pass's workers). Nothing otherwise.
async fn route(
    cx: &Ctx<'_>,
    desired: &WorkerDesired,
    before: Option<bool>,
    force: bool,
    mut status: WorkerStatus,
) -> Result<WorkerStatus, ApiError> {
    let Some(on) = desired.facts.workers_dev else {
        return Ok(status);
    };
    if force || before != Some(on) {
        cx.client.set_script_subdomain(&desired.script, on).await?;
        status.observed.route_checked = Some(unix_now());
        status.observed.url = if on {
            cx.index
                .account_subdomain(cx.client)
                .await?
                .map(|sub| workers_dev_url(&desired.script, &sub))
        } else {
            None
        };
    }
    Ok(status)
}

/// Applies a change of declared secrets only: one `PUT …/secrets` per new or rotated secret,
/// one `DELETE` per secret no longer declared; no re-upload. The script's new version is seen
/// (and recorded) by the next pass.
async fn put_secrets(
    cx: &Ctx<'_>,
    desired: &WorkerDesired,
    applied: &WorkerFacts,
    status: &WorkerStatus,
) -> Result<WorkerStatus, ApiError> {
    for (name, value) in &desired.declared {
        if applied.secrets.get(name) != desired.facts.secrets.get(name) {
            let text = crate::cloudflare::Secret::new(value.expose());
            cx.client.put_secret(&desired.script, name, &text).await?;
        }
    }
    for name in applied.secrets.keys() {
        if !desired.facts.secrets.contains_key(name) {
            cx.client.delete_secret(&desired.script, name).await?;
        }
    }
    Ok(WorkerStatus {
        observed: status.observed.clone(),
        applied: Some(desired.facts.clone()),
    })
}

/// Uploads the whole script (idempotent: PUT by name). Under `secrets: keep` the upload
/// carries `keep_bindings` (as wrangler does), so the script's secrets, whose text lumierd
/// cannot re-send, survive it; `unmanaged_secrets` are those, as recorded before.
async fn upload(
    cx: &Ctx<'_>,
    desired: &WorkerDesired,
    unmanaged_secrets: Vec<String>,
) -> Result<WorkerStatus, ApiError> {
    let metadata = ScriptMetadata {
        main_module: Some(desired.bundle.main_module.clone()),
        bindings: desired.bindings.clone(),
        compatibility_date: Some(desired.facts.compatibility_date.clone()),
        compatibility_flags: desired.facts.compatibility_flags.clone(),
        tags: vec![desired.tag.clone(), installation_tag(cx.installation)],
        ..ScriptMetadata::default()
    };
    let metadata = match desired.secrets {
        SecretsMode::Keep => metadata.keep_secrets(),
        SecretsMode::Exclusive => metadata,
    };
    let upload = ScriptUpload {
        metadata,
        modules: desired.bundle.modules.iter().map(Module::clone).collect(),
    };
    let script = cx.client.upload_script(&desired.script, &upload).await?;
    Ok(WorkerStatus {
        observed: ScriptObserved {
            etag: Some(script.etag),
            modified_on: Some(script.modified_on),
            unmanaged_secrets,
            url: None,
            route_checked: None,
        },
        applied: Some(desired.facts.clone()),
    })
}
