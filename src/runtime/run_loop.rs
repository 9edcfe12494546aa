//! The daemon's loop: the scheduler says when a pass runs (edits debounced, resyncs, retry
//! wake-ups); SIGHUP reloads (every waiting retry due now, a rescan, a full pass);
//! SIGTERM/SIGINT stop (a pass in flight gets [`STOP_INFLIGHT`]); with an election, only the
//! leader runs passes, a follower keeps its snapshot, and a pass whose leadership is lost is
//! abandoned. The watch follows the manifests and the current snapshot's module files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::Signal;
use tokio::sync::watch;

use super::change::PassReport;
use super::controller::{Controller, ControllerError};
use super::daemon::{load_snapshot, loaded, log_pass, retry_now, DaemonError, RunConfig};
use super::leader::{Leader, LeaderView};
use super::ops::Ops;
use super::scheduler::{Scheduler, Trigger};
use super::signals::{stop_signal, Signals};
use super::status_socket;
use crate::edge::Edge;
use crate::manifest::LoadError;
use crate::source::Snapshot;
use crate::store::Store;
use crate::time::Timestamp;
use crate::watch::ModulePaths;

/// Of [`super::daemon::STOP_GRACE`], how long an in-flight pass may go on.
const STOP_INFLIGHT: Duration = Duration::from_secs(6);
/// When a pass that failed as a whole (the list calls, the store) is tried again.
const FAILED_PASS_RETRY: Duration = Duration::from_secs(5);

/// Whether the loop goes on after a pass.
enum Step {
    Next,
    Stop,
}

/// What the loop keeps between two wake-ups.
struct Loop<'a> {
    cfg: &'a RunConfig,
    controller: &'a Controller,
    store: &'a Store,
    ops: &'a Ops,
    edge: &'a Option<Edge>,
    /// The leader view (`None`: no election, this replica always leads).
    leadership: Option<watch::Receiver<LeaderView>>,
    scheduler: Scheduler,
    /// The module files the watch wakes the loop for.
    modules: ModulePaths,
    /// The snapshot in force (`None` until manifests first load).
    snapshot: Option<Arc<Snapshot>>,
    /// The snapshot whose module files the watch knows.
    tracked: Option<Arc<Snapshot>>,
    /// A SIGHUP reload is under way (sd_notify `READY=1` once its pass ends).
    reloading: bool,
}

/// The daemon's loop; returns once a stop signal was handled.
// The leader is one more side of the loop, like the edge; the lead's rewrite of this loop
// may bundle them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_forever(
    cfg: &RunConfig,
    initial: Result<Snapshot, LoadError>,
    controller: &Controller,
    store: &Store,
    ops: &Ops,
    signals: Signals,
    edge: &Option<Edge>,
    leader: Option<&Leader>,
) -> Result<bool, DaemonError> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let socket = status_socket::serve(&cfg.state, store.clone(), Arc::clone(&ops.replica))
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    // Only manifest-relevant changes wake the loop: manifests, the workers' module files
    // (known from each snapshot), never the state folder.
    let modules = ModulePaths::default();
    let filter = crate::watch::Filter::default()
        .ignore(&cfg.state)
        .modules(modules.clone());
    let (_watch, mut changes) = crate::watch::watch_filtered(&cfg.manifests, filter)?;
    let snapshot = match loaded(initial, store, ops, controller.events.as_ref()) {
        Ok(snap) => snap,
        Err(DaemonError::Manifests(e)) => {
            tracing::error!("manifests not loaded; waiting for a fix:\n{e}");
            ops.notify("STATUS=waiting for valid manifests (see `lumierd status`)");
            None
        }
        Err(e) => return Err(e),
    };
    let mut lp = Loop {
        cfg,
        controller,
        store,
        ops,
        edge,
        leadership: leader.map(Leader::watch),
        scheduler: Scheduler::new(cfg.resync, cfg.debounce),
        modules,
        snapshot,
        tracked: None,
        reloading: false,
    };
    loop {
        let trigger = tokio::select! {
            t = lp.scheduler.next(&mut changes) => t,
            _ = hup.recv() => {
                lp.on_hup();
                continue;
            }
            _ = stop_signal(&mut term, &mut int) => {
                ops.notify("STOPPING=1\nSTATUS=stopping");
                break;
            }
            leading = leadership_changed(&mut lp.leadership) => {
                lp.on_leadership(leading);
                continue;
            }
        };
        if trigger.rescans() {
            lp.rescan(trigger);
        }
        let Some(snap) = lp.runnable() else {
            continue;
        };
        if let Step::Stop = lp.pass(snap, &mut term, &mut int).await {
            break;
        }
    }
    tracing::info!("shutting down");
    drop(socket);
    Ok(true)
}

