//! The engine's module resolver and loader for one evaluation, and the mapping of engine
//! positions back to the files the user wrote.
//!
//! | specifier | resolves to |
//! | --- | --- |
//! | `"lumier"` | the in-process module `lumier.js` |
//! | `"./x"`, `"../x.ts"` inside the root | the file (`./x` tries `x.ts`, `x.js`, `x/index.ts`, `x/index.js`), types stripped |
//! | a path that leaves the root (also through a symlink) | refused: [`FailureKind::Import`] |
//! | a bare name (`fs`, `node:fs`), a URL | refused: [`FailureKind::Import`] |
//! | a file that is not `.ts`/`.mts`/`.js`/`.mjs` | refused: [`FailureKind::Import`] |
//! | a file larger than [`MAX_FILE_BYTES`] or unreadable | [`FailureKind::Io`] |
//! | a file that does not parse | [`FailureKind::Syntax`] (or [`FailureKind::Global`] for a refused global) |
//!
//! The first such failure is kept in [`Shared::failure`]: it is more precise than the error
//! the engine reports for it.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rquickjs::loader::{Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Module};

use super::engine::{Failure, FailureKind};
use super::strip::{strip, StripError, Stripped};
use crate::yaml::Pos;

/// The specifier of lumierd's own module.
pub const LUMIER_MODULE: &str = "lumier";
/// The name of the driver module that imports the config.
pub const DRIVER: &str = "<lumierd>";
/// Largest config or imported file, in bytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
const LUMIER_JS: &str = include_str!("lumier.js");
const EXTENSIONS: [&str; 4] = ["ts", "mts", "js", "mjs"];

/// A module the loader read: where it is shown, its source, and its stripped form.
struct ModuleInfo {
    display: String,
    source: String,
    stripped: Stripped,
}

/// State shared by the resolver, the loader and the error mapping.
pub struct Shared {
    root: PathBuf,
    root_display: String,
    config: PathBuf,
    modules: HashMap<String, ModuleInfo>,
    /// The first failure the resolver or loader met (more precise than the engine's error).
    pub failure: Option<Failure>,
}

impl Shared {
    /// `root` is canonical, `root_display` the root as the user gave it, `config` the
    /// canonical config file.
    pub fn new(root: &Path, root_display: &str, config: &Path) -> Shared {
        Shared {
            root: root.to_path_buf(),
            root_display: root_display.to_owned(),
            config: config.to_path_buf(),
            modules: HashMap::new(),
            failure: None,
        }
    }

    /// A canonical path inside the root as the user sees it (the root as given, joined with
    /// the relative path).
    pub fn display(&self, path: &Path) -> String {
        display(&self.root, &self.root_display, path)
    }

    fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            self.failure = Some(failure);
        }
    }

    /// The innermost user frame of a stack (`only`: in that module) as (file, position).
    pub fn locate(&self, stack: &str, only: Option<&str>) -> Option<(String, Pos)> {
        stack.lines().find_map(|line| {
            let (module, line, col) = frame(line)?;
            if only.is_some_and(|m| m != module) {
                return None;
            }
            let info = self.modules.get(module)?;
            let (line, col) = info.stripped.original(line, col)?;
            Some((info.display.clone(), Pos { line, col }))
        })
    }

    /// Every file read so far (canonical paths), sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.modules.keys().map(PathBuf::from).collect();
        files.sort();
        files
    }

    /// Records an import failure at the specifier `name` in module `base`; the engine's error.
    fn refuse(&mut self, base: &str, name: &str, why: String) -> rquickjs::Error {
        let (file, pos) = match self.modules.get(base) {
            Some(info) => {
                let offset = [format!("\"{name}\""), format!("'{name}'")]
                    .iter()
                    .filter_map(|q| info.source.find(q.as_str()).map(|i| i + 1))
                    .min()
                    .unwrap_or(0);
                (info.display.clone(), pos_at(&info.source, offset))
            }
            None => (base.to_owned(), Pos { line: 1, col: 1 }),
        };
        self.fail(Failure {
            kind: FailureKind::Import,
            file,
            pos,
            message: why,
        });
        rquickjs::Error::new_resolving(base, name)
    }
}

/// `path` (canonical, inside `root`) as the user sees it: `root_display` joined with the
/// relative path.
pub fn display(root: &Path, root_display: &str, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    Path::new(root_display).join(rel).display().to_string()
}

/// `    at f (file:line:col)` or `    at file:line:col` → (file, line, col).
pub fn frame(line: &str) -> Option<(&str, usize, usize)> {
    let rest = line.trim().strip_prefix("at ")?;
    let place = match rest.strip_suffix(')') {
        Some(r) => &r[r.rfind('(')? + 1..],
        None => rest,
    };
    let (place, col) = place.rsplit_once(':')?;
    let (file, line) = place.rsplit_once(':')?;
    Some((file, line.parse().ok()?, col.parse().ok()?))
}

