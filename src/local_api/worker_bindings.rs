//! The bindings of an upload or a settings PATCH: refused when malformed (400/10021, see
//! [`check_binding`]), `inherit` and text-less secrets resolved against the previous version,
//! `keep_bindings` types carried over, and bound KV namespaces checked to exist (400/10041).

use axum::http::StatusCode;
use serde_json::Value;

use super::envelope::ApiError;
use super::state::Data;
use crate::cloudflare::types::{codes, Binding};

/// Unresolvable `inherit` binding under `bindings_inherit=strict`.
const INHERIT_UNRESOLVED: u32 = 10057;

fn binding_type(b: &Binding) -> String {
    match b {
        Binding::KvNamespace { .. } => "kv_namespace".into(),
        Binding::PlainText { .. } => "plain_text".into(),
        Binding::SecretText { .. } => "secret_text".into(),
        Binding::Other(v) => v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// A copy of `b` exposed as `name`.
fn renamed(b: &Binding, name: &str) -> Result<Binding, ApiError> {
    let mut v = serde_json::to_value(b).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("name".into(), Value::String(name.to_owned()));
    }
    serde_json::from_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Binding types whose fields the emulator reads ([`Binding`]'s typed variants): one of these
/// that did not parse into its variant lacks a required field or has one of the wrong type.
const TYPED_BINDINGS: &[&str] = &["kv_namespace", "plain_text", "secret_text"];

/// Refuses a binding the real API refuses: `type` and `name` must be non-empty strings, and a
/// binding of a type in [`TYPED_BINDINGS`] must have that type's fields (e.g. `{"type": 5}`,
/// `{"name": "X"}` or `{"type": "kv_namespace", "name": "X"}`). Other type names are kept as
/// sent (the real API knows dozens). The real answer's code and message are not documented;
/// this is the documented generic validation error, 400/10021, naming the binding.
fn check_binding(index: usize, b: &Binding) -> Result<(), ApiError> {
    let Binding::Other(v) = b else {
        return Ok(());
    };
    let field = |f: &str| v.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
    let problem = match (field("type"), field("name")) {
        (None, _) => "`type` must be a string naming a binding type".to_owned(),
        (Some(_), None) => "`name` must be a non-empty string".to_owned(),
        (Some(t), Some(_)) if TYPED_BINDINGS.contains(&t) => {
            format!("a {t} binding lacks a required field or has one of the wrong type")
        }
        _ => return Ok(()),
    };
    Err(ApiError::validation(format!(
        "Invalid binding at index {index} of metadata.bindings: {problem}"
    )))
}

/// Resolves `inherit` bindings and text-less secrets against `old`, appends kept bindings,
/// and checks that bound KV namespaces exist.
pub fn resolve_bindings(
    d: &Data,
    new: Vec<Binding>,
    old: &[Binding],
    keep_types: &[String],
    strict: bool,
) -> Result<Vec<Binding>, ApiError> {
    let find_old = |name: &str| old.iter().find(|b| b.name() == Some(name));
    let mut out = Vec::with_capacity(new.len());
    for (i, b) in new.iter().enumerate() {
        check_binding(i, b)?;
    }
    for b in new {
        match &b {
            Binding::Other(v) if v.get("type").and_then(Value::as_str) == Some("inherit") => {
                let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
                let from = v.get("old_name").and_then(Value::as_str).unwrap_or(name);
                match find_old(from) {
                    Some(prev) => out.push(renamed(prev, name)?),
                    None if strict => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            INHERIT_UNRESOLVED,
                            format!("Cannot inherit binding '{from}': the previous version has no such binding."),
                        ))
                    }
                    None => {}
                }
            }
            Binding::SecretText { name, text: None } => match find_old(name) {
                Some(prev @ Binding::SecretText { text: Some(_), .. }) => out.push(prev.clone()),
                _ => {
                    return Err(ApiError::validation(format!(
                        "secret_text binding '{name}' has no text and no previous value"
                    )))
                }
            },
            _ => out.push(b),
        }
    }
    for prev in old {
        let kept_type = keep_types.iter().any(|t| *t == binding_type(prev));
        let named = prev
            .name()
            .is_some_and(|n| out.iter().any(|b| b.name() == Some(n)));
        if kept_type && !named {
            out.push(prev.clone());
        }
    }
    for b in &out {
        if let Binding::KvNamespace { namespace_id, .. } = b {
            if !d
                .namespaces
                .contains_key(&namespace_id.to_ascii_lowercase())
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::BOUND_NAMESPACE_MISSING,
                    format!("KV namespace '{namespace_id}' not found."),
                ));
            }
        }
    }
    Ok(out)
}
