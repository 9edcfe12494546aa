//! The client's one error type, its classification, and `Retry-After` parsing.
//!
//! Every failed call returns an [`ApiError`] whose [`ErrorKind`] is what the controller branches on:
//!
//! | kind | when (first match wins, top to bottom) |
//! |---|---|
//! | `RateLimited` | HTTP 429, or error code 971 |
//! | `AlreadyExists` | error code 10014 (duplicate namespace title) |
//! | `NotFound` | HTTP 404, or codes 10007 / 10009 / 10013 / 10090 |
//! | `Auth` | HTTP 401 / 403, or codes 10000 / 1000 |
//! | `Retryable` | HTTP 5xx or 408, timeouts, connection errors and resets (no HTTP status) |
//! | `Invalid` | everything else (e.g. 10016, 10021, 10041, 10052, undecodable bodies) |
//!
//! Neither the API token nor any KV value ever appears in an error.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::types::{codes, ApiMessage};

/// What kind of failure an [`ApiError`] is; see the module docs for the exact mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object (namespace, key, script) or route does not exist.
    NotFound,
    /// A namespace with that title already exists (code 10014).
    AlreadyExists,
    /// The token is missing, invalid, expired, or lacks permission.
    Auth,
    /// HTTP 429 / code 971; [`ApiError::retry_after`] says when to come back, if the API said.
    RateLimited,
    /// A transient failure (5xx, timeout, connection error): the same request may succeed later.
    Retryable,
    /// The request was rejected as is (validation, conflicts, bad state) or the answer was unusable.
    Invalid,
}

impl ErrorKind {
    /// Whether the client's retry loop retries this kind (only `Retryable` and `RateLimited`).
    pub fn is_retried(self) -> bool {
        matches!(self, ErrorKind::Retryable | ErrorKind::RateLimited)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Retryable => "transient failure",
            ErrorKind::Invalid => "invalid request or response",
        })
    }
}

/// Classifies a failed response by HTTP status (`None` = no response: timeout, connection error)
/// and the `errors[].code`s of its envelope. See the module docs for the table.
pub fn classify(status: Option<u16>, error_codes: &[u32]) -> ErrorKind {
    let has = |c: u32| error_codes.contains(&c);
    let Some(status) = status else {
        return ErrorKind::Retryable;
    };
    if status == 429 || has(codes::RATE_LIMITED) {
        ErrorKind::RateLimited
    } else if has(codes::DUPLICATE_TITLE) {
        ErrorKind::AlreadyExists
    } else if status == 404
        || has(codes::SCRIPT_NOT_FOUND)
        || has(codes::KEY_NOT_FOUND)
        || has(codes::NAMESPACE_NOT_FOUND)
        || has(SERVICE_NOT_FOUND)
    {
        ErrorKind::NotFound
    } else if status == 401 || status == 403 || has(codes::AUTH_ERROR) || has(codes::INVALID_TOKEN)
    {
        ErrorKind::Auth
    } else if status >= 500 || status == 408 {
        ErrorKind::Retryable
    } else {
        ErrorKind::Invalid
    }
}

/// `workers/services/{name}` not found (wrangler's second not-found code).
const SERVICE_NOT_FOUND: u32 = 10090;

/// A failed Cloudflare API call.
///
/// `Display` renders `"<operation>: <kind> (HTTP <status>): [code] message; [code] message — detail"`,
/// leaving out the parts that are absent. It never contains the token or a KV value.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ApiError {
    /// How the controller should react.
    pub kind: ErrorKind,
    /// The HTTP status of the last attempt; `None` when no response arrived (timeout, reset).
    pub status: Option<u16>,
    /// `errors[]` of the response envelope, when the body had one.
    pub errors: Vec<ApiMessage>,
    /// The client operation, e.g. `"create_namespace"`.
    pub operation: &'static str,
    /// Free-text detail: transport error chain, undecodable body excerpt, validation reason.
    pub detail: String,
    /// How long the API asked us to wait (`Retry-After`, or the remaining account-wide block).
    retry_after: Option<Duration>,
    /// Attempts the client sent for this call (1 = no retry). A retried call's earlier
    /// attempt may have been applied although its answer was lost.
    pub attempts: u32,
}

