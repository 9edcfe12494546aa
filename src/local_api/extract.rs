//! The request extractors of the route handlers. Each one turns axum's rejection into the
//! API's error envelope, so a malformed request is always answered like the real API does:
//! [`PathParams`] and [`QueryParams`] with 400/10021, [`BodyBytes`] with the body's status
//! (413 for a body too large) and code 10026.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;

use super::envelope::{ApiError, PAYLOAD_CODE};

/// Path parameters; a malformed one (e.g. bad percent-encoding) is a 400/10021 envelope.
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|e| ApiError::validation(e.body_text()))
    }
}

/// Query parameters as a map (the last occurrence of a name wins).
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::validation(e.body_text()))
    }
}

impl QueryParams {
    /// A numeric parameter: `default` when absent, 400/10021 when not a number in `min..=max`.
    pub fn number(&self, name: &str, default: u32, min: u32, max: u32) -> Result<u32, ApiError> {
        match self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::validation(format!(
                    "Invalid {name}: must be an integer between {min} and {max}"
                ))),
            },
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The whole request body; one too large for the server is a 413 envelope.
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|e: BytesRejection| ApiError::new(e.status(), PAYLOAD_CODE, e.body_text()))
    }
}

impl BodyBytes {
    /// Reads a request body outside the extractor position (after a handler looked at the
    /// headers to choose between multipart and a raw body).
    pub async fn read(req: Request) -> Result<BodyBytes, ApiError> {
        <BodyBytes as FromRequest<()>>::from_request(req, &()).await
    }
}
