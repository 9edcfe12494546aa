//! A Worker script (`Worker("name", { entry, bindings })`), named `{app}-{stage}-{name}` and
//! tagged `lumierd:{app}:{stage}:{name}` so lumierd can tell its own scripts from others'.

use super::decision::drifted;
use super::{Bound, Ctx, Decision, Kind, Reconciler, Rules, Status};
use crate::cloudflare::types::{
    Binding, Module, ScriptMetadata, ScriptSettings, KEEP_SECRET_BINDINGS,
};
use crate::cloudflare::{ApiError, ErrorKind, ScriptUpload};
use crate::manifest::{
    canonical_json, provider_name, BindingSpec, DriftMode, ResourceKey, SecretsMode, WorkerSpec,
};
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
}

/// The ownership tag of the script for `key`.
pub fn ownership_tag(key: &ResourceKey) -> String {
    format!("lumierd:{}:{}:{}", key.app, key.stage, key.name)
}

/// The tag of the installation (state folder) that uploaded a script.
pub fn installation_tag(installation: &str) -> String {
    format!("lumierd-installation:{installation}")
}

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

fn facts_of(settings: &ScriptSettings, content_hash: String) -> WorkerFacts {
    WorkerFacts {
        content_hash,
        bindings: settings.bindings.iter().filter_map(binding_fact).collect(),
        compatibility_date: settings.compatibility_date.clone().unwrap_or_default(),
        compatibility_flags: settings.compatibility_flags.clone(),
    }
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
                    let json: serde_json::Value = serde_json::from_str(text)
                        .map_err(|e| format!("binding `{name}`: its JSON does not parse: {e}"))?;
                    facts.insert(name.clone(), format!("json:{text}"));
                    bindings.push(Binding::Other(serde_json::json!({
                        "type": "json",
                        "name": name,
                        "json": json,
                    })));
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
            },
            bindings,
            bundle: Arc::clone(bundle),
            secrets: spec.secrets,
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
            return Ok(ScriptSeen::Unchanged);
        }
        let now = ScriptObserved {
            etag: Some(script.etag.clone()),
            modified_on: Some(script.modified_on.clone()),
            unmanaged_secrets: Vec::new(),
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
        let (facts, unmanaged_secrets) = split_unmanaged_secrets(
            facts_of(&settings, content_hash),
            applied,
            &desired.facts,
            desired.secrets,
        );
        Ok(ScriptSeen::Changed {
            facts,
            now: ScriptObserved {
                unmanaged_secrets,
                ..now
            },
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
            status.observed = now.clone();
        }
        status
    }

    fn adopt(_: &WorkerDesired, _: &str) -> WorkerStatus {
        WorkerStatus::default()
    }

    async fn create(cx: &Ctx<'_>, desired: &WorkerDesired) -> Result<WorkerStatus, ApiError> {
        upload(cx, desired, Vec::new()).await
    }

    async fn update(
        cx: &Ctx<'_>,
        desired: &WorkerDesired,
        status: &WorkerStatus,
    ) -> Result<WorkerStatus, ApiError> {
        let kept = match desired.secrets {
            SecretsMode::Keep => status.observed.unmanaged_secrets.clone(),
            SecretsMode::Exclusive => Vec::new(),
        };
        upload(cx, desired, kept).await
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
            if !status.observed.unmanaged_secrets.is_empty() {
                out["unmanagedSecrets"] = serde_json::json!(status.observed.unmanaged_secrets);
            }
            out
        })
    }
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
        },
        applied: Some(desired.facts.clone()),
    })
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

/// What lumierd knows of a worker's remote script for this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSeen {
    /// Not in the script list.
    Absent,
    /// In the list with the same etag and modified_on as recorded: unchanged since applied.
    Unchanged,
    /// In the list, changed since applied; `facts` were read from settings and content
    /// (without the unmanaged secrets, see [`split_unmanaged_secrets`]); `now` is the
    /// version the list showed, with those secrets' names.
    Changed {
        facts: WorkerFacts,
        now: ScriptObserved,
    },
    /// In the list, and lumierd has no record of applying it: whose tags it carries.
    Unrecorded { owner: Owner },
}

