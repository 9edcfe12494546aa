//! Specifier resolution and manifests-root containment.
//!
//! Contract:
//! - Only relative specifiers (`./…`, `../…`, `.`, `..`) are followed. `cloudflare:*` and
//!   `node:*` are runtime built-ins and are left alone. Bare specifiers (`"hono"`), absolute
//!   paths and other URL schemes are errors.
//! - Resolution is TypeScript-like: an existing file with a known extension is taken as is;
//!   `./x.js` that does not exist falls back to `./x.ts` (and `.mjs` to `.mts`); a specifier
//!   without a known extension tries `.ts`, `.mts`, `.js`, `.mjs`, then `/index.ts`,
//!   `/index.mts`, `/index.js`, `/index.mjs`.
//! - Every candidate is first normalized lexically (`..` pops a component, as Node and bundlers
//!   do) and must lie inside the canonical manifests root; the file found is then
//!   canonicalized (symlinks resolved) and must still lie inside it. Modules are identified by
//!   their canonical path, so a file reached twice (or through a symlink) is one module.

use std::path::{Component, Path, PathBuf};

use super::error::{Location, WorkerError};

/// What a module is uploaded as, decided by the extension of its canonical path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModuleKind {
    /// `.js`, `.mjs`: an ES module, uploaded with its specifiers rewritten.
    JavaScript,
    /// `.ts`, `.mts`: transpiled to an ES module (`.js`, `.mjs`).
    TypeScript,
    /// `.json`: a JSON module.
    Json,
    /// `.txt`, `.html`: a text module.
    Text,
    /// `.wasm`: a WebAssembly module.
    Wasm,
}

impl ModuleKind {
    /// The kind for `path`'s extension, if it is one lumierd uploads.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "js" | "mjs" => Some(Self::JavaScript),
            "ts" | "mts" => Some(Self::TypeScript),
            "json" => Some(Self::Json),
            "txt" | "html" => Some(Self::Text),
            "wasm" => Some(Self::Wasm),
            _ => None,
        }
    }

    /// The multipart content type Cloudflare expects for this kind (API-NOTES §1.3).
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::JavaScript | Self::TypeScript => "application/javascript+module",
            Self::Json => "application/json",
            Self::Text => "text/plain",
            Self::Wasm => "application/wasm",
        }
    }

    /// Whether the module is JavaScript/TypeScript source whose imports are followed.
    pub(crate) fn is_script(self) -> bool {
        matches!(self, Self::JavaScript | Self::TypeScript)
    }
}

/// Extensions for which a specifier counts as "has an extension" (no suffixes appended).
const KNOWN_EXTENSIONS: &[&str] = &["js", "mjs", "ts", "mts", "json", "txt", "html", "wasm"];
/// Suffixes tried, in order, for a specifier without a known extension.
const SUFFIXES: &[&str] = &[".ts", ".mts", ".js", ".mjs"];
/// Index files tried, in order, for a directory.
const INDEXES: &[&str] = &["index.ts", "index.mts", "index.js", "index.mjs"];

/// The uploaded file name of `path`: its file name with `.ts` → `.js` and `.mts` → `.mjs`.
pub(crate) fn uploaded_file_name(path: &Path) -> Result<String, WorkerError> {
    let name =
        path.file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| WorkerError::NonUtf8Path {
                path: path.to_path_buf(),
            })?;
    Ok(if let Some(stem) = name.strip_suffix(".mts") {
        format!("{stem}.mjs")
    } else if let Some(stem) = name.strip_suffix(".ts") {
        format!("{stem}.js")
    } else {
        name.to_string()
    })
}

/// The specifier that imports `to` from `from` (both canonical file paths) by uploaded names:
/// `./x.js`, `./util/strings.js`, `../shared/x.js`. It depends only on where the two files are
/// relative to each other, so it is the same whatever folder module names are relative to.
pub(crate) fn relative_specifier(from: &Path, to: &Path) -> Result<String, WorkerError> {
    let from_dir = components(from.parent().unwrap_or(from))?;
    let to_dir = components(to.parent().unwrap_or(to))?;
    let common = from_dir
        .iter()
        .zip(&to_dir)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["..".to_string(); from_dir.len() - common];
    parts.extend(to_dir[common..].iter().cloned());
    parts.push(uploaded_file_name(to)?);
    let joined = parts.join("/");
    Ok(if joined.starts_with("../") {
        joined
    } else {
        format!("./{joined}")
    })
}

