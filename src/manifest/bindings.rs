//! A worker's bindings: one YAML value → a [`BindingSpec`], with the limits Cloudflare puts on
//! them and the `${app}`/`${stage}` substitution of plain-text vars.

use super::decode::D;
use super::desired::{canonical_json, BindingSpec};
use super::names;
use super::paths::resolve_inside;
use super::yaml::{Node, Pos, Scalar, Value};
use crate::secrets::SecretSource;

/// Most bindings one worker may have (Cloudflare's limit on the free plan).
pub const MAX_BINDINGS: usize = 64;
/// Largest plain-text var after substitution, in bytes (Cloudflare: 5 KB per var).
pub const MAX_TEXT_BYTES: usize = 5 * 1024;

/// A worker's `bindings:` mapping (`what` names the worker): each name checked, each value
/// decoded; (name, binding, position of the value) for those without errors.
pub(super) fn bindings(
    d: &mut D<'_, '_>,
    app: Option<&str>,
    stage: Option<&str>,
    what: &str,
    b_node: &Node,
) -> Vec<(String, BindingSpec, Pos)> {
    let mut bindings = Vec::new();
    if let Some(b_entries) = b_node.as_map() {
        if b_entries.len() > MAX_BINDINGS {
            d.err(
                b_node.pos,
                format!(
                    "{what} has {} bindings; Cloudflare allows at most {MAX_BINDINGS} per worker",
                    b_entries.len()
                ),
            );
        }
        for (k, v) in b_entries {
            if let Err(m) = names::check_binding_name(&k.name) {
                d.err(k.pos, m);
            }
            if let Some(b) = binding(d, app, stage, &k.name, v) {
                bindings.push((k.name.clone(), b, v.pos));
            }
        }
    } else if !matches!(&*b_node.value, Value::Scalar(Scalar::Null)) {
        d.err(
            b_node.pos,
            format!(
                "`bindings` must be a mapping of NAME → binding, not {}",
                b_node.kind()
            ),
        );
    }
    bindings
}

/// One binding's value → its spec (`name` is the binding's, for messages). `None` when it has
/// errors (reported through `d`).
fn binding(
    d: &mut D<'_, '_>,
    app: Option<&str>,
    stage: Option<&str>,
    name: &str,
    node: &Node,
) -> Option<BindingSpec> {
    match &*node.value {
        Value::Scalar(Scalar::Str(text)) => {
            let out = match substitute(text, app, stage) {
                Ok(out) => out,
                Err(m) => {
                    d.err(node.pos, format!("binding `{name}`: {m}"));
                    return None;
                }
            };
            if out.len() > MAX_TEXT_BYTES {
                d.err(
                    node.pos,
                    format!(
                        "binding `{name}` is {} bytes after substitution; Cloudflare allows {MAX_TEXT_BYTES} per var: shorten it or store it in KV",
                        out.len()
                    ),
                );
                return None;
            }
            Some(BindingSpec::Text(out))
        }
        Value::Map(_) => mapped(d, name, node),
        Value::Scalar(s) => {
            d.err(
                node.pos,
                format!(
                    "binding `{name}` must be a string (a plain-text var) or `{{ kv: <resource> }}`, not {}; quote it to make it text, or write `{{ json: <value> }}` for a JSON var",
                    s.kind()
                ),
            );
            None
        }
        Value::Seq(_) => {
            d.err(
                node.pos,
                format!(
                    "binding `{name}` must be a string (a plain-text var) or `{{ kv: <resource> }}`, not a list; for a JSON list write `{{ json: [...] }}`"
                ),
            );
            None
        }
    }
}

/// A binding written as a mapping: exactly one of [`BINDING_KINDS`].
fn mapped(d: &mut D<'_, '_>, name: &str, node: &Node) -> Option<BindingSpec> {
    let entries = d.map(node, &format!("binding `{name}`"), BINDING_KINDS)?;
    if entries.len() != 1 {
        d.err(
            node.pos,
            format!(
                "binding `{name}` needs exactly one of {}",
                binding_kinds_hint()
            ),
        );
        return None;
    }
    let (kind, value) = &entries[0];
    match kind.name.as_str() {
        "kv" => Some(BindingSpec::Kv(
            d.string(value, &format!("`kv` of binding `{name}`"))?,
        )),
        "service" => Some(BindingSpec::Service(
            d.string(value, &format!("`service` of binding `{name}`"))?,
        )),
        "secret" => Some(BindingSpec::Secret(secret_source(d, name, value)?)),
        _ => json(d, name, value),
    }
}

