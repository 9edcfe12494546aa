//! The request pipeline shared by every operation: URL building, auth, the account-wide
//! limiter, timeouts, bounded retries with full-jitter backoff, envelope decoding, error
//! classification, per-request stats and debug tracing.
//!
//! The operations themselves live in [`super::kv`] (namespaces, keys, values) and
//! [`super::workers`] (scripts, settings, content) and in this file (token verify).
//!
//! Retry policy: only [`ErrorKind::Retryable`] (5xx, 408, timeouts, connection errors and
//! resets) and [`ErrorKind::RateLimited`] (429 / code 971) are retried, at most
//! `max_retries` times. Note that this includes non-idempotent calls: a
//! `create_namespace` POST that timed out may have been applied; its retry then fails with
//! `AlreadyExists` (10014), which the controller resolves by adopting the namespace by
//! title. A 429's `Retry-After` pauses the whole limiter (all clones, all tasks) rather than
//! only this call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::error::{parse_retry_after, ApiError, ErrorKind};
use super::limiter::{Limiter, Quota, RateLimit};
use super::types::{codes, ApiMessage, Envelope, ResultInfo, TokenStatus};

/// Backoff never sleeps longer than this between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A `Retry-After` (or account-wide block) longer than this is not slept through inside a
/// call: the call fails at once with [`ErrorKind::RateLimited`] and
/// [`ApiError::retry_after`] set, so the controller can requeue instead of hanging.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// A 429 without `Retry-After` is never retried sooner than this (as wrangler does).
const MIN_RATE_LIMITED_BACKOFF: Duration = Duration::from_secs(1);

/// How much of an undecodable body goes into an error message.
const BODY_EXCERPT: usize = 200;

/// An API token. `Debug` and `Display` print `[redacted]`; the value only leaves this type
/// as the `Authorization` header (marked sensitive).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Secret {
        Secret(token.into())
    }

    /// The token itself. Only for building the `Authorization` header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the token is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(token: String) -> Secret {
        Secret(token)
    }
}

impl From<&str> for Secret {
    fn from(token: &str) -> Secret {
        Secret(token.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

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

/// A request body that can be rebuilt for every attempt.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(Bytes),
    Raw {
        content_type: &'static str,
        data: Bytes,
    },
    Multipart(Vec<FormPart>),
}

/// One part of a multipart request body.
#[derive(Debug, Clone)]
pub(crate) struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// One API call, before retries.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub operation: &'static str,
    pub method: Method,
    /// Path below the base URL, already percent-encoded, starting with `/`.
    pub path: String,
    /// Query parameters (names are literals; values are percent-encoded here).
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
    /// Whether a 2xx answer is a JSON envelope (so `success:false` must be checked);
    /// false for raw answers (KV value GET, script content).
    pub envelope: bool,
}

impl Request {
    pub(crate) fn new(operation: &'static str, method: Method, path: String) -> Request {
        Request {
            operation,
            method,
            path,
            query: Vec::new(),
            body: Body::None,
            envelope: true,
        }
    }

    pub(crate) fn query(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.query.push((name, value.into()));
        self
    }

    pub(crate) fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Request, ApiError> {
        let data = serde_json::to_vec(value).map_err(|e| {
            ApiError::new(
                self.operation,
                ErrorKind::Invalid,
                format!("cannot encode request: {e}"),
            )
        })?;
        self.body = Body::Json(Bytes::from(data));
        Ok(self)
    }

