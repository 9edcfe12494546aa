//! The Cloudflare v4 API client: the request pipeline shared by every operation. A call
//! ([`Client::send`]) waits for the account-wide limiter, sends one attempt, counts it in the
//! per-request stats, traces it at debug level, and retries what the retry policy allows.
//!
//! | part                         | where                 |
//! |------------------------------|-----------------------|
//! | the token type, never printed | [`token`]            |
//! | a request and its answer, URL encoding | [`request`] |
//! | one HTTP attempt, classifying its answer | `attempt` |
//! | what is retried, and when    | [`retry`]             |
//! | the loop, stats, gates, envelope decoding | here     |
//!
//! The operations themselves live in [`super::kv`] (namespaces, keys, values) and
//! [`super::workers`] (scripts, settings, content) and in this file (token verify).
//! A 429's `Retry-After` pauses the whole limiter (all clones, all tasks) rather than only
//! this call.

mod attempt;
pub mod request;
pub mod retry;
pub mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorKind};
use super::limiter::{Limiter, RateLimit};
use super::types::{codes, Envelope, ResultInfo, TokenStatus};
use attempt::excerpt;
pub use request::encode_component;
pub(crate) use request::{segment, Body, FormPart, Request, Response};
pub use retry::{backoff_ceiling, backoff_delay, MAX_BACKOFF, MAX_RATE_LIMIT_WAIT};
pub use token::Secret;

/// Everything a [`Client`] needs. Build with [`ClientConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API root without trailing slash, e.g. `https://api.cloudflare.com/client/v4` or
    /// `http://127.0.0.1:PORT/client/v4`.
    pub base_url: String,
    /// The 32-hex account id used in every `/accounts/{id}/…` path.
    pub account_id: String,
    /// The API token (sent as `Authorization: Bearer …`).
    pub token: Secret,
    /// Account-wide pacing shared by all clones of the client: the budget and the reserve
    /// left to other clients (see [`super::limiter`]).
    pub rate: RateLimit,
    /// Per-request timeout (connect + send + whole response body). Default 30 s.
    pub timeout: Duration,
    /// Retries after the first attempt, for `Retryable` and `RateLimited` only. Default 4.
    pub max_retries: u32,
    /// Backoff base: attempt `n` (0-based) sleeps a uniformly random duration in
    /// `[0, min(backoff_base * 2^n, 30 s)]` ("full jitter"). Default 500 ms.
    pub backoff_base: Duration,
}

impl ClientConfig {
    /// The real API's base URL.
    pub const CLOUDFLARE_BASE_URL: &'static str = "https://api.cloudflare.com/client/v4";

    /// A config with the defaults: Cloudflare's 1200 requests / 5 min less a 10 % reserve,
    /// 30 s timeout, 4 retries, 500 ms backoff base.
    pub fn new(
        base_url: impl Into<String>,
        account_id: impl Into<String>,
        token: impl Into<Secret>,
    ) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            account_id: account_id.into(),
            token: token.into(),
            rate: RateLimit::default(),
            timeout: Duration::from_secs(30),
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
        }
    }
}

/// Request counters, cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Attempts per `(operation, HTTP status)`; status `0` = no response (timeout, reset,
    /// connection refused).
    pub by_status: BTreeMap<(String, u16), u64>,
    /// Every HTTP attempt sent, retries included.
    pub requests: u64,
    /// Attempts that were retries of an earlier failed attempt.
    pub retries: u64,
    /// Calls that failed fast because the account was blocked for too long.
    pub refused_while_blocked: u64,
    /// Total time spent waiting for the limiter (all tasks summed).
    pub limiter_wait: Duration,
}

