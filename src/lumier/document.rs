//! A stage's [`Evaluation`] → the document tree the YAML reader would give for the same
//! stage manifest, so the one validator (`manifest::decode`) checks both forms with the same
//! messages. Each node stands at the TypeScript position of the call that declared it.

use std::rc::Rc;

use super::engine::{Evaluation, Recorded};
use crate::yaml::{Key, Node, Pos, Scalar, Value};

/// Whether the manifest format has JSON vars (`{ json: … }`): it does, so a binding to a
/// non-string JSON value becomes one.
pub const JSON_VARS: bool = true;

fn node(pos: Pos, value: Value) -> Node {
    Node {
        pos,
        value: Rc::new(value),
    }
}

fn text(pos: Pos, s: &str) -> Node {
    node(pos, Value::Scalar(Scalar::Str(s.to_owned())))
}

fn map(pos: Pos, entries: Vec<(&str, Node)>) -> Node {
    node(
        pos,
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        Key {
                            name: k.to_owned(),
                            pos,
                        },
                        v,
                    )
                })
                .collect(),
        ),
    )
}

/// A JSON value as a node (every node at `pos`).
fn json(pos: Pos, v: &serde_json::Value) -> Node {
    use serde_json::Value as J;
    match v {
        J::Null => node(pos, Value::Scalar(Scalar::Null)),
        J::Bool(b) => node(pos, Value::Scalar(Scalar::Bool(*b))),
        J::Number(n) => match n.as_i64() {
            Some(i) => node(pos, Value::Scalar(Scalar::Int(i))),
            None => node(pos, Value::Scalar(Scalar::Float(n.as_f64().unwrap_or(0.0)))),
        },
        J::String(s) => text(pos, s),
        J::Array(items) => node(
            pos,
            Value::Seq(items.iter().map(|i| json(pos, i)).collect()),
        ),
        J::Object(o) => node(
            pos,
            Value::Map(
                o.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                pos,
                            },
                            json(pos, v),
                        )
                    })
                    .collect(),
            ),
        ),
    }
}

/// A binding as recorded (`{ kv }`, `{ service }`, `{ secret: { env | file } }`, `{ text }`,
/// `{ json }`) → its manifest form, or why not.
fn binding(pos: Pos, name: &str, recorded: &serde_json::Value) -> Result<Node, String> {
    if let Some(s) = recorded.get("text").and_then(|v| v.as_str()) {
        return Ok(text(pos, s));
    }
    if let Some(target) = recorded.get("kv").and_then(|v| v.as_str()) {
        return Ok(map(pos, vec![("kv", text(pos, target))]));
    }
    if let Some(target) = recorded.get("service").and_then(|v| v.as_str()) {
        return Ok(map(pos, vec![("service", text(pos, target))]));
    }
    if let Some(source) = recorded.get("secret").and_then(|v| v.as_object()) {
        let entries: Vec<(&str, Node)> = source
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), text(pos, v.as_str()?))))
            .collect();
        return Ok(map(pos, vec![("secret", map(pos, entries))]));
    }
    if let Some(value) = recorded.get("json") {
        if JSON_VARS {
            return Ok(map(pos, vec![("json", json(pos, value))]));
        }
        return Err(format!(
            "binding `{name}` is a JSON value, which needs a JSON var (`{{ json: … }}`) that this manifest format does not have yet; pass a string (e.g. JSON.stringify(value))"
        ));
    }
    Err(format!(
        "binding `{name}` is a {} handle, which cannot be bound to a worker yet",
        recorded
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default()
    ))
}

fn resource(r: &Recorded, errors: &mut Vec<(Pos, String)>) -> Node {
    let pos = r.pos;
    let mut entries = vec![("type", text(pos, &r.kind))];
    if let Some(existing) = &r.existing {
        entries.push(("existing", map(pos, vec![("id", text(pos, &existing.id))])));
    }
    if let Some(entry) = &r.entry {
        entries.push(("entry", text(pos, entry)));
    }
    if !r.bindings.is_empty() {
        let mut bindings = Vec::new();
        for (name, value) in &r.bindings {
            match binding(pos, name, value) {
                Ok(n) => bindings.push((
                    Key {
                        name: name.clone(),
                        pos,
                    },
                    n,
                )),
                Err(m) => errors.push((pos, format!("worker `{}`: {m}", r.name))),
            }
        }
        entries.push(("bindings", node(pos, Value::Map(bindings))));
    }
    if let Some(c) = &r.compatibility {
        entries.push(("compatibility", json(pos, c)));
    }
    map(pos, entries)
}

/// The stage manifest document of one evaluation, or the positioned reasons it has none.
/// Resource keys keep the order of the calls (a name declared twice stays twice, for the
/// validator to report with both places).
pub fn document(stage: &str, eval: &Evaluation) -> Result<Node, Vec<(Pos, String)>> {
    let pos = eval.pos;
    let mut app = vec![("name", text(pos, &eval.app.name))];
    if let Some(protect) = &eval.app.protect {
        app.push((
            "protect",
            node(
                pos,
                Value::Seq(protect.iter().map(|s| text(pos, s)).collect()),
            ),
        ));
    }
    let mut errors = Vec::new();
    let resources: Vec<(Key, Node)> = eval
        .resources
        .iter()
        .map(|r| {
            (
                Key {
                    name: r.name.clone(),
                    pos: r.pos,
                },
                resource(r, &mut errors),
            )
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(map(
        pos,
        vec![
            ("app", map(pos, app)),
            ("stage", text(pos, stage)),
            ("resources", node(pos, Value::Map(resources))),
        ],
    ))
}
