//! Authentication of requests (see the module doc of [`super`] for the decisions).

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::envelope::ApiError;
use super::faults::Bucket;

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

/// The rate-limit bucket of a path: [`Bucket::Account`] for the served account,
/// [`Bucket::User`] for `/client/v4/user/…`, and none for anything else (another account's
/// path is refused by [`check`]; counting it would keep state per unknown account).
pub fn rate_limit_bucket(path: &str, account_id: &str) -> Option<Bucket> {
    let rest = path.strip_prefix(PREFIX)?;
    if rest.starts_with("/user/") {
        return Some(Bucket::User);
    }
    let account = rest.strip_prefix("/accounts/")?.split('/').next()?;
    account
        .eq_ignore_ascii_case(account_id)
        .then_some(Bucket::Account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_served_account_and_the_user_routes_have_a_bucket() {
        let me = "1ae1d0c0ffee00000000000000000001";
        let path = |a: &str| format!("/client/v4/accounts/{a}/storage/kv/namespaces");
        assert_eq!(rate_limit_bucket(&path(me), me), Some(Bucket::Account));
        assert_eq!(
            rate_limit_bucket(&path(&me.to_ascii_uppercase()), me),
            Some(Bucket::Account)
        );
        assert_eq!(
            rate_limit_bucket(&path("ffffffffffffffffffffffffffffffff"), me),
            None
        );
        assert_eq!(
            rate_limit_bucket("/client/v4/user/tokens/verify", me),
            Some(Bucket::User)
        );
        assert_eq!(rate_limit_bucket("/elsewhere", me), None);
        assert_eq!(rate_limit_bucket("/client/v4/accounts", me), None);
    }
}