/// `{ json: <any YAML value> }`: the value as canonical JSON, within Cloudflare's size limit.
fn json(d: &mut D<'_, '_>, name: &str, value: &Node) -> Option<BindingSpec> {
    let json = match yaml_to_json(value) {
        Ok(json) => canonical_json(&json),
        Err((pos, m)) => {
            d.err(pos, format!("`json` of binding `{name}`: {m}"));
            return None;
        }
    };
    if json.len() > MAX_TEXT_BYTES {
        d.err(
            value.pos,
            format!(
                "`json` of binding `{name}` is {} bytes as JSON; Cloudflare allows {MAX_TEXT_BYTES} per var: shrink it or store it in KV",
                json.len()
            ),
        );
        return None;
    }
    Some(BindingSpec::Json(json))
}

/// The keys of a binding given as a mapping (exactly one of them).
const BINDING_KINDS: &[&str] = &["kv", "json", "service", "secret"];

fn binding_kinds_hint() -> &'static str {
    "`{ kv: <kv resource> }`, `{ json: <any value> }`, `{ service: <worker resource> }` or `{ secret: { env: VAR } }` (or `file:`, `age:`)"
}

/// `{ env: VAR }`, `{ file: NAME }` or `{ age: PATH }`: where a declared secret's value comes
/// from.
fn secret_source(d: &mut D<'_, '_>, name: &str, node: &Node) -> Option<SecretSource> {
    let what = format!("`secret` of binding `{name}`");
    let entries = d.map(node, &what, &["env", "file", "age"])?;
    let [(kind, value)] = entries else {
        d.err(
            node.pos,
            format!("{what} needs exactly one of `env: VARIABLE` (lumierd's environment), `file: NAME` (a file in --secrets-dir) or `age: PATH` (an age-encrypted file, relative to this manifest)"),
        );
        return None;
    };
    let text = d.string(value, &format!("`{}` of {what}", kind.name))?;
    let checked = match kind.name.as_str() {
        "env" => env_name(&text).map(|()| SecretSource::Env(text)),
        "file" => secrets_file_name(&text).map(|()| SecretSource::File(text)),
        _ => resolve_inside(d.ctx, "`age`", &text)
            .map(|(file, path)| SecretSource::Age { file, path }),
    };
    checked
        .map_err(|m| d.err(value.pos, format!("{what}: {m}")))
        .ok()
}

/// An environment variable's name: letters, digits and `_`, not starting with a digit.
fn env_name(text: &str) -> Result<(), String> {
    let ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{text}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"))
    }
}

/// A file name of `--secrets-dir`: one path component.
fn secrets_file_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty() && text != "." && text != ".." && !text.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(format!("`{text}` must be a file name in --secrets-dir (one path component, like `db-password`)"))
    }
}

/// A YAML value as JSON; `Err` (where, why) for what JSON cannot hold (a float that is not
/// finite).
fn yaml_to_json(node: &Node) -> Result<serde_json::Value, (Pos, String)> {
    use serde_json::Value as J;
    Ok(match &*node.value {
        Value::Scalar(Scalar::Null) => J::Null,
        Value::Scalar(Scalar::Bool(b)) => J::Bool(*b),
        Value::Scalar(Scalar::Int(i)) => J::from(*i),
        Value::Scalar(Scalar::Float(f)) => match serde_json::Number::from_f64(*f) {
            Some(n) => J::Number(n),
            None => return Err((node.pos, format!("{f} is not a JSON number"))),
        },
        Value::Scalar(Scalar::Str(t)) => J::String(t.clone()),
        Value::Seq(items) => J::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| Ok((k.name.clone(), yaml_to_json(v)?)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Substitutes `${app}` and `${stage}` in a plain-text var. Any other `${...}` is an error.
/// When app or stage is unknown (its own error was reported), the text is checked only.
pub fn substitute(text: &str, app: Option<&str>, stage: Option<&str>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` is not closed; write `${app}` or `${stage}`".into());
        };
        let var = &after[..end];
        match var {
            "app" => out.push_str(app.unwrap_or("")),
            "stage" => out.push_str(stage.unwrap_or("")),
            other => {
                return Err(format!(
                "unknown variable `${{{other}}}`; only `${{app}}` and `${{stage}}` are substituted"
            ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_table() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("${stage}", Ok("prod")),
            ("${app}-${stage}!", Ok("shop-prod!")),
            ("$stage {stage}", Ok("$stage {stage}")),
            ("${region}", Err("unknown variable `${region}`")),
            ("${stage", Err("`${` is not closed")),
        ];
        for (input, want) in table {
            let got = substitute(input, Some("shop"), Some("prod"));
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{input}"),
                Err(w) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(w)),
                    "{input}: {got:?}"
                ),
            }
        }
    }
}
