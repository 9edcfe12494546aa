//! The resource kinds and the one contract each implements ([`Reconciler`]).
//!
//! A kind is one file here: its spec and status types, `observe` (never writes), its pure
//! decision table ([`Reconciler::decide`], with table tests beside it), the verbs `create`,
//! `update` and `delete` (idempotent, except a `create` marked [`Reconciler::CREATE_IS_PENDING`],
//! which the controller guards with a flushed create-pending marker), its status output and its
//! dependency edges. No policy lives in a kind: ordering, concurrency, backoff, drift policy,
//! prune, ownership gates and store writes belong to `runtime::controller`, which is generic
//! over kinds and names none of them.
//!
//! Adding a kind: one file implementing [`Reconciler`], one variant of [`Kind`] and of
//! [`Status`], and one line in [`with_kind!`] and [`with_record_kind!`] (the lists below).

pub mod decision;
mod index;
pub mod kv_existing;
pub mod kv_namespace;
pub mod worker_script;

pub use decision::Decision;
pub use index::RemoteIndex;

use crate::cloudflare::{ApiError, Client};
use crate::manifest::{DriftMode, ResourceKey};
use crate::source::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A resource kind, as recorded. `type_name` is what manifests and status call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `KV("name")`: a namespace lumierd creates and owns.
    KvNamespace,
    /// `KV.existing("name", { id })`: observed and bound, never created, renamed or deleted.
    KvExisting,
    /// `Worker("name", { entry, bindings })`.
    WorkerScript,
}

impl Kind {
    /// The kind of a record: its status's tag, and `existing` for namespaces.
    pub fn of_record(status: &Status, existing: bool) -> Kind {
        match status {
            Status::Kv(_) if existing => Kind::KvExisting,
            Status::Kv(_) => Kind::KvNamespace,
            Status::Worker(_) => Kind::WorkerScript,
        }
    }

    /// `kv` or `worker`: the `type` of manifests and status.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::KvNamespace | Kind::KvExisting => "kv",
            Kind::WorkerScript => "worker",
        }
    }
}

/// What one kind keeps between passes in its record: what it last observed and applied.
/// Stored flattened into the record, tagged by `kind` (the layout v1 wrote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Status {
    #[serde(rename = "kv")]
    Kv(kv_namespace::KvStatus),
    #[serde(rename = "worker")]
    Worker(worker_script::WorkerStatus),
}

impl Default for Status {
    fn default() -> Status {
        Status::Kv(kv_namespace::KvStatus::default())
    }
}

/// What a kind gets for one reconcile.
pub struct Ctx<'a> {
    pub client: &'a Client,
    /// The account's namespaces and scripts, listed at the start of the pass.
    pub index: &'a RemoteIndex,
    pub key: &'a ResourceKey,
    /// Whether acting is allowed (false under `plan`): observe may use it to skip reads whose
    /// only use is an act.
    pub act: bool,
    /// This installation's id (kept in the state folder): what it creates carries it, so two
    /// installations never take each other's objects.
    pub installation: &'a str,
}

/// What the decision table is told besides desired, status and observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// A create-pending marker is set: a create may have happened before a crash.
    pub pending: bool,
    pub mode: DriftMode,
    /// `run --adopt`: take over an object found by its natural key that lumierd has no
    /// record of (lost state), instead of refusing it. Logged.
    pub adopt: bool,
}

/// What the resources a kind depends on published in this pass: dependency name (in the same
/// stage) → its published value (a namespace id).
pub type Bound = BTreeMap<String, String>;

/// The contract of one resource kind. Every method but the verbs is pure.
pub trait Reconciler {
    /// The declared spec (as the manifest holds it).
    type Spec: ?Sized;
    /// The spec resolved for this pass: dependencies bound, sources built.
    type Desired;
    /// What the record keeps for this kind (see [`Status`]).
    type Status: Clone + Default;
    /// What `observe` saw.
    type Observation;

