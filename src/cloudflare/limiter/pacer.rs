//! The window model: a pure pacing state machine (time is passed in, so it is unit-testable)
//! that decides whether one request may leave now, from our own sends in the last budget
//! window, the API's last report of its window, the requests still in flight and a 429's
//! block (the rules are the table in [`super`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Quota, RateLimit};

/// Outcome of trying to send one request at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Send now (counted as in flight until [`Pacer::answered`]).
    Go,
    /// The window's budget is spent; try again after this long.
    Wait(Duration),
    /// A 429 blocks the account for this much longer.
    Blocked(Duration),
}

/// The API's window as last reported.
#[derive(Debug, Clone, Copy)]
struct ApiWindow {
    /// When it resets (the answer's arrival + `t`: never before the API's own reset).
    resets_at: Instant,
    /// What we may still send in it.
    available: i64,
}

/// The pure pacing state machine (time is passed in, so it is unit-testable).
#[derive(Debug)]
pub(crate) struct Pacer {
    limit: RateLimit,
    /// Our sends within the last budget window (only with a budget).
    sent: VecDeque<Instant>,
    api: Option<ApiWindow>,
    /// The API's window length (`w`) when reported.
    api_window: Option<Duration>,
    in_flight: u32,
    blocked_until: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(limit: RateLimit) -> Pacer {
        Pacer {
            limit,
            sent: VecDeque::new(),
            api: None,
            api_window: None,
            in_flight: 0,
            blocked_until: None,
        }
    }

    /// Forgets what has expired at `now`: the API's window once it reset (and our count with
    /// it: the API counts afresh), our sends older than a budget window.
    fn expire(&mut self, now: Instant) {
        if self.api.is_some_and(|w| now >= w.resets_at) {
            self.api = None;
            self.sent.clear();
        }
        if let Some(b) = self.limit.budget {
            while self.sent.front().is_some_and(|t| now >= *t + b.window) {
                self.sent.pop_front();
            }
        }
    }

