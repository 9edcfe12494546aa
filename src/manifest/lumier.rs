//! Pointer documents: `lumier: lumier.config.ts` + `stages: [staging, production]`.
//!
//! [`expand`] checks the pointer, evaluates the config once per stage ([`crate::lumier`]) and
//! returns one stage document per stage, for `decode::document` to validate exactly as it
//! validates a YAML stage manifest (same rules, same messages; positions in the config).
//! A config that fails to evaluate is a diagnostic like any other: the load fails whole.

use std::path::{Path, PathBuf};

use super::decode::Ctx;
use super::names;
use super::paths::resolve_entry;
use super::yaml::{Node, Pos, Scalar, Value};
use super::Diagnostic;

/// The keys of a pointer document.
const KEYS: [&str; 2] = ["lumier", "stages"];

/// Whether a document points at a Lumier config (a mapping with `lumier`).
pub fn is_pointer(root: &Node) -> bool {
    root.get("lumier").is_some()
}

/// One stage of an evaluated config, as a stage manifest document.
#[derive(Debug, Clone)]
pub struct StageDoc {
    pub stage: String,
    pub root: Node,
}

/// One stage of a Lumier config as YAML text (`lumierd render`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The config as shown to the user.
    pub config: String,
    pub stage: String,
    /// A YAML stage manifest equivalent to the stage; its `entry` paths are relative to the
    /// config's folder, so it belongs there.
    pub yaml: String,
}

impl Rendered {
    pub fn of(config: &str, doc: &StageDoc) -> Rendered {
        let comment = format!(
            "Rendered by `lumierd render` from {}, stage {}.\nEntry paths are relative to the config's folder: save this file there.",
            super::text::escape(config),
            super::text::escape(&doc.stage)
        );
        Rendered {
            config: config.to_owned(),
            stage: doc.stage.clone(),
            yaml: crate::lumier::render::yaml(&doc.root, &comment),
        }
    }
}

/// A pointer document, evaluated.
#[derive(Debug, Clone)]
pub struct Expanded {
    /// The config as shown to the user (diagnostics of its documents name it).
    pub file: String,
    /// The config's canonical folder (its `entry` paths are relative to it).
    pub dir: PathBuf,
    pub docs: Vec<StageDoc>,
}

/// Checks a pointer document and evaluates its config for each stage. Every file the
/// evaluations read is added to `files` (also when they fail: an edit of any of them must
/// trigger a reload). `None` when something failed (all pushed to `diags`).
pub fn expand(
    ctx: &Ctx<'_>,
    root_display: &str,
    node: &Node,
    diags: &mut Vec<Diagnostic>,
    files: &mut Vec<PathBuf>,
) -> Option<Expanded> {
    let err = |diags: &mut Vec<Diagnostic>, pos: Pos, message: String| {
        diags.push(Diagnostic {
            file: ctx.file.to_owned(),
            pos,
            message,
        })
    };
    let before = diags.len();
    let Some(entries) = node.as_map() else {
        err(
            diags,
            node.pos,
            "a Lumier pointer must be a mapping".to_owned(),
        );
        return None;
    };
    for (k, _) in entries {
        if !KEYS.contains(&k.name.as_str()) {
            let hint = match names::closest(&k.name, &KEYS) {
                Some(near) => format!("did you mean `{near}`?"),
                None => "a Lumier pointer takes only `lumier` and `stages`".to_owned(),
            };
            err(
                diags,
                k.pos,
                format!("unknown key `{}` in a Lumier pointer; {hint}", k.name),
            );
        }
    }
    let config = node.get("lumier").and_then(|n| match n.as_str() {
        Some(path) => match resolve_entry(ctx, path) {
            Ok(p) => Some(p),
            Err(m) => {
                err(
                    diags,
                    n.pos,
                    m.replace("`entry`", "`lumier`")
                        .replace("worker's source file", "Lumier config"),
                );
                None
            }
        },
        None => {
            err(
                diags,
                n.pos,
                format!(
                    "`lumier` must be the config's path (a string), not {}",
                    n.kind()
                ),
            );
            None
        }
    });
    let mut stages: Vec<(String, Pos)> = Vec::new();
    match node.get("stages") {
        None => err(
            diags,
            node.pos,
            "missing `stages`; add `stages: [staging, production]` (the stages to converge)"
                .to_owned(),
        ),
        Some(s) => match &*s.value {
            Value::Seq(items) if !items.is_empty() => {
                for item in items {
                    match &*item.value {
                        Value::Scalar(Scalar::Str(name)) => {
                            if let Err(m) = names::check_part(name, "stage") {
                                err(diags, item.pos, m);
                            } else if stages.iter().any(|(n, _)| n == name) {
                                err(
                                    diags,
                                    item.pos,
                                    format!("stage `{name}` is listed twice; remove one"),
                                );
                            } else {
                                stages.push((name.clone(), item.pos));
                            }
                        }
                        _ => err(
                            diags,
                            item.pos,
                            format!("each stage must be a string, not {}; quote it", item.kind()),
                        ),
                    }
                }
            }
            _ => err(
                diags,
                s.pos,
                "`stages` must be a non-empty list of stage names, like [staging, production]"
                    .to_owned(),
            ),
        },
    }
    let config = config?;
    if diags.len() > before {
        return None;
    }
    let dir = config.parent().unwrap_or(ctx.root).to_path_buf();
    let file = display(ctx.root, root_display, &config);
    let mut docs = Vec::new();
    for (stage, _) in &stages {
        let input = crate::lumier::Input {
            root: ctx.root,
            root_display,
            config: &config,
            stage,
        };
        match crate::lumier::evaluate(&input) {
            Ok(eval) => {
                files.extend(eval.files.iter().cloned());
                match crate::lumier::document::document(stage, &eval) {
                    Ok(root) => docs.push(StageDoc {
                        stage: stage.clone(),
                        root,
                    }),
                    Err(errors) => {
                        diags.extend(errors.into_iter().map(|(pos, message)| Diagnostic {
                            file: file.clone(),
                            pos,
                            message: format!("{message} (stage `{stage}`)"),
                        }))
                    }
                }
            }
            Err(f) => {
                files.push(config.clone());
                diags.push(Diagnostic {
                    file: f.file,
                    pos: f.pos,
                    message: format!(
                        "{} (evaluating the Lumier config for stage `{stage}`)",
                        f.message
                    ),
                });
            }
        }
    }
    (diags.len() == before).then_some(Expanded { file, dir, docs })
}

fn display(root: &Path, root_display: &str, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    Path::new(root_display).join(rel).display().to_string()
}