    const KIND: Kind;
    /// Whether `create` is not idempotent: the controller flushes a create-pending marker
    /// before it, so that a crash in between is resolved by [`Decision::Adopt`], never by a
    /// second object.
    const CREATE_IS_PENDING: bool = false;
    /// Whether the object outlives its declaration: a removed resource of this kind is only
    /// forgotten, never deleted.
    const NEVER_DELETED: bool = false;
    /// Prune order, lower first: a kind that binds others goes before what it binds.
    const DELETE_RANK: u8 = 1;

    /// Names (in the same stage) of the resources this one binds, sorted, without repeats.
    fn dependencies(spec: &Self::Spec) -> Vec<&str>;

    /// Resolves the spec for this pass; `Err` is why it cannot be (nothing to act on yet).
    fn desired(
        key: &ResourceKey,
        spec: &Self::Spec,
        snap: &Snapshot,
        bound: &Bound,
    ) -> Result<Self::Desired, String>;

    /// The typed status inside a record's [`Status`], if it is this kind's.
    fn status(status: &Status) -> Option<&Self::Status>;
    fn wrap(status: Self::Status) -> Status;
    /// What dependents bind to (a namespace id), once this resource is ready.
    fn published(status: &Self::Status) -> Option<String>;
    /// Provider names of the objects of its own kind this recorded object binds (a worker's
    /// service bindings, as last applied): prune deletes it before them. Default: none.
    fn binds_recorded(_status: &Self::Status) -> Vec<String> {
        Vec::new()
    }

    /// Reads what the provider has. Never writes.
    #[allow(async_fn_in_trait)]
    async fn observe(
        cx: &Ctx<'_>,
        desired: &Self::Desired,
        status: &Self::Status,
    ) -> Result<Self::Observation, ApiError>;

    /// The pure decision table.
    fn decide(
        key: &ResourceKey,
        desired: &Self::Desired,
        status: &Self::Status,
        seen: &Self::Observation,
        rules: Rules,
    ) -> Decision;

    /// The status after the remote was found as desired (no write).
    fn up_to_date(desired: &Self::Desired, status: Self::Status) -> Self::Status;
    /// What an observation that needs no write leaves in the status, before
    /// [`Reconciler::up_to_date`]: e.g. the version seen, so that the next pass need not read
    /// again, and what the remote holds that lumierd does not manage. Default: nothing.
    fn record_seen(status: Self::Status, _seen: &Self::Observation) -> Self::Status {
        status
    }
    /// The status after adopting the object `id` found by its natural key.
    fn adopt(desired: &Self::Desired, id: &str) -> Self::Status;

