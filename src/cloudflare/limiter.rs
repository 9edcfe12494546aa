//! The account-wide request pacer every clone of a [`Client`](super::Client) shares: it spends
//! the API budget of the current window at full speed (the caller's concurrency is the only
//! limit), leaves a reserve to the token's other clients, and follows what the API reports.
//!
//! The real API allows 1200 requests per 5 minutes per user, counted in windows; an overrun
//! blocks *all* calls for the rest of the window with 429 (API-NOTES §2). It reports where a
//! client stands on every answer: `Ratelimit: "default";r=R;t=T` (R requests left, the window
//! resets in T s) and `Ratelimit-Policy: "default";q=Q;w=W` (Q per W s); `Retry-After` on 429.
//!
//! | what is known | a request may leave when | otherwise it waits |
//! | --- | --- | --- |
//! | a 429's `Retry-After` is running | never (every clone) | until it ends; [`Limiter::acquire`] fails fast past its limit |
//! | our own sends ([`Budget`] set) | fewer than the budget less the reserve were sent in the last window (sliding, so no window of the API's can see more) | until the oldest leaves the window |
//! | the API's last `Ratelimit` for the current window | `R − reserve − requests of ours in flight` (as of that answer, minus what we sent since) is above 0 | until the API's window resets (`t`) |
//!
//! The reserve is `reserve_percent` of the API's quota `q` when reported, else of the budget.
//! Other clients spending the same budget show up in `R`, so lumierd slows down only when the
//! window really runs out; when the API's window resets, our own count restarts with it.
//! Answers are taken in any order: within a window the estimate only goes down (the lowest
//! wins), an answer from an earlier window is ignored, one from a later window replaces it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request budget: `requests` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests per window. At least 1.
    pub requests: u32,
    /// The window. Non-zero.
    pub window: Duration,
}

impl Budget {
    /// Cloudflare's documented limit: 1200 requests per 5 minutes per user.
    pub const CLOUDFLARE: Budget = Budget {
        requests: 1200,
        window: Duration::from_secs(300),
    };
}

impl std::str::FromStr for Budget {
    type Err = String;

    /// `N/DURATION`, e.g. `1200/5m` or `600/30s`.
    fn from_str(s: &str) -> Result<Budget, String> {
        let hint = "write N/DURATION, e.g. 1200/5m";
        let (n, window) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a budget; {hint}"))?;
        let requests = n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("`{n}` is not a request count of at least 1; {hint}"))?;
        let window = humantime::parse_duration(window.trim())
            .ok()
            .filter(|w| !w.is_zero())
            .ok_or_else(|| format!("`{window}` is not a non-zero duration; {hint}"))?;
        Ok(Budget { requests, window })
    }
}

/// How a client paces itself: its own budget and the share of the API's quota it leaves to
/// the token's other clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Our own budget, enforced over a sliding window even when the API reports nothing.
    /// `None`: no local limit (the API's headers and 429s still pace).
    pub budget: Option<Budget>,
    /// Percent (0–99) of the quota left to other clients: of the API's reported quota `q`
    /// when known, else of `budget`.
    pub reserve_percent: u8,
}

impl Default for RateLimit {
    /// Cloudflare's 1200 requests / 5 min, 10 % left to other clients (1080 for lumierd).
    fn default() -> RateLimit {
        RateLimit {
            budget: Some(Budget::CLOUDFLARE),
            reserve_percent: 10,
        }
    }
}

impl RateLimit {
    /// No local limit and no reserve (tests and the embedded API); the API's `Ratelimit`
    /// headers and 429s are still followed.
    pub fn unlimited() -> RateLimit {
        RateLimit {
            budget: None,
            reserve_percent: 0,
        }
    }

    /// Whether the parameters are usable.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(b) = self.budget {
            if b.requests == 0 || b.window.is_zero() {
                return Err(format!(
                    "the API budget needs at least 1 request and a non-zero window (got {} per {:?})",
                    b.requests, b.window
                ));
            }
            if self.allowance() == Some(0) {
                return Err(format!(
                    "a reserve of {} % leaves nothing of {} requests",
                    self.reserve_percent, b.requests
                ));
            }
        }
        if self.reserve_percent >= 100 {
            return Err(format!(
                "the reserve must be below 100 % (got {} %)",
                self.reserve_percent
            ));
        }
        Ok(())
    }

    /// `ceil(quota × reserve %)`: what is left to others of `quota`.
    fn reserve_of(&self, quota: u32) -> u32 {
        let r = u64::from(quota) * u64::from(self.reserve_percent);
        u32::try_from(r.div_ceil(100)).unwrap_or(u32::MAX)
    }

    /// What we may send per window of our own budget: the budget less the reserve.
    pub fn allowance(&self) -> Option<u32> {
        self.budget
            .map(|b| b.requests.saturating_sub(self.reserve_of(b.requests)))
    }
}

