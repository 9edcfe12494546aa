//! The generic loop's one pass: observe (two list calls), decide (each kind's pure table),
//! act (the kind's verbs), record, and schedule the next attempt. Generic over kinds
//! (`resources::Reconciler`): it names none of them, and holds all policy — ordering,
//! concurrency, the error policy (one place: [`fail`]), drift policy, prune, create-pending.

use super::board::Board;
use super::change::{Change, PassReport};
use super::order::pass_order;
use crate::cloudflare::{ApiError, Client};
use crate::manifest::{DriftMode, Resource, ResourceKey, Stage};
use crate::metrics::Metrics;
use crate::resources::{Bound, Ctx, Decision, Reconciler, RemoteIndex, Rules};
use crate::source::Snapshot;
use crate::store::{Record, State, Store, StoreError};
use crate::time::Timestamp;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub use super::backoff::backoff;

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
    /// Scopes (`app` or `app/stage`) whose held deletions this run approves
    /// (`--approve-delete`): a whole app's removal, protection lifted with the removal.
    pub approve_delete: Vec<String>,
    /// `run --adopt`: take over objects found by their natural key that lumierd has no record
    /// of (a namespace with the title, a script of another installation), each logged.
    pub adopt: bool,
}

impl Policy {
    /// Whether deleting `key` is approved by `--approve-delete`.
    pub fn approves(&self, key: &ResourceKey) -> bool {
        self.approve_delete
            .iter()
            .any(|s| *s == key.app || *s == key.stage_key().to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("listing the account's namespaces and scripts: {0}")]
    List(#[source] ApiError),
}

/// Why one resource's reconcile did not reach a decision.
#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The create-pending marker could not be written: nothing was sent.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Where one resource's reconcile ended, before it is written to its record.
enum Step {
    Decided(Decision),
    /// Dependencies (by name) not ready yet.
    Waiting(Vec<String>),
    /// lumierd is stopping: nothing was sent, nothing is recorded.
    Stopped,
}

/// The value a plan publishes for a dependency it would create (the real one is known after).
const KNOWN_AFTER_CREATE: &str = "(known after create)";

pub struct Controller {
    pub client: Client,
    pub store: Store,
    /// This installation's id (`store::installation`).
    pub installation: String,
    pub policy: Policy,
    /// Reconcile counts and durations, drift events (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// Where notifications go (`--notify`); `None`: nowhere.
    pub events: Option<crate::notify::Sink>,
}

/// Everything one pass shares between its reconciles.
struct PassCtx<'a> {
    snap: &'a Snapshot,
    index: Arc<RemoteIndex>,
    board: Board<'a>,
    permits: Semaphore,
    now: Timestamp,
}

impl Controller {
    /// Runs one pass over the whole snapshot. Resources whose backoff is not due (and whose
    /// spec did not change) are left for later.
    pub async fn pass(&self, snap: &Snapshot) -> Result<PassReport, ControllerError> {
        self.pass_first(snap, &HashSet::new()).await
    }

    /// A pass that reconciles `first` (and what they bind) before the rest, so that an edit is
    /// applied as soon as the list calls are done. Every resource is still reconciled; only
    /// the order changes.
    pub async fn pass_first(
        &self,
        snap: &Snapshot,
        first: &HashSet<ResourceKey>,
    ) -> Result<PassReport, ControllerError> {
        let now = Timestamp::now();
        // The two reads of a pass, side by side.
        let (namespaces, scripts) =
            tokio::join!(self.client.list_namespaces(), self.client.list_scripts());
        let index = Arc::new(RemoteIndex::new(
            namespaces.map_err(ControllerError::List)?,
            scripts.map_err(ControllerError::List)?,
        ));
        let gone = self.take_stock(snap, now)?;
        let order = pass_order(&snap.desired, first);
        let pass = PassCtx {
            snap,
            index,
            board: Board::new(order.depended_on.iter().copied()),
            permits: Semaphore::new(self.policy.concurrency.max(1)),
            now,
        };
        let pass = &pass;
        // A bounded window of reconciles at a time, so that a pass holds O(window) futures
        // (~4 KB each) instead of one per resource.
        let window = self.policy.concurrency.max(1) * 8;
        let outcomes = futures_util::stream::iter(order.order)
            .map(|(stage, r)| self.reconcile_one(pass, stage, r))
            .buffered(window);
        tokio::pin!(outcomes);

        let mut report = PassReport {
            converged: true,
            ..PassReport::default()
        };
        while let Some(next) = outcomes.next().await {
            let (r, before, outcome, wrote) = next?;
            let Some((record, change)) = outcome else {
                report.converged = false;
                continue;
            };
            if !matches!(record.state, State::Ready | State::Retained) {
                report.converged = false;
            }
            note_retry(&mut report, &record);
            // A record that only gained a newer `last_reconciled` is not written: the pass's
            // own time (below) stands for it, so a resync of a converged fleet writes nothing.
            // A write's outcome is already on disk (above).
            if self.policy.act && !wrote && !before.is_some_and(|b| b.same_apart_from_time(&record))
            {
                self.store.put(&r.key, &record)?;
            }
            report.changes.extend(change);
        }
        if self.client.is_stopping() {
            // Stopped mid-pass: no prune, and the pass is not complete.
            self.store.flush_durable().await?;
            return Ok(report);
        }

        super::prune::prune(self, snap, gone, &pass.index, &mut report).await?;
        if self.policy.act {
            self.store.set_last_pass(now)?;
            self.store.flush_durable().await?;
        }
        Ok(report)
    }

