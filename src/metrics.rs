//! The daemon's metrics and readiness, rendered in the Prometheus text exposition format
//! (version 0.0.4) by hand: a few counters, gauges and histograms with bounded label sets.
//!
//! Families (every one has `# HELP` and `# TYPE`):
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `lumierd_build_info` | gauge | `version` |
//! | `lumierd_ready` | gauge | |
//! | `lumierd_reconciles_total` | counter | `kind` (kv, worker), `result` ([`RESULTS`]) |
//! | `lumierd_reconcile_duration_seconds` | histogram | `kind` |
//! | `lumierd_drift_events_total` | counter | `kind`, `field` ([`DRIFT_FIELDS`]) |
//! | `lumierd_passes_total` | counter | `result` (ok, error) |
//! | `lumierd_pass_duration_seconds` | histogram | |
//! | `lumierd_resources` | gauge | `state` (Pending, Ready, …) |
//! | `lumierd_queue_depth` | gauge | |
//! | `lumierd_manifest_load_failures_total` | counter | |
//! | `lumierd_manifest_last_load_success_timestamp_seconds` | gauge | |
//! | `lumierd_reloads_total` | counter | |
//! | `lumierd_cloudflare_requests_total` | counter | `operation`, `code` (HTTP status; `0` = no response) |
//! | `lumierd_cloudflare_retries_total` | counter | |
//! | `lumierd_cloudflare_refused_while_blocked_total` | counter | |
//! | `lumierd_cloudflare_ratelimit_wait_seconds_total` | counter | |
//! | `lumierd_cloudflare_ratelimit_blocked_seconds` | gauge | |
//! | `process_start_time_seconds` | gauge | |
//! | `lumierd_notify_deliveries_total` | counter | `result` (ok, failed) |
//! | `lumierd_notify_dropped_total` | counter | |
//! | `lumierd_notify_queue_depth` | gauge | |
//! | `lumierd_leader` | gauge | `instance_id` (this replica) |
//! | `lumierd_leader_info` | gauge | `leader` (one sample, while a leader is known) |
//! | `lumierd_leader_since_timestamp_seconds` | gauge | |
//! | `lumierd_leader_changes_total` | counter | |
//! | `lumierd_status_stale` | gauge | |
//!
//! The last five are a running daemon's ([`render_replica`], from its
//! [`crate::replica::Replica`]): with an etcd store they say who leads as this replica sees it;
//! with sled this replica leads, since it started.
//!
//! Kept by hand rather than `prometheus-client` (issue #10.6), because that crate (0.26.0, the
//! current one, tried on 2026-11-30) only writes OpenMetrics 1.0, which changes what scrapers,
//! dashboards and the tests read: it refuses a counter registered as `…_total` and writes its
//! `# TYPE` line without the suffix (`# TYPE lumierd_passes counter`, samples
//! `lumierd_passes_total`); it appends a period to every HELP text; it ends with `# EOF`; and
//! its content type is `application/openmetrics-text`. Serving text format 0.0.4 unchanged
//! (names, HELP texts, `# TYPE …_total counter`) would mean writing the encoder by hand anyway.
//! The cost stays bounded: every label set here is a fixed list, so memory does not grow with
//! the number of resources.

mod exposition;
mod render;
mod replica;

use crate::store::State;
use exposition::Histogram;
pub use replica::render_replica;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kinds of resource (`ResourceSpec::type_name`).
pub const KINDS: [&str; 2] = ["kv", "worker"];

/// Results of one resource's reconcile: the action taken (`noop` when it was already as
/// declared; `delete` for a pruned resource), `pending` (waiting for a dependency), or `error`
/// (an API failure).
pub const RESULTS: [&str; 10] = [
    "noop", "create", "update", "adopt", "correct", "report", "refuse", "delete", "pending",
    "error",
];

/// The drift fields counted; anything else counts as `other`.
pub const DRIFT_FIELDS: [&str; 7] = [
    "title",
    "content",
    "bindings",
    "compatibility_date",
    "compatibility_flags",
    "deleted",
    "other",
];

/// Every resource state, in `status` spelling.
const STATES: [State; 6] = [
    State::Pending,
    State::Ready,
    State::Drifted,
    State::Error,
    State::Retained,
    State::Deleting,
];

/// The counters; `render` clones them under the lock and renders the copy outside it.
#[derive(Debug, Clone, Default)]
struct Inner {
    reconciles: BTreeMap<(&'static str, &'static str), u64>,
    reconcile_duration: BTreeMap<&'static str, Histogram>,
    drift_events: BTreeMap<(&'static str, &'static str), u64>,
    passes: BTreeMap<&'static str, u64>,
    pass_duration: Histogram,
    resources: BTreeMap<&'static str, u64>,
    queue_depth: u64,
    load_failures: u64,
    last_load_success: Option<SystemTime>,
    reloads: u64,
    /// Notification POSTs by result (`ok`, `failed`).
    notify_deliveries: BTreeMap<&'static str, u64>,
    notify_dropped: u64,
    notify_queue: u64,
}

/// The daemon's counters and gauges, and whether it is ready. Shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    ready: AtomicBool,
    started: SystemTime,
    /// While a pass runs: when it started or last finished a resource (liveness).
    progress: Mutex<Option<std::time::Instant>>,
    /// How long a running pass may go without progress before liveness fails.
    stuck_after: Mutex<Duration>,
}

