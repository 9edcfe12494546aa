//! One API call as the endpoints describe it ([`Request`]: operation name, method, encoded
//! path and query, a body that can be rebuilt for every attempt) and the 2xx answer it gets
//! ([`Response`]). Path segments and query values are percent-encoded here, and a segment that
//! would change the route (empty, `.`, `..`) is refused as `Invalid` before anything is sent.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Method;

use crate::cloudflare::error::{ApiError, ErrorKind};

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

/// Builds the multipart form of a [`Body::Multipart`]; a part's unusable content type is
/// `Invalid`.
pub(super) fn build_form(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