    /// Hands the events `events` finds to the sink, when acting and notifying. Queued in the
    /// store, never sent from here: a pass does not wait on a webhook.
    pub(super) fn emit<I: IntoIterator<Item = crate::notify::Event>>(
        &self,
        events: impl FnOnce() -> I,
    ) {
        if let Some(sink) = self.events.as_ref().filter(|_| self.policy.act) {
            sink.emit_all(events());
        }
    }

    /// Reads what the store holds before a pass: the records of resources no longer declared
    /// (for prune; the others are read one at a time as their reconcile starts), and writes a
    /// `Pending` record for each declared resource that has none yet, so that every declared
    /// resource shows in `status` from the start of its first pass, however long the pass
    /// takes to reach it.
    fn take_stock(
        &self,
        snap: &Snapshot,
        now: Timestamp,
    ) -> Result<HashMap<ResourceKey, Record>, StoreError> {
        let mut gone: HashMap<ResourceKey, Record> = HashMap::new();
        let recorded = self.store.keys()?; // in key order
        for key in &recorded {
            if snap.desired.resource(key).is_none() {
                if let Some(r) = self.store.get(key)? {
                    gone.insert(key.clone(), r);
                }
            }
        }
        if self.policy.act {
            for r in snap.desired.resources() {
                if recorded.binary_search(&r.key).is_err() {
                    let pending = Record {
                        status: crate::resources::new_status(&r.spec),
                        existing: crate::resources::never_deleted(&r.spec),
                        state: State::Pending,
                        message: "declared; not reconciled yet".into(),
                        created_at: Some(now),
                        ..Record::default()
                    };
                    self.store.put(&r.key, &pending)?;
                }
            }
        }
        Ok(gone)
    }

