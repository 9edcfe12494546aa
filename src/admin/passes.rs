//! What the dashboard shows besides the records: the last passes ([`PassLog`], a ring the
//! daemon fills after each pass) and the API requests spent in the current budget window
//! ([`Budget`], sampled from the client's counters).

use crate::time::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Passes kept.
pub const PASSES_KEPT: usize = 20;
/// Change lines kept per pass (the count says how many there were).
pub const LINES_KEPT: usize = 10;

/// One pass, summarised.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    /// When it started.
    pub at: Timestamp,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Whether it ran (false: it failed as a whole, e.g. the account could not be listed).
    pub ok: bool,
    pub converged: bool,
    /// Changes by action (`create`, `correct`, `hold`, …).
    pub actions: BTreeMap<String, usize>,
    /// The first [`LINES_KEPT`] changes, as `plan` prints them. Built from a pass's report by
    /// the daemon (`runtime::pass_summary`), so this module needs nothing of `runtime`.
    pub lines: Vec<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The last [`PASSES_KEPT`] passes, newest first.
#[derive(Debug, Default)]
pub struct PassLog {
    ring: Mutex<VecDeque<PassSummary>>,
}

impl PassLog {
    pub fn record(&self, summary: PassSummary) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.push_front(summary);
        ring.truncate(PASSES_KEPT);
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<PassSummary> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }
}

/// The window the budget is counted over: Cloudflare's (1200 requests per 5 minutes).
pub const BUDGET_WINDOW: Duration = Duration::from_secs(300);
/// How often [`Budget::sample`] is expected to run (the ring covers one window).
pub const BUDGET_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Requests sent per window, from samples of the client's total request count.
#[derive(Debug, Default)]
pub struct Budget {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Budget {
    /// Records that `total` requests had been sent by `now`; keeps one window of samples
    /// (plus the one just before it, the window's baseline).
    pub fn sample(&self, now: Instant, total: u64) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, total));
        while s.len() > 2 && s[1].0 + BUDGET_WINDOW <= now {
            s.pop_front();
        }
    }

    /// Requests sent in the last [`BUDGET_WINDOW`] (or since the first sample, when the
    /// daemon is younger), given `total` now.
    pub fn spent(&self, now: Instant, total: u64) -> u64 {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let base = s
            .iter()
            .rev()
            .find(|(at, _)| *at + BUDGET_WINDOW <= now)
            .or_else(|| s.front())
            .map_or(0, |(_, n)| *n);
        total.saturating_sub(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_one_window() {
        let b = Budget::default();
        let t0 = Instant::now();
        b.sample(t0, 0);
        b.sample(t0 + Duration::from_secs(100), 50);
        assert_eq!(b.spent(t0 + Duration::from_secs(100), 60), 60);
        b.sample(t0 + Duration::from_secs(310), 200);
        // The window starts at 10 s: the sample at 0 s (0 requests) is its baseline.
        assert_eq!(b.spent(t0 + Duration::from_secs(310), 200), 200);
        b.sample(t0 + Duration::from_secs(420), 230);
        // Starts at 120 s: baseline is the sample at 100 s (50).
        assert_eq!(b.spent(t0 + Duration::from_secs(420), 230), 180);
    }

    #[test]
    fn the_pass_log_keeps_the_newest() {
        let log = PassLog::default();
        // What `PassSummary::of` makes of an empty report that took `i` ms.
        for i in 0..(PASSES_KEPT as u64 + 5) {
            log.record(PassSummary {
                at: Timestamp::now(),
                took_ms: i,
                ok: true,
                converged: false,
                actions: BTreeMap::new(),
                lines: Vec::new(),
                error: None,
            });
        }
        let recent = log.recent();
        assert_eq!(recent.len(), PASSES_KEPT);
        assert_eq!(recent[0].took_ms, PASSES_KEPT as u64 + 4);
    }
}