    pub(crate) fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    pub(crate) fn raw(mut self) -> Request {
        self.envelope = false;
        self
    }
}

/// A successful (2xx) response, fully read.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// so the result is safe as one path segment or one query value.
pub fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes one path segment, rejecting values that would change the route: empty, `.` and
/// `..` (URL parsers collapse those even when percent-encoded).
pub(crate) fn segment(
    operation: &'static str,
    what: &str,
    value: &str,
) -> Result<String, ApiError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(ApiError::new(
            operation,
            ErrorKind::Invalid,
            format!("{what} {value:?} cannot be used in a URL path"),
        ));
    }
    Ok(encode_component(value))
}

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
        let inner = &self.inner;
        let url = self.url(&req);
        let mut attempt: u32 = 0;
        loop {
            self.refuse_if_stopping(req.operation)?;
            let permit = match inner.limiter.acquire(MAX_RATE_LIMIT_WAIT).await {
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
            let (outcome, quota) = self.attempt(&req, &url).await;
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
            let mut err = match outcome {
                Ok(resp) => return Ok(resp),
                Err(err) => err,
            };
            err.attempts = attempt + 1;
            if !err.kind.is_retried() || attempt >= inner.max_retries {
                return Err(err);
            }
            let delay = match (err.kind, err.retry_after()) {
                (ErrorKind::RateLimited, Some(wait)) => {
                    if wait > MAX_RATE_LIMIT_WAIT {
                        // Already paused account-wide in `attempt`; don't hang here.
                        return Err(err);
                    }
                    // The limiter is paused until then; no extra local sleep is needed.
                    Duration::ZERO
                }
                (ErrorKind::RateLimited, None) => {
                    backoff_delay(inner.backoff_base, attempt).max(MIN_RATE_LIMITED_BACKOFF)
                }
                (_, Some(wait)) if wait <= MAX_RATE_LIMIT_WAIT => {
                    backoff_delay(inner.backoff_base, attempt).max(wait)
                }
                _ => backoff_delay(inner.backoff_base, attempt),
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

    /// One HTTP attempt, with what its answer's rate-limit headers reported (for the pacer).
    async fn attempt(
        &self,
        req: &Request,
        url: &str,
    ) -> (Result<Response, ApiError>, Option<Quota>) {
        let mut quota = None;
        let outcome = self.attempt_inner(req, url, &mut quota).await;
        (outcome, quota)
    }

    /// Sends, reads the whole body, notes the rate-limit headers in `quota`, applies a 429's
    /// `Retry-After`, classifies.
    async fn attempt_inner(
        &self,
        req: &Request,
        url: &str,
        quota: &mut Option<Quota>,
    ) -> Result<Response, ApiError> {
        let inner = &self.inner;
        let mut builder = inner
            .http
            .request(req.method.clone(), url)
            .header(AUTHORIZATION, inner.auth.clone());
        if let Some(ua) = inner.user_agent.get() {
            builder = builder.header(reqwest::header::USER_AGENT, ua.clone());
        }
        builder = match &req.body {
            Body::None => builder,
            Body::Json(data) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(data.clone()),
            Body::Raw { content_type, data } => builder
                .header(CONTENT_TYPE, *content_type)
                .body(data.clone()),
            Body::Multipart(parts) => builder.multipart(build_form(req.operation, parts)?),
        };
        let resp = builder
            .send()
            .await
            .map_err(|e| transport_error(req.operation, &req.method, &req.path, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_error(req.operation, &req.method, &req.path, e))?;

        // `Ratelimit` / `Ratelimit-Policy`: where the account stands in the API's window.
        *quota = headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| {
                let policy = headers
                    .get("ratelimit-policy")
                    .and_then(|v| v.to_str().ok());
                Quota::parse(r, policy)
            });
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));

        if (200..300).contains(&status) {
            if req.envelope && !body.is_empty() {
                if let Ok(head) = serde_json::from_slice::<EnvelopeHead>(&body) {
                    if !head.success {
                        let err = ApiError::from_response(
                            req.operation,
                            status,
                            head.errors,
                            "success: false",
                            retry_after,
                        );
                        // A 2xx success:false is never "retryable by status"; only its codes
                        // can make it so (971).
                        if err.kind == ErrorKind::RateLimited {
                            inner
                                .limiter
                                .pause_for(retry_after.unwrap_or(MIN_RATE_LIMITED_BACKOFF));
                        }
                        return Err(err);
                    }
                }
            }
            return Ok(Response {
                status,
                headers,
                body,
            });
        }

        let (errors, detail) = match serde_json::from_slice::<EnvelopeHead>(&body) {
            Ok(head) if !head.errors.is_empty() => (head.errors, String::new()),
            Ok(_) => (Vec::new(), String::new()),
            Err(_) if body.is_empty() => (Vec::new(), String::new()),
            Err(_) => (
                Vec::new(),
                format!("non-envelope error body: {:?}", excerpt(&body)),
            ),
        };
        let err = ApiError::from_response(req.operation, status, errors, detail, retry_after);
        if err.kind == ErrorKind::RateLimited {
            if let Some(wait) = retry_after {
                inner.limiter.pause_for(wait);
            }
        }
        Err(err)
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

/// The parts of an envelope needed to detect failure, whatever `result` holds.
#[derive(serde::Deserialize)]
struct EnvelopeHead {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
}

fn build_form(
    operation: &'static str,
    parts: &[FormPart],
) -> Result<reqwest::multipart::Form, ApiError> {
    let mut form = reqwest::multipart::Form::new();
    for p in parts {
        let mut part = reqwest::multipart::Part::bytes(p.data.to_vec());
        if let Some(filename) = &p.filename {
            part = part.file_name(filename.clone());
        }
        if let Some(ct) = &p.content_type {
            part = part.mime_str(ct).map_err(|e| {
                ApiError::new(
                    operation,
                    ErrorKind::Invalid,
                    format!("part {:?} has an invalid content type {ct:?}: {e}", p.name),
                )
            })?;
        }
        form = form.part(p.name.clone(), part);
    }
    Ok(form)
}

/// Maps a reqwest error (no usable response) to `Retryable`, except request-building errors
/// (`Invalid`). The message names the method and path but never the token or body.
fn transport_error(
    operation: &'static str,
    method: &Method,
    path: &str,
    e: reqwest::Error,
) -> ApiError {
    let kind = if e.is_builder() || e.is_redirect() {
        ErrorKind::Invalid
    } else {
        ErrorKind::Retryable
    };
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::new(operation, kind, format!("{method} {path}: {what}: {chain}"))
}

/// A printable excerpt of a body for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]).into_owned();
    if body.len() > BODY_EXCERPT {
        format!("{text}…")
    } else {
        text
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

    #[test]
    fn component_encoding() {
        assert_eq!(encode_component("abc-._~XYZ019"), "abc-._~XYZ019");
        assert_eq!(
            encode_component("a b/c?d#e%f:g!h"),
            "a%20b%2Fc%3Fd%23e%25f%3Ag%21h"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
        assert!(segment("op", "key", "").is_err());
        assert!(segment("op", "key", ".").is_err());
        assert!(segment("op", "key", "..").is_err());
        assert_eq!(segment("op", "key", "...").expect("ok"), "...");
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
