//! The generic loop's one pass: observe (two list calls), decide (pure, `plan`), act (the
//! resource verbs), persist, and schedule the next attempt. The one error policy lives here:
//! an error becomes `Error` state and exponential backoff with jitter (1 s doubling to 5 min).

use super::plan::{self, Decision, WorkerFacts};
use crate::cloudflare::types::Binding;
use crate::cloudflare::{ApiError, Client};
use crate::manifest::{BindingSpec, DriftMode, ResourceKey, ResourceSpec, Stage};
use crate::metrics::Metrics;
use crate::resources::{kv_existing, kv_namespace, worker_script, RemoteIndex};
use crate::source::Snapshot;
use crate::store::{Applied, DriftEvent, Observed, Record, State, Store, StoreError};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, Semaphore};

/// First retry delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Policy knobs of the loop.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Drift mode when neither the resource nor its stage says.
    pub drift: DriftMode,
    /// Most deletions one pass may make; more are held.
    pub max_prune: usize,
    /// Most resources reconciled at once.
    pub concurrency: usize,
    /// When false, decide but do not act (`plan`).
    pub act: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("listing the account's namespaces and scripts: {0}")]
    List(#[source] ApiError),
}

/// One resource's planned or applied change, for `plan` output and logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub key: ResourceKey,
    /// create, update, delete, adopt, retain, correct, report, refuse, hold, noop
    pub action: &'static str,
    pub details: Vec<String>,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub changes: Vec<Change>,
    /// Whether every declared resource ended `Ready` (or `Retained`) and nothing is held.
    pub converged: bool,
    /// The earliest time a failed resource wants to be retried.
    pub next_retry: Option<SystemTime>,
}

/// RFC 3339 in UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

/// Backoff before retry number `failures` (1-based): 1 s doubling to 5 min, ±10 % jitter.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_MIN.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    let jitter = rand::random::<f64>() * 0.2 - 0.1;
    base.mul_f64(1.0 + jitter)
}

/// The outcome of one resource's reconcile, before it is written to its record.
struct Outcome {
    record: Record,
    change: Option<Change>,
}

pub struct Controller {
    pub client: Client,
    pub store: Store,
    pub policy: Policy,
    /// Reconcile counts and durations, drift events (`/metrics`).
    pub metrics: Arc<Metrics>,
}

impl Controller {
    /// Runs one pass over the whole snapshot. Resources whose backoff is not due (and whose
    /// spec did not change) are left for later.
    pub async fn pass(&self, snap: &Snapshot) -> Result<PassReport, ControllerError> {
        self.pass_first(snap, &HashSet::new()).await
    }

    /// A pass that reconciles `first` (and the namespaces they bind) before the rest, so that
    /// an edit is applied as soon as the list calls are done. Every resource is still
    /// reconciled; only the order changes.
    pub async fn pass_first(
        &self,
        snap: &Snapshot,
        first: &HashSet<ResourceKey>,
    ) -> Result<PassReport, ControllerError> {
        let now = SystemTime::now();
        // The two reads of a pass, side by side.
        let (namespaces, scripts) =
            tokio::join!(self.client.list_namespaces(), self.client.list_scripts());
        let namespaces = namespaces.map_err(ControllerError::List)?;
        let scripts = scripts.map_err(ControllerError::List)?;
        let index = Arc::new(RemoteIndex::new(namespaces, scripts));
        // Only the records of resources no longer declared are held (for prune); the others
        // are read one at a time as their reconcile starts.
        let mut records: HashMap<ResourceKey, Record> = HashMap::new();
        for key in self.store.keys()? {
            if snap.desired.resource(&key).is_none() {
                if let Some(r) = self.store.get(&key)? {
                    records.insert(key, r);
                }
            }
        }
        let permits = Arc::new(Semaphore::new(self.policy.concurrency.max(1)));

        // Each kv resource publishes its namespace id (or None on failure) for the workers.
        let ids = IdBoard::new(
            snap.desired
                .resources()
                .filter(|r| r.spec.type_name() == "kv")
                .map(|r| &r.key),
        );
        let ids = &ids;

        // Namespaces first, so that a worker in flight never waits for a namespace whose
        // reconcile has not started; then a bounded window of reconciles at a time, so that a
        // pass holds O(window) futures (~4 KB each) instead of one per resource.
        let order = pass_order(&snap.desired, first);
        let window = self.policy.concurrency.max(1) * 8;
        let outcomes = futures_util::stream::iter(order)
            .map(|(stage, r)| {
                let mode = snap.desired.drift_mode(&r.key, self.policy.drift);
                let (index, permits) = (Arc::clone(&index), Arc::clone(&permits));
                async move {
                    let record = self.store.get(&r.key)?;
                    let before = record.clone();
                    let (key, outcome) = self
                        .reconcile(
                            snap,
                            stage,
                            r.key.clone(),
                            record,
                            mode,
                            Arc::clone(&index),
                            ids,
                            permits,
                            now,
                        )
                        .await;
                    Ok::<_, StoreError>((key, outcome, before))
                }
            })
            .buffered(window);
        tokio::pin!(outcomes);

        let mut report = PassReport {
            converged: true,
            ..PassReport::default()
        };
        while let Some(next) = outcomes.next().await {
            let (key, outcome, before) = next?;
            let Some(outcome) = outcome else { continue };
            if !matches!(outcome.record.state, State::Ready | State::Retained) {
                report.converged = false;
            }
            self.note_retry(&mut report, &outcome.record);
            // A record that only gained a newer `last_reconciled` is not written: the pass's
            // own time (below) stands for it, so a resync of a converged fleet writes nothing.
            if self.policy.act && !before.is_some_and(|b| b.same_apart_from_time(&outcome.record)) {
                self.store.put(&key, &outcome.record)?;
            }
            report.changes.extend(outcome.change);
        }

        self.prune(snap, &records, &index, &mut report).await?;
        if self.policy.act {
            self.store.set_last_pass(&rfc3339(now))?;
            self.store.flush()?;
        }
        Ok(report)
    }