impl RequestStats {
    /// Attempts of `operation` that ended with `status` (0 = no response).
    pub fn count(&self, operation: &str, status: u16) -> u64 {
        self.by_status
            .get(&(operation.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

/// The Cloudflare v4 API client. Cheap to clone; all clones share one connection pool,
/// one limiter (account-wide) and one set of stats.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("account_id", &self.inner.account_id)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    base_url: String,
    account_id: String,
    auth: HeaderValue,
    limiter: Limiter,
    max_retries: u32,
    backoff_base: Duration,
    stats: Mutex<RequestStats>,
    /// Set when lumierd stops (SIGTERM): no new attempt is sent after it, retries included.
    stopping: std::sync::atomic::AtomicBool,
    /// The User-Agent with this replica's instance id (`lumierd/VERSION (instance ID)`),
    /// once [`Client::set_instance`] named it.
    user_agent: std::sync::OnceLock<reqwest::header::HeaderValue>,
    /// The leader lease's gate: attempts are sent only before this instant, in nanoseconds
    /// after `created` (`u64::MAX`: ungated, the default). See [`Client::gate_until`].
    gate: std::sync::atomic::AtomicU64,
    created: Instant,
}

impl Client {
    /// Builds a client. Fails (`Invalid`) on an unusable base URL, an empty account id, a
    /// token that cannot be an HTTP header value, or a zero rate limit.
    pub fn new(config: ClientConfig) -> Result<Client, ApiError> {
        let invalid = |detail: String| ApiError::new("new_client", ErrorKind::Invalid, detail);
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| invalid(format!("base URL {base_url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "base URL {base_url:?} must be http or https"
            )));
        }
        if config.account_id.is_empty() {
            return Err(invalid("the account id is empty".to_owned()));
        }
        config.rate.validate().map_err(invalid)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.token.expose()))
            .map_err(|_| {
                invalid(
                    "the API token contains characters not allowed in an HTTP header".to_owned(),
                )
            })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("lumierd/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                account_id: config.account_id,
                auth,
                limiter: Limiter::new(config.rate),
                max_retries: config.max_retries,
                backoff_base: config.backoff_base,
                stats: Mutex::new(RequestStats::default()),
                stopping: std::sync::atomic::AtomicBool::new(false),
                user_agent: std::sync::OnceLock::new(),
                gate: std::sync::atomic::AtomicU64::new(u64::MAX),
                created: Instant::now(),
            }),
        })
    }

    /// The account id this client works on.
    pub fn account_id(&self) -> &str {
        &self.inner.account_id
    }

    /// A snapshot of the request counters.
    /// Stops sending: every clone refuses new attempts from now on (calls in flight finish).
    /// For a graceful stop: nothing new is written to the provider after SIGTERM.
    pub fn stop_sending(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Names this replica in the User-Agent of every later request:
    /// `lumierd/VERSION (instance ID)`. Set once; later calls are ignored. An id that cannot
    /// be a header value is left out.
    pub fn set_instance(&self, id: &str) {
        let ua = format!("lumierd/{} (instance {id})", env!("CARGO_PKG_VERSION"));
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&ua) {
            let _ = self.inner.user_agent.set(v);
        }
    }

    /// The leader lease's gate: from `deadline` on, every clone refuses new attempts (as
    /// after [`Client::stop_sending`], but resumable: a later call with a later deadline opens
    /// it again). `None` lifts the gate. The check reads the monotonic clock at each attempt,
    /// so a process frozen past its deadline (SIGSTOP) sends nothing when it thaws, even
    /// before the lease keeper has run again.
    pub fn gate_until(&self, deadline: Option<Instant>) {
        let nanos = match deadline {
            None => u64::MAX,
            Some(d) => u64::try_from(d.saturating_duration_since(self.inner.created).as_nanos())
                .unwrap_or(u64::MAX - 1),
        };
        self.inner
            .gate
            .store(nanos, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the lease gate is open now.
    pub fn gate_open(&self) -> bool {
        let gate = self.inner.gate.load(std::sync::atomic::Ordering::SeqCst);
        gate == u64::MAX
            || u64::try_from(self.inner.created.elapsed().as_nanos()).unwrap_or(u64::MAX) < gate
    }

    /// Whether [`Client::stop_sending`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn refuse_if_stopping(&self, operation: &'static str) -> Result<(), ApiError> {
        if self.is_stopping() {
            return Err(ApiError::new(
                operation,
                ErrorKind::Retryable,
                "lumierd is stopping: not sending",
            ));
        }
        if !self.gate_open() {
            return Err(ApiError::new(
                operation,
                ErrorKind::Retryable,
                "this replica does not hold the leader lease: not sending",
            ));
        }
        Ok(())
    }

    pub fn stats(&self) -> RequestStats {
        let mut stats = self
            .inner
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        stats.limiter_wait = self.inner.limiter.total_wait();
        stats
    }

    /// How much longer the account-wide rate-limit block (from a 429's `Retry-After`) lasts,
    /// if one is in force. (Waiting for the next window of the budget is not a block.)
    pub fn blocked_for(&self) -> Option<Duration> {
        self.inner.limiter.blocked_for()
    }

    /// `/accounts/{account_id}` (encoded), the prefix of almost every path.
    pub(crate) fn account_path(&self) -> String {
        format!("/accounts/{}", encode_component(&self.inner.account_id))
    }

    /// Verifies the token: `GET /accounts/{a}/tokens/verify` (account-owned tokens) first; if
    /// that route is missing (NotFound / 7003) or rejects the token as an account token
    /// (Auth, e.g. code 1000 or 10000), `GET /user/tokens/verify` (user-owned tokens).
    /// When both fail, the more telling error is returned: the user endpoint's if the account
    /// endpoint was merely missing, else the account endpoint's.
    pub async fn verify_token(&self) -> Result<TokenStatus, ApiError> {
        let account = Request::new(
            "verify_token",
            Method::GET,
            format!("{}/tokens/verify", self.account_path()),
        );
        let first = match self.call::<TokenStatus>(account).await {
            Ok(status) => return Ok(status),
            Err(e) => e,
        };
        let route_missing = first.kind == ErrorKind::NotFound || first.has_code(codes::NO_ROUTE);
        if !(route_missing || first.kind == ErrorKind::Auth) {
            return Err(first);
        }
        let user = Request::new(
            "verify_token",
            Method::GET,
            "/user/tokens/verify".to_owned(),
        );
        match self.call::<TokenStatus>(user).await {
            Ok(status) => Ok(status),
            Err(second) if route_missing => Err(second),
            Err(_) => Err(first),
        }
    }

    /// Sends `req` and decodes the envelope's `result`, which must be present.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: Request) -> Result<T, ApiError> {
        let operation = req.operation;
        let (result, _) = self.call_envelope::<T>(req).await?;
        result.ok_or_else(|| {
            ApiError::new(
                operation,
                ErrorKind::Invalid,
                "response envelope has no result",
            )
        })
    }

    /// Sends `req` and decodes the envelope, returning `(result, result_info)`.
    pub(crate) async fn call_envelope<T: DeserializeOwned>(
        &self,
        req: Request,
    ) -> Result<(Option<T>, Option<ResultInfo>), ApiError> {
        let operation = req.operation;
        let resp = self.send(req).await?;
        if resp.body.is_empty() || resp.status == 204 {
            return Ok((None, None));
        }
        let env: Envelope<T> = serde_json::from_slice(&resp.body).map_err(|e| {
            ApiError::new(
                operation,
                ErrorKind::Invalid,
                format!(
                    "undecodable response body (HTTP {}): {e}; body starts {:?}",
                    resp.status,
                    excerpt(&resp.body)
                ),
            )
        })?;
        // `send` already rejected `success: false`; checked again for safety.
        if !env.success {
            return Err(ApiError::from_response(
                operation,
                resp.status,
                env.errors,
                "success: false",
                None,
            ));
        }
        Ok((env.result, env.result_info))
    }

    /// Sends `req` with limiter, timeout and retries. Returns the 2xx response, or the
    /// classified error of the last attempt. For envelope requests a 2xx `success:false`
    /// answer is an error too (classified by its codes, retried if retryable).
    pub(crate) async fn send(&self, req: Request) -> Result<Response, ApiError> {
        let url = self.url(&req);
        let mut attempt: u32 = 0;
        loop {
            let mut err = match self.paced_attempt(&req, &url, attempt).await? {
                Ok(resp) => return Ok(resp),
                Err(err) => err,
            };
            err.attempts = attempt + 1;
            if attempt >= self.inner.max_retries {
                return Err(err);
            }
            let Some(delay) = retry::retry_delay(&err, attempt, self.inner.backoff_base) else {
                return Err(err);
            };
            tracing::debug!(
                operation = req.operation,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "retrying cloudflare api request"
            );
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            attempt += 1;
        }
    }

    /// Attempt number `attempt` (0-based) of `req`, paced by the limiter and counted in the
    /// stats. The outer error is a refusal to send (stopping, lease gate closed, account
    /// blocked for longer than [`MAX_RATE_LIMIT_WAIT`]); the inner result is the attempt's.
    async fn paced_attempt(
        &self,
        req: &Request,
        url: &str,
        attempt: u32,
    ) -> Result<Result<Response, ApiError>, ApiError> {
        self.refuse_if_stopping(req.operation)?;
        let permit = match self.inner.limiter.acquire(MAX_RATE_LIMIT_WAIT).await {
            Ok(permit) => permit,
            Err(blocked) => {
                self.bump(|s| s.refused_while_blocked += 1);
                return Err(ApiError::new(
                    req.operation,
                    ErrorKind::RateLimited,
                    "the account is blocked by the API rate limit; not sending",
                )
                .with_retry_after(Some(blocked)));
            }
        };
        // Again: stopped while waiting for the budget (the permit goes back unused).
        self.refuse_if_stopping(req.operation)?;
        let started = Instant::now();
        let (outcome, quota) = self.attempt(req, url).await;
        permit.answered(quota);
        let elapsed = started.elapsed();
        let status = match &outcome {
            Ok(resp) => resp.status,
            Err(e) => e.status.unwrap_or(0),
        };
        tracing::debug!(
            method = %req.method,
            operation = req.operation,
            status,
            attempt,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "cloudflare api request"
        );
        self.bump(|s| {
            s.requests += 1;
            if attempt > 0 {
                s.retries += 1;
            }
            *s.by_status
                .entry((req.operation.to_owned(), status))
                .or_insert(0) += 1;
        });
        Ok(outcome)
    }

    fn url(&self, req: &Request) -> String {
        let mut url = format!("{}{}", self.inner.base_url, req.path);
        for (i, (name, value)) in req.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            url.push_str(&encode_component(value));
        }
        url
    }

    fn bump(&self, f: impl FnOnce(&mut RequestStats)) {
        let mut stats = self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("super-secret-token");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        let config = ClientConfig::new("http://127.0.0.1:1/client/v4", "acc", "super-secret-token");
        let dbg = format!("{config:?}");
        assert!(!dbg.contains("super-secret-token"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        let client = Client::new(config).expect("client");
        assert!(!format!("{client:?}").contains("super-secret-token"));
    }

    #[test]
    fn new_validates_config() {
        let ok = ClientConfig::new("http://127.0.0.1:9/client/v4/", "acc", "t");
        let c = Client::new(ok.clone()).expect("valid");
        assert_eq!(c.account_id(), "acc");
        assert_eq!(c.inner.base_url, "http://127.0.0.1:9/client/v4");
        let mut bad = ok.clone();
        bad.base_url = "not a url".into();
        assert_eq!(
            Client::new(bad).map(|_| ()).unwrap_err().kind,
            ErrorKind::Invalid
        );
        let mut bad = ok.clone();
        bad.account_id = String::new();
        assert!(Client::new(bad).is_err());
        let mut bad = ok.clone();
        bad.token = Secret::new("line\nbreak-secret");
        let err = Client::new(bad).map(|_| ()).unwrap_err();
        assert!(!err.to_string().contains("break-secret"), "{err}");
        let mut bad = ok;
        bad.rate.reserve_percent = 100;
        assert!(Client::new(bad).is_err());
    }

    #[test]
    fn url_building() {
        let c = Client::new(ClientConfig::new("http://h/client/v4", "a b", "t")).expect("client");
        assert_eq!(c.account_path(), "/accounts/a%20b");
        let req = Request::new("op", Method::GET, "/x/y".into())
            .query("prefix", "a&b=c")
            .query("limit", "10");
        assert_eq!(
            c.url(&req),
            "http://h/client/v4/x/y?prefix=a%26b%3Dc&limit=10"
        );
    }
}
