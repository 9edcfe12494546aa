//! When the next pass runs, and what it does first: the only place that decides.
//!
//! - The first pass runs at once ([`Trigger::Start`]).
//! - A manifest change is debounced on its leading edge ([`Trigger::Changed`]): the first
//!   change after a quiet period (no change for `debounce`) starts a pass at once, after only
//!   [`SETTLE`] without a further event (so one save's or one symlink swap's few events are
//!   one pass). Changes within `debounce` of that one, or arriving while its pass runs, are
//!   coalesced into one follow-up pass once the folder has been quiet for `debounce`. A
//!   git-sync symlink swap is one pass; a `git pull` writing many files at most two. A change
//!   arriving during any other pass (start, resync, retry) starts a pass right after it.
//! - A periodic resync every `resync` ±10 % jitter rescans the manifests and reconciles
//!   everything, so a missed file event or an unnoticed drift is caught ([`Trigger::Resync`]).
//! - A failing resource's retry time wakes the loop ([`Trigger::Retry`]); the earliest wins.
//! - What an edit changed goes first in the next pass ([`Scheduler::prioritize`]).
//!
//! Signals (reload, stop) are the run loop's; this module has no I/O but its timers, so it
//! is tested with `tokio::time::pause()`.

use crate::manifest::ResourceKey;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first pass, on the snapshot loaded at start.
    Start,
    /// The manifests changed and the folder has been quiet for the debounce.
    Changed,
    /// The periodic resync: rescan, then reconcile everything.
    Resync,
    /// A failed resource's (or pass's) retry time came.
    Retry,
}

impl Trigger {
    /// Whether the manifests are rescanned before this pass.
    pub fn rescans(self) -> bool {
        matches!(self, Trigger::Changed | Trigger::Resync)
    }
}

/// How long a leading-edge change waits for the rest of its burst (a save is truncate +
/// write; a symlink swap, two events): short against a pass, long against one write.
pub const SETTLE: Duration = Duration::from_millis(5);

pub struct Scheduler {
    resync: Duration,
    debounce: Duration,
    started: bool,
    next_resync: Instant,
    retry_at: Option<Instant>,
    priority: HashSet<ResourceKey>,
    /// When the last change was seen (a change within `debounce` of it is not leading).
    last_change: Option<Instant>,
    /// A change was taken but its pass not returned yet (`next` was cancelled): it is
    /// coalesced into a follow-up pass.
    pending: bool,
    /// The last pass returned was a leading-edge one (its burst may go on).
    after_leading: bool,
}

/// `period` ±10 %.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + (rand::random::<f64>() * 0.2 - 0.1))
}

impl Scheduler {
    pub fn new(resync: Duration, debounce: Duration) -> Scheduler {
        Scheduler {
            resync,
            debounce,
            started: false,
            next_resync: Instant::now() + jittered(resync),
            retry_at: None,
            priority: HashSet::new(),
            last_change: None,
            pending: false,
            after_leading: false,
        }
    }

