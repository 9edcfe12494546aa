//! The event walk: drives yaml-rust2's pull parser (which does not recurse) and builds the
//! spanned tree bottom-up on an explicit stack, enforcing the bounds as it goes: depth
//! ([`MAX_DEPTH`]), nodes after alias expansion ([`MAX_NODES`]), no tags, no duplicate or
//! non-scalar mapping keys. Plain scalars resolve as YAML 1.2's core schema.

use std::collections::HashMap;
use std::rc::Rc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use super::{Document, Key, Node, Pos, Scalar, SyntaxError, Value, MAX_DEPTH, MAX_NODES};

/// Reads every document of `text`. Null documents are dropped.
pub fn parse(text: &str) -> Result<Vec<Document>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut walk = Walk::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| SyntaxError {
            pos: Pos::from_marker(e.marker()),
            message: e.info().to_owned(),
        })?;
        if matches!(event, Event::StreamEnd) {
            break;
        }
        let pos = Pos::from_marker(&mark);
        let is_alias = matches!(event, Event::Alias(_));
        let Some((node, anchor, size)) = walk.event(event, pos)? else {
            continue;
        };
        walk.count(&node, is_alias, size)?;
        walk.attach(node, anchor, size)?;
    }
    Ok(walk.docs)
}

/// A collection being built.
enum Open {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        /// Key → its position, for the duplicate check (one lookup per key).
        seen: HashMap<String, Pos>,
        pending_key: Option<Key>,
    },
}

/// A node just finished: the node, its anchor id (0: none) and its subtree size in nodes.
type Finished = (Node, usize, usize);

/// The walk's state between two events.
#[derive(Default)]
struct Walk {
    docs: Vec<Document>,
    stack: Vec<Open>,
    /// Anchors of the current document: id → (node, its subtree size in nodes).
    anchors: Vec<(usize, Node, usize)>,
    sizes: Vec<usize>,
    /// Nodes of the file after alias expansion, and how many of them aliases added.
    nodes_total: usize,
    nodes_from_aliases: usize,
}

/// The error for a tagged node.
fn tag_error(pos: Pos) -> SyntaxError {
    SyntaxError {
        pos,
        message: "YAML tags (`!...`) are not supported in manifests; remove the tag".into(),
    }
}

impl Walk {
    /// Takes one event: the node it finishes, if any.
    fn event(&mut self, event: Event, pos: Pos) -> Result<Option<Finished>, SyntaxError> {
        Ok(match event {
            Event::StreamEnd | Event::StreamStart | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart => {
                self.anchors.clear();
                None
            }
            Event::Scalar(text, style, anchor, tag) => {
                if tag.is_some() {
                    return Err(tag_error(pos));
                }
                let scalar = if style == TScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Scalar::Str(text)
                };
                let value = Rc::new(Value::Scalar(scalar));
                Some((Node { pos, value }, anchor, 1))
            }
            Event::Alias(id) => {
                let Some((_, node, size)) = self.anchors.iter().find(|(a, _, _)| *a == id) else {
                    return Err(SyntaxError {
                        pos,
                        message: "alias names an unknown anchor".into(),
                    });
                };
                let alias = Node {
                    pos,
                    value: Rc::clone(&node.value),
                };
                Some((alias, 0, *size))
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if tag.is_some() {
                    return Err(tag_error(pos));
                }
                let is_seq = matches!(event, Event::SequenceStart(..));
                self.open(is_seq, anchor, pos)?;
                None
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
        })
    }

