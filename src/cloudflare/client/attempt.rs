//! One HTTP attempt and how its answer is read: the request is built (auth, User-Agent,
//! body), the whole body is read, the rate-limit headers are noted for the pacer, a 429's (or
//! code 971's) `Retry-After` pauses the account-wide limiter, and the outcome is classified:
//!
//! | answer                                   | outcome                                      |
//! |------------------------------------------|----------------------------------------------|
//! | no response (timeout, reset, refused)    | `Retryable` (`Invalid` if the request cannot be built) |
//! | 2xx, envelope with `success: false`      | error classified by its codes                |
//! | 2xx otherwise                            | the [`Response`]                             |
//! | non-2xx                                  | error classified by status and codes         |
//!
//! Error messages name the method and path, never the token or the body sent.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;

use super::request::{build_form, Body, Request, Response};
use super::retry::MIN_RATE_LIMITED_BACKOFF;
use super::Client;
use crate::cloudflare::error::{parse_retry_after, ApiError, ErrorKind};
use crate::cloudflare::limiter::Quota;
use crate::cloudflare::types::ApiMessage;

/// How much of an undecodable body goes into an error message.
const BODY_EXCERPT: usize = 200;

impl Client {
    /// One HTTP attempt, with what its answer's rate-limit headers reported (for the pacer).
    pub(super) async fn attempt(
        &self,
        req: &Request,
        url: &str,
    ) -> (Result<Response, ApiError>, Option<Quota>) {
        let (status, headers, body) = match self.exchange(req, url).await {
            Ok(answer) => answer,
            Err(err) => return (Err(err), None),
        };
        let quota = quota_of(&headers);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let outcome = if (200..300).contains(&status) {
            self.accept(req, status, headers, body, retry_after)
        } else {
            Err(self.reject(req, status, &body, retry_after))
        };
        (outcome, quota)
    }

    /// Sends the request and reads the whole answer: `(status, headers, body)`.
    async fn exchange(
        &self,
        req: &Request,
        url: &str,
    ) -> Result<(u16, HeaderMap, Bytes), ApiError> {
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
        Ok((status, headers, body))
    }

    /// A 2xx answer: the response, unless it is an envelope with `success: false`.
    fn accept(
        &self,
        req: &Request,
        status: u16,
        headers: HeaderMap,
        body: Bytes,
        retry_after: Option<Duration>,
    ) -> Result<Response, ApiError> {
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
                        self.inner
                            .limiter
                            .pause_for(retry_after.unwrap_or(MIN_RATE_LIMITED_BACKOFF));
                    }
                    return Err(err);
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A non-2xx answer, classified; a 429 with `Retry-After` pauses the limiter.
    fn reject(
        &self,
        req: &Request,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> ApiError {
        let (errors, detail) = match serde_json::from_slice::<EnvelopeHead>(body) {
            Ok(head) if !head.errors.is_empty() => (head.errors, String::new()),
            Ok(_) => (Vec::new(), String::new()),
            Err(_) if body.is_empty() => (Vec::new(), String::new()),
            Err(_) => (
                Vec::new(),
                format!("non-envelope error body: {:?}", excerpt(body)),
            ),
        };
        let err = ApiError::from_response(req.operation, status, errors, detail, retry_after);
        if err.kind == ErrorKind::RateLimited {
            if let Some(wait) = retry_after {
                self.inner.limiter.pause_for(wait);
            }
        }
        err
    }
}

/// `Ratelimit` / `Ratelimit-Policy`: where the account stands in the API's window.
fn quota_of(headers: &HeaderMap) -> Option<Quota> {
    headers
        .get("ratelimit")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            let policy = headers
                .get("ratelimit-policy")
                .and_then(|v| v.to_str().ok());
            Quota::parse(r, policy)
        })
}

/// The parts of an envelope needed to detect failure, whatever `result` holds.
#[derive(serde::Deserialize)]
struct EnvelopeHead {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
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
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT)]).into_owned();
    if body.len() > BODY_EXCERPT {
        format!("{text}…")
    } else {
        text
    }
}
