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
//!
//! | part | where |
//! | --- | --- |
//! | the configured budget and reserve | [`budget`] |
//! | reading the API's `Ratelimit` headers | [`quota`] |
//! | the window model (pure, time passed in) | [`pacer`] |
//! | the gate every request passes: sleeps, fails fast on a long block | here ([`Limiter`]) |

pub mod budget;
pub(crate) mod pacer;
pub mod quota;

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use budget::{Budget, RateLimit};
pub(crate) use pacer::{Pacer, Take};
pub use quota::Quota;

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

/// Builders the limiter's tests share.
#[cfg(test)]
pub(super) mod fixtures {
    use std::time::Duration;

    use super::{Budget, Quota, RateLimit};

    pub(crate) fn limit(requests: u32, window_secs: u64, reserve_percent: u8) -> RateLimit {
        RateLimit {
            budget: Some(Budget {
                requests,
                window: Duration::from_secs(window_secs),
            }),
            reserve_percent,
        }
    }

    pub(crate) fn quota(remaining: u32, reset_secs: u64, q: u32, w: u64) -> Option<Quota> {
        Some(Quota {
            remaining,
            reset: Duration::from_secs(reset_secs),
            policy: Some(Budget {
                requests: q,
                window: Duration::from_secs(w),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{limit, quota};
    use super::*;

    const S: Duration = Duration::from_secs(1);

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
