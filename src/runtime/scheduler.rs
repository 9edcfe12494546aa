//! When the next pass runs, and what it does first: the only place that decides.
//!
//! - The first pass runs at once ([`Trigger::Start`]).
//! - A manifest change is debounced: the folder must be quiet for `debounce` before the pass
//!   (one `git pull` writing many files is one pass) ([`Trigger::Changed`]).
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

pub struct Scheduler {
    resync: Duration,
    debounce: Duration,
    started: bool,
    next_resync: Instant,
    retry_at: Option<Instant>,
    priority: HashSet<ResourceKey>,
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
        }
    }

    /// Waits for the next reason to run a pass. Cancel-safe between changes: a change that
    /// arrived is taken only together with its debounce.
    pub async fn next(&mut self, changes: &mut mpsc::Receiver<()>) -> Trigger {
        if !self.started {
            self.started = true;
            return Trigger::Start;
        }
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
                // Quiet for a whole debounce before the pass.
                while tokio::time::timeout(self.debounce, changes.recv())
                    .await
                    .is_ok_and(|e| e.is_some())
                {}
                Trigger::Changed
            }
        }
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
    async fn changes_are_debounced_into_one_pass_after_the_folder_is_quiet() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut s = Scheduler::new(RESYNC, DEBOUNCE);
        woken(&mut s, &mut rx).await;
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tx.send(()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tx
        });
        // Four changes 50 ms apart (the last at 150 ms): one pass, 200 ms after the last.
        assert_eq!(
            woken(&mut s, &mut rx).await,
            (Trigger::Changed, Duration::from_millis(350))
        );
        let _tx = writer.await.unwrap();
        assert_eq!(woken(&mut s, &mut rx).await.0, Trigger::Resync);
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
