//! Authentication of requests (see the module doc of [`super`] for the decisions).

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::envelope::ApiError;

const PREFIX: &str = "/client/v4";

/// Checks the bearer token and the path's account id.
///
/// * Paths outside `/client/v4` and under `/client/v4/user/` pass (the router answers them:
///   7003, or the user token verify answer).
/// * Otherwise `Authorization: Bearer <token>` must equal `token`, and a path
///   `/client/v4/accounts/{a}/…` must name `account_id`; else 403 code 10000.
pub fn check(
    token: &str,
    account_id: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Ok(());
    };
    if rest.starts_with("/user/") {
        return Ok(());
    }
    if !bearer_matches(token, headers) {
        return Err(ApiError::auth());
    }
    if let Some(after) = rest.strip_prefix("/accounts/") {
        let account = after.split('/').next().unwrap_or("");
        if !account.eq_ignore_ascii_case(account_id) {
            return Err(ApiError::auth());
        }
    }
    Ok(())
}

/// True when the request carries `Authorization: Bearer <token>` (compared in constant time).
pub fn bearer_matches(token: &str, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token's public id (32 hex): a hash, so the token itself never appears in answers.
pub fn token_id(token: &str) -> String {
    let digest = Sha256::digest(format!("lumierd-token-id:{token}").as_bytes());
    hex::encode(&digest[..16])
}

/// The rate-limit bucket of a path: its account id, or `user` for everything else.
pub fn rate_limit_bucket(path: &str) -> &str {
    path.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix("/accounts/"))
        .and_then(|after| after.split('/').next())
        .filter(|a| !a.is_empty())
        .unwrap_or("user")
}
