//! The route table: one list of `(method, path, handler)` that both builds the axum router and
//! answers [`served_routes`], so the list the conformance test checks is the one served.
//!
//! Dependencies point one way: this table imports the route files, and the route files import
//! their extractors (`extract`) and shared state (`app_state`), never this table.

use axum::http::StatusCode;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

pub use super::app_state::AppState;
use super::envelope::ApiError;
#[cfg(test)]
use super::state::Store;
use super::{
    routes_kv as kv, routes_kv_bulk as bulk, routes_tokens as tokens, routes_workers as workers,
};
use super::{
    routes_secrets as secrets, routes_subdomain as subdomain, routes_versions as versions,
};

/// One route: method, path (relative to `/client/v4`, in OpenAPI path syntax) and handler.
type Route = (&'static str, &'static str, MethodRouter<AppState>);

/// All routes, relative to `/client/v4`, in OpenAPI path syntax. A trailing `{key_name}`
/// matches the rest of the path (greedy: some clients leave `/` in key names unencoded).
fn table() -> Vec<Route> {
    [
        token_routes(),
        kv_routes(),
        script_routes(),
        secret_and_subdomain_routes(),
        version_routes(),
    ]
    .concat()
}

/// Token verification (user- and account-owned tokens).
fn token_routes() -> Vec<Route> {
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
    ]
}

/// KV namespaces, keys, values, metadata and the bulk calls.
fn kv_routes() -> Vec<Route> {
    vec![
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
            on(MethodFilter::PUT, bulk::bulk_write),
        ),
        (
            "DELETE",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk",
            on(MethodFilter::DELETE, bulk::bulk_delete),
        ),
        (
            "POST",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk/delete",
            on(MethodFilter::POST, bulk::bulk_delete),
        ),
        (
            "POST",
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk/get",
            on(MethodFilter::POST, bulk::bulk_get),
        ),
    ]
}

/// Worker scripts: upload, download, content, settings, services.
fn script_routes() -> Vec<Route> {
    vec![
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
    ]
}

/// Worker secrets, the workers.dev subdomain (account and script) and the worker by id.
fn secret_and_subdomain_routes() -> Vec<Route> {
    vec![
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
    ]
}

/// Worker versions and deployments.
fn version_routes() -> Vec<Route> {
    vec![
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
