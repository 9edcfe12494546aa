//! A YAML (and therefore JSON) reader that keeps the location of every node.
//!
//! serde's derive stops at the first error and forgets where values were; a manifest's user
//! needs every error at once, each with `file:line:col`. So the text is read into a small
//! spanned tree ([`Node`]) that the decoder walks by hand.
//!
//! The reader is bounded whatever the input: nesting deeper than [`MAX_DEPTH`] and alias
//! expansion beyond [`MAX_NODES`] are errors (YAML "billion laughs" included), duplicate
//! mapping keys are errors, and the pull parser it drives does not recurse.
//!
//! Its cost is linear in the text plus the alias expansion: each mapping keeps a hash index of
//! its keys (the duplicate check is one lookup per key, not a scan of the keys before it), and
//! each node is counted once where it is written (an alias counts its whole subtree).

mod walk;

use std::rc::Rc;
use yaml_rust2::scanner::Marker;

pub use walk::parse;

/// Deepest nesting of collections accepted in one document.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one file may hold after alias expansion. A file within the 1 MiB size limit
/// cannot write this many without aliases (every node takes at least two bytes, `[1,1,…]`), so
/// only alias expansion reaches it.
pub const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// A scalar as written: its text, and whether it was quoted (a quoted scalar is always a string).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// A word for error messages: "a string", "an integer", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) => "an integer",
            Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
        }
    }
}

/// A node of the tree: a scalar, a sequence or a mapping (keys are strings, in order).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A value and where it starts. Children are shared (`Rc`) so an alias costs one pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Rc<Value>,
}

impl Node {
    /// A word for error messages: "a mapping", "a list", "a string", ...
    pub fn kind(&self) -> &'static str {
        match &*self.value {
            Value::Scalar(s) => s.kind(),
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The string, when this node is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &*self.value {
            Value::Scalar(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The entries, when this node is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &*self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value of `key`, when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// This node as plain JSON (for schema checks and tests).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &*self.value {
            Value::Scalar(Scalar::Null) => J::Null,
            Value::Scalar(Scalar::Bool(b)) => J::Bool(*b),
            Value::Scalar(Scalar::Int(i)) => J::from(*i),
            Value::Scalar(Scalar::Float(f)) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Scalar(Scalar::Str(s)) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A document of a file: its root node (documents that are empty or `null` are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Node,
}

/// Why a file could not be read as YAML. Always carries a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = parse(text).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0).root
    }

    #[test]
    fn positions_are_one_based() {
        let root = one("a: 1\nb:\n  c: x\n");
        assert_eq!(root.pos, Pos { line: 1, col: 1 });
        let b = root.get("b").unwrap();
        let c = b.get("c").unwrap();
        assert_eq!(c.pos, Pos { line: 3, col: 6 });
        assert_eq!(c.as_str(), Some("x"));
    }

    #[test]
    fn scalars_resolve_as_yaml_core_schema() {
        let table = [
            ("x: 12", Scalar::Int(12)),
            ("x: '12'", Scalar::Str("12".into())),
            ("x: true", Scalar::Bool(true)),
            ("x: ~", Scalar::Null),
            ("x:", Scalar::Null),
            ("x: 1.5", Scalar::Float(1.5)),
            ("x: 2025-01-01", Scalar::Str("2025-01-01".into())),
            ("x: abc", Scalar::Str("abc".into())),
            (
                "x: 0123456789abcdef0123456789abcdef",
                Scalar::Str("0123456789abcdef0123456789abcdef".into()),
            ),
        ];
        for (text, want) in table {
            let root = one(text);
            assert_eq!(*root.get("x").unwrap().value, Value::Scalar(want), "{text}");
        }
    }

    #[test]
    fn json_reads_as_yaml() {
        let root = one(r#"{"app": {"name": "a"}, "list": [1, "two"], "esc": "a\/b\u00e9"}"#);
        assert_eq!(
            root.get("app").unwrap().get("name").unwrap().as_str(),
            Some("a")
        );
        assert_eq!(root.get("esc").unwrap().as_str(), Some("a/bé"));
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let docs = parse("---\na: 1\n---\n---\n# only a comment\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_places() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(
            err.message
                .contains("duplicate key `a` (first at line 1, column 1)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let text = "[".repeat(200) + &"]".repeat(200);
        let err = parse(&text).unwrap_err();
        assert!(
            err.message.contains("nesting deeper than 64"),
            "{}",
            err.message
        );
        assert_eq!(err.pos, Pos { line: 1, col: 65 });
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("from aliases"), "{}", err.message);
    }

    fn flat(keys: usize) -> String {
        let mut text = String::from("resources:\n");
        for i in 0..keys {
            text.push_str(&format!("  k{i:06}: {{ type: kv }}\n"));
        }
        text
    }

    /// A big file without aliases is not refused as an alias bomb (each node counted once,
    /// not once per ancestor), and a duplicate at its end is found with both places. Its time
    /// (linear: one lookup per key) is measured in RELIABILITY.md, not asserted: tests assert
    /// no timings.
    #[test]
    fn a_big_flat_mapping_reads_whole_and_finds_a_late_duplicate() {
        let big = flat(20_000);
        assert!(one(&big).get("resources").unwrap().as_map().is_some());
        let mut text = big;
        text.push_str("  k000007: x\n");
        let err = parse(&text).unwrap_err();
        assert!(
            err.message
                .contains("duplicate key `k000007` (first at line 9, column 3)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn aliases_within_budget_are_expanded() {
        let root = one("base: &b { kv: cache }\nother: *b\n");
        assert_eq!(
            root.get("other").unwrap().get("kv").unwrap().as_str(),
            Some("cache")
        );
        assert_eq!(root.get("other").unwrap().pos, Pos { line: 2, col: 8 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn tags_are_rejected() {
        let err = parse("a: !!binary aGVsbG8=\n").unwrap_err();
        assert!(err.message.contains("tags"), "{}", err.message);
    }
}