impl Loop<'_> {
    /// SIGHUP: every waiting retry due now, then a rescan and a full pass.
    fn on_hup(&mut self) {
        self.ops.metrics.reload();
        if self.ops.metrics.is_ready() {
            self.reloading = true;
            self.ops.notify("RELOADING=1\nSTATUS=reloading");
        }
        match retry_now(self.store) {
            Ok(due) => tracing::info!(retrying = due, "SIGHUP: reloading manifests and resyncing"),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP: the state store cannot make retries due; resyncing")
            }
        }
        self.scheduler.resync_now();
    }

    /// The leader view changed: notify who leads; a new leader passes at once, a follower
    /// with its snapshot loaded is ready.
    fn on_leadership(&mut self, leading: bool) {
        let view = self.leadership.as_ref().map(|rx| rx.borrow().clone());
        if let (Some(sink), Some(leader)) = (
            self.controller.events.as_ref(),
            view.as_ref().and_then(|v| v.leader.as_deref()),
        ) {
            let since = view.as_ref().and_then(|v| v.since.as_deref());
            sink.emit(crate::notify::Event::leader_changed(
                leader,
                since,
                Timestamp::now(),
            ));
        }
        if leading {
            // A new leader starts its first pass at once, on the loaded snapshot.
            self.scheduler.resync_now();
        } else if self.snapshot.is_some() {
            self.ops.first_pass_done(); // a follower with its snapshot loaded is ready
        }
    }

    /// Reloads the manifests; after an edit, what it changed goes first in the next pass.
    fn rescan(&mut self, trigger: Trigger) {
        let reloaded = load_snapshot(
            &self.cfg.manifests,
            &self.cfg.load,
            self.snapshot.as_ref(),
            self.store,
            &self.ops.metrics,
            self.controller.events.as_ref(),
        );
        let Some(s) = reloaded else {
            self.modules.set_unknown();
            return;
        };
        if trigger == Trigger::Changed {
            if let Some(old) = self.snapshot.as_deref() {
                self.scheduler.prioritize(s.changed_since(old));
            }
        }
        self.snapshot = Some(s);
    }

    /// The snapshot to pass on, if there is one and this replica leads; the watch learns
    /// its module files first.
    fn runnable(&mut self) -> Option<Arc<Snapshot>> {
        let snap = self.snapshot.clone()?;
        if !self.tracked.as_ref().is_some_and(|t| Arc::ptr_eq(t, &snap)) {
            self.modules.set_sources(
                snap.bundles()
                    .flat_map(|(_, b)| b.sources.iter().map(PathBuf::as_path))
                    .chain(snap.lumier_sources()),
            );
            self.tracked = Some(Arc::clone(&snap));
        }
        if self
            .leadership
            .as_ref()
            .is_some_and(|w| !w.borrow().leading)
        {
            return None; // a follower keeps its snapshot and waits to lead
        }
        Some(snap)
    }

    /// One pass over `snap`, cut short by a stop signal or by losing the leadership.
    async fn pass(&mut self, snap: Arc<Snapshot>, term: &mut Signal, int: &mut Signal) -> Step {
        let (at, start) = (Timestamp::now(), Instant::now());
        let first = self.scheduler.take_priority();
        self.ops.metrics.pass_started();
        let controller = self.controller;
        let pass = controller.pass_first(&snap, &first);
        tokio::pin!(pass);
        let outcome = tokio::select! {
            r = &mut pass => r,
            _ = stop_signal(term, int) => {
                // Nothing new goes to the provider from here on; calls in flight finish.
                controller.client.stop_sending();
                tracing::info!("stopping: finishing in-flight calls");
                self.ops.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight calls");
                let _ = tokio::time::timeout(STOP_INFLIGHT, &mut pass).await;
                return Step::Stop;
            }
            false = leadership_lost(&mut self.leadership) => {
                // The client's gate is already shut: drop the pass (its markers are durable,
                // as after a kill) and follow.
                tracing::warn!("leadership lost mid-pass: pass abandoned");
                return Step::Next;
            }
        };
        self.finished(at, start, outcome);
        Step::Next
    }

    /// Records a pass that ran to its end and schedules what follows it.
    fn finished(
        &mut self,
        at: Timestamp,
        start: Instant,
        outcome: Result<PassReport, ControllerError>,
    ) {
        let ops = self.ops;
        ops.after_pass(self.store, outcome.is_ok(), start.elapsed());
        ops.record_pass(at, start.elapsed(), outcome.as_ref());
        crate::memory::release_free_memory();
        match outcome {
            Ok(report) => {
                log_pass(&report, start.elapsed());
                ops.first_pass_done();
                self.scheduler
                    .retry_in(report.next_retry.map(Timestamp::until));
                if let Some(edge) = self.edge.as_ref() {
                    edge.update(); // local edge (#16): serve what the pass uploaded
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pass failed; retrying in 5 s");
                if !ops.metrics.is_ready() {
                    ops.notify(&format!("STATUS=first pass failed, retrying: {e}"));
                }
                self.scheduler.retry_in(Some(FAILED_PASS_RETRY));
            }
        }
        if self.reloading {
            self.reloading = false;
            ops.notify("READY=1\nSTATUS=ready: reloaded");
        }
    }
}

/// Waits until the leader view changes (this replica leads, or follows a new leader);
/// whether this replica leads now. Pends forever without an election (sled: always leader).
async fn leadership_changed(w: &mut Option<watch::Receiver<LeaderView>>) -> bool {
    let Some(rx) = w.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        return std::future::pending().await;
    }
    let leading = rx.borrow_and_update().leading;
    leading
}

/// Resolves to `false` once this replica no longer leads (pends while it does, or without
/// an election).
async fn leadership_lost(w: &mut Option<watch::Receiver<LeaderView>>) -> bool {
    let Some(rx) = w.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        if !rx.borrow_and_update().leading {
            return false;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
