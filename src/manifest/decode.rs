//! One document → a typed stage declaration, reporting every error with its location.
//!
//! Pure: no I/O except resolving a worker's `entry` against the file system (to keep the
//! root-containment check next to the value it checks). A worker's bindings are decoded in
//! [`super::bindings`], paths inside the root resolved in [`super::paths`].

use super::bindings::bindings;
use super::desired::{BindingSpec, DriftMode, SecretsMode, DEFAULT_COMPATIBILITY_DATE};
use super::names;
use super::paths::resolve_entry;
use super::yaml::{Key, Node, Pos, Scalar, Value};
use super::Diagnostic;
use std::path::{Path, PathBuf};

/// `app.protect` as written: each stage with its position, and the position of the list.
pub type Protect = (Vec<(String, Pos)>, Pos);

/// A document's declaration of one stage, before documents are merged.
#[derive(Debug, Clone)]
pub struct DocDecl {
    /// Shared by the [`Origin`](super::Origin) of every resource the document declares.
    pub file: std::sync::Arc<str>,
    pub app: String,
    /// `app.protect` when the document states it: each entry with its position, and the
    /// position of the list.
    pub protect: Option<Protect>,
    pub stage: String,
    pub drift: Option<(DriftMode, Pos)>,
    pub resources: Vec<ResourceDecl>,
}

#[derive(Debug, Clone)]
pub struct ResourceDecl {
    pub name: String,
    pub pos: Pos,
    pub kind: KindDecl,
    pub drift: Option<DriftMode>,
}

#[derive(Debug, Clone)]
pub enum KindDecl {
    Kv,
    KvExisting {
        id: String,
    },
    Worker {
        entry: String,
        entry_path: PathBuf,
        /// (name, binding, position of the binding's value)
        bindings: Vec<(String, BindingSpec, Pos)>,
        compatibility_date: String,
        compatibility_flags: Vec<String>,
        secrets: SecretsMode,
        /// `workersDev`, default `true`.
        workers_dev: bool,
    },
}

/// Context shared by every document of a load.
pub struct Ctx<'a> {
    /// The canonical manifests root.
    pub root: &'a Path,
    /// The canonical folder of the file being decoded.
    pub dir: &'a Path,
    pub file: &'a str,
}

/// The decoder of one document: its context and where its errors go.
pub(super) struct D<'a, 'b> {
    pub(super) ctx: &'b Ctx<'a>,
    diags: &'b mut Vec<Diagnostic>,
}

