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
    let before = diags.len();
    let mut err = |pos: Pos, message: String| {
        diags.push(Diagnostic {
            file: ctx.file.to_owned(),
            pos,
            message,
        })
    };
    let Some(entries) = node.as_map() else {
        err(node.pos, "a Lumier pointer must be a mapping".to_owned());
        return None;
    };
    for (k, _) in entries {
        if !KEYS.contains(&k.name.as_str()) {
            let hint = match names::closest(&k.name, &KEYS) {
                Some(near) => format!("did you mean `{near}`?"),
                None => "a Lumier pointer takes only `lumier` and `stages`".to_owned(),
            };
            err(
                k.pos,
                format!("unknown key `{}` in a Lumier pointer; {hint}", k.name),
            );
        }
    }
    let config = config_path(ctx, node, &mut err);
    let stages = stages(node, &mut err);
    let config = config?;
    if diags.len() > before {
        return None;
    }
    let dir = config.parent().unwrap_or(ctx.root).to_path_buf();
    let file = display(ctx.root, root_display, &config);
    let pointer = Pointer {
        root: ctx.root,
        root_display,
        config: &config,
        file: &file,
    };
    let docs: Vec<StageDoc> = stages
        .iter()
        .filter_map(|stage| pointer.evaluate(stage, diags, files))
        .collect();
    (diags.len() == before).then_some(Expanded { file, dir, docs })
}

/// The canonical config file `lumier:` names, or `None` (said through `err`).
fn config_path(ctx: &Ctx<'_>, node: &Node, err: &mut impl FnMut(Pos, String)) -> Option<PathBuf> {
    let n = node.get("lumier")?;
    let Some(path) = n.as_str() else {
        let kind = n.kind();
        err(
            n.pos,
            format!("`lumier` must be the config's path (a string), not {kind}"),
        );
        return None;
    };
    resolve_entry(ctx, path)
        .map_err(|m| {
            let m = m.replace("`entry`", "`lumier`");
            err(n.pos, m.replace("worker's source file", "Lumier config"))
        })
        .ok()
}

/// The stage names `stages:` lists, each checked (problems said through `err`).
fn stages(node: &Node, err: &mut impl FnMut(Pos, String)) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let items = match node.get("stages") {
        None => {
            let m =
                "missing `stages`; add `stages: [staging, production]` (the stages to converge)";
            err(node.pos, m.to_owned());
            return stages;
        }
        Some(s) => match &*s.value {
            Value::Seq(items) if !items.is_empty() => items,
            _ => {
                let m =
                    "`stages` must be a non-empty list of stage names, like [staging, production]";
                err(s.pos, m.to_owned());
                return stages;
            }
        },
    };
    for item in items {
        match &*item.value {
            Value::Scalar(Scalar::Str(name)) => {
                if let Err(m) = names::check_part(name, "stage") {
                    err(item.pos, m);
                } else if stages.contains(name) {
                    err(
                        item.pos,
                        format!("stage `{name}` is listed twice; remove one"),
                    );
                } else {
                    stages.push(name.clone());
                }
            }
            _ => err(
                item.pos,
                format!("each stage must be a string, not {}; quote it", item.kind()),
            ),
        }
    }
    stages
}

/// A checked pointer: what evaluating one of its stages needs.
struct Pointer<'a> {
    root: &'a Path,
    root_display: &'a str,
    config: &'a Path,
    /// The config as shown to the user.
    file: &'a str,
}

impl Pointer<'_> {
    /// Evaluates `stage` ([`crate::lumier::evaluate`]) into its document, or pushes why not.
    fn evaluate(
        &self,
        stage: &str,
        diags: &mut Vec<Diagnostic>,
        files: &mut Vec<PathBuf>,
    ) -> Option<StageDoc> {
        let input = crate::lumier::Input {
            root: self.root,
            root_display: self.root_display,
            config: self.config,
            stage,
        };
        let eval = match crate::lumier::evaluate(&input) {
            Ok(eval) => eval,
            Err(f) => {
                files.push(self.config.to_path_buf());
                diags.push(Diagnostic {
                    file: f.file,
                    pos: f.pos,
                    message: format!(
                        "{} (evaluating the Lumier config for stage `{stage}`)",
                        f.message
                    ),
                });
                return None;
            }
        };
        files.extend(eval.files.iter().cloned());
        match crate::lumier::document::document(stage, &eval) {
            Ok(root) => Some(StageDoc {
                stage: stage.to_owned(),
                root,
            }),
            Err(errors) => {
                diags.extend(errors.into_iter().map(|(pos, message)| Diagnostic {
                    file: self.file.to_owned(),
                    pos,
                    message: format!("{message} (stage `{stage}`)"),
                }));
                None
            }
        }
    }
}

fn display(root: &Path, root_display: &str, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    Path::new(root_display).join(rel).display().to_string()
}