    fn note_retry(&self, report: &mut PassReport, record: &Record) {
        if let Some(t) = record.next_retry.as_deref().and_then(parse_time) {
            report.next_retry = Some(report.next_retry.map_or(t, |r| r.min(t)));
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        snap: &Snapshot,
        stage: &Stage,
        key: ResourceKey,
        record: Option<Record>,
        mode: DriftMode,
        index: Arc<RemoteIndex>,
        ids: &IdBoard<'_>,
        permits: Arc<Semaphore>,
        now: SystemTime,
    ) -> (ResourceKey, Option<Outcome>) {
        let Some(resource) = stage.resources.get(&key.name) else {
            return (key, None);
        };
        let desired_hash = spec_hash(
            &resource.spec,
            match &resource.spec {
                ResourceSpec::Worker(spec) => snap.worker_bundle(spec),
                _ => None,
            }
            .map(|b| b.content_hash.as_str()),
        );
        let mut rec = record.unwrap_or_else(|| Record {
            kind: resource.spec.type_name().to_owned(),
            existing: matches!(resource.spec, ResourceSpec::KvExisting { .. }),
            created_at: Some(rfc3339(now)),
            ..Record::default()
        });
        rec.existing = matches!(resource.spec, ResourceSpec::KvExisting { .. });
        rec.protected = stage.protected;

        // Backoff: a failing resource whose spec did not change waits for its retry time.
        let waiting = rec.failures > 0
            && rec.desired_hash == desired_hash
            && rec
                .next_retry
                .as_deref()
                .and_then(parse_time)
                .is_some_and(|t| t > now);
        if waiting {
            let id = rec
                .observed
                .namespace_id
                .clone()
                .filter(|_| rec.state == State::Ready);
            ids.publish(&key, id);
            return (
                key,
                Some(Outcome {
                    record: rec,
                    change: None,
                }),
            );
        }
        rec.desired_hash = desired_hash;
        let started = Instant::now();
        let kind = resource.spec.type_name();

        let result = match &resource.spec {
            ResourceSpec::Kv => {
                let _permit = permits.acquire().await;
                self.kv_managed(&key, &mut rec, &index, mode).await
            }
            ResourceSpec::KvExisting { id } => {
                let decision = plan::kv_existing(id, kv_existing::observe(&index, id));
                rec.observed.namespace_id = Some(id.clone());
                Ok(decision)
            }
            ResourceSpec::Worker(spec) => {
                // Wait for exactly the namespaces this worker binds.
                let mut bound = BTreeMap::new();
                let mut waiting_for = Vec::new();
                for dep in spec.kv_dependencies() {
                    let dep_key = ResourceKey {
                        name: dep.to_owned(),
                        ..key.clone()
                    };
                    let id = ids.wait(&dep_key).await;
                    match id {
                        Some(id) => {
                            bound.insert(dep.to_owned(), id);
                        }
                        None => waiting_for.push(dep.to_owned()),
                    }
                }
                if !waiting_for.is_empty() {
                    self.metrics.reconciled(kind, "pending", started.elapsed());
                    rec.state = State::Pending;
                    rec.message = format!("waiting for kv {} to be ready", waiting_for.join(", "));
                    rec.failures = rec.failures.saturating_add(1);
                    rec.next_retry = Some(rfc3339(now + backoff(rec.failures)));
                    return (
                        key,
                        Some(Outcome {
                            record: rec,
                            change: None,
                        }),
                    );
                }
                match snap.worker_bundle(spec) {
                    Some(bundle) => {
                        let _permit = permits.acquire().await;
                        self.worker(&key, &mut rec, &index, mode, spec, bundle, &bound)
                            .await
                    }
                    None => Ok(Decision::Missing {
                        reason: "the worker's modules were not built".into(),
                    }),
                }
            }
        };
        let outcome = self.settle(&key, rec, result, now);
        let result = match (&outcome.change, outcome.record.state) {
            (Some(change), _) => change.action,
            (None, State::Error) => "error",
            (None, _) => "noop",
        };
        self.metrics.reconciled(kind, result, started.elapsed());
        let id = outcome
            .record
            .observed
            .namespace_id
            .clone()
            .filter(|_| matches!(outcome.record.state, State::Ready | State::Drifted));
        ids.publish(&key, id);
        (key, Some(outcome))
    }

    /// The one error policy, and the state a decision leaves a resource in.
    fn settle(
        &self,
        key: &ResourceKey,
        mut rec: Record,
        result: Result<Decision, ApiError>,
        now: SystemTime,
    ) -> Outcome {
        rec.last_reconciled = Some(rfc3339(now));
        let change = |action: &'static str, details: Vec<String>| {
            Some(Change {
                key: key.clone(),
                action,
                details,
            })
        };
        let decision = match result {
            Ok(d) => d,
            Err(e) => {
                rec.state = State::Error;
                rec.message = e.to_string();
                rec.last_error = Some(e.to_string());
                rec.error_codes = e.errors.iter().map(|m| m.code).collect();
                rec.failures = rec.failures.saturating_add(1);
                let delay = e
                    .retry_after()
                    .unwrap_or_default()
                    .max(backoff(rec.failures));
                rec.next_retry = Some(rfc3339(now + delay));
                tracing::warn!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "error", error = %e, retry_in = ?delay, "reconcile failed");
                return Outcome {
                    record: rec,
                    change: None,
                };
            }
        };
        let ok = |rec: &mut Record| {
            rec.failures = 0;
            rec.next_retry = None;
            rec.last_error = None;
            rec.error_codes.clear();
        };
        match decision {
            Decision::UpToDate => {
                ok(&mut rec);
                rec.open_drift.clear();
                rec.state = State::Ready;
                rec.message.clear();
                Outcome {
                    record: rec,
                    change: None,
                }
            }
            Decision::Create | Decision::Update { .. } | Decision::Adopt { .. } => {
                let (action, details) = match &decision {
                    Decision::Create => ("create", vec![]),
                    Decision::Adopt { id } => ("adopt", vec![format!("id: {id}")]),
                    Decision::Update { changes } => ("update", changes.clone()),
                    _ => ("update", vec![]),
                };
                ok(&mut rec);
                rec.open_drift.clear();
                rec.state = if self.policy.act {
                    State::Ready
                } else {
                    State::Pending
                };
                rec.message.clear();
                tracing::info!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action, details = ?details, "reconciled");
                Outcome {
                    record: rec,
                    change: change(action, details),
                }
            }
            Decision::Correct { drift, .. } => {
                ok(&mut rec);
                self.record_drift(&mut rec, &drift, true, now);
                rec.open_drift.clear();
                rec.state = if self.policy.act {
                    State::Ready
                } else {
                    State::Drifted
                };
                rec.message = format!("drift corrected: {}", drift.join("; "));
                tracing::warn!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "correct", drift = ?drift, "drift corrected");
                Outcome {
                    record: rec,
                    change: change("correct", drift),
                }
            }
            Decision::Report { drift } => {
                ok(&mut rec);
                if self.record_drift(&mut rec, &drift, false, now) {
                    tracing::warn!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "report", drift = ?drift, "drift detected (report mode: left alone)");
                }
                rec.open_drift = drift.clone();
                rec.state = State::Drifted;
                rec.message = format!("drift (report mode, not corrected): {}", drift.join("; "));
                Outcome {
                    record: rec,
                    change: change("report", drift),
                }
            }
            Decision::Refuse { reason } | Decision::Missing { reason } => {
                rec.state = State::Error;
                rec.message = reason.clone();
                rec.last_error = Some(reason.clone());
                rec.failures = rec.failures.saturating_add(1);
                rec.next_retry = Some(rfc3339(now + backoff(rec.failures)));
                tracing::warn!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "refuse", reason, "cannot reconcile");
                Outcome {
                    record: rec,
                    change: change("refuse", vec![reason]),
                }
            }
        }
    }

    /// Records a drift event (and counts it) unless the same drift is already standing, so
    /// one drift seen on several passes is recorded once. Returns whether it was new.
    fn record_drift(
        &self,
        rec: &mut Record,
        drift: &[String],
        corrected: bool,
        now: SystemTime,
    ) -> bool {
        if rec.open_drift == drift {
            return false;
        }
        self.metrics.drift(&rec.kind, drift);
        rec.push_drift(DriftEvent {
            at: rfc3339(now),
            changes: drift.to_vec(),
            corrected,
        });
        true
    }

    /// A managed namespace: decide, then act (create behind a flushed pending marker).
    async fn kv_managed(
        &self,
        key: &ResourceKey,
        rec: &mut Record,
        index: &RemoteIndex,
        mode: DriftMode,
    ) -> Result<Decision, ApiError> {
        let title = key.provider_name();
        let (by_id, by_title) =
            kv_namespace::observe(index, &title, rec.observed.namespace_id.as_deref());
        let decision = plan::kv_namespace(
            &title,
            rec.observed.namespace_id.as_deref(),
            rec.create_pending,
            by_id,
            by_title,
            mode,
        );
        if !self.policy.act {
            return Ok(decision);
        }
        match &decision {
            Decision::Create | Decision::Correct { recreate: true, .. } => {
                rec.create_pending = true;
                rec.observed.namespace_id = None;
                self.store.put_durable(key, rec).map_err(|e| {
                    ApiError::new(
                        "store",
                        crate::cloudflare::ErrorKind::Retryable,
                        e.to_string(),
                    )
                })?;
                let id = kv_namespace::create(&self.client, &title).await?;
                rec.create_pending = false;
                rec.observed = Observed {
                    namespace_id: Some(id),
                    title: Some(title),
                    ..Observed::default()
                };
            }
            Decision::Correct {
                recreate: false, ..
            } => {
                if let Some(id) = rec.observed.namespace_id.clone() {
                    kv_namespace::update(&self.client, &id, &title).await?;
                    rec.observed.title = Some(title);
                }
            }
            Decision::Adopt { id } => {
                rec.create_pending = false;
                rec.observed = Observed {
                    namespace_id: Some(id.clone()),
                    title: Some(title),
                    ..Observed::default()
                };
            }
            Decision::UpToDate => {
                rec.observed.title = Some(title);
            }
            _ => {}
        }
        rec.applied = Some(Applied {
            spec_hash: rec.desired_hash.clone(),
            ..Applied::default()
        });
        Ok(decision)
    }

    /// A worker: observe (lists, then details only if changed), decide, upload if needed.
    #[allow(clippy::too_many_arguments)]
    async fn worker(
        &self,
        key: &ResourceKey,
        rec: &mut Record,
        index: &RemoteIndex,
        mode: DriftMode,
        spec: &crate::manifest::WorkerSpec,
        bundle: &crate::worker::WorkerBundle,
        namespace_ids: &BTreeMap<String, String>,
    ) -> Result<Decision, ApiError> {
        let mut bindings = Vec::new();
        let mut facts = BTreeMap::new();
        for (name, b) in &spec.bindings {
            match b {
                BindingSpec::Kv(target) => {
                    let id = namespace_ids.get(target).cloned().unwrap_or_default();
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
            }
        }
        let desired = WorkerFacts {
            content_hash: bundle.content_hash.clone(),
            bindings: facts,
            compatibility_date: spec.compatibility_date.clone(),
            compatibility_flags: spec.compatibility_flags.clone(),
        };
        let applied = rec.applied.as_ref().and_then(|a| {
            Some(WorkerFacts {
                content_hash: a.content_hash.clone()?,
                bindings: a.bindings.clone(),
                compatibility_date: a.compatibility_date.clone().unwrap_or_default(),
                compatibility_flags: a.compatibility_flags.clone(),
            })
        });
        let seen =
            worker_script::observe(&self.client, index, key, &rec.observed, applied.as_ref())
                .await?;
        let decision = plan::worker_script(
            &key.provider_name(),
            applied.as_ref(),
            &desired,
            &seen,
            mode,
        );
        if !self.policy.act || !decision.writes() {
            return Ok(decision);
        }
        let script = worker_script::upload(
            &self.client,
            key,
            bundle,
            bindings,
            &spec.compatibility_date,
            &spec.compatibility_flags,
        )
        .await?;
        rec.observed = Observed {
            etag: Some(script.etag),
            modified_on: Some(script.modified_on),
            ..Observed::default()
        };
        rec.applied = Some(Applied {
            spec_hash: rec.desired_hash.clone(),
            content_hash: Some(desired.content_hash),
            bindings: desired.bindings,
            compatibility_date: Some(desired.compatibility_date),
            compatibility_flags: desired.compatibility_flags,
        });
        Ok(decision)
    }

    /// Resources recorded but no longer declared: retained (protected stage), forgotten
    /// (`existing`), held (over the prune cap), or deleted — workers before namespaces.
    async fn prune(
        &self,
        snap: &Snapshot,
        records: &HashMap<ResourceKey, Record>,
        index: &RemoteIndex,
        report: &mut PassReport,
    ) -> Result<(), ControllerError> {
        let mut gone: Vec<(&ResourceKey, &Record)> = records
            .iter()
            .filter(|(k, _)| snap.desired.resource(k).is_none())
            .collect();
        gone.sort_by_key(|(k, r)| (r.kind != "worker", (*k).clone()));
        let now = rfc3339(SystemTime::now());
        // Protected when its app's current `protect` lists the stage; when the whole app is
        // gone from the manifests, what was recorded decides (never delete on a guess).
        let protected = |k: &ResourceKey| match snap.desired.is_protected(&k.stage_key()) {
            Some(p) => p,
            None => records.get(k).is_some_and(|r| r.protected),
        };
        let mut to_delete = Vec::new();
        for (key, rec) in gone {
            if rec.existing {
                if self.policy.act {
                    self.store.remove(key)?;
                }
                report.changes.push(Change {
                    key: key.clone(),
                    action: "forget",
                    details: vec!["existing namespace: no longer bound, never deleted".into()],
                });
            } else if protected(key) {
                if rec.state != State::Retained {
                    report.changes.push(Change {
                        key: key.clone(),
                        action: "retain",
                        details: vec!["stage is protected: kept on Cloudflare".into()],
                    });
                }
                let message = "removed from the manifests; kept because its stage is protected";
                if self.policy.act && (rec.state != State::Retained || rec.message != message) {
                    let mut r = rec.clone();
                    r.state = State::Retained;
                    r.message = message.into();
                    r.last_reconciled = Some(now.clone());
                    self.store.put(key, &r)?;
                }
            } else {
                to_delete.push((key, rec));
            }
        }
        if to_delete.len() > self.policy.max_prune {
            let n = to_delete.len();
            for (key, rec) in to_delete {
                report.converged = false;
                report.changes.push(Change {
                    key: key.clone(),
                    action: "hold",
                    details: vec![format!(
                        "would delete {n} resources, over --max-prune {}",
                        self.policy.max_prune
                    )],
                });
                if self.policy.act {
                    let mut r = rec.clone();
                    r.state = State::Deleting;
                    r.message = format!(
                        "held: this pass would delete {n} resources, over --max-prune {}; to approve, run once with --max-prune {n}",
                        self.policy.max_prune
                    );
                    self.store.put(key, &r)?;
                }
            }
            return Ok(());
        }
        for (key, rec) in to_delete {
            report.changes.push(Change {
                key: key.clone(),
                action: "delete",
                details: vec![],
            });
            if !self.policy.act {
                continue;
            }
            let started = Instant::now();
            let result = if rec.kind == "worker" {
                if index.script(&key.provider_name()).is_some() {
                    worker_script::delete(&self.client, &key.provider_name()).await
                } else {
                    Ok(())
                }
            } else {
                match rec.observed.namespace_id.as_deref() {
                    Some(id) if index.namespace(id).is_some() => {
                        kv_namespace::delete(&self.client, id).await
                    }
                    _ => Ok(()),
                }
            };
            match result {
                Ok(()) => {
                    self.metrics
                        .reconciled(&rec.kind, "delete", started.elapsed());
                    tracing::info!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "delete", "deleted");
                    self.store.remove(key)?;
                }
                Err(e) => {
                    self.metrics
                        .reconciled(&rec.kind, "error", started.elapsed());
                    tracing::warn!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "delete", error = %e, "delete failed");
                    report.converged = false;
                    let mut r = rec.clone();
                    r.state = State::Deleting;
                    r.message = format!("delete failed: {e}");
                    r.failures = r.failures.saturating_add(1);
                    r.next_retry = Some(rfc3339(SystemTime::now() + backoff(r.failures)));
                    self.note_retry(report, &r);
                    self.store.put(key, &r)?;
                }
            }
        }
        Ok(())
    }
}