/// Whose a script lumierd has no record of is, by its tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This resource's tag and this installation's: lumierd's own (its record was lost).
    This,
    /// This resource's tag, but another installation's (another host or state folder), or
    /// none (written before installations were tagged, or this installation's state was lost).
    Other,
    /// No lumierd tag for this resource.
    Nobody,
}

/// A worker script. `adopt`: `run --adopt` was given.
pub fn decide_script(
    script: &str,
    applied: Option<&WorkerFacts>,
    desired: &WorkerFacts,
    seen: &ScriptSeen,
    mode: DriftMode,
    adopt: bool,
) -> Decision {
    match (applied, seen) {
        (None, ScriptSeen::Absent) => Decision::Create,
        (None, ScriptSeen::Unrecorded { owner: Owner::This }) => Decision::Update {
            changes: vec!["adopt: script carries this installation's tag (its record was lost); re-upload".into()],
        },
        (None, ScriptSeen::Unrecorded { owner }) if adopt => Decision::Update {
            changes: vec![format!(
                "adopt (--adopt): script {}; re-upload",
                match owner {
                    Owner::Nobody => "without lumierd's tag",
                    _ => "of another lumierd installation",
                }
            )],
        },
        (None, ScriptSeen::Unrecorded { owner: Owner::Other }) => Decision::Refuse {
            reason: format!(
                "the Worker script `{script}` carries lumierd's tag but another installation's (another host or state folder, \
                 or this one's state was lost): stop the other lumierd, or take it over here with `lumierd run --adopt`"
            ),
        },
        (None, _) => Decision::Refuse {
            reason: format!(
                "a Worker script named `{script}` already exists without lumierd's tag, so lumierd did not create it: \
                 delete it, rename the resource, or take it over with `lumierd run --adopt`"
            ),
        },
        (Some(_), ScriptSeen::Absent) => {
            drifted(mode, vec![format!("script {script}: deleted out of band")], true)
        }
        (Some(applied), ScriptSeen::Unchanged) | (Some(applied), ScriptSeen::Unrecorded { .. }) => {
            let changes = worker_diff(applied, desired);
            if changes.is_empty() {
                Decision::UpToDate
            } else {
                Decision::Update { changes }
            }
        }
        (Some(applied), ScriptSeen::Changed { facts, .. }) => {
            let drift = worker_diff(applied, facts);
            if drift.is_empty() {
                let changes = worker_diff(applied, desired);
                if changes.is_empty() {
                    Decision::UpToDate
                } else {
                    Decision::Update { changes }
                }
            } else {
                drifted(mode, drift, false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DriftMode::{Correct, Report};

    fn changed(facts: WorkerFacts) -> ScriptSeen {
        ScriptSeen::Changed {
            facts,
            now: ScriptObserved::default(),
        }
    }

    fn facts(hash: &str, cache: &str) -> WorkerFacts {
        WorkerFacts {
            content_hash: hash.into(),
            bindings: [
                ("CACHE".to_string(), format!("kv:{cache}")),
                ("STAGE".to_string(), "text:prod".to_string()),
            ]
            .into_iter()
            .collect(),
            compatibility_date: "2025-01-01".into(),
            compatibility_flags: vec![],
        }
    }

    #[test]
    fn worker_table() {
        let a = facts("aaaaaaaaaaaaaaaa", "ns1");
        let edited = facts("bbbbbbbbbbbbbbbb", "ns1");
        let rebound = facts("aaaaaaaaaaaaaaaa", "ns2");
        let s = "app-prod-api";
        assert_eq!(
            decide_script(s, None, &a, &ScriptSeen::Absent, Correct, false),
            Decision::Create
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &ScriptSeen::Unchanged, Correct, false),
            Decision::UpToDate
        );
        assert_eq!(
            decide_script(s, Some(&a), &edited, &ScriptSeen::Unchanged, Correct, false),
            Decision::Update {
                changes: vec!["content: aaaaaaaaaaaa → bbbbbbbbbbbb".into()]
            }
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(rebound.clone()), Correct, false),
            Decision::Correct {
                drift: vec!["bindings.CACHE: kv:ns1 → kv:ns2".into()],
                recreate: false
            }
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(rebound), Report, false),
            Decision::Report {
                drift: vec!["bindings.CACHE: kv:ns1 → kv:ns2".into()]
            }
        );
        // Re-uploaded with identical content and settings: nothing drifted.
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(a.clone()), Correct, false),
            Decision::UpToDate
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &ScriptSeen::Absent, Correct, false),
            Decision::Correct {
                drift: vec![format!("script {s}: deleted out of band")],
                recreate: true
            }
        );
        assert!(matches!(
            decide_script(
                s,
                None,
                &a,
                &ScriptSeen::Unrecorded {
                    owner: Owner::Nobody
                },
                Correct,
                false
            ),
            Decision::Refuse { .. }
        ));
        assert!(matches!(
            decide_script(
                s,
                None,
                &a,
                &ScriptSeen::Unrecorded { owner: Owner::This },
                Correct,
                false
            ),
            Decision::Update { .. }
        ));
        // Another installation's script: refused, naming --adopt; taken over with it.
        let other = ScriptSeen::Unrecorded {
            owner: Owner::Other,
        };
        let Decision::Refuse { reason } = decide_script(s, None, &a, &other, Correct, false) else {
            panic!("another installation's script must be refused")
        };
        assert!(reason.contains("lumierd run --adopt"), "{reason}");
        for owner in [Owner::Other, Owner::Nobody] {
            let seen = ScriptSeen::Unrecorded { owner };
            assert!(matches!(
                decide_script(s, None, &a, &seen, Correct, true),
                Decision::Update { .. }
            ));
        }
    }

    /// Secrets set outside lumierd: not drift under `keep` (listed as unmanaged), drift
    /// under `exclusive`; a declared name is never split out.
    #[test]
    fn unmanaged_secrets_table() {
        let a = facts("aaaaaaaaaaaaaaaa", "ns1");
        let mut remote = a.clone();
        remote
            .bindings
            .insert("API_KEY".into(), "secret_text".into());
        remote
            .bindings
            .insert("SIGNING".into(), "secret_key".into());
        let (kept, unmanaged) = split_unmanaged_secrets(remote.clone(), &a, &a, SecretsMode::Keep);
        assert_eq!(kept, a);
        assert_eq!(
            unmanaged,
            vec!["API_KEY".to_string(), "SIGNING".to_string()]
        );
        let s = "app-prod-api";
        let seen = ScriptSeen::Changed {
            facts: kept,
            now: ScriptObserved {
                unmanaged_secrets: unmanaged,
                ..ScriptObserved::default()
            },
        };
        assert_eq!(
            decide_script(s, Some(&a), &a, &seen, Correct, false),
            Decision::UpToDate
        );
        let (all, none) = split_unmanaged_secrets(remote.clone(), &a, &a, SecretsMode::Exclusive);
        assert!(none.is_empty());
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(all), Correct, false),
            Decision::Correct {
                drift: vec![
                    "bindings.API_KEY: (none) → secret_text".into(),
                    "bindings.SIGNING: (none) → secret_key".into()
                ],
                recreate: false
            }
        );
        // A declared binding replaced by a secret of the same name is drift under `keep` too.
        let mut replaced = a.clone();
        replaced
            .bindings
            .insert("STAGE".into(), "secret_text".into());
        let (kept, unmanaged) = split_unmanaged_secrets(replaced, &a, &a, SecretsMode::Keep);
        assert!(unmanaged.is_empty());
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(kept), Correct, false),
            Decision::Correct {
                drift: vec!["bindings.STAGE: text:prod → secret_text".into()],
                recreate: false
            }
        );
    }

    #[test]
    fn diff_lines() {
        let mut from = facts("a", "ns1");
        from.bindings.insert("OLD".into(), "text:x".into());
        let mut to = facts("a", "ns1");
        to.bindings.insert("NEW".into(), "text:y".into());
        to.compatibility_flags = vec!["nodejs_compat".into()];
        assert_eq!(
            worker_diff(&from, &to),
            vec![
                "bindings.OLD: text:x → (removed)".to_string(),
                "bindings.NEW: (none) → text:y".to_string(),
                "compatibility_flags: [] → [nodejs_compat]".to_string(),
            ]
        );
    }
}
