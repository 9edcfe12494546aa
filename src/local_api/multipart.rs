//! `multipart/form-data`: reading request bodies into parts (multer, through axum), and
//! writing response bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, HeaderMap};

use super::envelope::{ApiError, PAYLOAD_CODE};
use crate::cloudflare::types::codes;

/// One part of a multipart body.
#[derive(Debug, Clone)]
pub struct Part {
    /// The form field name (`name=`).
    pub name: Option<String>,
    /// The `filename=`, when the part is a file.
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// True when the request says `Content-Type: multipart/form-data`.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// Reads every part of a `multipart/form-data` request. Not multipart, or a malformed body:
/// 400 with code 10021 (the real API's answer to e.g. a bracket-encoded JS upload).
pub async fn read_parts(req: Request) -> Result<Vec<Part>, ApiError> {
    if !is_multipart(req.headers()) {
        return Err(ApiError::validation(
            "Expected a multipart/form-data request body",
        ));
    }
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::validation(format!("multipart: {}", e.body_text())))?;
    let mut parts = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e)),
        };
        let name = field.name().map(str::to_owned);
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(multipart_error)?;
        parts.push(Part {
            name,
            file_name,
            content_type,
            data,
        });
    }
    Ok(parts)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, PAYLOAD_CODE, e.body_text())
    } else {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            codes::VALIDATION,
            format!("could not parse multipart body: {}", e.body_text()),
        )
    }
}

/// Builds a `multipart/form-data` body; returns (content type with boundary, body).
/// Each part is `(name, content type, bytes)` and is written with `filename = name`.
///
/// Written by hand: reading is multer's (through axum's `Multipart`), but multer only parses,
/// and `reqwest::multipart::Form` renders only into a reqwest request, not a response body.
pub fn write_form(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    use rand::Rng;
    let boundary = format!("----lumierd{:032x}", rand::thread_rng().gen::<u128>());
    let mut body = Vec::new();
    for (name, content_type, data) in parts {
        let name = name.replace(['"', '\r', '\n'], "_");
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
