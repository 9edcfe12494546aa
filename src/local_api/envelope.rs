//! The v4 response envelope on the server side: success bodies and the one error type that
//! every handler returns, rendered as `{success:false, errors:[{code,message}], messages:[],
//! result:null}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cloudflare::types::{codes, ApiMessage, Envelope, ResultInfo};

/// Code used for bodies the server refuses to read (too large, unreadable).
pub const PAYLOAD_CODE: u32 = 10026;

/// An API error as the real service reports it: an HTTP status plus one `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    /// Extra response headers (e.g. `Retry-After` on 429).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 with code 10021 — the generic "validation failed" answer.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::VALIDATION, message)
    }

    /// 500 with code 10002 — "Unexpected internal server error".
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 10002, message)
    }

    /// 404 with code 7003 for a path that no route serves.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NO_ROUTE,
            "No route for the URI",
        )
    }

    /// 403 with code 10000, for a bad/missing token or an account the token can't access.
    pub fn auth() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            codes::AUTH_ERROR,
            "Authentication error",
        )
    }

    pub fn namespace_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::NAMESPACE_NOT_FOUND,
            "namespace not found",
        )
    }

    pub fn key_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::KEY_NOT_FOUND,
            "get: 'key not found'",
        )
    }

    pub fn script_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            codes::SCRIPT_NOT_FOUND,
            "workers.api.error.script_not_found",
        )
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body: Envelope<()> = Envelope {
            success: false,
            errors: vec![ApiMessage {
                code: self.code,
                message: self.message,
            }],
            messages: Vec::new(),
            result: None,
            result_info: None,
        };
        let mut response = (self.status, json_body(&body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The result type of every handler.
pub type ApiResult = Result<Response, ApiError>;

/// `200 {success:true, errors:[], messages:[], result}`.
pub fn ok<T: Serialize>(result: T) -> ApiResult {
    Ok(envelope(Some(result), None))
}

/// `200` with `result: null` (value PUT/DELETE, namespace DELETE).
pub fn ok_null() -> ApiResult {
    Ok(envelope::<()>(None, None))
}

/// `200` with a `result_info` (list endpoints).
pub fn ok_list<T: Serialize>(result: T, info: ResultInfo) -> ApiResult {
    Ok(envelope(Some(result), Some(info)))
}

fn envelope<T: Serialize>(result: Option<T>, result_info: Option<ResultInfo>) -> Response {
    let body = Envelope {
        success: true,
        errors: Vec::new(),
        messages: Vec::new(),
        result,
        result_info,
    };
    (StatusCode::OK, json_body(&body)).into_response()
}

/// Serializes to a JSON body with `Content-Type: application/json`. Serialization of our own
/// types cannot fail in practice; if it ever does, the answer is a 500 envelope written by hand.
fn json_body<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            bytes,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            r#"{"success":false,"errors":[{"code":10002,"message":"serialization failed"}],"messages":[],"result":null}"#,
        )
            .into_response(),
    }
}

/// Parses a JSON request body, answering 400/10021 with the parser's message on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("could not parse request body: {e}")))
}
