//! How a client paces itself, as configured: its own [`Budget`] (requests per window,
//! `--api-budget N/DURATION`) and the share of the API's quota it leaves to the token's other
//! clients ([`RateLimit::reserve_percent`]).

use std::time::Duration;

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
    pub(super) fn reserve_of(&self, quota: u32) -> u32 {
        let r = u64::from(quota) * u64::from(self.reserve_percent);
        u32::try_from(r.div_ceil(100)).unwrap_or(u32::MAX)
    }

    /// What we may send per window of our own budget: the budget less the reserve.
    pub fn allowance(&self) -> Option<u32> {
        self.budget
            .map(|b| b.requests.saturating_sub(self.reserve_of(b.requests)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::limiter::fixtures::limit;

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
}