/// The 1-based line and column of byte `offset` of `text`.
fn pos_at(text: &str, offset: usize) -> Pos {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        col: before[start..].chars().count() + 1,
    }
}

/// `a/./b/../c` → `a/c` without touching the file system (symlinks are checked afterwards).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn importable(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

/// The files a relative specifier may name, in the order they are tried.
fn candidates(joined: PathBuf) -> Vec<PathBuf> {
    if importable(&joined) {
        return vec![joined];
    }
    let mut out = vec![];
    for ext in ["ts", "js"] {
        let mut with = joined.clone().into_os_string();
        with.push(format!(".{ext}"));
        out.push(PathBuf::from(with));
    }
    for ext in ["ts", "js"] {
        out.push(joined.join(format!("index.{ext}")));
    }
    out
}

/// The resolver and the loader (both hold the same [`Shared`]).
pub struct Hooks(pub Arc<Mutex<Shared>>);

impl Hooks {
    pub fn shared(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Resolver for Hooks {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
    ) -> rquickjs::Result<String> {
        let mut shared = self.shared();
        if name == LUMIER_MODULE || (base == DRIVER && Path::new(name) == shared.config) {
            return Ok(name.to_owned());
        }
        if !(name.starts_with("./") || name.starts_with("../")) {
            return Err(shared.refuse(
                base,
                name,
                format!("import `{name}` is refused: a Lumier config may import only \"lumier\" and relative .ts/.js files inside the manifests root (no Node, npm or network modules)"),
            ));
        }
        let dir = Path::new(base).parent().unwrap_or(Path::new("/"));
        let found = candidates(normalize(&dir.join(name)))
            .iter()
            .find_map(|c| std::fs::canonicalize(c).ok().filter(|p| p.is_file()));
        let why = match found {
            Some(path) if path.starts_with(&shared.root) && importable(&path) => {
                return Ok(path.to_string_lossy().into_owned())
            }
            Some(path) if path.starts_with(&shared.root) => format!(
                "import `{name}` is refused: only .ts, .mts, .js and .mjs files can be imported"
            ),
            Some(_) => format!("import `{name}` is refused: it leaves the manifests root"),
            None => format!("import `{name}`: no such file (tried .ts and .js and index files)"),
        };
        Err(shared.refuse(base, name, why))
    }
}

/// Reads a file of at most [`MAX_FILE_BYTES`], or says why not.
fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_FILE_BYTES} bytes; a config file must be smaller"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))
}

/// Strips `source`'s types. A panic must not cross QuickJS's C frames (that aborts the
/// process): a parser bug on some input becomes this file's error instead.
fn strip_caught(path: &Path, source: &str) -> Result<Stripped, StripError> {
    let typescript = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("ts" | "mts")
    );
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        strip(path, source, typescript)
    }))
    .unwrap_or_else(|_| {
        Err(StripError {
            offset: 0,
            message: "the TypeScript step failed on this file (an internal error)".to_owned(),
            refused: false,
        })
    })
}

impl Loader for Hooks {
    fn load<'js>(&mut self, ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Module<'js, Declared>> {
        if name == LUMIER_MODULE {
            return Module::declare(ctx.clone(), LUMIER_MODULE, LUMIER_JS);
        }
        let path = PathBuf::from(name);
        let mut shared = self.shared();
        let display = shared.display(&path);
        let source = match read_bounded(&path) {
            Ok(source) => source,
            Err(message) => {
                shared.fail(Failure {
                    kind: FailureKind::Io,
                    file: display,
                    pos: Pos { line: 1, col: 1 },
                    message,
                });
                return Err(rquickjs::Error::new_loading(name));
            }
        };
        match strip_caught(&path, &source) {
            Ok(stripped) => {
                let code = stripped.code.clone();
                let info = ModuleInfo {
                    display,
                    source,
                    stripped,
                };
                shared.modules.insert(name.to_owned(), info);
                drop(shared);
                Module::declare(ctx.clone(), name, code)
            }
            Err(e) => {
                let (kind, message) = if e.refused {
                    (FailureKind::Global, e.message)
                } else {
                    (FailureKind::Syntax, format!("syntax error: {}", e.message))
                };
                let pos = pos_at(&source, e.offset as usize);
                shared.fail(Failure {
                    kind,
                    file: display,
                    pos,
                    message,
                });
                Err(rquickjs::Error::new_loading(name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        assert_eq!(frame("    at run (/a/b.ts:3:7)"), Some(("/a/b.ts", 3, 7)));
        assert_eq!(frame("    at /a/b.ts:3:7"), Some(("/a/b.ts", 3, 7)));
        assert_eq!(frame("    at <anonymous>"), None);
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(pos_at("ab\ncé d", 7), Pos { line: 2, col: 4 });
        assert_eq!(pos_at("ab", 99), Pos { line: 1, col: 3 });
    }
}