/// The order a pass starts reconciles in. Every worker comes after the namespaces it binds —
/// that is what keeps a bounded window from filling with workers waiting on namespaces not yet
/// started. Within that rule: first the namespaces that `first` names or binds, then the
/// workers in `first`, then the other namespaces, then the other workers.
pub fn pass_order<'a>(
    desired: &'a crate::manifest::Desired,
    first: &HashSet<ResourceKey>,
) -> Vec<(&'a Stage, &'a crate::manifest::Resource)> {
    let mut urgent_kv: HashSet<ResourceKey> = HashSet::new();
    for key in first {
        let Some(r) = desired.resource(key) else {
            continue;
        };
        match &r.spec {
            ResourceSpec::Worker(w) => {
                urgent_kv.extend(w.kv_dependencies().into_iter().map(|d| ResourceKey {
                    name: d.to_owned(),
                    ..key.clone()
                }))
            }
            _ => {
                urgent_kv.insert(key.clone());
            }
        }
    }
    let mut order: Vec<(&Stage, &crate::manifest::Resource)> = desired
        .stages
        .values()
        .flat_map(|stage| stage.resources.values().map(move |r| (stage, r)))
        .collect();
    order.sort_by_key(|(_, r)| match (&r.spec, first.contains(&r.key)) {
        (ResourceSpec::Worker(_), true) => 1,
        (ResourceSpec::Worker(_), false) => 3,
        _ if urgent_kv.contains(&r.key) => 0,
        _ => 2,
    });
    order
}