    /// Creates the object (also after it was deleted out of band).
    #[allow(async_fn_in_trait)]
    async fn create(cx: &Ctx<'_>, desired: &Self::Desired) -> Result<Self::Status, ApiError>;
    /// Puts the object back as desired (idempotent).
    #[allow(async_fn_in_trait)]
    async fn update(
        cx: &Ctx<'_>,
        desired: &Self::Desired,
        status: &Self::Status,
    ) -> Result<Self::Status, ApiError>;
    /// Deletes the object; already gone is success. Called only for a recorded object.
    #[allow(async_fn_in_trait)]
    async fn delete(cx: &Ctx<'_>, status: &Self::Status) -> Result<(), ApiError>;

    /// The status `output` object (CONTRACT.md), when there is something to show.
    fn output(key: &ResourceKey, status: &Self::Status) -> Option<serde_json::Value>;
}

/// Runs `$body` with `$K` the [`Reconciler`] of a `manifest::ResourceSpec` and `$spec` its
/// spec: the one list of kinds by spec.
#[macro_export]
macro_rules! with_kind {
    ($resource_spec:expr, |$K:ident, $spec:ident| $body:expr) => {
        match $resource_spec {
            $crate::manifest::ResourceSpec::Kv => {
                type $K = $crate::resources::kv_namespace::KvNamespace;
                let $spec = &();
                $body
            }
            $crate::manifest::ResourceSpec::KvExisting { id } => {
                type $K = $crate::resources::kv_existing::KvExisting;
                let $spec: &str = id.as_str();
                $body
            }
            $crate::manifest::ResourceSpec::Worker(w) => {
                type $K = $crate::resources::worker_script::WorkerScript;
                let $spec = w;
                $body
            }
        }
    };
}

/// Runs `$body` with `$K` the [`Reconciler`] of a recorded [`Kind`]: the one list of kinds
/// by record (for what is no longer declared).
#[macro_export]
macro_rules! with_record_kind {
    ($kind:expr, |$K:ident| $body:expr) => {
        match $kind {
            $crate::resources::Kind::KvNamespace => {
                type $K = $crate::resources::kv_namespace::KvNamespace;
                $body
            }
            $crate::resources::Kind::KvExisting => {
                type $K = $crate::resources::kv_existing::KvExisting;
                $body
            }
            $crate::resources::Kind::WorkerScript => {
                type $K = $crate::resources::worker_script::WorkerScript;
                $body
            }
        }
    };
}

/// The kind of a declared spec.
pub fn kind_of(spec: &crate::manifest::ResourceSpec) -> Kind {
    with_kind!(spec, |K, _spec| <K as Reconciler>::KIND)
}

/// The empty status of a declared spec's kind (for its first record).
pub fn new_status(spec: &crate::manifest::ResourceSpec) -> Status {
    with_kind!(spec, |K, _spec| K::wrap(
        <K as Reconciler>::Status::default()
    ))
}

/// Whether a declared spec's kind is never deleted (only forgotten).
pub fn never_deleted(spec: &crate::manifest::ResourceSpec) -> bool {
    with_kind!(spec, |K, _spec| <K as Reconciler>::NEVER_DELETED)
}

/// Provider names the recorded object of `kind` binds (see [`Reconciler::binds_recorded`]).
pub fn binds_recorded(kind: Kind, status: &Status) -> Vec<String> {
    with_record_kind!(kind, |K| K::status(status)
        .map(K::binds_recorded)
        .unwrap_or_default())
}

/// Orders records to delete so that an object comes before every object of its kind it binds
/// (a worker before the workers its service bindings name), keeping the given order
/// otherwise. `binds(i)` are the provider names item `i` binds; `name(i)` its provider name.
/// A cycle (refused by validation, so only from an odd record) keeps the given order.
pub fn dependents_first<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> String,
    binds: impl Fn(&T) -> Vec<String>,
) -> Vec<T> {
    let names: Vec<String> = items.iter().map(&name).collect();
    let edges: Vec<Vec<usize>> = items
        .iter()
        .map(|t| {
            binds(t)
                .iter()
                .filter_map(|b| names.iter().position(|n| n == b))
                .collect()
        })
        .collect();
    // bound_by[j]: how many not-yet-placed items bind j.
    let mut bound_by = vec![0usize; items.len()];
    for e in &edges {
        for &j in e {
            bound_by[j] += 1;
        }
    }
    let mut order = Vec::with_capacity(items.len());
    let mut placed = vec![false; items.len()];
    while order.len() < items.len() {
        let next = (0..items.len())
            .find(|&i| !placed[i] && bound_by[i] == 0)
            .or_else(|| (0..items.len()).find(|&i| !placed[i]));
        let Some(i) = next else { break };
        placed[i] = true;
        for &j in &edges[i] {
            bound_by[j] = bound_by[j].saturating_sub(1);
        }
        order.push(i);
    }
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// The `output` object of a recorded resource.
pub fn output(kind: Kind, key: &ResourceKey, status: &Status) -> Option<serde_json::Value> {
    with_record_kind!(kind, |K| K::status(status).and_then(|s| K::output(key, s)))
}

#[cfg(test)]
mod tests {
    use super::dependents_first;

    #[test]
    fn dependents_are_deleted_before_what_they_bind() {
        // (name, binds)
        let items = vec![
            ("a-auth", vec![]),
            ("b-api", vec!["a-auth".to_string()]),
            ("c-gate", vec!["b-api".to_string()]),
            ("d-cache", vec![]),
        ];
        let got: Vec<&str> = dependents_first(items, |t| t.0.to_owned(), |t| t.1.clone())
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(got, vec!["c-gate", "b-api", "a-auth", "d-cache"]);
    }
}