    /// A collection starts at `pos`.
    fn open(&mut self, is_seq: bool, anchor: usize, pos: Pos) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "nesting deeper than {MAX_DEPTH} levels; a stage manifest needs far fewer"
                ),
            });
        }
        self.sizes.push(1);
        self.stack.push(if is_seq {
            Open::Seq {
                pos,
                anchor,
                items: Vec::new(),
            }
        } else {
            Open::Map {
                pos,
                anchor,
                entries: Vec::new(),
                seen: HashMap::new(),
                pending_key: None,
            }
        });
        Ok(())
    }

    /// The innermost collection ends: it is finished.
    fn close(&mut self) -> Option<Finished> {
        let size = self.sizes.pop().unwrap_or(1);
        match self.stack.pop()? {
            Open::Seq { pos, anchor, items } => Some((
                Node {
                    pos,
                    value: Rc::new(Value::Seq(items)),
                },
                anchor,
                size,
            )),
            Open::Map {
                pos,
                anchor,
                entries,
                ..
            } => Some((
                Node {
                    // A block mapping's start event is marked after its first key;
                    // the mapping starts at whichever comes first.
                    pos: entries.first().map_or(pos, |(k, _)| k.pos.min(pos)),
                    value: Rc::new(Value::Map(entries)),
                },
                anchor,
                size,
            )),
        }
    }

    /// Counts a finished node against [`MAX_NODES`]: a written node counts once here (its
    /// children counted themselves); an alias counts the whole subtree it stands for.
    fn count(&mut self, node: &Node, is_alias: bool, size: usize) -> Result<(), SyntaxError> {
        let added = if is_alias { size } else { 1 };
        self.nodes_total = self.nodes_total.saturating_add(added);
        if is_alias {
            self.nodes_from_aliases = self.nodes_from_aliases.saturating_add(added);
        }
        if self.nodes_total <= MAX_NODES {
            return Ok(());
        }
        let message = if self.nodes_from_aliases > 0 {
            format!(
                "more than {MAX_NODES} values once aliases are expanded ({} \
                 of them from aliases); write the manifest without nested aliases",
                self.nodes_from_aliases
            )
        } else {
            format!(
                "more than {MAX_NODES} values in one file; split it into several manifest files"
            )
        };
        Err(SyntaxError {
            pos: node.pos,
            message,
        })
    }

    /// Puts a finished node where it belongs: a document, a list item, a mapping's key or
    /// the value of its pending key.
    fn attach(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone(), size));
        }
        if let Some(parent) = self.sizes.last_mut() {
            *parent = parent.saturating_add(size);
        }
        match self.stack.last_mut() {
            None => {
                if !matches!(&*node.value, Value::Scalar(Scalar::Null)) {
                    self.docs.push(Document { root: node });
                }
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                seen,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let name = key_name(&node)?;
                    if let Some(first) = seen.get(&name) {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!(
                                "duplicate key `{name}` (first at line {}, column {}); keep one",
                                first.line, first.col
                            ),
                        });
                    }
                    seen.insert(name.clone(), node.pos);
                    *pending_key = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
            },
        }
        Ok(())
    }
}

/// A mapping key's name: a string, integer or boolean scalar as written.
fn key_name(node: &Node) -> Result<String, SyntaxError> {
    match &*node.value {
        Value::Scalar(Scalar::Str(s)) => Ok(s.clone()),
        Value::Scalar(Scalar::Int(i)) => Ok(i.to_string()),
        Value::Scalar(Scalar::Bool(b)) => Ok(b.to_string()),
        Value::Scalar(Scalar::Null) => Err(SyntaxError {
            pos: node.pos,
            message: "a mapping key is empty".into(),
        }),
        _ => Err(SyntaxError {
            pos: node.pos,
            message: format!("a mapping key must be a string, not {}", node.kind()),
        }),
    }
}

/// Resolves a plain (unquoted) scalar as YAML 1.2's core schema does.
fn resolve_plain(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    let int = if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = text.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if text
        .trim_start_matches(['-', '+'])
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        text.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Scalar::Int(i);
    }
    let lower = text.to_ascii_lowercase();
    match lower.trim_start_matches(['-', '+']) {
        ".inf" => {
            return Scalar::Float(if text.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        ".nan" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    Scalar::Str(text.to_owned())
}
