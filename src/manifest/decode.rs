//! One document → a typed stage declaration, reporting every error with its location.
//!
//! Pure: no I/O except resolving a worker's `entry` against the file system (to keep the
//! root-containment check next to the value it checks).

use super::desired::{
    canonical_json, BindingSpec, DriftMode, SecretsMode, DEFAULT_COMPATIBILITY_DATE,
};
use super::names;
use super::yaml::{Key, Node, Pos, Scalar, Value};
use super::Diagnostic;
use crate::secrets::SecretSource;
use std::path::{Component, Path, PathBuf};

/// Most bindings one worker may have (Cloudflare's limit on the free plan).
pub const MAX_BINDINGS: usize = 64;
/// Largest plain-text var after substitution, in bytes (Cloudflare: 5 KB per var).
pub const MAX_TEXT_BYTES: usize = 5 * 1024;

/// A document's declaration of one stage, before documents are merged.
#[derive(Debug, Clone)]
pub struct DocDecl {
    /// Shared by the [`Origin`](super::Origin) of every resource the document declares.
    pub file: std::sync::Arc<str>,
    pub app: String,
    /// `app.protect` when the document states it: each entry with its position, and the
    /// position of the list.
    pub protect: Option<(Vec<(String, Pos)>, Pos)>,
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
        workers_dev: Option<bool>,
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

struct D<'a, 'b> {
    ctx: &'b Ctx<'a>,
    diags: &'b mut Vec<Diagnostic>,
}

impl D<'_, '_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.ctx.file.to_owned(),
            pos,
            message: message.into(),
        });
    }

    /// The entries of a mapping; reports unknown keys (with a suggestion) and wrong types.
    fn map<'n>(
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
    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
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
    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Pos)>> {
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

    fn drift(&mut self, node: &Node) -> Option<DriftMode> {
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

fn get<'n>(entries: &'n [(Key, Node)], name: &str) -> Option<&'n Node> {
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
    let stage = match get(entries, "stage") {
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
    };
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
    let drift = get(entries, "drift").and_then(|n| d.drift(n));
    let full = |app: &str, stage: &str| super::desired::provider_name(app, stage, name);
    let kind = if ty == "kv" {
        match get(entries, "existing") {
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
        }
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

    let mut bindings = Vec::new();
    if let Some(b_node) = get(entries, "bindings") {
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
    }

    let mut compatibility_date = DEFAULT_COMPATIBILITY_DATE.to_owned();
    let mut compatibility_flags = Vec::new();
    if let Some(c_node) = get(entries, "compatibility") {
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
    }
    let mut secrets = SecretsMode::default();
    if let Some(s_node) = get(entries, "secrets") {
        if let Some(text) = d.string(s_node, "`secrets`") {
            match text.parse() {
                Ok(mode) => secrets = mode,
                Err(m) => d.err(s_node.pos, m),
            }
        }
    }
    let mut workers_dev = None;
    if let Some(w_node) = get(entries, "workersDev") {
        match &*w_node.value {
            Value::Scalar(Scalar::Bool(b)) => workers_dev = Some(*b),
            _ => d.err(
                w_node.pos,
                format!(
                    "`workersDev` must be `true` (serve the script on workers.dev) or `false`, not {}",
                    w_node.kind()
                ),
            ),
        }
    }
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
        Value::Map(_) => {
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
                _ => {
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
            }
        }
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

/// The keys of a binding given as a mapping (exactly one of them).
const BINDING_KINDS: &[&str] = &["kv", "json", "service", "secret"];

fn binding_kinds_hint() -> &'static str {
    "`{ kv: <kv resource> }`, `{ json: <any value> }`, `{ service: <worker resource> }` or `{ secret: { env: VAR } }`"
}

/// `{ env: VAR }` or `{ file: NAME }`: where a declared secret's value comes from.
fn secret_source(d: &mut D<'_, '_>, name: &str, node: &Node) -> Option<SecretSource> {
    let what = format!("`secret` of binding `{name}`");
    let entries = d.map(node, &what, &["env", "file"])?;
    let [(kind, value)] = entries else {
        d.err(
            node.pos,
            format!("{what} needs exactly one of `env: VARIABLE` (lumierd's environment) or `file: NAME` (a file in --secrets-dir)"),
        );
        return None;
    };
    let text = d.string(value, &format!("`{}` of {what}", kind.name))?;
    if kind.name == "env" {
        let ok = text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            d.err(value.pos, format!("{what}: `{text}` is not an environment variable name (letters, digits and `_`, not starting with a digit)"));
            return None;
        }
        Some(SecretSource::Env(text))
    } else {
        let ok =
            !text.is_empty() && text != "." && text != ".." && !text.contains(['/', '\\', '\0']);
        if !ok {
            d.err(value.pos, format!("{what}: `{text}` must be a file name in --secrets-dir (one path component, like `db-password`)"));
            return None;
        }
        Some(SecretSource::File(text))
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

/// Resolves a worker's `entry` (relative to the manifest's folder) and checks it stays inside
/// the root after `..` and symlinks, and is a file.
pub fn resolve_entry(ctx: &Ctx<'_>, entry: &str) -> Result<PathBuf, String> {
    let rel = Path::new(entry);
    if entry.is_empty() {
        return Err("`entry` is empty; give the worker's source file, e.g. `src/index.ts`".into());
    }
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
    {
        return Err(format!(
            "`entry` `{entry}` is absolute; write it relative to this manifest's folder"
        ));
    }
    let joined = ctx.dir.join(rel);
    let resolved = match resolve_under(ctx.dir, rel) {
        Ok(resolved) => resolved,
        // A path that leads out of the root is refused for that reason, whether or not
        // something happens to exist out there: the verdict must not depend on where the
        // repository is checked out or on what the machine has.
        Err(lexical) if !lexical.starts_with(ctx.root) => {
            return Err(format!(
                "`entry` `{entry}` resolves outside the manifests root (to {}); keep worker sources inside the repository",
                lexical.display()
            ));
        }
        Err(_) => {
            return Err(format!(
                "`entry` `{entry}` does not exist (looked for {}); fix the path",
                joined.display()
            ))
        }
    };
    if !resolved.starts_with(ctx.root) {
        return Err(format!(
            "`entry` `{entry}` resolves outside the manifests root (to {}); keep worker sources inside the repository",
            resolved.display()
        ));
    }
    if !resolved.is_file() {
        return Err(format!(
            "`entry` `{entry}` is not a file; point it at the worker's source file"
        ));
    }
    Ok(resolved)
}

/// `dir.join(rel)` made canonical, where `dir` is already canonical: one `lstat` per component
/// of `rel` instead of `realpath`'s walk over the whole absolute path (a reload resolves every
/// worker's entry); a symlink met on the way hands over to [`std::fs::canonicalize`].
///
/// When it does not resolve (something is missing), the error is where the path would lead,
/// following the symlinks that exist and `..` lexically: the caller decides "outside the
/// root" from that, so the verdict does not depend on what exists outside.
fn resolve_under(dir: &Path, rel: &Path) -> Result<PathBuf, PathBuf> {
    let mut out = dir.to_path_buf();
    let mut components = rel.components();
    while let Some(component) = components.next() {
        match component {
            Component::CurDir => {}
            // `out` is canonical so far, so its parent is the real parent.
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                let rest = components.as_path();
                let Ok(meta) = std::fs::symlink_metadata(&out) else {
                    return Err(lexically_normal(&out.join(rest)));
                };
                if meta.file_type().is_symlink() {
                    let link = out.clone();
                    let whole = if rest.as_os_str().is_empty() {
                        link.clone()
                    } else {
                        link.join(rest)
                    };
                    return std::fs::canonicalize(&whole).map_err(|_| {
                        let target = std::fs::read_link(&link).unwrap_or_default();
                        let base = link.parent().unwrap_or(dir);
                        lexically_normal(&base.join(target).join(rest))
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                let whole = dir.join(rel);
                return std::fs::canonicalize(&whole).map_err(|_| lexically_normal(&whole));
            }
        }
    }
    Ok(out)
}

/// `path` with `.` dropped and each `..` cancelling the component before it, without touching
/// the file system (so it works for paths that do not exist). `..` at the root stays at the root.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_under_a_canonical_folder_matches_realpath() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("a/b/x.js"), "").unwrap();
        std::fs::write(root.join("real/y.js"), "").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("a/link")).unwrap();
        for rel in [
            "b/x.js",
            "./b/../b/x.js",
            "link/y.js",
            "link/../real/y.js",
            "../a/b/x.js",
        ] {
            let a = root.join("a");
            assert_eq!(
                resolve_under(&a, Path::new(rel)).unwrap(),
                std::fs::canonicalize(a.join(rel)).unwrap(),
                "{rel}"
            );
        }
        assert_eq!(
            resolve_under(&root.join("a"), Path::new("b/missing.js")),
            Err(root.join("a/b/missing.js"))
        );
        // A dangling link is followed lexically, so an escape is seen as one.
        std::os::unix::fs::symlink("/nowhere/x.js", root.join("a/gone.js")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../x.js", root.join("a/up.js")).unwrap();
        assert_eq!(
            resolve_under(&root.join("a"), Path::new("gone.js")),
            Err(PathBuf::from("/nowhere/x.js"))
        );
        assert_eq!(
            resolve_under(&root.join("a"), Path::new("up.js")),
            Err(PathBuf::from("/x.js"))
        );
    }

    #[test]
    fn lexical_normalisation_table() {
        let table = [
            ("/r/a/../b", "/r/b"),
            ("/r/./a/b/../../c", "/r/c"),
            ("/r/a/../../../../etc/passwd", "/etc/passwd"),
            ("/r", "/r"),
        ];
        for (input, want) in table {
            assert_eq!(
                lexically_normal(Path::new(input)),
                Path::new(want),
                "{input}"
            );
        }
    }

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
