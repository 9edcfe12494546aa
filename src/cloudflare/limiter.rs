//! The account-wide request limiter: a token bucket that every clone of a
//! [`Client`](super::Client) shares, plus an account-wide pause ("block") set from
//! `Retry-After` on a 429 or from a `Ratelimit: …;r=0;t=T` header.
//!
//! The real API allows 1200 requests per 5 minutes per token and blocks *all* calls for the
//! rest of the window when that is exceeded (API-NOTES §2). The default bucket refills
//! 1000 requests per 300 s with a burst of 100, so no 300 s window can see more than
//! 1100 requests from one process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token-bucket parameters: `requests` tokens refill evenly over `period`; at most `burst`
/// tokens accumulate (so at most `burst` requests leave back to back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `period` in the steady state. Must be at least 1.
    pub requests: u32,
    /// The refill period. Must be non-zero.
    pub period: Duration,
    /// Bucket capacity. Must be at least 1.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 1000 requests per 300 s, burst 100 (under the real 1200 / 5 min).
    fn default() -> RateLimit {
        RateLimit {
            requests: 1000,
            period: Duration::from_secs(300),
            burst: 100,
        }
    }
}

impl RateLimit {
    /// A limit so high it never throttles (for tests against the local API).
    pub fn unlimited() -> RateLimit {
        RateLimit {
            requests: 1_000_000,
            period: Duration::from_secs(1),
            burst: 1_000_000,
        }
    }

    /// Tokens refilled per second.
    fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.period.as_secs_f64()
    }

    /// Whether the parameters are usable (non-zero requests, period and burst).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.requests == 0 || self.burst == 0 || self.period.is_zero() {
            return Err(format!(
                "rate limit needs requests >= 1, burst >= 1 and a non-zero period (got {} per {:?}, burst {})",
                self.requests, self.period, self.burst
            ));
        }
        Ok(())
    }
}

/// Outcome of trying to take one token at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// A token was taken; send now.
    Go,
    /// The bucket is empty; try again after this long.
    Wait(Duration),
    /// The account is blocked (429 / `Ratelimit r=0`) for this much longer.
    Blocked(Duration),
}

/// The pure bucket state machine (time is passed in, so it is unit-testable).
#[derive(Debug)]
pub(crate) struct Bucket {
    limit: RateLimit,
    tokens: f64,
    /// When `tokens` was last brought up to date. May lie in the future after a block:
    /// refilling starts only once the block is over.
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Bucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Bucket {
        Bucket {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
            blocked_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let elapsed = (now - self.last).as_secs_f64();
            self.tokens =
                (self.tokens + elapsed * self.limit.per_second()).min(f64::from(self.limit.burst));
            self.last = now;
        }
    }