/// What one answer's `Ratelimit` / `Ratelimit-Policy` headers say (the most constraining
/// item when several are listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests left in the current window (`r`).
    pub remaining: u32,
    /// Until the window resets (`t`, whole seconds).
    pub reset: Duration,
    /// The policy's quota and window (`q`, `w`) of the same name, when reported.
    pub policy: Option<Budget>,
}

impl Quota {
    /// Parses the IETF-draft headers: `ratelimit` like `"default";r=50;t=30` (possibly a
    /// comma-separated list) and `policy` like `"default";q=1200;w=300`. `None` when
    /// `ratelimit` has no item with both `r` and `t`.
    pub fn parse(ratelimit: &str, policy: Option<&str>) -> Option<Quota> {
        let best = items(ratelimit)
            .filter_map(|(name, params)| Some((name, param(&params, "r")?, param(&params, "t")?)))
            // The fewest left wins; on a tie, the later reset.
            .min_by_key(|(_, r, t)| (*r, std::cmp::Reverse(*t)))?;
        let (name, remaining, reset) = best;
        let policy = policy.and_then(|p| {
            items(p)
                .filter(|(n, _)| *n == name)
                .find_map(|(_, params)| {
                    let requests = u32::try_from(param(&params, "q")?).ok()?;
                    let window = Duration::from_secs(param(&params, "w")?);
                    (requests > 0 && !window.is_zero()).then_some(Budget { requests, window })
                })
        });
        Some(Quota {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: Duration::from_secs(reset),
            policy,
        })
    }
}

/// The items of a structured-field list: `(name, parameters)`.
fn items(list: &str) -> impl Iterator<Item = (&str, Vec<(&str, &str)>)> {
    list.split(',').map(|item| {
        let mut members = item.split(';');
        let name = members.next().unwrap_or("").trim().trim_matches('"');
        let params = members
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        (name, params)
    })
}

fn param(params: &[(&str, &str)], key: &str) -> Option<u64> {
    params
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

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

/// The shared limiter: a [`Pacer`] behind a mutex, plus the total time callers waited.
#[derive(Debug)]
pub(crate) struct Limiter {
    pacer: Mutex<Pacer>,
    waited: Mutex<Duration>,
}

/// One request's place in the pacer: report its answer with [`Permit::answered`]; dropped
/// unanswered (cancelled), it still stops counting as in flight.
pub(crate) struct Permit<'a> {
    limiter: &'a Limiter,
    done: bool,
}

impl Permit<'_> {
    /// The request ended; `quota` is what its answer's headers reported.
    pub(crate) fn answered(mut self, quota: Option<Quota>) {
        self.done = true;
        self.limiter.lock().answered(now(), quota);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.lock().answered(now(), None);
        }
    }
}