    /// One resource of a pass, read and (for a provider write) recorded around its reconcile:
    /// (the resource, its record before, its outcome, whether a write's outcome is on disk).
    /// In one span per resource: every line logged inside it (the client's too) carries which
    /// resource it is about. Only the key and kind are fields, never a binding's value.
    #[allow(clippy::type_complexity)]
    #[tracing::instrument(
        name = "reconcile",
        skip_all,
        fields(
            resource = %r.key,
            kind = %crate::resources::kind_of(&r.spec).type_name(),
            app = %r.key.app,
            stage = %r.key.stage,
            name = %r.key.name,
        )
    )]
    async fn reconcile_one<'a>(
        &self,
        pass: &PassCtx<'_>,
        stage: &Stage,
        r: &'a Resource,
    ) -> Result<
        (
            &'a Resource,
            Option<Record>,
            Option<(Record, Option<Change>)>,
            bool,
        ),
        StoreError,
    > {
        let before = self.store.get(&r.key)?;
        let after = self.reconcile(pass, stage, r, before.clone()).await;
        let Some((record, change)) = &after else {
            return Ok((r, before, after, false));
        };
        // Queued before the record is written, so both reach the disk together.
        self.emit(|| crate::notify::transitions(&r.key, before.as_ref(), record, pass.now));
        // The outcome of a provider write goes to disk as soon as the write is done, not when
        // the (ordered) stream reaches it: a crash after it never repeats it.
        let wrote = self.policy.act && change.as_ref().is_some_and(|c| c.action.writes());
        if wrote {
            self.store.put_durable(&r.key, record).await?;
        }
        Ok((r, before, after, wrote))
    }

    /// One resource: backoff gate, then its kind's reconcile, then the error and drift policy.
    async fn reconcile(
        &self,
        pass: &PassCtx<'_>,
        stage: &Stage,
        resource: &Resource,
        record: Option<Record>,
    ) -> Option<(Record, Option<Change>)> {
        let key = &resource.key;
        if self.client.is_stopping() {
            // No new reconcile after a stop; what is recorded stays as it is.
            pass.board.publish(key, None);
            return None;
        }
        let desired_hash = pass.snap.spec_hash(resource);
        let kind = crate::resources::kind_of(&resource.spec);
        let mut rec = record.unwrap_or_else(|| Record {
            created_at: Some(pass.now),
            ..Record::default()
        });
        // Protection once recorded holds until a document of the app says otherwise.
        rec.protected = pass
            .snap
            .desired
            .is_protected(&stage.key)
            .unwrap_or(rec.protected);

        // Backoff: a failing resource whose spec did not change waits for its retry time.
        let waiting = rec.failures > 0
            && rec.desired_hash == desired_hash
            && rec.next_retry.is_some_and(|t| t > pass.now);
        if waiting {
            let value = published(&rec, resource).filter(|_| rec.state == State::Ready);
            pass.board.publish(key, value);
            return Some((rec, None));
        }
        rec.desired_hash = desired_hash;
        let started = Instant::now();
        let mode = pass.snap.desired.drift_mode(key, self.policy.drift);
        let step = crate::with_kind!(&resource.spec, |K, spec| {
            self.reconcile_kind::<K>(pass, key, spec, &mut rec, mode)
                .await
        });
        let (record, change) = match step {
            Ok(Step::Stopped) => {
                pass.board.publish(key, None);
                return None;
            }
            Ok(Step::Waiting(deps)) => {
                rec.state = State::Pending;
                let message = format!("waiting for kv {} to be ready", deps.join(", "));
                fail(&mut rec, message, Vec::new(), None, pass.now, false);
                self.metrics
                    .reconciled(kind.type_name(), "pending", started.elapsed());
                (rec, None)
            }
            Ok(Step::Decided(decision)) => self.settle(key, rec, decision, pass.now),
            Err(e) => (errored(rec, e, pass.now), None),
        };
        let result = match (&change, record.state) {
            (Some(change), _) => change.action.as_str(),
            (None, State::Error) => "error",
            (None, State::Pending) => "pending",
            (None, _) => "noop",
        };
        if result != "pending" {
            self.metrics
                .reconciled(kind.type_name(), result, started.elapsed());
        }
        self.publish(pass, resource, &record, change.as_ref());
        Some((record, change))
    }

    /// Publishes what `resource`'s dependents bind (once it is ready), for the rest of the pass.
    fn publish(
        &self,
        pass: &PassCtx<'_>,
        resource: &Resource,
        record: &Record,
        change: Option<&Change>,
    ) {
        let value = published(record, resource)
            .filter(|_| matches!(record.state, State::Ready | State::Drifted))
            .or_else(|| {
                // A plan binds what it would create to a placeholder, so that it lists the
                // dependents' changes too (what `run` would do).
                let planned = !self.policy.act && change.is_some_and(|c| c.action.writes());
                planned.then(|| KNOWN_AFTER_CREATE.to_owned())
            });
        pass.board.publish(&resource.key, value);
    }

    /// Observe → decide → act for one resource of kind `K`; the status goes into `rec`.
    async fn reconcile_kind<K: Reconciler>(
        &self,
        pass: &PassCtx<'_>,
        key: &ResourceKey,
        spec: &K::Spec,
        rec: &mut Record,
        mode: DriftMode,
    ) -> Result<Step, ReconcileError> {
        rec.existing = K::NEVER_DELETED;
        if K::status(&rec.status).is_none() {
            rec.status = K::wrap(K::Status::default());
        }
        let bound = match bind(pass, key, K::dependencies(spec)).await {
            Ok(bound) => bound,
            Err(waiting_for) => return Ok(Step::Waiting(waiting_for)),
        };
        let desired = match K::desired(key, spec, pass.snap, &bound) {
            Ok(d) => d,
            Err(reason) => return Ok(Step::Decided(Decision::Missing { reason })),
        };
        let _permit = pass.permits.acquire().await;
        let status = K::status(&rec.status).cloned().unwrap_or_default();
        let cx = Ctx {
            client: &self.client,
            index: &pass.index,
            key,
            act: self.policy.act,
            installation: &self.installation,
        };
        let seen = K::observe(&cx, &desired, &status).await?;
        let rules = Rules {
            pending: rec.create_pending,
            mode,
            adopt: self.policy.adopt,
        };
        let decision = K::decide(key, &desired, &status, &seen, rules);
        // Writes only when acting; the transitions that write nothing apply under plan too.
        let status = match &decision {
            Decision::UpToDate => K::up_to_date(&desired, K::record_seen(status, &seen)),
            Decision::Adopt { id } => {
                rec.create_pending = false;
                K::adopt(&desired, id)
            }
            _ if !self.policy.act => status,
            _ if self.client.is_stopping() => return Ok(Step::Stopped),
            Decision::Create | Decision::Correct { recreate: true, .. } => {
                // Recorded (flushed) before the call: no provider write whose outcome cannot be
                // recorded; with a non-idempotent create, a crash in between ends in Adopt,
                // never in a second object.
                rec.create_pending = K::CREATE_IS_PENDING;
                if K::CREATE_IS_PENDING {
                    rec.status = K::wrap(K::Status::default());
                }
                self.applying(key, rec, "create").await?;
                let created = K::create(&cx, &desired).await?;
                rec.create_pending = false;
                created
            }
            Decision::Update { .. } | Decision::Correct { .. } => {
                self.applying(key, rec, "update").await?;
                K::update(&cx, &desired, &status).await?
            }
            Decision::Report { .. } | Decision::Refuse { .. } | Decision::Missing { .. } => status,
        };
        rec.status = K::wrap(status);
        Ok(Step::Decided(decision))
    }

    /// Records (on disk) that a provider write for `key` is about to start: `Pending`, with
    /// what is being applied. Fails (and nothing is sent) when the store cannot write.
    async fn applying(
        &self,
        key: &ResourceKey,
        rec: &mut Record,
        what: &str,
    ) -> Result<(), StoreError> {
        rec.state = State::Pending;
        rec.message = format!("applying: {what}");
        self.store.put_durable(key, rec).await
    }
}

