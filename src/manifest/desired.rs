//! The desired-state snapshot: what the manifests declare, validated and immutable.
//!
//! A snapshot is built whole or not at all (see [`super::load`]); the controller only ever sees
//! complete snapshots behind an `Arc`.

use super::yaml::Pos;
use litemap::LiteMap;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Cloudflare's `compatibility_date` when a worker does not set one: the date lumierd's
/// worker handling was written against. Documented in the README and the JSON Schema.
pub const DEFAULT_COMPATIBILITY_DATE: &str = "2025-01-01";

/// How drift (out-of-band edits) is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Record the drift, then put the remote back as declared.
    Correct,
    /// Record the drift and leave the remote alone (never writes).
    Report,
}

/// What lumierd does with a worker's remote secrets that no binding declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SecretsMode {
    /// Leave them (the default): set by `wrangler secret put`, the dashboard or another tool,
    /// they are kept by every upload (`keep_bindings`), are not drift, and status lists them
    /// as unmanaged.
    #[default]
    Keep,
    /// The manifest is the whole truth: an undeclared remote secret is drift, and putting the
    /// worker back removes it.
    Exclusive,
}

impl std::str::FromStr for SecretsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(SecretsMode::Keep),
            "exclusive" => Ok(SecretsMode::Exclusive),
            other => Err(format!(
                "unknown `secrets` mode `{other}`; use `keep` (the default: secrets set outside lumierd stay) or `exclusive` (remove secrets not declared here)"
            )),
        }
    }
}

impl std::str::FromStr for DriftMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "correct" => Ok(DriftMode::Correct),
            "report" => Ok(DriftMode::Report),
            other => Err(format!(
                "`{other}` is not a drift mode; use `correct` or `report`"
            )),
        }
    }
}

/// One app's stage: the unit a manifest document declares.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct StageKey {
    pub app: String,
    pub stage: String,
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.stage)
    }
}

/// One resource's identity: app, stage and the name it is declared under.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ResourceKey {
    pub app: String,
    pub stage: String,
    pub name: String,
}

impl ResourceKey {
    /// The name on the provider: a managed namespace's title, a worker's script name.
    pub fn provider_name(&self) -> String {
        provider_name(&self.app, &self.stage, &self.name)
    }

    pub fn stage_key(&self) -> StageKey {
        StageKey {
            app: self.app.clone(),
            stage: self.stage.clone(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.stage, self.name)
    }
}

/// `{app}-{stage}-{name}`: the provider name of a managed resource (CONTRACT.md).
pub fn provider_name(app: &str, stage: &str, name: &str) -> String {
    format!("{app}-{stage}-{name}")
}

/// Where something was declared: a file (as displayed to the user) and a position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Shared by every resource of one document.
    pub file: std::sync::Arc<str>,
    pub pos: Pos,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.pos.line, self.pos.col)
    }
}

/// A binding of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindingSpec {
    /// A KV namespace binding to the `kv` resource of this name in the same stage.
    Kv(String),
    /// A plain-text var, `${app}` and `${stage}` already substituted.
    Text(String),
    /// A JSON var, as canonical JSON text ([`canonical_json`]: object keys sorted, no
    /// whitespace), so two values equal as JSON compare equal whatever their key order.
    Json(String),
    /// A service binding to the `worker` resource of this name in the same stage.
    Service(String),
    /// A secret (`secret_text`) whose value is read from `source` on each pass, never stored.
    Secret(crate::secrets::SecretSource),
}

/// `value` as canonical JSON text: object keys sorted (by byte order), no whitespace. The
/// form JSON vars are compared in (declared and remote alike), independent of how
/// `serde_json`'s map is ordered.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A worker script as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The entry as written, relative to its manifest's folder.
    pub entry: String,
    /// The entry resolved: canonical and inside the manifests root.
    pub entry_path: PathBuf,
    /// Binding name → binding, sorted by name. A sorted vector, not a tree: a worker has a
    /// handful of bindings, and a `BTreeMap` node would cost ~600 bytes per worker.
    pub bindings: LiteMap<String, BindingSpec>,
    pub compatibility_date: String,
    pub compatibility_flags: Vec<String>,
    /// `secrets:`: what happens to remote secrets no binding declares.
    pub secrets: SecretsMode,
    /// `workersDev:`: the script's workers.dev route on (`true`, also when not written, as
    /// wrangler does) or off (`false`).
    pub workers_dev: bool,
}