/// Default of `--stuck-after`: a pass that finishes no resource for this long is stuck
/// (a frozen disk, a hung call); liveness and the watchdog then fail, and the supervisor
/// restarts lumierd.
pub const STUCK_AFTER: Duration = Duration::from_secs(600);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut inner = Inner::default();
        for kind in KINDS {
            for result in RESULTS {
                inner.reconciles.insert((kind, result), 0);
            }
            inner.reconcile_duration.insert(kind, Histogram::default());
        }
        for result in ["ok", "error"] {
            inner.passes.insert(result, 0);
        }
        for state in STATES {
            inner.resources.insert(state.as_str(), 0);
        }
        for result in ["ok", "failed"] {
            inner.notify_deliveries.insert(result, 0);
        }
        Metrics {
            inner: Mutex::new(inner),
            ready: AtomicBool::new(false),
            started: SystemTime::now(),
            progress: Mutex::new(None),
            stuck_after: Mutex::new(STUCK_AFTER),
        }
    }

    pub fn set_stuck_after(&self, after: Duration) {
        *self.stuck_after.lock().unwrap_or_else(|p| p.into_inner()) = after;
    }

    fn set_progress(&self, at: Option<std::time::Instant>) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// A pass starts: progress is watched until it ends ([`Metrics::pass`]).
    pub fn pass_started(&self) {
        self.set_progress(Some(std::time::Instant::now()));
    }

    /// How long the running pass has gone without progress, when that is past
    /// `--stuck-after`; `None` while healthy.
    pub fn stuck(&self) -> Option<Duration> {
        let since = (*self.progress.lock().unwrap_or_else(|p| p.into_inner()))?;
        let after = *self.stuck_after.lock().unwrap_or_else(|p| p.into_inner());
        Some(since.elapsed()).filter(|d| *d > after)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    /// Whether manifests are loaded and the first pass is done.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// One resource reconciled: `kind` and `result` are mapped onto [`KINDS`] and [`RESULTS`].
    pub fn reconciled(&self, kind: &str, result: &str, took: Duration) {
        {
            let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            if progress.is_some() {
                *progress = Some(std::time::Instant::now());
            }
        }
        let kind = bounded(kind, &KINDS);
        let result = bounded(result, &RESULTS);
        self.with(|m| {
            *m.reconciles.entry((kind, result)).or_insert(0) += 1;
            m.reconcile_duration
                .entry(kind)
                .or_default()
                .observe(took.as_secs_f64());
        });
    }

    /// A drift event (one per drift line, by [`drift_field`]).
    pub fn drift(&self, kind: &str, lines: &[String]) {
        let kind = bounded(kind, &KINDS);
        self.with(|m| {
            for line in lines {
                *m.drift_events.entry((kind, drift_field(line))).or_insert(0) += 1;
            }
        });
    }

    /// A pass finished (`ok`) or failed before it could reconcile (`error`).
    pub fn pass(&self, ok: bool, took: Duration) {
        self.set_progress(None);
        self.with(|m| {
            *m.passes.entry(if ok { "ok" } else { "error" }).or_insert(0) += 1;
            m.pass_duration.observe(took.as_secs_f64());
        });
    }

    /// Resources by state, and how many wait for a retry, as the store holds them. A read
    /// that fails part way keeps the figures of the last complete one (a store that cannot be
    /// read has not lost its resources) and returns the error.
    pub fn set_resources<E>(
        &self,
        records: impl IntoIterator<Item = Result<impl std::borrow::Borrow<crate::store::Record>, E>>,
    ) -> Result<(), E> {
        let mut by_state: BTreeMap<&'static str, u64> =
            STATES.iter().map(|s| (s.as_str(), 0)).collect();
        let mut waiting = 0;
        for r in records {
            let r = r?;
            let r = r.borrow();
            *by_state.entry(r.state.as_str()).or_insert(0) += 1;
            if r.next_retry.is_some() {
                waiting += 1;
            }
        }
        self.with(|m| {
            m.resources = by_state;
            m.queue_depth = waiting;
        });
        Ok(())
    }

    /// A manifest load: success sets the last-success timestamp, failure counts.
    pub fn manifest_load(&self, ok: bool) {
        self.with(|m| {
            if ok {
                m.last_load_success = Some(SystemTime::now());
            } else {
                m.load_failures += 1;
            }
        });
    }

    /// A reload asked for (SIGHUP).
    pub fn reload(&self) {
        self.with(|m| m.reloads += 1);
    }

    /// A notification POST answered 2xx (`ok`) or not (a failure, retried later).
    pub fn notify_delivered(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.with(|m| *m.notify_deliveries.entry(result).or_insert(0) += 1);
    }

    /// Undelivered notifications dropped because the outbox was full.
    pub fn notify_dropped(&self, n: u64) {
        self.with(|m| m.notify_dropped += n);
    }

    /// Notifications waiting in the outbox (all targets).
    pub fn set_notify_queue(&self, n: u64) {
        self.with(|m| m.notify_queue = n);
    }
}

/// The field of a drift line, from a bounded set: the part before `:` and before any `.`
/// (`bindings.CACHE: …` → `bindings`); `script x: deleted out of band` → `deleted`.
pub fn drift_field(line: &str) -> &'static str {
    let head = line.split(':').next().unwrap_or("").trim();
    if line.contains("deleted out of band") {
        return "deleted";
    }
    let head = head.split('.').next().unwrap_or("");
    DRIFT_FIELDS
        .iter()
        .find(|f| **f == head)
        .copied()
        .unwrap_or("other")
}

fn bounded(value: &str, allowed: &[&'static str]) -> &'static str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests;