/// The normal components of `path` as UTF-8 strings.
pub(crate) fn components(path: &Path) -> Result<Vec<String>, WorkerError> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => {
                Some(
                    s.to_str()
                        .map(str::to_string)
                        .ok_or_else(|| WorkerError::NonUtf8Path {
                            path: path.to_path_buf(),
                        }),
                )
            }
            _ => None,
        })
        .collect()
}

/// `path` with `.` dropped and `..` popping the previous component (never above the root).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What a specifier resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// A runtime built-in (`cloudflare:*`, `node:*`): left as written.
    Builtin,
    /// A file inside the root: its canonical path and kind.
    Module(PathBuf, ModuleKind),
}

/// The manifests root: its canonical path (for containment) and the path as given (for
/// messages).
#[derive(Debug, Clone)]
pub(crate) struct Root {
    canonical: PathBuf,
    given: PathBuf,
}

impl Root {
    /// Canonicalizes `manifests_root`.
    pub(crate) fn new(manifests_root: &Path) -> Result<Self, WorkerError> {
        let canonical =
            std::fs::canonicalize(manifests_root).map_err(|source| WorkerError::Root {
                path: manifests_root.to_path_buf(),
                source,
            })?;
        Ok(Self {
            canonical,
            given: manifests_root.to_path_buf(),
        })
    }