impl WorkerSpec {
    /// Names of the resources this worker binds (its dependencies: kv namespaces and the
    /// workers of its service bindings), sorted, without repeats.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self
            .bindings
            .values()
            .filter_map(|b| match b {
                BindingSpec::Kv(name) | BindingSpec::Service(name) => Some(name.as_str()),
                BindingSpec::Text(_) | BindingSpec::Json(_) | BindingSpec::Secret(_) => None,
            })
            .collect();
        deps.sort_unstable();
        deps.dedup();
        deps
    }
}

/// What a resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSpec {
    /// `KV("name")`: a namespace lumierd creates and owns.
    Kv,
    /// `KV.existing("name", { id })`: observed and bound, never created, renamed or deleted.
    KvExisting { id: String },
    /// `Worker("name", { entry, bindings })`.
    Worker(WorkerSpec),
}

impl ResourceSpec {
    /// `kv` or `worker`, as in manifests and status.
    pub fn type_name(&self) -> &'static str {
        match self {
            ResourceSpec::Kv | ResourceSpec::KvExisting { .. } => "kv",
            ResourceSpec::Worker(_) => "worker",
        }
    }
}

/// A declared resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub key: ResourceKey,
    pub spec: ResourceSpec,
    /// The resource's own `drift:`, if any (it overrides the stage's and the daemon's).
    pub drift: Option<DriftMode>,
    pub origin: Origin,
}

/// One stage of one app with all its resources (merged over every document declaring it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub key: StageKey,
    /// The stage is listed in its app's `protect`: its resources are never deleted.
    pub protected: bool,
    /// The stage's `drift:`, if any.
    pub drift: Option<DriftMode>,
    /// Name → resource, sorted by name (a sorted vector: exact size, unlike tree nodes of
    /// eleven 264-byte slots).
    pub resources: LiteMap<String, Resource>,
}

/// The whole desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub stages: BTreeMap<StageKey, Stage>,
    /// Every app a document states `protect` for → that list. An app no document states it
    /// for is absent: then what was recorded decides (protection once recorded holds until
    /// a document of the app says otherwise).
    pub protect: BTreeMap<String, Vec<String>>,
}

impl Desired {
    /// Every resource, in (app, stage, name) order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.stages.values().flat_map(|s| s.resources.values())
    }

    pub fn resource(&self, key: &ResourceKey) -> Option<&Resource> {
        self.stages.get(&key.stage_key())?.resources.get(&key.name)
    }

    pub fn stage(&self, key: &StageKey) -> Option<&Stage> {
        self.stages.get(key)
    }

    /// Whether a stage's resources must never be deleted: `Some(true/false)` when a document
    /// of its app states `protect` (that list decides), `None` when none does, or the app is
    /// no longer declared at all (then only what was recorded can tell).
    pub fn is_protected(&self, key: &StageKey) -> Option<bool> {
        self.protect
            .get(&key.app)
            .map(|list| list.contains(&key.stage))
    }

    /// Whether any document declares `app`.
    pub fn declares_app(&self, app: &str) -> bool {
        self.stages.keys().any(|k| k.app == app)
    }

    /// The drift mode in force for a resource: its own, else its stage's, else `default`.
    pub fn drift_mode(&self, key: &ResourceKey, default: DriftMode) -> DriftMode {
        let stage = self.stages.get(&key.stage_key());
        stage
            .and_then(|s| s.resources.get(&key.name))
            .and_then(|r| r.drift)
            .or_else(|| stage.and_then(|s| s.drift))
            .unwrap_or(default)
    }

    /// `ok: 2 apps, 3 stages, 7 resources`.
    pub fn summary(&self) -> String {
        let apps: std::collections::BTreeSet<&str> =
            self.stages.keys().map(|k| k.app.as_str()).collect();
        let resources = self.resources().count();
        format!(
            "{} {}, {} {}, {} {}",
            apps.len(),
            plural(apps.len(), "app", "apps"),
            self.stages.len(),
            plural(self.stages.len(), "stage", "stages"),
            resources,
            plural(resources, "resource", "resources"),
        )
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": null, "c": "x"}], "x": true}}"#)
                .unwrap_or_default();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":true,"y":[1,{"c":"x","d":null}]},"b":1}"#
        );
    }
}
