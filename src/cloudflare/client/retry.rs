//! The retry policy: which failed attempt is tried again, and after how long.
//!
//! Only [`ErrorKind::Retryable`] (5xx, 408, timeouts, connection errors and resets) and
//! [`ErrorKind::RateLimited`] (429 / code 971) are retried, at most `max_retries` times (the
//! caller counts). Note that this includes non-idempotent calls: a `create_namespace` POST that
//! timed out may have been applied; its retry then fails with `AlreadyExists` (10014), which
//! the controller resolves by adopting the namespace by title.
//!
//! | failure                                   | delay before the retry                         |
//! |-------------------------------------------|------------------------------------------------|
//! | `RateLimited`, `Retry-After` ≤ 60 s        | none here: the limiter is paused until then    |
//! | `RateLimited`, `Retry-After` > 60 s        | not retried: fails with `retry_after` set      |
//! | `RateLimited`, no `Retry-After`            | full-jitter backoff, at least 1 s              |
//! | other retried kind, `Retry-After` ≤ 60 s   | full-jitter backoff, at least `Retry-After`    |
//! | other retried kind                         | full-jitter backoff                            |
//! | any other kind                             | not retried                                    |

use std::time::Duration;

use rand::Rng;

use crate::cloudflare::error::{ApiError, ErrorKind};

/// Backoff never sleeps longer than this between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A `Retry-After` (or account-wide block) longer than this is not slept through inside a
/// call: the call fails at once with [`ErrorKind::RateLimited`] and
/// [`ApiError::retry_after`] set, so the controller can requeue instead of hanging.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// A 429 without `Retry-After` is never retried sooner than this (as wrangler does).
pub(super) const MIN_RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(1);

/// The delay before retry number `attempt` (0-based): uniform in
/// `[0, min(base * 2^attempt, MAX_BACKOFF)]`.
pub fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(base, attempt);
    if ceiling.is_zero() {
        return Duration::ZERO;
    }
    let nanos =
        rand::thread_rng().gen_range(0..=ceiling.as_nanos().min(u128::from(u64::MAX)) as u64);
    Duration::from_nanos(nanos)
}

/// `min(base * 2^attempt, MAX_BACKOFF)`.
pub fn backoff_ceiling(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// The delay before retrying after `err` on retry number `attempt` (0-based), or `None` when
/// `err` is not retried (see the module's table). `base` is the backoff base.
pub(super) fn retry_delay(err: &ApiError, attempt: u32, base: Duration) -> Option<Duration> {
    if !err.kind.is_retried() {
        return None;
    }
    let delay = match (err.kind, err.retry_after()) {
        (ErrorKind::RateLimited, Some(wait)) => {
            if wait > MAX_RATE_LIMIT_WAIT {
                // Already paused account-wide by the attempt; don't hang here.
                return None;
            }
            // The limiter is paused until then; no extra local sleep is needed.
            Duration::ZERO
        }
        (ErrorKind::RateLimited, None) => {
            backoff_delay(base, attempt).max(MIN_RATE_LIMITED_BACKOFF)
        }
        (_, Some(wait)) if wait <= MAX_RATE_LIMIT_WAIT => backoff_delay(base, attempt).max(wait),
        _ => backoff_delay(base, attempt),
    };
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bounds() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff_ceiling(base, 0), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(base, 1), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(base, 3), Duration::from_secs(4));
        assert_eq!(backoff_ceiling(base, 6), MAX_BACKOFF);
        assert_eq!(backoff_ceiling(base, 31), MAX_BACKOFF);
        assert_eq!(backoff_ceiling(base, u32::MAX), MAX_BACKOFF);
        assert_eq!(
            backoff_ceiling(Duration::from_secs(u64::MAX / 2), 4),
            MAX_BACKOFF
        );
        for attempt in 0..40 {
            for _ in 0..50 {
                let d = backoff_delay(base, attempt);
                assert!(d <= backoff_ceiling(base, attempt), "{attempt}: {d:?}");
            }
        }
        assert_eq!(backoff_delay(Duration::ZERO, 3), Duration::ZERO);
        // Full jitter really spreads: 200 draws are not all in the top half.
        let low = (0..200)
            .filter(|_| backoff_delay(base, 2) < Duration::from_secs(1))
            .count();
        assert!(low > 0 && low < 200, "{low}");
    }
}