    /// Tries to take one token at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Take {
        if let Some(until) = self.blocked_until {
            if until > now {
                return Take::Blocked(until - now);
            }
            self.blocked_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Take::Go
        } else {
            let missing = 1.0 - self.tokens;
            let secs = missing / self.limit.per_second();
            // Round up to a millisecond so a waiter never wakes a hair too early and spins.
            let wait = Duration::from_secs_f64(secs) + Duration::from_millis(1);
            Take::Wait(wait)
        }
    }

    /// Blocks every request until `until` (extends, never shortens, a current block), and
    /// empties the bucket so traffic restarts at the steady rate, not with a full burst.
    pub(crate) fn block_until(&mut self, until: Instant) {
        let until = match self.blocked_until {
            Some(current) if current > until => current,
            _ => until,
        };
        self.blocked_until = Some(until);
        self.tokens = 0.0;
        self.last = until;
    }

    /// The remaining block at `now`, if any.
    pub(crate) fn blocked_for(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

/// The shared limiter: a [`Bucket`] behind a mutex, plus the total time callers waited.
#[derive(Debug)]
pub(crate) struct Limiter {
    bucket: Mutex<Bucket>,
    waited: Mutex<Duration>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter {
            bucket: Mutex::new(Bucket::new(limit, Instant::now())),
            waited: Mutex::new(Duration::ZERO),
        }
    }

    /// Waits for a token. If the account is blocked for longer than `max_block_wait`, returns
    /// `Err(remaining)` at once instead of sleeping through the block.
    pub(crate) async fn acquire(&self, max_block_wait: Duration) -> Result<(), Duration> {
        let started = Instant::now();
        let outcome = loop {
            let take = {
                let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
                bucket.take(Instant::now())
            };
            match take {
                Take::Go => break Ok(()),
                Take::Blocked(rest) if rest > max_block_wait => break Err(rest),
                Take::Blocked(wait) | Take::Wait(wait) => tokio::time::sleep(wait).await,
            }
        };
        let waited = started.elapsed();
        if waited >= Duration::from_millis(1) {
            let mut total = self.waited.lock().unwrap_or_else(|p| p.into_inner());
            *total += waited;
        }
        outcome
    }

    /// Pauses the whole bucket (all clones, all tasks) for `wait` from now.
    pub(crate) fn pause_for(&self, wait: Duration) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.block_until(Instant::now() + wait);
    }

    /// The remaining account-wide block, if any.
    pub(crate) fn blocked_for(&self) -> Option<Duration> {
        let bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.blocked_for(Instant::now())
    }

    /// Total time callers spent waiting in [`Limiter::acquire`].
    pub(crate) fn total_wait(&self) -> Duration {
        *self.waited.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parses an IETF-draft `Ratelimit` header (`"default";r=50;t=30`, possibly several
/// comma-separated items) and returns how long to pause when some item reports no remaining
/// quota (`r=0`): its `t` in seconds (the longest, if several). `None` when quota remains
/// or the header is unparseable.
pub fn parse_ratelimit_header(value: &str) -> Option<Duration> {
    let mut pause: Option<Duration> = None;
    for item in value.split(',') {
        let mut remaining: Option<u64> = None;
        let mut reset: Option<u64> = None;
        // The first `;`-separated member is the policy name; the rest are parameters.
        for param in item.split(';').skip(1) {
            let Some((key, val)) = param.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            match key.trim() {
                "r" => remaining = val.parse().ok(),
                "t" => reset = val.parse().ok(),
                _ => {}
            }
        }
        if let (Some(0), Some(t)) = (remaining, reset) {
            let t = Duration::from_secs(t);
            pause = Some(pause.map_or(t, |p| p.max(t)));
        }
    }
    pause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, secs: u64, burst: u32) -> RateLimit {
        RateLimit {
            requests,
            period: Duration::from_secs(secs),
            burst,
        }
    }

    #[test]
    fn default_stays_under_the_real_limit() {
        let d = RateLimit::default();
        assert_eq!(d.period, Duration::from_secs(300));
        // Worst case in any period: a full burst plus a period of refill.
        assert!(d.requests + d.burst < 1200);
        assert!(d.validate().is_ok());
        assert!(limit(0, 1, 1).validate().is_err());
        assert!(limit(1, 0, 1).validate().is_err());
        assert!(limit(1, 1, 0).validate().is_err());
    }

    #[test]
    fn bucket_allows_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limit(10, 1, 3), t0);
        assert_eq!(b.take(t0), Take::Go);
        assert_eq!(b.take(t0), Take::Go);
        assert_eq!(b.take(t0), Take::Go);
        match b.take(t0) {
            Take::Wait(w) => assert!(
                w >= Duration::from_millis(100) && w <= Duration::from_millis(102),
                "{w:?}"
            ),
            other => panic!("expected wait, got {other:?}"),
        }
        // After 100 ms, exactly one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.take(t1), Take::Go);
        assert!(matches!(b.take(t1), Take::Wait(_)));
        // Never more than the burst, however long we idle.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(t2), Take::Go);
        }
        assert!(matches!(b.take(t2), Take::Wait(_)));
    }

    #[test]
    fn block_pauses_everything_and_restarts_slowly() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limit(10, 1, 5), t0);
        b.block_until(t0 + Duration::from_secs(2));
        assert_eq!(b.take(t0), Take::Blocked(Duration::from_secs(2)));
        assert_eq!(
            b.take(t0 + Duration::from_millis(500)),
            Take::Blocked(Duration::from_millis(1500))
        );
        // A shorter block does not shorten the current one.
        b.block_until(t0 + Duration::from_secs(1));
        assert_eq!(b.blocked_for(t0), Some(Duration::from_secs(2)));
        // At the end of the block the bucket is empty: no burst right away.
        let end = t0 + Duration::from_secs(2);
        assert!(matches!(b.take(end), Take::Wait(_)));
        assert_eq!(b.take(end + Duration::from_millis(100)), Take::Go);
        assert_eq!(b.blocked_for(end), None);
    }

    #[tokio::test]
    async fn acquire_fails_fast_on_a_long_block() {
        let l = Limiter::new(limit(100, 1, 10));
        assert_eq!(l.acquire(Duration::from_secs(1)).await, Ok(()));
        l.pause_for(Duration::from_secs(120));
        let rest = l.acquire(Duration::from_secs(60)).await;
        assert!(
            matches!(rest, Err(d) if d > Duration::from_secs(100)),
            "{rest:?}"
        );
        assert!(l.blocked_for().is_some());
    }

    #[tokio::test]
    async fn acquire_sleeps_through_a_short_block() {
        let l = Limiter::new(limit(1000, 1, 10));
        l.pause_for(Duration::from_millis(80));
        let started = Instant::now();
        assert_eq!(l.acquire(Duration::from_secs(60)).await, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert!(l.total_wait() >= Duration::from_millis(80));
    }

    #[test]
    fn ratelimit_header() {
        assert_eq!(parse_ratelimit_header(r#""default";r=50;t=30"#), None);
        assert_eq!(
            parse_ratelimit_header(r#""default";r=0;t=30"#),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_ratelimit_header(r#"default; r=0; t=7"#),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_ratelimit_header(r#""burst";r=3;t=1, "default";r=0;t=12"#),
            Some(Duration::from_secs(12))
        );
        assert_eq!(parse_ratelimit_header(r#""default";r=0"#), None);
        assert_eq!(parse_ratelimit_header("garbage"), None);
        assert_eq!(parse_ratelimit_header(""), None);
    }
}