impl ApiError {
    /// A new error with no HTTP status and no envelope errors (e.g. for client-side validation,
    /// or for fakes in controller tests).
    pub fn new(operation: &'static str, kind: ErrorKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            status: None,
            errors: Vec::new(),
            operation,
            detail: detail.into(),
            retry_after: None,
            attempts: 1,
        }
    }

    /// An error for an HTTP response, classified from its status and envelope errors.
    pub fn from_response(
        operation: &'static str,
        status: u16,
        errors: Vec<ApiMessage>,
        detail: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> ApiError {
        let error_codes: Vec<u32> = errors.iter().map(|e| e.code).collect();
        ApiError {
            kind: classify(Some(status), &error_codes),
            status: Some(status),
            errors,
            operation,
            detail: detail.into(),
            retry_after,
            attempts: 1,
        }
    }

    /// Sets how long the API asked us to wait.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> ApiError {
        self.retry_after = retry_after;
        self
    }

    /// Whether the envelope carried error `code`.
    pub fn has_code(&self, code: u32) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// How long the API asked to wait before the next request (from `Retry-After` on a 429/503,
    /// or the remaining account-wide block when the client refused to send at all).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether this is a `NotFound` error.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    fn render(&self) -> String {
        let mut out = format!("{}: {}", self.operation, self.kind);
        if let Some(status) = self.status {
            out.push_str(&format!(" (HTTP {status})"));
        }
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|e| format!("[{}] {}", e.code, e.message))
                .collect();
            out.push_str(": ");
            out.push_str(&list.join("; "));
        }
        if !self.detail.is_empty() {
            out.push_str(if self.errors.is_empty() {
                ": "
            } else {
                " — "
            });
            out.push_str(&self.detail);
        }
        if let Some(wait) = self.retry_after {
            out.push_str(&format!(" (retry after {} ms)", wait.as_millis()));
        }
        out
    }
}

/// Parses a `Retry-After` header value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date in the past gives zero;
/// anything unparseable gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    // Some servers send fractional seconds; accept them too.
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1e9)));
        }
        return None;
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(code: u32) -> ApiMessage {
        ApiMessage {
            code,
            message: format!("m{code}"),
        }
    }

    #[test]
    fn classification_table() {
        use ErrorKind::*;
        let table: &[(Option<u16>, &[u32], ErrorKind)] = &[
            (Some(404), &[], NotFound),
            (Some(404), &[10009], NotFound),
            (Some(404), &[10013], NotFound),
            (Some(404), &[10007], NotFound),
            (Some(404), &[10090], NotFound),
            (Some(400), &[10013], NotFound),
            (Some(400), &[10014], AlreadyExists),
            (Some(409), &[10014], AlreadyExists),
            (Some(401), &[], Auth),
            (Some(403), &[], Auth),
            (Some(400), &[10000], Auth),
            (Some(400), &[1000], Auth),
            (Some(200), &[1000], Auth),
            (Some(429), &[], RateLimited),
            (Some(429), &[971], RateLimited),
            (Some(400), &[971], RateLimited),
            (Some(500), &[], Retryable),
            (Some(502), &[], Retryable),
            (Some(503), &[10001], Retryable),
            (Some(408), &[], Retryable),
            (None, &[], Retryable),
            (Some(400), &[10016], Invalid),
            (Some(400), &[10021], Invalid),
            (Some(400), &[10041], Invalid),
            (Some(400), &[10052], Invalid),
            (Some(400), &[7003], Invalid),
            (Some(400), &[], Invalid),
            (Some(200), &[10021], Invalid),
            (Some(413), &[10027], Invalid),
        ];
        for (status, codes, want) in table {
            assert_eq!(classify(*status, codes), *want, "{status:?} {codes:?}");
        }
    }

    #[test]
    fn only_rate_limited_and_retryable_are_retried() {
        assert!(ErrorKind::Retryable.is_retried());
        assert!(ErrorKind::RateLimited.is_retried());
        for k in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::Auth,
            ErrorKind::Invalid,
        ] {
            assert!(!k.is_retried(), "{k:?}");
        }
    }

    #[test]
    fn display_format() {
        let e = ApiError::from_response(
            "create_namespace",
            400,
            vec![msg(10014), msg(10021)],
            "",
            None,
        );
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.has_code(10014));
        assert!(!e.has_code(10013));
        assert_eq!(
            e.to_string(),
            "create_namespace: already exists (HTTP 400): [10014] m10014; [10021] m10021"
        );
        let e = ApiError::new("list_keys", ErrorKind::Retryable, "connection reset");
        assert_eq!(
            e.to_string(),
            "list_keys: transient failure: connection reset"
        );
        let e = ApiError::from_response("get_value", 429, vec![msg(971)], "", None)
            .with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.to_string().contains("retry after 2000 ms"));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
