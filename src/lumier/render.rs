//! A stage document (the tree [`super::document::document`] builds) → YAML text that the
//! manifest reader reads back as the same tree. Every scalar string is written double-quoted
//! (JSON quoting is valid YAML), so no value can change type or escape its line.

use crate::yaml::{Node, Scalar, Value};

fn key(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(
            name,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        name.to_owned()
    } else {
        serde_json::Value::from(name).to_string()
    }
}

fn scalar(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".to_owned(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| "null".to_owned(), |n| n.to_string())
        }
        Scalar::Str(s) => serde_json::Value::from(s.as_str()).to_string(),
    }
}

/// The node on one line, in flow style (for lists of scalars and empty collections).
fn flow(node: &Node) -> String {
    match &*node.value {
        Value::Scalar(s) => scalar(s),
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(entries) => format!(
            "{{ {} }}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", key(&k.name), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &*node.value {
        Value::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                // A one-entry mapping of a scalar (`{ kv: "cache" }`) stays on its line.
                let nested = matches!(&*v.value, Value::Map(e) if e.len() > 1 || e.iter().any(|(_, x)| !matches!(&*x.value, Value::Scalar(_))))
                    || matches!(&*v.value, Value::Seq(items) if items.iter().any(|i| !matches!(&*i.value, Value::Scalar(_))));
                if nested {
                    out.push_str(&format!("{pad}{}:\n", key(&k.name)));
                    block(v, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{}: {}\n", key(&k.name), flow(v)));
                }
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}- {}\n", flow(item)));
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", flow(node))),
    }
}

/// One YAML document (starting with `---` and the `comment` lines, each prefixed `# `).
pub fn yaml(document: &Node, comment: &str) -> String {
    let mut out = String::from("---\n");
    for line in comment.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    block(document, 0, &mut out);
    out
}