/// Waits for exactly what a resource binds (`deps`, names in its stage): their published
/// values, or the names of those that settled without one.
async fn bind(
    pass: &PassCtx<'_>,
    key: &ResourceKey,
    deps: Vec<&str>,
) -> Result<Bound, Vec<String>> {
    let mut bound = Bound::new();
    let mut waiting_for = Vec::new();
    for dep in deps {
        let dep_key = ResourceKey {
            name: dep.to_owned(),
            ..key.clone()
        };
        match pass.board.wait(&dep_key).await {
            Some(value) => {
                bound.insert(dep.to_owned(), value);
            }
            None => waiting_for.push(dep.to_owned()),
        }
    }
    if waiting_for.is_empty() {
        Ok(bound)
    } else {
        Err(waiting_for)
    }
}

/// A reconcile that failed: the error policy, with the API's codes and `Retry-After`.
fn errored(mut rec: Record, e: ReconcileError, now: Timestamp) -> Record {
    let (codes, retry_after) = match &e {
        ReconcileError::Api(e) => (e.errors.iter().map(|m| m.code).collect(), e.retry_after()),
        ReconcileError::Store(_) => (Vec::new(), None),
    };
    tracing::warn!(action = "error", error = %e, "reconcile failed");
    rec.last_reconciled = Some(now);
    fail(&mut rec, e.to_string(), codes, retry_after, now, true);
    rec
}

/// What `resource` publishes for its dependents, from its record.
fn published(rec: &Record, resource: &Resource) -> Option<String> {
    crate::with_kind!(&resource.spec, |K, _spec| K::status(&rec.status)
        .and_then(K::published))
}

/// The one error policy: a failure leaves `message`, counts one more failure and sets the
/// next retry after the backoff (or the API's `Retry-After`, if longer). `error` says whether
/// the resource is in `Error` (a waiting one keeps the state it was given).
pub(super) fn fail(
    rec: &mut Record,
    message: String,
    codes: Vec<u32>,
    retry_after: Option<Duration>,
    now: Timestamp,
    error: bool,
) {
    if error {
        rec.state = State::Error;
        rec.last_error = Some(message.clone());
        rec.error_codes = codes;
    }
    rec.message = message;
    rec.failures = rec.failures.saturating_add(1);
    let delay = retry_after.unwrap_or_default().max(backoff(rec.failures));
    rec.next_retry = Some(now + delay);
}

pub(super) fn note_retry(report: &mut PassReport, record: &Record) {
    if let Some(t) = record.next_retry {
        report.next_retry = Some(report.next_retry.map_or(t, |r| r.min(t)));
    }
}
