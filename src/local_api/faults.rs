//! Fault injection knobs (latency, 500s, dropped connections, answers lost after a write is
//! applied) and the rate-limit model.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};

use super::envelope::ApiError;
use crate::cloudflare::types::codes;

/// Fault knobs, changeable at runtime with [`super::LocalApi::set_faults`].
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Added to every request before it is handled.
    pub latency: Duration,
    /// Fraction (0..=1) of requests answered `500` with code 10002.
    pub error_rate: f64,
    /// Fraction (0..=1) of requests whose connection is closed without any response.
    pub reset_rate: f64,
    /// Fraction (0..=1) of write requests (POST, PUT, PATCH, DELETE) that are handled (their
    /// change is made and logged) and whose connection is then closed without the answer: the
    /// client sees a reset after the change happened ("applied, answer lost").
    pub applied_lost_rate: f64,
    /// When set, the account's request budget per fixed window.
    pub rate_limit: Option<RateLimitModel>,
}

/// `requests` per `window`, counted per [`Bucket`] over fixed windows (the first counted request
/// opens a window). Beyond the budget every request is answered `429`, code 971, with
/// `Retry-After` = whole seconds until the window ends (rounded up, at least 1), until it ends.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitModel {
    pub requests: u32,
    pub window: Duration,
}

/// What the fault layer decided for one request.
pub enum Verdict {
    /// Handle the request; attach these headers (`Ratelimit`, `Ratelimit-Policy`) to the answer.
    Proceed(Vec<(HeaderName, HeaderValue)>),
    /// Answer with this error (500 fault or 429) without handling the request.
    Reject(ApiError),
    /// Close the connection without answering.
    Drop,
}

/// Who a request's budget is counted against. There are exactly two, so the limiter's memory
/// is fixed whatever the requests say: paths naming another account (answered 403 by auth)
/// and paths outside `/client/v4` are counted against nobody (`None` from the caller), so
/// that unknown accounts and tokens leave nothing behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `/client/v4/accounts/{the served account}/…`.
    Account,
    /// `/client/v4/user/…` (token verify).
    User,
}

impl Bucket {
    fn index(self) -> usize {
        match self {
            Bucket::Account => 0,
            Bucket::User => 1,
        }
    }
}

/// Decides the fault for one request. `bucket` names the rate-limit bucket; `None` is never
/// rate limited (see [`Bucket`]).
pub fn decide(faults: &Faults, limiter: &RateLimiter, bucket: Option<Bucket>) -> Verdict {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    if faults.reset_rate > 0.0 && rng.gen::<f64>() < faults.reset_rate {
        return Verdict::Drop;
    }
    if faults.error_rate > 0.0 && rng.gen::<f64>() < faults.error_rate {
        return Verdict::Reject(ApiError::internal("Internal server error (injected fault)"));
    }
    match (faults.rate_limit, bucket) {
        (Some(model), Some(bucket)) => limiter.check(model, bucket, Instant::now()),
        _ => Verdict::Proceed(Vec::new()),
    }
}

/// Whether the answer to this request is to be lost once it is handled (see
/// [`Faults::applied_lost_rate`]). Never for reads: losing a read's answer is a plain reset.
pub fn lose_answer(faults: &Faults, method: &Method) -> bool {
    use rand::Rng;
    let write = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    write
        && faults.applied_lost_rate > 0.0
        && rand::thread_rng().gen::<f64>() < faults.applied_lost_rate
}

/// Fixed-window counters, one per [`Bucket`] (fixed size: nothing grows per request).
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<[Option<Window>; 2]>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    used: u32,
}

impl RateLimiter {
    /// Forgets every window (used when the model changes).
    pub fn reset(&self) {
        *self.windows.lock().unwrap_or_else(|p| p.into_inner()) = [None, None];
    }

    fn check(&self, model: RateLimitModel, bucket: Bucket, now: Instant) -> Verdict {
        let window_len = model.window.max(Duration::from_millis(1));
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows[bucket.index()].get_or_insert(Window {
            start: now,
            used: 0,
        });
        if now.duration_since(w.start) >= window_len {
            // Advance by whole windows so they stay fixed.
            let elapsed = now.duration_since(w.start).as_nanos();
            let len = window_len.as_nanos();
            let whole = elapsed / len * len;
            w.start += Duration::from_nanos(u64::try_from(whole).unwrap_or(u64::MAX));
            w.used = 0;
        }
        let until_end = (w.start + window_len).saturating_duration_since(now);
        let reset_secs = ceil_secs(until_end).max(1);
        let policy = format!(
            "\"default\";q={};w={}",
            model.requests,
            ceil_secs(window_len).max(1)
        );
        if w.used >= model.requests {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                "Please wait and consider throttling your request speed",
            );
            for (name, value) in [
                ("retry-after", reset_secs.to_string()),
                ("ratelimit", format!("\"default\";r=0;t={reset_secs}")),
                ("ratelimit-policy", policy),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    err = err.with_header(HeaderName::from_static(name), v);
                }
            }
            return Verdict::Reject(err);
        }
        w.used += 1;
        let remaining = model.requests - w.used;
        let mut headers = Vec::new();
        for (name, value) in [
            (
                "ratelimit",
                format!("\"default\";r={remaining};t={reset_secs}"),
            ),
            ("ratelimit-policy", policy),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.push((HeaderName::from_static(name), v));
            }
        }
        Verdict::Proceed(headers)
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs();
    if d.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window_blocks_then_reopens() {
        let limiter = RateLimiter::default();
        let model = RateLimitModel {
            requests: 2,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        assert!(matches!(
            limiter.check(model, Bucket::Account, t0),
            Verdict::Proceed(_)
        ));
        assert!(matches!(
            limiter.check(model, Bucket::Account, t0),
            Verdict::Proceed(_)
        ));
        match limiter.check(model, Bucket::Account, t0 + Duration::from_millis(2500)) {
            Verdict::Reject(e) => {
                assert_eq!(e.code, 971);
                let retry = e
                    .headers
                    .iter()
                    .find(|(n, _)| n == "retry-after")
                    .map(|(_, v)| v.to_str().unwrap_or("").to_owned());
                assert_eq!(retry.as_deref(), Some("8"));
            }
            _ => panic!("expected 429"),
        }
        // Another bucket is independent.
        assert!(matches!(
            limiter.check(model, Bucket::User, t0),
            Verdict::Proceed(_)
        ));
        // The next window opens at t0 + 10s.
        assert!(matches!(
            limiter.check(model, Bucket::Account, t0 + Duration::from_secs(10)),
            Verdict::Proceed(_)
        ));
    }
}