    /// Tries to send one request at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Take {
        if let Some(until) = self.blocked_until {
            if until > now {
                return Take::Blocked(until - now);
            }
            self.blocked_until = None;
        }
        self.expire(now);
        if let (Some(allowance), Some(b)) = (self.limit.allowance(), self.limit.budget) {
            if self.sent.len() >= allowance as usize {
                let oldest = self.sent.front().copied().unwrap_or(now);
                return Take::Wait((oldest + b.window).saturating_duration_since(now));
            }
        }
        if let Some(w) = &mut self.api {
            if w.available <= 0 {
                return Take::Wait(w.resets_at.saturating_duration_since(now));
            }
            w.available -= 1;
        }
        if self.limit.budget.is_some() {
            self.sent.push_back(now);
        }
        self.in_flight += 1;
        Take::Go
    }

    /// A request sent by [`Pacer::take`] ended at `now`, with what its answer reported (none
    /// for no answer or no headers).
    pub(crate) fn answered(&mut self, now: Instant, quota: Option<Quota>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(q) = quota else { return };
        if q.policy.is_some() {
            self.api_window = q.policy.map(|p| p.window);
        }
        let quota = q
            .policy
            .map(|p| p.requests)
            .or(self.limit.budget.map(|b| b.requests));
        let reserve = quota.map_or(0, |q| self.limit.reserve_of(q));
        let fresh = ApiWindow {
            resets_at: now + q.reset,
            // Ours still in flight may not be counted in `r` yet: count them again (safe).
            available: i64::from(q.remaining) - i64::from(reserve) - i64::from(self.in_flight),
        };
        // Answers of one window disagree on its reset by rounding and latency; windows
        // differ by about a whole window.
        let half = self
            .api_window
            .or(self.limit.budget.map(|b| b.window))
            .unwrap_or(Duration::from_secs(2))
            / 2;
        self.api = Some(match self.api {
            None => fresh,
            Some(w) if fresh.resets_at + half < w.resets_at => w, // an earlier window's answer
            Some(w) if fresh.resets_at > w.resets_at + half => fresh, // a later window
            Some(w) => ApiWindow {
                resets_at: w.resets_at.min(fresh.resets_at),
                available: w.available.min(fresh.available),
            },
        });
    }

    /// Blocks every request until `until` (extends, never shortens, a current block).
    pub(crate) fn block_until(&mut self, until: Instant) {
        if self.blocked_until.is_none_or(|current| current < until) {
            self.blocked_until = Some(until);
        }
    }

    /// The remaining block at `now`, if any.
    pub(crate) fn blocked_for(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::limiter::fixtures::{limit, quota};

    const S: Duration = Duration::from_secs(1);

    /// Sends until the pacer says wait; returns how many left and the wait.
    fn drain(p: &mut Pacer, now: Instant) -> (u32, Take) {
        let mut n = 0;
        loop {
            match p.take(now) {
                Take::Go => n += 1,
                other => return (n, other),
            }
        }
    }

    #[test]
    fn own_budget_is_spent_at_once_then_slides() {
        let t0 = Instant::now();
        let mut p = Pacer::new(limit(100, 10, 10));
        assert_eq!(drain(&mut p, t0), (90, Take::Wait(10 * S)));
        // Half the window later, still nothing: the 90 are all in the last window.
        let t1 = t0 + 5 * S;
        assert_eq!(p.take(t1), Take::Wait(5 * S));
        // Sent at t0 + 10 s: the first 90 left the window, 90 more may go.
        assert_eq!(drain(&mut p, t0 + 10 * S).0, 90);
        // No budget at all: nothing waits.
        let mut free = Pacer::new(RateLimit::unlimited());
        assert_eq!(drain_n(&mut free, t0, 100_000), 100_000);
    }

    fn drain_n(p: &mut Pacer, now: Instant, max: u32) -> u32 {
        (0..max).take_while(|_| p.take(now) == Take::Go).count() as u32
    }

    #[test]
    fn the_api_report_counts_other_clients_and_keeps_the_reserve() {
        let t0 = Instant::now();
        let mut p = Pacer::new(limit(1200, 300, 10));
        // One request out; the API says another client already spent 600 of 1200.
        assert_eq!(p.take(t0), Take::Go);
        p.answered(t0, quota(599, 300, 1200, 300));
        // 599 left, 120 reserved: 479 more, then wait for the API's reset.
        assert_eq!(drain(&mut p, t0), (479, Take::Wait(300 * S)));
        // The reset opens a whole new window: our own count restarts with it.
        let t1 = t0 + 300 * S;
        assert_eq!(drain(&mut p, t1).0, 1080);
    }

    #[test]
    fn requests_in_flight_are_counted_until_answered() {
        let t0 = Instant::now();
        let mut p = Pacer::new(RateLimit::unlimited());
        for _ in 0..8 {
            assert_eq!(p.take(t0), Take::Go);
        }
        // The first answer says 10 left; the 7 still out may not be in that count.
        p.answered(t0, quota(10, 60, 100, 60));
        assert_eq!(drain(&mut p, t0), (3, Take::Wait(60 * S)));
    }

    #[test]
    fn answers_out_of_order() {
        let t0 = Instant::now();
        let mut p = Pacer::new(RateLimit::unlimited());
        for _ in 0..3 {
            assert_eq!(p.take(t0), Take::Go);
        }
        p.answered(t0, quota(5, 60, 100, 60));
        // A late answer from the same window saying more is left does not raise it.
        p.answered(t0 + S, quota(50, 59, 100, 60));
        assert_eq!(
            drain(&mut p, t0 + S).0,
            3,
            "5 left less the two then in flight"
        );
        // An answer from the window before (its reset long past) is ignored.
        p.answered(t0 + S, quota(90, 1, 100, 60));
        assert!(matches!(p.take(t0 + S), Take::Wait(_)));
        // One from the next window (a reset more than half a window later) replaces it.
        p.answered(t0 + 40 * S, quota(99, 60, 100, 60));
        assert_eq!(p.take(t0 + 40 * S), Take::Go);
    }

    #[test]
    fn a_block_pauses_everything() {
        let t0 = Instant::now();
        let mut p = Pacer::new(limit(10, 1, 0));
        p.block_until(t0 + 2 * S);
        assert_eq!(p.take(t0), Take::Blocked(2 * S));
        let half = Duration::from_millis(500);
        assert_eq!(p.take(t0 + half), Take::Blocked(2 * S - half));
        // A shorter block does not shorten the current one.
        p.block_until(t0 + S);
        assert_eq!(p.blocked_for(t0), Some(2 * S));
        assert_eq!(p.take(t0 + 2 * S), Take::Go);
        assert_eq!(p.blocked_for(t0 + 2 * S), None);
    }
}