    /// `path` (canonical, inside the root) as shown in messages: under the root as given.
    pub(crate) fn display(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.canonical) {
            Ok(rel) => self.given.join(rel),
            Err(_) => path.to_path_buf(),
        }
    }

    fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.canonical)
    }

    /// Canonicalizes the entry and checks it is a script inside the root.
    pub(crate) fn entry(&self, entry: &Path) -> Result<PathBuf, WorkerError> {
        let resolved = std::fs::canonicalize(entry).map_err(|source| WorkerError::Entry {
            path: entry.to_path_buf(),
            source,
        })?;
        if !self.contains(&resolved) {
            return Err(WorkerError::EntryOutsideRoot {
                path: entry.to_path_buf(),
                resolved,
                root: self.given.clone(),
            });
        }
        if !resolved.is_file() || !ModuleKind::of(&resolved).is_some_and(ModuleKind::is_script) {
            return Err(WorkerError::UnsupportedEntry {
                path: entry.to_path_buf(),
            });
        }
        Ok(resolved)
    }

    /// Resolves `specifier`, written in `importer` (a canonical file path) at `at`.
    pub(crate) fn resolve(
        &self,
        importer: &Path,
        specifier: &str,
        at: &Location,
    ) -> Result<Resolution, WorkerError> {
        let is_relative = specifier == "."
            || specifier == ".."
            || specifier.starts_with("./")
            || specifier.starts_with("../");
        if !is_relative {
            return self.classify_non_relative(specifier, at);
        }
        let dir = importer.parent().unwrap_or(importer);
        let base = normalize(&dir.join(specifier));
        if !self.contains(&base) {
            return Err(self.escape(specifier, at, base));
        }
        let directory_only = specifier.ends_with('/')
            || specifier.ends_with("/.")
            || specifier.ends_with("/..")
            || specifier == "."
            || specifier == "..";
        let mut candidates: Vec<PathBuf> = Vec::new();
        let ext = base.extension().and_then(|e| e.to_str());
        let has_known_extension = ext.is_some_and(|e| KNOWN_EXTENSIONS.contains(&e));
        if !directory_only {
            match ext {
                Some("js") => candidates.extend([base.clone(), base.with_extension("ts")]),
                Some("mjs") => candidates.extend([base.clone(), base.with_extension("mts")]),
                _ if has_known_extension => candidates.push(base.clone()),
                _ => {
                    // Like TypeScript: `./x` means `x.ts` (…) before a file literally named `x`
                    // (which then fails as an unsupported module type, a clearer message).
                    for suffix in SUFFIXES {
                        let mut p = base.clone().into_os_string();
                        p.push(suffix);
                        candidates.push(PathBuf::from(p));
                    }
                    candidates.push(base.clone());
                }
            }
        }
        if directory_only || !has_known_extension {
            candidates.extend(INDEXES.iter().map(|index| base.join(index)));
        }
        for candidate in &candidates {
            if candidate.is_file() {
                return self.found(specifier, at, candidate);
            }
        }
        let tried = candidates
            .iter()
            .map(|c| self.display(c).display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(WorkerError::NotFound {
            at: at.clone(),
            specifier: specifier.to_string(),
            tried,
        })
    }

    fn classify_non_relative(
        &self,
        specifier: &str,
        at: &Location,
    ) -> Result<Resolution, WorkerError> {
        if specifier.starts_with("cloudflare:") || specifier.starts_with("node:") {
            return Ok(Resolution::Builtin);
        }
        let unsupported = |reason| WorkerError::UnsupportedSpecifier {
            at: at.clone(),
            specifier: specifier.to_string(),
            reason,
        };
        if specifier.starts_with('/') || specifier.starts_with('\\') {
            return Err(unsupported(
                "absolute paths are not supported; use a path relative to the importing file (\"./…\" or \"../…\")",
            ));
        }
        let scheme = specifier.split('/').next().unwrap_or_default();
        if scheme.contains(':') {
            return Err(unsupported(
                "only relative paths and the cloudflare:* and node:* built-ins can be imported",
            ));
        }
        Err(WorkerError::BareSpecifier {
            at: at.clone(),
            specifier: specifier.to_string(),
        })
    }

    /// A candidate exists: canonicalize, check containment and kind.
    fn found(
        &self,
        specifier: &str,
        at: &Location,
        candidate: &Path,
    ) -> Result<Resolution, WorkerError> {
        let canonical = std::fs::canonicalize(candidate).map_err(|source| WorkerError::Read {
            path: self.display(candidate),
            source,
        })?;
        if !self.contains(&canonical) {
            return Err(self.escape(specifier, at, canonical));
        }
        match ModuleKind::of(&canonical) {
            Some(kind) => Ok(Resolution::Module(canonical, kind)),
            None => Err(WorkerError::UnsupportedModuleType {
                at: at.clone(),
                specifier: specifier.to_string(),
                path: self.display(&canonical),
            }),
        }
    }

    fn escape(&self, specifier: &str, at: &Location, resolved: PathBuf) -> WorkerError {
        WorkerError::Escape {
            at: at.clone(),
            specifier: specifier.to_string(),
            resolved,
            root: self.given.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploaded_names_map_typescript_extensions() {
        let name = |p: &str| uploaded_file_name(Path::new(p)).unwrap();
        assert_eq!(name("/a/index.ts"), "index.js");
        assert_eq!(name("/a/x.mts"), "x.mjs");
        assert_eq!(name("/a/x.js"), "x.js");
        assert_eq!(name("/a/data.json"), "data.json");
    }

    #[test]
    fn relative_specifiers_use_uploaded_names() {
        let rel = |a: &str, b: &str| relative_specifier(Path::new(a), Path::new(b)).unwrap();
        assert_eq!(rel("/r/w/index.ts", "/r/w/lib.ts"), "./lib.js");
        assert_eq!(
            rel("/r/w/index.ts", "/r/w/util/strings.ts"),
            "./util/strings.js"
        );
        assert_eq!(rel("/r/w/util/strings.ts", "/r/w/lib.mts"), "../lib.mjs");
        assert_eq!(rel("/r/w/index.ts", "/r/shared/x.ts"), "../shared/x.js");
        assert_eq!(rel("/r/w/a/b.ts", "/r/w/c/d.json"), "../c/d.json");
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("/r/w/./a/../b")),
            PathBuf::from("/r/w/b")
        );
        assert_eq!(normalize(Path::new("/r/../../x")), PathBuf::from("/x"));
    }
}