    /// Waits for the next reason to run a pass. Cancel-safe: a change taken before a cancel
    /// still gets its pass (as a follow-up) from the next call.
    pub async fn next(&mut self, changes: &mut mpsc::Receiver<()>) -> Trigger {
        if !self.started {
            self.started = true;
            return Trigger::Start;
        }
        // A change that came while the last pass ran (or a cancelled wait's) is not after a
        // quiet period: it goes into a follow-up pass.
        if self.pending {
            return self.follow_up(changes).await;
        }
        if changes.try_recv().is_ok() {
            self.pending = true;
            // It came while the last pass ran: that pass's burst goes on if it was a leading
            // one; after any other pass (start, resync, retry, follow-up) it starts one.
            return if self.after_leading {
                self.follow_up(changes).await
            } else {
                self.leading(changes).await
            };
        }
        self.after_leading = false;
        let wake = self
            .retry_at
            .map_or(self.next_resync, |r| r.min(self.next_resync));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                self.retry_at = None;
                if Instant::now() >= self.next_resync {
                    self.next_resync = Instant::now() + jittered(self.resync);
                    Trigger::Resync
                } else {
                    Trigger::Retry
                }
            }
            Some(()) = changes.recv() => {
                self.pending = true;
                let quiet = self
                    .last_change
                    .is_none_or(|last| last.elapsed() >= self.debounce);
                if quiet {
                    self.leading(changes).await
                } else {
                    self.follow_up(changes).await
                }
            }
        }
    }

    /// The leading-edge pass: only the rest of this save's events (at most [`SETTLE`] apart,
    /// for at most the debounce), then the pass. Changes within the debounce from now, or
    /// during the pass, are followed up.
    async fn leading(&mut self, changes: &mut mpsc::Receiver<()>) -> Trigger {
        let started = Instant::now();
        while started.elapsed() < self.debounce
            && tokio::time::timeout(SETTLE, changes.recv())
                .await
                .is_ok_and(|e| e.is_some())
        {}
        self.last_change = Some(Instant::now());
        self.pending = false;
        self.after_leading = true;
        Trigger::Changed
    }

    /// The follow-up pass: once the folder has been quiet for a whole debounce.
    async fn follow_up(&mut self, changes: &mut mpsc::Receiver<()>) -> Trigger {
        while tokio::time::timeout(self.debounce, changes.recv())
            .await
            .is_ok_and(|e| e.is_some())
        {}
        // The last change was a debounce ago: the next one is leading.
        self.last_change = Some(Instant::now() - self.debounce);
        self.pending = false;
        self.after_leading = false;
        Trigger::Changed
    }

    /// After a pass: wake again in `retry` (a resource's earliest retry, or a failed pass's).
    pub fn retry_in(&mut self, retry: Option<Duration>) {
        self.retry_at = retry.map(|d| Instant::now() + d);
    }

    /// A resync (and rescan) now, e.g. on SIGHUP.
    pub fn resync_now(&mut self) {
        self.next_resync = Instant::now();
    }

    /// Resources an edit changed: the next pass starts them first.
    pub fn prioritize(&mut self, keys: HashSet<ResourceKey>) {
        self.priority.extend(keys);
    }

    /// The priority set for the pass about to run (later passes have no order to keep).
    pub fn take_priority(&mut self) -> HashSet<ResourceKey> {
        std::mem::take(&mut self.priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(60);
    const DEBOUNCE: Duration = Duration::from_millis(200);

    /// Sends a change after `ms` (virtual time), while `next` waits.
    fn change_in(tx: &mpsc::Sender<()>, ms: u64) {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            tx.send(()).await.unwrap();
        });
    }

    /// Runs `next` and says what woke it, and after how long (virtual time).
    async fn woken(s: &mut Scheduler, rx: &mut mpsc::Receiver<()>) -> (Trigger, Duration) {
        let start = Instant::now();
        let t = s.next(rx).await;
        (t, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn starts_at_once_then_resyncs_every_period_with_jitter() {
        let (_tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        assert_eq!(
            woken(&mut s, &mut rx).await,
            (Trigger::Start, Duration::ZERO)
        );
        for _ in 0..5 {
            let (t, after) = woken(&mut s, &mut rx).await;
            assert_eq!(t, Trigger::Resync);
            assert!(
                after >= RESYNC.mul_f64(0.8) && after <= RESYNC.mul_f64(1.2),
                "{after:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_wakes_before_the_resync_and_only_once() {
        let (_tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        woken(&mut s, &mut rx).await;
        s.retry_in(Some(Duration::from_secs(5)));
        assert_eq!(
            woken(&mut s, &mut rx).await,
            (Trigger::Retry, Duration::from_secs(5))
        );
        // Not asked again: the next wake is the resync.
        assert_eq!(woken(&mut s, &mut rx).await.0, Trigger::Resync);
        // A retry later than the resync is preceded by it.
        s.retry_in(Some(RESYNC * 3));
        assert_eq!(woken(&mut s, &mut rx).await.0, Trigger::Resync);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_a_quiet_period_starts_a_pass_at_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        woken(&mut s, &mut rx).await;
        // One event (a git-sync symlink swap): one pass, after only the settle time.
        change_in(&tx, 30);
        assert_eq!(
            woken(&mut s, &mut rx).await,
            (Trigger::Changed, Duration::from_millis(30) + SETTLE)
        );
        // Nothing else: no follow-up, the next wake is the resync.
        assert_eq!(woken(&mut s, &mut rx).await.0, Trigger::Resync);
        // A quiet period later, the next change is leading again.
        tokio::time::sleep(DEBOUNCE).await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(()).await.unwrap();
            // The same save's second event, within the settle time: the same pass.
            tokio::time::sleep(Duration::from_millis(2)).await;
            tx.send(()).await.unwrap();
            tx
        });
        assert_eq!(
            woken(&mut s, &mut rx).await,
            (Trigger::Changed, Duration::from_millis(12) + SETTLE)
        );
        let _tx = writer.await.unwrap();
        assert_eq!(woken(&mut s, &mut rx).await.0, Trigger::Resync);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_during_the_debounce_are_coalesced_into_one_follow_up() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        woken(&mut s, &mut rx).await;
        // A `git pull`: 4 files 50 ms apart (the last at 150 ms).
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tx.send(()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tx
        });
        // The first starts a pass at once; the rest make one pass 200 ms after the last.
        assert_eq!(woken(&mut s, &mut rx).await, (Trigger::Changed, SETTLE));
        let start = Instant::now();
        assert_eq!(s.next(&mut rx).await, Trigger::Changed);
        assert_eq!(
            Instant::now(),
            start - SETTLE + Duration::from_millis(350),
            "the follow-up runs a debounce after the last change"
        );
        let _tx = writer.await.unwrap();
        // At most two passes: the next wake is the resync.
        assert_eq!(woken(&mut s, &mut rx).await.0, Trigger::Resync);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_pass_is_followed_up_after_the_debounce() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        woken(&mut s, &mut rx).await;
        change_in(&tx, 0);
        assert_eq!(woken(&mut s, &mut rx).await, (Trigger::Changed, SETTLE));
        // The pass takes a second; a change comes in the middle of it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(woken(&mut s, &mut rx).await, (Trigger::Changed, DEBOUNCE));
        // After a follow-up (or any pass but a leading one), a change that came during the
        // pass starts the next pass at once.
        tx.send(()).await.unwrap();
        assert_eq!(woken(&mut s, &mut rx).await, (Trigger::Changed, SETTLE));
        tokio::time::sleep(DEBOUNCE).await;
        // A cancelled wait keeps its change: the next call still makes the pass.
        tx.send(()).await.unwrap();
        tokio::time::sleep(DEBOUNCE).await;
        let cancelled = tokio::time::timeout(Duration::from_millis(1), s.next(&mut rx)).await;
        assert!(cancelled.is_err(), "{cancelled:?}");
        assert_eq!(woken(&mut s, &mut rx).await, (Trigger::Changed, DEBOUNCE));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn resync_now_and_priority() {
        let (_tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        woken(&mut s, &mut rx).await;
        s.resync_now();
        assert_eq!(
            woken(&mut s, &mut rx).await,
            (Trigger::Resync, Duration::ZERO)
        );
        let key = ResourceKey {
            app: "a".into(),
            stage: "s".into(),
            name: "w".into(),
        };
        s.prioritize([key.clone()].into());
        assert_eq!(s.take_priority(), [key].into());
        assert!(s.take_priority().is_empty());
        assert!(Trigger::Changed.rescans() && Trigger::Resync.rescans());
        assert!(!Trigger::Start.rescans() && !Trigger::Retry.rescans());
    }
}