/// The pacer's clock: tokio's, so tests can pause time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter {
            pacer: Mutex::new(Pacer::new(limit)),
            waited: Mutex::new(Duration::ZERO),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.pacer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may leave. Waiting for the budget's window always sleeps; if a
    /// 429 blocks the account for longer than `max_block_wait`, returns `Err(remaining)` at
    /// once instead of sleeping through the block.
    pub(crate) async fn acquire(&self, max_block_wait: Duration) -> Result<Permit<'_>, Duration> {
        let started = now();
        let outcome = loop {
            let take = self.lock().take(now());
            match take {
                Take::Go => {
                    break Ok(Permit {
                        limiter: self,
                        done: false,
                    })
                }
                Take::Blocked(rest) if rest > max_block_wait => break Err(rest),
                Take::Blocked(wait) | Take::Wait(wait) => {
                    // A millisecond more, so a waiter never wakes a hair early and spins.
                    tokio::time::sleep(wait + Duration::from_millis(1)).await;
                }
            }
        };
        let waited = now().saturating_duration_since(started);
        if waited >= Duration::from_millis(1) {
            *self.waited.lock().unwrap_or_else(|p| p.into_inner()) += waited;
        }
        outcome
    }

    /// Pauses every request (all clones, all tasks) for `wait` from now (a 429's `Retry-After`).
    pub(crate) fn pause_for(&self, wait: Duration) {
        self.lock().block_until(now() + wait);
    }

    /// The remaining account-wide block, if any.
    pub(crate) fn blocked_for(&self) -> Option<Duration> {
        self.lock().blocked_for(now())
    }

    /// Total time callers spent waiting in [`Limiter::acquire`].
    pub(crate) fn total_wait(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limit(requests: u32, window_secs: u64, reserve_percent: u8) -> RateLimit {
        RateLimit {
            budget: Some(Budget {
                requests,
                window: Duration::from_secs(window_secs),
            }),
            reserve_percent,
        }
    }

    fn quota(remaining: u32, reset_secs: u64, q: u32, w: u64) -> Option<Quota> {
        Some(Quota {
            remaining,
            reset: Duration::from_secs(reset_secs),
            policy: Some(Budget {
                requests: q,
                window: Duration::from_secs(w),
            }),
        })
    }

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
    fn budgets_parse_and_validate() {
        let cases: &[(&str, Option<(u32, u64)>)] = &[
            ("1200/5m", Some((1200, 300))),
            ("600 / 30s", Some((600, 30))),
            ("1/1s", Some((1, 1))),
            ("0/5m", None),
            ("1200", None),
            ("x/5m", None),
            ("1200/0s", None),
            ("1200/soon", None),
        ];
        for (text, want) in cases {
            let got = text
                .parse::<Budget>()
                .ok()
                .map(|b| (b.requests, b.window.as_secs()));
            assert_eq!(got, *want, "{text}");
        }
        let d = RateLimit::default();
        assert_eq!(d.budget, Some(Budget::CLOUDFLARE));
        assert_eq!(d.allowance(), Some(1080));
        assert!(d.validate().is_ok());
        assert_eq!(
            limit(10, 1, 15).allowance(),
            Some(8),
            "the reserve rounds up"
        );
        assert!(limit(1, 1, 50).validate().is_err(), "nothing left");
        assert!(limit(10, 1, 100).validate().is_err());
        assert!(limit(0, 1, 0).validate().is_err());
        assert!(RateLimit::unlimited().validate().is_ok());
        assert_eq!(RateLimit::unlimited().allowance(), None);
    }

    #[test]
    fn headers_parse_to_the_most_constraining_item() {
        type Parsed = Option<(u32, u64, Option<(u32, u64)>)>;
        let cases: &[(&str, Option<&str>, Parsed)] = &[
            (r#""default";r=50;t=30"#, None, Some((50, 30, None))),
            (
                r#""default";r=50;t=30"#,
                Some(r#""default";q=1200;w=300"#),
                Some((50, 30, Some((1200, 300)))),
            ),
            (r#"default; r=0; t=7"#, None, Some((0, 7, None))),
            (
                r#""burst";r=3;t=1, "default";r=0;t=12"#,
                Some(r#""burst";q=100;w=60, "default";q=1200;w=300"#),
                Some((0, 12, Some((1200, 300)))),
            ),
            // A policy of another name does not apply.
            (
                r#""default";r=9;t=5"#,
                Some(r#""burst";q=100;w=60"#),
                Some((9, 5, None)),
            ),
            (r#""default";r=0"#, None, None),
            ("garbage", None, None),
            ("", None, None),
        ];
        for (header, policy, want) in cases {
            let got = Quota::parse(header, *policy).map(|q| {
                (
                    q.remaining,
                    q.reset.as_secs(),
                    q.policy.map(|p| (p.requests, p.window.as_secs())),
                )
            });
            assert_eq!(got, *want, "{header} / {policy:?}");
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

    #[tokio::test(start_paused = true)]
    async fn acquire_fails_fast_on_a_long_block() {
        let l = Limiter::new(limit(100, 1, 10));
        l.acquire(S).await.expect("free").answered(None);
        l.pause_for(120 * S);
        let rest = l.acquire(60 * S).await.map(|_| ());
        assert!(matches!(rest, Err(d) if d > 100 * S), "{rest:?}");
        assert!(l.blocked_for().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_through_a_short_block_and_a_spent_window() {
        let l = Limiter::new(limit(10, 60, 0));
        l.pause_for(Duration::from_millis(80));
        let started = tokio::time::Instant::now();
        l.acquire(60 * S)
            .await
            .expect("after the block")
            .answered(None);
        assert!(started.elapsed() >= Duration::from_millis(80));
        for _ in 0..9 {
            l.acquire(60 * S)
                .await
                .expect("within the budget")
                .answered(None);
        }
        // The budget of the window is spent: the next one sleeps until it slides on.
        let before = tokio::time::Instant::now();
        l.acquire(S).await.expect("next window");
        let waited = before.elapsed();
        assert!(waited >= Duration::from_millis(59_900), "{waited:?}");
        assert!(l.total_wait() >= waited);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_is_no_longer_in_flight() {
        let l = Limiter::new(RateLimit::unlimited());
        drop(l.acquire(S).await.expect("go"));
        l.acquire(S)
            .await
            .expect("go")
            .answered(quota(1, 60, 10, 60));
        // Nothing in flight any more: the one left may go.
        l.acquire(S).await.expect("go").answered(None);
        assert_eq!(l.lock().take(now()), Take::Wait(60 * S));
    }
}
