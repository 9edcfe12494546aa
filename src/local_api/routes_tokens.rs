//! Token verify. The configured token is an account-owned token (see [`super`] for why).

use axum::extract::State;
use axum::http::StatusCode;

use super::app_state::AppState;
use super::envelope::{ok, ApiError, ApiResult};
use crate::cloudflare::types::{codes, TokenStatus};

/// `GET /accounts/{a}/tokens/verify` → `{id, status: "active"}` (auth checked upstream).
pub async fn account_verify(State(state): State<AppState>) -> ApiResult {
    ok(TokenStatus {
        id: state.token_id.clone(),
        status: "active".into(),
    })
}

/// `GET /user/tokens/verify` → 401 code 1000 for every token: the real API answers so for
/// account-owned tokens, and the local API has no user tokens.
pub async fn user_verify() -> ApiResult {
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        codes::INVALID_TOKEN,
        "Invalid API Token",
    ))
}
