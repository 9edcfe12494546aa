//! Versions and deployments (`…/scripts/{n}/versions…`, `…/deployments`; API-NOTES §7.3).
//! The records and how they are made are in [`super::history`].
//!
//! | op | answer | errors |
//! |---|---|---|
//! | `POST …/versions[?bindings_inherit=strict]` (multipart, as the script PUT; `annotations`, `keep_bindings`) | the version (`version-item-full`) + `startup_time_ms`; not deployed | 404/10007 no script; upload errors as the script PUT (10021, 10027, 10041, 10057) |
//! | `GET …/versions[?deployable=&page=&per_page=]` | `{items: [version-short]}`, newest first; `deployable=true` ignores pagination | 404/10007 |
//! | `GET …/versions/{id}` | `version-item-full` | 404/10007; 404/10007 unknown version (undocumented) |
//! | `GET …/deployments` | `{deployments: [...]}`, newest (serving) first | 404/10007 |
//! | `POST …/deployments[?force=true]` `{strategy: "percentage", versions: [{version_id, percentage}], annotations?}` | the deployment | 404/10007; 400/10021 bad body, unknown version, percentages not adding to 100; 400/10220 rollback to a version whose secrets changed since, without `force` |
//!
//! A version upload resolves `inherit`, text-less secrets and `keep_bindings` against the
//! newest version (the "previous upload"), falling back to the live bindings.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::app_state::AppState;
use super::envelope::{ok, parse_json, ApiError, ApiResult};
use super::extract::{BodyBytes, PathParams, QueryParams};
use super::history::{self, VersionRec};
use super::multipart;
use super::routes_workers::{find, str_field};
use super::state::ScriptRec;
use super::worker_bindings::resolve_bindings;
use super::worker_upload::{etag, parse_upload, Upload};
use crate::cloudflare::types::{codes, Binding};

/// Rolling back to a version whose secrets changed since (API-NOTES §7.3).
const SECRETS_CHANGED: u32 = 10220;
/// Default page size of the version list.
const PER_PAGE: u32 = 10;

fn version_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::SCRIPT_NOT_FOUND,
        format!("workers.api.error.version_not_found: {id}"),
    )
}

/// `POST …/scripts/{n}/versions` → the new (undeployed) version.
pub async fn upload_version(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    q: QueryParams,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    let strict = q.get("bindings_inherit") == Some("strict");
    let upload = parse_upload(multipart::read_parts(req).await?)?;
    if upload.meta.main_module.is_none() {
        return Err(ApiError::validation(
            "a version upload needs main_module (module syntax only)",
        ));
    }
    let out = state
        .store
        .mutate(move |d| {
            let Upload {
                meta,
                raw_meta,
                meta_bytes,
                modules,
            } = upload;
            let rec = find(d, &name)?.clone();
            let previous = rec
                .versions
                .last()
                .map(|v| v.bindings.clone())
                .unwrap_or_else(|| rec.bindings.clone());
            let bindings =
                resolve_bindings(d, meta.bindings, &previous, &meta.keep_bindings, strict)?;
            let annotations = raw_meta
                .get("annotations")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .filter(|(_, v)| v.is_string())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            d.upload_counter += 1;
            let mut staged: ScriptRec = rec;
            staged.etag = etag(&name, &modules, &meta_bytes, d.upload_counter);
            staged.modules = modules;
            staged.main_module = meta.main_module;
            staged.body_part = None;
            staged.bindings = bindings;
            staged.compatibility_date = meta.compatibility_date;
            staged.compatibility_flags = meta.compatibility_flags;
            if let Some(u) = str_field(&raw_meta, "usage_model") {
                staged.usage_model = u;
            }
            let version = history::snapshot(d, &mut staged, source, annotations);
            // Only the history changes: the live fields stay those of the deployed version.
            let Some(rec) = d.scripts.get_mut(&name) else {
                return Err(ApiError::script_not_found());
            };
            rec.version_counter = staged.version_counter;
            rec.versions.push(version.clone());
            history::trim(rec);
            let mut out = history::version_full(rec, &version);
            out["startup_time_ms"] = json!(0);
            history::gc(d);
            Ok(out)
        })
        .await?;
    ok(out)
}

/// `GET …/scripts/{n}/versions` → `{items}`, newest first.
pub async fn list_versions(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    q: QueryParams,
) -> ApiResult {
    let deployable = q.get("deployable") == Some("true");
    let page = q.number("page", 1, 1, u32::MAX)? as usize;
    let per_page = q.number("per_page", PER_PAGE, 1, 100)? as usize;
    let items: Vec<Value> = state.store.read(|d| {
        find(d, &name).map(|rec| {
            let newest_first = rec.versions.iter().rev();
            if deployable {
                newest_first.map(history::version_short).collect()
            } else {
                newest_first
                    .skip((page - 1).saturating_mul(per_page))
                    .take(per_page)
                    .map(history::version_short)
                    .collect()
            }
        })
    })?;
    ok(json!({ "items": items }))
}

