//! Errors of the Worker sources step, and source locations for them.
//!
//! Every error that concerns a place in a source file displays as `file:line:col: message`
//! (1-based line and column, the column counted in characters), naming the importing file and,
//! for import problems, the specifier as written. Paths are shown under the manifests root as
//! the caller spelled it (a relative root gives relative paths).

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a source file: 1-based line and column (column counted in Unicode scalar values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `source` (clamped to the text; a position inside a
    /// multi-byte character counts as that character).
    pub(crate) fn at(file: &Path, source: &str, offset: u32) -> Self {
        let mut end = (offset as usize).min(source.len());
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        let before = &source[..end];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a Worker's sources could not be turned into modules.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The manifests root does not exist or cannot be canonicalized.
    #[error("manifests root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The entry file does not exist or cannot be canonicalized.
    #[error("{}: cannot open the worker entry: {source}", path.display())]
    Entry {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The entry (after `..` and symlinks) is not inside the manifests root.
    #[error("{}: the worker entry resolves to {}, outside the manifests root {}", path.display(), resolved.display(), root.display())]
    EntryOutsideRoot {
        path: PathBuf,
        resolved: PathBuf,
        root: PathBuf,
    },
    /// The entry is not a JavaScript or TypeScript file.
    #[error("{}: the worker entry must be a .js, .mjs, .ts or .mts file", path.display())]
    UnsupportedEntry { path: PathBuf },
    /// A file that was resolved could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A module path is a FIFO, socket, device or folder (reading it could block).
    #[error("{}: cannot read: it is {kind}, not a regular file; worker modules must be regular files", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// The parser, the semantic checker or the TypeScript transform rejected a source file.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    /// A source or text module is not UTF-8; `at` is the first invalid byte.
    #[error("{at}: the file is not valid UTF-8 (first invalid byte here); worker sources and text modules must be UTF-8")]
    NonUtf8 { at: Location },
    /// A package (bare) specifier such as `"hono"`.
    #[error("{at}: cannot import \"{specifier}\": package imports are not resolved by lumierd; bundle the worker first (e.g. with esbuild, or `wrangler deploy --dry-run --outdir dist`) and point `entry` at the bundle")]
    BareSpecifier { at: Location, specifier: String },
    /// An absolute path or a URL specifier (other than the `cloudflare:` and `node:` built-ins).
    #[error("{at}: cannot import \"{specifier}\": {reason}")]
    UnsupportedSpecifier {
        at: Location,
        specifier: String,
        reason: &'static str,
    },
    /// No file matches a relative specifier.
    #[error("{at}: cannot import \"{specifier}\": no such file (tried {tried})")]
    NotFound {
        at: Location,
        specifier: String,
        /// The candidate paths probed, comma-separated.
        tried: String,
    },
    /// A relative specifier resolves (lexically or through a symlink) outside the manifests root.
    #[error("{at}: cannot import \"{specifier}\": it resolves to {}, outside the manifests root {}", resolved.display(), root.display())]
    Escape {
        at: Location,
        specifier: String,
        resolved: PathBuf,
        root: PathBuf,
    },
    /// The resolved file has an extension Cloudflare has no module type for (here).
    #[error("{at}: cannot import \"{specifier}\": {} is not a supported module type (supported: .js .mjs .ts .mts, .json, .txt .html, .wasm)", path.display())]
    UnsupportedModuleType {
        at: Location,
        specifier: String,
        path: PathBuf,
    },
    /// A `.json` module does not parse as JSON.
    #[error("{at}: invalid JSON: {message}")]
    InvalidJson { at: Location, message: String },
    /// A `.wasm` module is not a well-formed WebAssembly core module (`reason` says where).
    #[error("{}: not a valid WebAssembly module: {reason}", path.display())]
    InvalidWasm { path: PathBuf, reason: String },
    /// `import()` of a computed path: its targets cannot be found, so never uploaded.
    #[error("{at}: `import()` of a computed path: lumierd uploads only the modules it finds by reading literal import paths, so this one's targets would be missing at run time; write a literal path, e.g. `import(\"./plugins/a.js\")` (one per module, e.g. in a `switch`)")]
    DynamicImport { at: Location },
    /// Two different files map to the same uploaded name (e.g. `lib.ts` and `lib.js`).
    #[error("{} and {} would both be uploaded as module \"{name}\"; rename one of them", first.display(), second.display())]
    NameCollision {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A path component is not UTF-8, so it cannot become a module name.
    #[error("{}: the path is not valid UTF-8, so it cannot be a module name", path.display())]
    NonUtf8Path { path: PathBuf },
    /// The import graph reaches more modules than the bound.
    #[error("{at}: the worker reaches more than {limit} modules; bundle it first and point `entry` at the bundle")]
    TooManyModules { at: Location, limit: usize },
    /// Reading sources went over the read budget (a single huge file, or type-heavy sources).
    #[error("{}: reading the worker's sources went over {limit} bytes", path.display())]
    SourcesTooLarge { path: PathBuf, limit: u64 },
    /// The modules' total (uncompressed) size is over a limit.
    #[error("the worker's modules total {total} bytes (uncompressed), over the limit of {limit} bytes (Cloudflare allows 1 MiB on the Free plan and 10 MiB on Paid, measured after compression; lumierd checks the uncompressed total); largest: {largest}")]
    TooLarge {
        total: u64,
        limit: u64,
        /// The biggest modules, `name (N bytes)`, largest first (see [`largest`]).
        largest: String,
    },
}

/// The three biggest of `modules` (name, bytes) as `a.wasm (9000 bytes), b.js (12 bytes)`,
/// largest first (ties by name), for [`WorkerError::TooLarge`].
pub(crate) fn largest(modules: impl Iterator<Item = (String, u64)>) -> String {
    let mut all: Vec<(String, u64)> = modules.collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.iter()
        .take(3)
        .map(|(name, size)| format!("{name} ({size} bytes)"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_is_one_based_and_counts_characters() {
        let src = "ab\ncé d\n";
        let f = Path::new("f.ts");
        assert_eq!(Location::at(f, src, 0).to_string(), "f.ts:1:1");
        assert_eq!(Location::at(f, src, 3).to_string(), "f.ts:2:1");
        // 'é' is two bytes: byte 6 is the space after it, the third character.
        assert_eq!(Location::at(f, src, 6).to_string(), "f.ts:2:3");
        // Inside a multi-byte character, and past the end: clamped.
        assert_eq!(Location::at(f, src, 5).to_string(), "f.ts:2:2");
        assert_eq!(Location::at(f, src, 99).to_string(), "f.ts:3:1");
    }
}
