//! The route table: one list of `(method, path, handler)` that both builds the axum router and
//! answers [`served_routes`], so the list the conformance test checks is the one served.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::envelope::ApiError;
use super::state::Store;
use super::{routes_kv as kv, routes_tokens as tokens, routes_workers as workers};
use super::{
    routes_secrets as secrets, routes_subdomain as subdomain, routes_versions as versions,
};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The public id of the configured token (answered by token verify).
    pub token_id: String,
}

/// All routes, relative to `/client/v4`, in OpenAPI path syntax. A trailing `{key_name}`
/// matches the rest of the path (greedy: some clients leave `/` in key names unencoded).
fn table() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        (
            "GET",
            "/user/tokens/verify",
            on(MethodFilter::GET, tokens::user_verify),
        ),
        (
            "GET",
            "/accounts/{account_id}/tokens/verify",
            on(MethodFilter::GET, tokens::account_verify),
        ),
        (
            "GET",
            "/accounts/{account_id}/storage/kv/namespaces",
            on(MethodFilter::GET, kv::list_namespaces),
        ),
        (
            "POST",
            "/accounts/{account_id}/storage/kv/namespaces",
            on(MethodFilter::POST, kv::create_namespace),
        ),
        (
            "GET",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}",
            on(MethodFilter::GET, kv::get_namespace),
        ),
        (
            "PUT",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}",
            on(MethodFilter::PUT, kv::rename_namespace),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}",
            on(MethodFilter::DELETE, kv::delete_namespace),
        ),
        (
            "GET",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/keys",
            on(MethodFilter::GET, kv::list_keys),
        ),
        (
            "GET",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}",
            on(MethodFilter::GET, kv::get_value),
        ),
        (
            "PUT",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}",
            on(MethodFilter::PUT, kv::put_value),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}",
            on(MethodFilter::DELETE, kv::delete_value),
        ),
        (
            "GET",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/metadata/{key_name}",
            on(MethodFilter::GET, kv::get_metadata),
        ),
        (
            "PUT",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk",
            on(MethodFilter::PUT, kv::bulk_write),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk",
            on(MethodFilter::DELETE, kv::bulk_delete),
        ),
        (
            "POST",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk/delete",
            on(MethodFilter::POST, kv::bulk_delete),
        ),
        (
            "POST",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk/get",
            on(MethodFilter::POST, kv::bulk_get),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts",
            on(MethodFilter::GET, workers::list_scripts),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}",
            on(MethodFilter::GET, workers::download_script),
        ),
        (
            "PUT",
            "/accounts/{account_id}/workers/scripts/{script_name}",
            on(MethodFilter::PUT, workers::upload_script),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/workers/scripts/{script_name}",
            on(MethodFilter::DELETE, workers::delete_script),
        ),
        (
            "PUT",
            "/accounts/{account_id}/workers/scripts/{script_name}/content",
            on(MethodFilter::PUT, workers::put_content),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/content/v2",
            on(MethodFilter::GET, workers::download_script),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/settings",
            on(MethodFilter::GET, workers::get_settings),
        ),
        (
            "PATCH",
            "/accounts/{account_id}/workers/scripts/{script_name}/settings",
            on(MethodFilter::PATCH, workers::patch_settings),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/script-settings",
            on(MethodFilter::GET, workers::get_script_settings),
        ),
        (
            "PATCH",
            "/accounts/{account_id}/workers/scripts/{script_name}/script-settings",
            on(MethodFilter::PATCH, workers::patch_script_settings),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/services/{service_name}",
            on(MethodFilter::GET, workers::get_service),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/workers/services/{service_name}",
            on(MethodFilter::DELETE, workers::delete_script),
        ),
        (
            "PUT",
            "/accounts/{account_id}/workers/scripts/{script_name}/secrets",
            on(MethodFilter::PUT, secrets::put_secret),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/secrets",
            on(MethodFilter::GET, secrets::list_secrets),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/secrets/{secret_name}",
            on(MethodFilter::GET, secrets::get_secret),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/workers/scripts/{script_name}/secrets/{secret_name}",
            on(MethodFilter::DELETE, secrets::delete_secret),
        ),
        (
            "PATCH",
            "/accounts/{account_id}/workers/scripts/{script_name}/secrets-bulk",
            on(MethodFilter::PATCH, secrets::patch_secrets_bulk),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/subdomain",
            on(MethodFilter::GET, subdomain::get_account_subdomain),
        ),
        (
            "PUT",
            "/accounts/{account_id}/workers/subdomain",
            on(MethodFilter::PUT, subdomain::put_account_subdomain),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/workers/subdomain",
            on(MethodFilter::DELETE, subdomain::delete_account_subdomain),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/subdomain",
            on(MethodFilter::GET, subdomain::get_script_subdomain),
        ),
        (
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/subdomain",
            on(MethodFilter::POST, subdomain::post_script_subdomain),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/workers/scripts/{script_name}/subdomain",
            on(MethodFilter::DELETE, subdomain::delete_script_subdomain),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/workers/{worker_id}",
            on(MethodFilter::GET, subdomain::get_worker),
        ),
        (
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/versions",
            on(MethodFilter::POST, versions::upload_version),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/versions",
            on(MethodFilter::GET, versions::list_versions),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/versions/{version_id}",
            on(MethodFilter::GET, versions::get_version),
        ),
        (
            "GET",
            "/accounts/{account_id}/workers/scripts/{script_name}/deployments",
            on(MethodFilter::GET, versions::list_deployments),
        ),
        (
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/deployments",
            on(MethodFilter::POST, versions::create_deployment),
        ),
    ]
}

/// `(method, path)` of every route served, paths relative to `/client/v4` in OpenAPI syntax.
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The axum router for `/client/v4`, with the enveloped 404 (7003) and 405 answers.
pub fn router(state: AppState) -> Router {
    let mut api: Router<AppState> = Router::new();
    for (_, path, handler) in table() {
        let axum_path = path.replace("{key_name}", "{*key_name}");
        api = api.route(&axum_path, handler);
    }
    Router::new()
        .nest("/client/v4", api)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::no_route()
}

/// 405 for a known path with another method, enveloped with code 10000 and the message the
/// real API gateway uses (API-NOTES §1.1, workers-sdk issue #2288).
async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::cloudflare::types::codes::AUTH_ERROR,
        format!("{method} method not allowed for the api_token authentication scheme"),
    )
}

/// Path parameters; a malformed one (e.g. bad percent-encoding) is a 400/10021 envelope.
pub struct P<T>(pub T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| P(t))
            .map_err(|e| ApiError::validation(e.body_text()))
    }
}

/// Query parameters as a map (the last occurrence of a name wins).
pub struct Q(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Q {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Q(q))
            .map_err(|e| ApiError::validation(e.body_text()))
    }
}

impl Q {
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
pub struct B(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for B {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(B)
            .map_err(|e: BytesRejection| {
                ApiError::new(e.status(), super::envelope::PAYLOAD_CODE, e.body_text())
            })
    }
}

/// Answers `Err` unless `id` is a well-formed namespace id (32 hex characters): the real API
/// gateway does not route malformed ids (404, code 7003).
pub fn check_namespace_id(account: &str, id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            crate::cloudflare::types::codes::NO_ROUTE,
            format!(
                "Could not route to /client/v4/accounts/{account}/storage/kv/namespaces/{id}, perhaps your object identifier is invalid?"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_builds_from_the_table() {
        let store = match Store::open(None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let _ = router(AppState {
            store,
            token_id: "x".into(),
        });
        assert!(served_routes().len() >= 20);
    }
}