/// `GET …/scripts/{n}/versions/{id}` → the version with its resources.
pub async fn get_version(
    State(state): State<AppState>,
    PathParams((_a, name, id)): PathParams<(String, String, String)>,
) -> ApiResult {
    let out = state.store.read(|d| {
        let rec = find(d, &name)?;
        rec.versions
            .iter()
            .find(|v| v.id == id)
            .map(|v| history::version_full(rec, v))
            .ok_or_else(|| version_not_found(&id))
    })?;
    ok(out)
}

/// `GET …/scripts/{n}/deployments` → `{deployments}`, newest first.
pub async fn list_deployments(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
) -> ApiResult {
    let deployments: Vec<Value> = state.store.read(|d| {
        find(d, &name).map(|rec| {
            rec.deployments
                .iter()
                .rev()
                .map(history::deployment_json)
                .collect()
        })
    })?;
    ok(json!({ "deployments": deployments }))
}

#[derive(Deserialize)]
struct DeploymentBody {
    strategy: String,
    versions: Vec<VersionShare>,
    #[serde(default)]
    annotations: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct VersionShare {
    version_id: String,
    percentage: f64,
}

/// Names of secrets whose text in `target` differs from the live one (or is gone now).
fn changed_secrets(rec: &ScriptRec, target: &VersionRec) -> Vec<String> {
    target
        .bindings
        .iter()
        .filter(|b| matches!(b, Binding::SecretText { .. }))
        .filter(|b| !rec.bindings.contains(b))
        .filter_map(|b| b.name().map(str::to_owned))
        .collect()
}

/// `POST …/scripts/{n}/deployments` → the deployment; the version with the largest share
/// becomes the live code.
pub async fn create_deployment(
    State(state): State<AppState>,
    PathParams((_a, name)): PathParams<(String, String)>,
    q: QueryParams,
    req: Request,
) -> ApiResult {
    let source = history::client_of(req.headers());
    let force = q.get("force") == Some("true");
    let BodyBytes(body) = BodyBytes::read(req).await?;
    let body: DeploymentBody = parse_json(&body)?;
    if body.strategy != "percentage" {
        return Err(ApiError::validation("strategy must be \"percentage\""));
    }
    if body.versions.is_empty() || body.versions.len() > 2 {
        return Err(ApiError::validation(
            "a deployment names one or two versions",
        ));
    }
    let total: f64 = body.versions.iter().map(|v| v.percentage).sum();
    if body
        .versions
        .iter()
        .any(|v| !(0.01..=100.0).contains(&v.percentage))
        || (total - 100.0).abs() > 1e-6
    {
        return Err(ApiError::validation(
            "version percentages must be between 0.01 and 100 and add up to 100",
        ));
    }
    let out = state
        .store
        .mutate(move |d| {
            let mut rec = find(d, &name)?.clone();
            let mut main: Option<(VersionRec, f64)> = None;
            for share in &body.versions {
                let Some(v) = rec.versions.iter().find(|v| v.id == share.version_id) else {
                    return Err(ApiError::validation(format!(
                        "version {} is not a version of this Worker",
                        share.version_id
                    )));
                };
                if main.as_ref().is_none_or(|(_, p)| share.percentage > *p) {
                    main = Some((v.clone(), share.percentage));
                }
            }
            let Some((target, _)) = main else {
                return Err(ApiError::validation(
                    "a deployment names one or two versions",
                ));
            };
            let newest = rec.versions.last().map(|v| v.number).unwrap_or(0);
            let changed = changed_secrets(&rec, &target);
            if target.number < newest && !changed.is_empty() && !force {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    SECRETS_CHANGED,
                    format!("The following secrets have changed: {}", changed.join(", ")),
                ));
            }
            history::apply(d, &mut rec, &target)?;
            rec.modified_micros = d.next_stamp();
            let shares = body
                .versions
                .iter()
                .map(|s| (s.version_id.clone(), s.percentage))
                .collect();
            let annotations = body.annotations.unwrap_or_default();
            let dep = history::add_deployment(d, &mut rec, source, shares, annotations);
            d.scripts.insert(name, rec);
            history::gc(d);
            Ok(history::deployment_json(&dep))
        })
        .await?;
    ok(out)
}
