//! The body of a Worker upload (`multipart/form-data`): the `metadata` part and the modules,
//! with the real API's limits (10 MiB in all, 400/10027; accepted module content types;
//! an entry point that names an uploaded module, 400/10021), and the upload's etag.

use axum::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::envelope::{parse_json, ApiError};
use super::multipart::Part;
use super::state::ModuleRec;
use crate::cloudflare::types::{codes, ScriptMetadata};

const MAX_SCRIPT_BYTES: usize = 10 * 1024 * 1024;

/// Module content types the real API accepts ([DOCS] "files").
const MODULE_TYPES: &[&str] = &[
    "application/javascript+module",
    "text/javascript+module",
    "application/javascript",
    "text/javascript",
    "text/x-python",
    "text/x-python-requirement",
    "application/json",
    "text/plain",
    "application/octet-stream",
    "application/wasm",
    "application/source-map",
];

/// Content type of a module part: its declared type (parameters dropped), else one inferred
/// from the file extension.
fn module_type(part: &Part, name: &str) -> Result<String, ApiError> {
    let declared = part
        .content_type
        .as_deref()
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|ct| !ct.is_empty());
    let ct = declared.unwrap_or_else(|| {
        let ext = name.rsplit('.').next().unwrap_or("");
        match ext {
            "js" | "mjs" => "application/javascript+module",
            "cjs" => "application/javascript",
            "py" => "text/x-python",
            "json" => "application/json",
            "wasm" => "application/wasm",
            "map" => "application/source-map",
            "txt" => "text/plain",
            _ => "application/octet-stream",
        }
        .to_owned()
    });
    if MODULE_TYPES.contains(&ct.as_str()) {
        Ok(ct)
    } else {
        Err(ApiError::validation(format!(
            "Unsupported content type {ct:?} for module {name:?}"
        )))
    }
}

/// The parsed, validated body of an upload.
pub struct Upload {
    pub meta: ScriptMetadata,
    pub raw_meta: serde_json::Map<String, Value>,
    pub meta_bytes: Vec<u8>,
    pub modules: Vec<ModuleRec>,
}

/// Splits a multipart body into the `metadata` part (if any) and the modules, enforcing the
/// total size limit. Module parts are named by their filename when they have one (the Python
/// SDK names every module part `files`), else by their part name.
pub fn collect_parts(parts: Vec<Part>) -> Result<(Option<Vec<u8>>, Vec<ModuleRec>), ApiError> {
    let total: usize = parts.iter().map(|p| p.data.len()).sum();
    if total > MAX_SCRIPT_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::SCRIPT_TOO_LARGE,
            format!("Script body was too large: {total} bytes (limit {MAX_SCRIPT_BYTES})"),
        ));
    }
    let mut meta_bytes = None;
    let mut modules: Vec<ModuleRec> = Vec::new();
    for part in parts {
        if part.name.as_deref() == Some("metadata") && meta_bytes.is_none() {
            meta_bytes = Some(part.data.to_vec());
            continue;
        }
        let Some(name) = part
            .file_name
            .clone()
            .or_else(|| part.name.clone())
            .filter(|n| !n.is_empty())
        else {
            return Err(ApiError::validation(
                "a module part has neither a filename nor a name",
            ));
        };
        if modules.iter().any(|m| m.name == name) {
            return Err(ApiError::validation(format!(
                "module {name:?} uploaded twice"
            )));
        }
        let content_type = module_type(&part, &name)?;
        modules.push(ModuleRec {
            name,
            content_type,
            content: part.data.to_vec(),
        });
    }
    Ok((meta_bytes, modules))
}

/// Checks that the entry point (`main_module` wins over `body_part`) names an uploaded module.
pub fn check_entry(
    main_module: Option<&String>,
    body_part: Option<&String>,
    modules: &[ModuleRec],
) -> Result<(), ApiError> {
    match (main_module, body_part) {
        (Some(main), _) if !modules.iter().any(|m| &m.name == main) => Err(ApiError::validation(
            format!("main_module {main:?} does not name an uploaded module"),
        )),
        (None, Some(body)) if !modules.iter().any(|m| &m.name == body) => Err(
            ApiError::validation(format!("body_part {body:?} does not name an uploaded part")),
        ),
        (None, None) => Err(ApiError::validation(
            "metadata must set main_module (module syntax) or body_part",
        )),
        _ => Ok(()),
    }
}

pub fn parse_upload(parts: Vec<Part>) -> Result<Upload, ApiError> {
    let (meta_bytes, modules) = collect_parts(parts)?;
    let meta_bytes =
        meta_bytes.ok_or_else(|| ApiError::validation("missing the 'metadata' part"))?;
    let raw: Value = parse_json(&meta_bytes)?;
    let Value::Object(raw_meta) = raw else {
        return Err(ApiError::validation("metadata must be a JSON object"));
    };
    let meta: ScriptMetadata = serde_json::from_value(Value::Object(raw_meta.clone()))
        .map_err(|e| ApiError::validation(format!("invalid metadata: {e}")))?;
    check_entry(meta.main_module.as_ref(), meta.body_part.as_ref(), &modules)?;
    Ok(Upload {
        meta,
        raw_meta,
        meta_bytes,
        modules,
    })
}

pub fn etag(name: &str, modules: &[ModuleRec], meta: &[u8], counter: u64) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    for m in modules {
        h.update(m.name.as_bytes());
        h.update([0]);
        h.update(m.content_type.as_bytes());
        h.update([0]);
        h.update((m.content.len() as u64).to_le_bytes());
        h.update(&m.content);
    }
    h.update(meta);
    h.update(counter.to_le_bytes());
    hex::encode(h.finalize())
}