/// A hash of a resource's desired spec (what would be applied), for change detection.
pub fn spec_hash(spec: &ResourceSpec, content_hash: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    match spec {
        ResourceSpec::Kv => h.update(b"kv"),
        ResourceSpec::KvExisting { id } => {
            h.update(b"kv-existing\0");
            h.update(id.as_bytes());
        }
        ResourceSpec::Worker(w) => {
            h.update(b"worker\0");
            h.update(content_hash.unwrap_or("").as_bytes());
            for (name, b) in &w.bindings {
                h.update(b"\0");
                h.update(name.as_bytes());
                match b {
                    BindingSpec::Kv(t) => {
                        h.update(b"\0kv\0");
                        h.update(t.as_bytes());
                    }
                    BindingSpec::Text(t) => {
                        h.update(b"\0text\0");
                        h.update(t.as_bytes());
                    }
                }
            }
            h.update(b"\0");
            h.update(w.compatibility_date.as_bytes());
            for f in &w.compatibility_flags {
                h.update(b"\0");
                h.update(f.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// The namespace ids a pass's kv reconciles publish, awaited by the workers that bind them:
/// one map and one wake-up for the whole pass (a channel per namespace costs ~350 bytes each,
/// 1.8 MB at 5,000 namespaces).
struct IdBoard<'a> {
    /// kv resource → None while its reconcile runs, then Some(its id, or None if it failed).
    slots: std::sync::Mutex<HashMap<&'a ResourceKey, Option<Option<String>>>>,
    published: Notify,
}

impl<'a> IdBoard<'a> {
    fn new(kv: impl Iterator<Item = &'a ResourceKey>) -> IdBoard<'a> {
        IdBoard {
            slots: std::sync::Mutex::new(kv.map(|k| (k, None)).collect()),
            published: Notify::new(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<&'a ResourceKey, Option<Option<String>>>> {
        // A panic while holding this lock leaves the map whole (single inserts), so go on.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `key`'s outcome (a no-op for a key that is not a kv resource of this pass).
    fn publish(&self, key: &ResourceKey, id: Option<String>) {
        if let Some(slot) = self.slots().get_mut(key) {
            *slot = Some(id);
            self.published.notify_waiters();
        }
    }

    /// `key`'s namespace id once its reconcile has settled; None at once when `key` is not a kv
    /// resource of this pass, None after it settles without an id.
    async fn wait(&self, key: &ResourceKey) -> Option<String> {
        loop {
            let published = self.published.notified();
            tokio::pin!(published);
            // Registered before looking, so a publish between the look and the await wakes us.
            published.as_mut().enable();
            match self.slots().get(key) {
                None => return None,
                Some(Some(id)) => return id.clone(),
                Some(None) => {}
            }
            published.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn id_board_hands_each_worker_its_namespace_once_settled() {
        let key = |name: &str| ResourceKey {
            app: "a".into(),
            stage: "s".into(),
            name: name.into(),
        };
        let (kv, failed, other) = (key("kv"), key("bad"), key("w"));
        let board = IdBoard::new([&kv, &failed].into_iter());
        // Not a kv resource of this pass: no wait.
        assert_eq!(board.wait(&other).await, None);
        board.publish(&other, Some("ignored".into()));
        let (waited, ()) = tokio::join!(board.wait(&kv), async {
            tokio::task::yield_now().await;
            board.publish(&kv, Some("id-1".into()));
        });
        assert_eq!(waited, Some("id-1".to_string()));
        // Settled: answered at once, also for a failure.
        assert_eq!(board.wait(&kv).await, Some("id-1".to_string()));
        board.publish(&failed, None);
        assert_eq!(board.wait(&failed).await, None);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        for (failures, base) in [
            (1u32, 1.0f64),
            (2, 2.0),
            (3, 4.0),
            (9, 256.0),
            (10, 300.0),
            (40, 300.0),
        ] {
            let d = backoff(failures).as_secs_f64();
            assert!(
                d >= base * 0.9 - 1e-9 && d <= base * 1.1 + 1e-9,
                "{failures}: {d}"
            );
        }
    }

    #[test]
    fn pass_order_puts_every_worker_after_the_namespaces_it_binds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.js"), "export default {};\n").unwrap();
        std::fs::write(
            dir.path().join("m.yaml"),
            "app: { name: a }\nstage: s\nresources:\n  k1: { type: kv }\n  k2: { type: kv }\n  k3: { type: kv }\n  w1: { type: worker, entry: w.js, bindings: { A: { kv: k1 } } }\n  w2: { type: worker, entry: w.js, bindings: { A: { kv: k2 }, B: { kv: k3 } } }\n",
        )
        .unwrap();
        let desired = crate::manifest::load(dir.path()).unwrap().desired;
        let key = |n: &str| ResourceKey {
            app: "a".into(),
            stage: "s".into(),
            name: n.into(),
        };
        let names = |first: &[&str]| -> Vec<String> {
            let first: HashSet<ResourceKey> = first.iter().map(|n| key(n)).collect();
            pass_order(&desired, &first)
                .iter()
                .map(|(_, r)| r.key.name.clone())
                .collect()
        };
        assert_eq!(names(&[]), ["k1", "k2", "k3", "w1", "w2"]);
        assert_eq!(names(&["w2"]), ["k2", "k3", "w2", "k1", "w1"]);
        assert_eq!(names(&["k1", "w2"]), ["k1", "k2", "k3", "w2", "w1"]);
        for first in [vec![], vec!["w2"], vec!["w1", "k3"]] {
            let order = names(&first);
            let at = |n: &str| order.iter().position(|x| x == n).unwrap();
            assert!(
                at("k1") < at("w1") && at("k2") < at("w2") && at("k3") < at("w2"),
                "{order:?}"
            );
        }
    }

    #[test]
    fn times_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        assert_eq!(parse_time(&rfc3339(t)), Some(t));
    }
}