impl D<'_, '_> {
    pub(super) fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.ctx.file.to_owned(),
            pos,
            message: message.into(),
        });
    }

    /// The entries of a mapping; reports unknown keys (with a suggestion) and wrong types.
    pub(super) fn map<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'n [(Key, Node)]> {
        let Some(entries) = node.as_map() else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, not {}", node.kind()),
            );
            return None;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                let hint = match names::closest(&key.name, allowed) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("allowed keys: {}", allowed.join(", ")),
                };
                self.err(
                    key.pos,
                    format!("unknown key `{}` in {what}; {hint}", key.name),
                );
            }
        }
        Some(entries)
    }

    /// A string value; other scalars get a hint to quote them.
    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &*node.value {
            Value::Scalar(Scalar::Str(s)) => Some(s.clone()),
            Value::Scalar(Scalar::Null) => {
                self.err(node.pos, format!("{what} is empty; give it a value"));
                None
            }
            Value::Scalar(other) => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, not {}; quote it", other.kind()),
                );
                None
            }
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, not {}", node.kind()),
                );
                None
            }
        }
    }

    /// A list of strings, each with its position.
    pub(super) fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Pos)>> {
        let Value::Seq(items) = &*node.value else {
            self.err(
                node.pos,
                format!("{what} must be a list of strings, not {}", node.kind()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.string(item, &format!("an item of {what}")) {
                Some(s) => out.push((s, item.pos)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn drift(&mut self, node: &Node) -> Option<DriftMode> {
        let text = self.string(node, "`drift`")?;
        match text.parse() {
            Ok(mode) => Some(mode),
            Err(message) => {
                self.err(node.pos, message);
                None
            }
        }
    }
}

pub(super) fn get<'n>(entries: &'n [(Key, Node)], name: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v)
}

/// Whether a document is meant as a stage manifest: a mapping with `app`, `stage` or
/// `resources`. JSON files that are not (a worker's `data.json`, `package.json`) are skipped.
pub fn looks_like_manifest(root: &Node) -> bool {
    ["app", "stage", "resources"]
        .iter()
        .any(|k| root.get(k).is_some())
}

/// Why a JSON document is not a stage manifest, for [`super::unclassified_errors`]: with a
/// suggestion when a top-level key is a near miss of `app`, `stage` or `resources` (`App`).
pub fn not_a_manifest(root: Option<&Node>) -> String {
    const KEYS: [&str; 3] = ["app", "stage", "resources"];
    let near = root.and_then(Node::as_map).and_then(|entries| {
        entries.iter().find_map(|(k, _)| {
            names::closest(&k.name.to_ascii_lowercase(), &KEYS).map(|near| (k.name.clone(), near))
        })
    });
    match near {
        Some((key, near)) => format!(
            "not a stage manifest: it has `{key}` but no `{near}` (keys are lowercase; did you mean `{near}`?)"
        ),
        None => "not a stage manifest (no `app`, `stage` or `resources`)".to_owned(),
    }
}

/// Decodes one document. Returns `None` when it has errors (all pushed to `diags`).
pub fn document(ctx: &Ctx<'_>, root: &Node, diags: &mut Vec<Diagnostic>) -> Option<DocDecl> {
    let before = diags.len();
    let mut d = D { ctx, diags };
    let entries = d.map(
        root,
        "a stage manifest",
        &["app", "stage", "resources", "drift"],
    )?;

    let (app, protect) = app_of(&mut d, root, entries);
    let stage = stage_of(&mut d, root, entries);
    let drift = get(entries, "drift").and_then(|n| d.drift(n).map(|m| (m, n.pos)));

    let mut resources = Vec::new();
    if let Some(res_node) = get(entries, "resources") {
        if matches!(&*res_node.value, Value::Scalar(Scalar::Null)) {
            // `resources:` with nothing under it: a stage with no resources.
        } else if let Some(res_entries) = res_node.as_map() {
            for (key, node) in res_entries {
                if let Some(r) = resource(&mut d, app.as_deref(), stage.as_deref(), key, node) {
                    resources.push(r);
                }
            }
        } else {
            d.err(
                res_node.pos,
                format!(
                    "`resources` must be a mapping of name → resource, not {}",
                    res_node.kind()
                ),
            );
        }
    }

    if d.diags.len() > before {
        return None;
    }
    Some(DocDecl {
        file: std::sync::Arc::from(ctx.file),
        app: app?,
        protect,
        stage: stage?,
        drift,
        resources,
    })
}

/// `app.name` (checked as a name part) and `app.protect`, when present and well-formed.
fn app_of(
    d: &mut D<'_, '_>,
    root: &Node,
    entries: &[(Key, Node)],
) -> (Option<String>, Option<Protect>) {
    let (mut app, mut protect) = (None, None);
    match get(entries, "app") {
        None => d.err(root.pos, "missing `app`; add `app: { name: my-app }`"),
        Some(node) => {
            if let Some(app_entries) = d.map(node, "`app`", &["name", "protect"]) {
                match get(app_entries, "name") {
                    None => d.err(
                        node.pos,
                        "missing `app.name`; add `name: my-app` under `app`",
                    ),
                    Some(n) => {
                        app = d.string(n, "`app.name`");
                        if let Some(name) = &app {
                            if let Err(m) = names::check_part(name, "app.name") {
                                d.err(n.pos, m);
                            }
                        }
                    }
                }
                if let Some(p) = get(app_entries, "protect") {
                    protect = d.string_list(p, "`app.protect`").map(|list| (list, p.pos));
                }
            }
        }
    }
    (app, protect)
}

/// `stage`, checked as a name part.
fn stage_of(d: &mut D<'_, '_>, root: &Node, entries: &[(Key, Node)]) -> Option<String> {
    match get(entries, "stage") {
        None => {
            d.err(
                root.pos,
                "missing `stage`; add `stage: staging` (or the stage's name)",
            );
            None
        }
        Some(n) => {
            let stage = d.string(n, "`stage`");
            if let Some(s) = &stage {
                if let Err(m) = names::check_part(s, "stage") {
                    d.err(n.pos, m);
                }
            }
            stage
        }
    }
}

fn resource(
    d: &mut D<'_, '_>,
    app: Option<&str>,
    stage: Option<&str>,
    key: &Key,
    node: &Node,
) -> Option<ResourceDecl> {
    let name = &key.name;
    let what = format!("resource `{name}`");
    if let Err(m) = names::check_part(name, "the resource name") {
        d.err(key.pos, m);
    }
    let Some(entries) = node.as_map() else {
        d.err(
            node.pos,
            format!(
                "{what} must be a mapping with a `type` (kv or worker), not {}",
                node.kind()
            ),
        );
        return None;
    };
    let type_node = match get(entries, "type") {
        Some(t) => t,
        None => {
            d.err(
                node.pos,
                format!("{what} has no `type`; add `type: kv` or `type: worker`"),
            );
            return None;
        }
    };
    let ty = d.string(type_node, "`type`")?;
    let allowed: &[&str] = match ty.as_str() {
        "kv" => &["type", "drift", "existing"],
        "worker" => &[
            "type",
            "drift",
            "entry",
            "bindings",
            "compatibility",
            "secrets",
            "workersDev",
        ],
        other => {
            d.err(
                type_node.pos,
                format!("unknown type `{other}` for {what}; use `kv` or `worker`"),
            );
            return None;
        }
    };
    unknown_keys(d, &ty, &what, entries, allowed);
    let drift = get(entries, "drift").and_then(|n| d.drift(n));
    let full = |app: &str, stage: &str| super::desired::provider_name(app, stage, name);
    let kind = if ty == "kv" {
        kv(d, app, stage, key, entries)?
    } else {
        if let (Some(app), Some(stage)) = (app, stage) {
            if let Err(m) = names::check_script_name(app, stage, name, &full(app, stage)) {
                d.err(key.pos, m);
            }
        }
        worker(d, app, stage, &what, node, entries)?
    };
    Some(ResourceDecl {
        name: name.clone(),
        pos: key.pos,
        kind,
        drift,
    })
}

/// A `kv` resource: `existing` (an id, checked) or managed (its title checked).
fn kv(
    d: &mut D<'_, '_>,
    app: Option<&str>,
    stage: Option<&str>,
    key: &Key,
    entries: &[(Key, Node)],
) -> Option<KindDecl> {
    let name = &key.name;
    let full = |app: &str, stage: &str| super::desired::provider_name(app, stage, name);
    Some(match get(entries, "existing") {
        Some(ex) => {
            let ex_entries = d.map(ex, "`existing`", &["id"])?;
            let Some(id_node) = get(ex_entries, "id") else {
                d.err(
                    ex.pos,
                    "`existing` needs the namespace `id` (32 hex characters)",
                );
                return None;
            };
            let id = d.string(id_node, "`existing.id`")?;
            if let Err(m) = names::check_namespace_id(&id) {
                d.err(id_node.pos, m);
                return None;
            }
            KindDecl::KvExisting { id }
        }
        None => {
            if let (Some(app), Some(stage)) = (app, stage) {
                if let Err(m) = names::check_kv_title(app, stage, name, &full(app, stage)) {
                    d.err(key.pos, m);
                }
            }
            KindDecl::Kv
        }
    })
}

/// Reports each key of a `ty` resource not in `allowed`, with a suggestion.
fn unknown_keys(
    d: &mut D<'_, '_>,
    ty: &str,
    what: &str,
    entries: &[(Key, Node)],
    allowed: &[&str],
) {
    for (k, _) in entries {
        if !allowed.contains(&k.name.as_str()) {
            let hint = if k.name == "existing" {
                "`existing` is only for `type: kv` (KV.existing)".to_owned()
            } else {
                match names::closest(&k.name, allowed) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("a {ty} resource takes: {}", allowed.join(", ")),
                }
            };
            d.err(k.pos, format!("unknown key `{}` in {what}; {hint}", k.name));
        }
    }
}

fn worker(
    d: &mut D<'_, '_>,
    app: Option<&str>,
    stage: Option<&str>,
    what: &str,
    node: &Node,
    entries: &[(Key, Node)],
) -> Option<KindDecl> {
    let entry_node = get(entries, "entry");
    let entry = match entry_node {
        None => {
            d.err(
                node.pos,
                format!("{what} has no `entry`; add `entry: src/index.ts` (relative to this file)"),
            );
            None
        }
        Some(n) => d
            .string(n, "`entry`")
            .and_then(|e| match resolve_entry(d.ctx, &e) {
                Ok(path) => Some((e, path)),
                Err(m) => {
                    d.err(n.pos, m);
                    None
                }
            }),
    };

    let bindings = get(entries, "bindings")
        .map(|b_node| bindings(d, app, stage, what, b_node))
        .unwrap_or_default();
    let (compatibility_date, compatibility_flags) = get(entries, "compatibility")
        .map(|c_node| compatibility(d, c_node))
        .unwrap_or_else(|| (DEFAULT_COMPATIBILITY_DATE.to_owned(), Vec::new()));
    let (secrets, workers_dev) = secrets_and_route(d, entries);
    let (entry, entry_path) = entry?;
    Some(KindDecl::Worker {
        workers_dev,
        entry,
        entry_path,
        bindings,
        compatibility_date,
        compatibility_flags,
        secrets,
    })
}

/// `compatibility: { date, flags }`, each checked; the date defaults to
/// [`DEFAULT_COMPATIBILITY_DATE`].
fn compatibility(d: &mut D<'_, '_>, c_node: &Node) -> (String, Vec<String>) {
    let mut compatibility_date = DEFAULT_COMPATIBILITY_DATE.to_owned();
    let mut compatibility_flags = Vec::new();
    if let Some(c_entries) = d.map(c_node, "`compatibility`", &["date", "flags"]) {
        if let Some(date_node) = get(c_entries, "date") {
            if let Some(date) = d.string(date_node, "`compatibility.date`") {
                match names::check_date(&date) {
                    Ok(()) => compatibility_date = date,
                    Err(m) => d.err(date_node.pos, m),
                }
            }
        }
        if let Some(f_node) = get(c_entries, "flags") {
            if let Some(flags) = d.string_list(f_node, "`compatibility.flags`") {
                for (flag, pos) in flags {
                    match names::check_flag(&flag) {
                        Ok(()) => compatibility_flags.push(flag),
                        Err(m) => d.err(pos, m),
                    }
                }
            }
        }
    }
    (compatibility_date, compatibility_flags)
}

/// `secrets:` (default `keep`) and `workersDev:` (a boolean, default `true`).
fn secrets_and_route(d: &mut D<'_, '_>, entries: &[(Key, Node)]) -> (SecretsMode, bool) {
    let mut secrets = SecretsMode::default();
    if let Some(s_node) = get(entries, "secrets") {
        if let Some(text) = d.string(s_node, "`secrets`") {
            match text.parse() {
                Ok(mode) => secrets = mode,
                Err(m) => d.err(s_node.pos, m),
            }
        }
    }
    // Absent: on, as wrangler does.
    let mut workers_dev = true;
    if let Some(w_node) = get(entries, "workersDev") {
        match &*w_node.value {
            Value::Scalar(Scalar::Bool(b)) => workers_dev = *b,
            _ => d.err(
                w_node.pos,
                format!(
                    "`workersDev` must be `true` (serve the script on workers.dev) or `false`, not {}",
                    w_node.kind()
                ),
            ),
        }
    }
    (secrets, workers_dev)
}
