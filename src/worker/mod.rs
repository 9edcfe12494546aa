//! Worker sources: an entry file → the modules uploaded for it, and their content hash.
//!
//! No Node and no subprocess: TypeScript is stripped in-process by oxc, and the import graph is
//! followed here. The steps, one file each:
//! - `resolve.rs`: specifier → file (TypeScript-like rules), kept inside the manifests root.
//! - `transpile.rs`: oxc parse + TypeScript transform + codegen, and specifier rewriting.
//! - `graph.rs`: traversal from the entry, with bounds.
//! - `hash.rs`: the deterministic content hash ([`content_hash`], also usable on modules read
//!   back from Cloudflare, sorted by name, to detect drift).
//!
//! # What is uploaded
//! - Every module reachable from the entry through relative imports (`import … from`,
//!   `import "…"`, `export … from`, `export * from`, `import("…")` with a literal) is its own
//!   module. `.js`/`.mjs` and `.ts`/`.mts` (emitted as `.js`/`.mjs`) are ES modules
//!   (`application/javascript+module`); `.json` is `application/json`; `.txt`/`.html` are
//!   `text/plain`; `.wasm` is `application/wasm`. Data modules are uploaded byte for byte.
//! - `import()` of anything but a literal path (``import(`./plugins/${n}.js`)``, a variable) is
//!   an error: its targets cannot be known, so they would never be uploaded.
//! - A `.wasm` module's structure is checked before upload (`wasm.rs`).
//! - Specifiers in emitted code are rewritten to the target's uploaded name relative to the
//!   importing module (`./util.ts` → `./util.js`, `./lib` → `./lib.js`). `cloudflare:*` and
//!   `node:*` are left as written. A bare (package) specifier is an error: bundle first.
//!
//! # Module names
//! A module's name is its path relative to the entry's folder (`index.js`, `lib.js`,
//! `util/strings.js`). When the graph also reaches files outside that folder (but inside the
//! manifests root, e.g. `../shared/x.ts`), names are relative to the nearest folder that holds
//! the entry and all of them instead: with `api/src/index.ts` importing `../../shared/x.ts`,
//! the modules are `api/src/index.js` and `shared/x.js`, and `main_module` is
//! `api/src/index.js`. Names thus stay unique, never contain `..`, and relative specifiers
//! between modules are exactly those between the files. Files are identified by their real
//! path (symlinks resolved), so a symlinked file is named after its target. Two files that
//! would get the same name (`lib.ts` and `lib.js` side by side, both imported) are an error.
//!
//! # Limits
//! At most [`MAX_MODULES`] modules; at most [`MAX_SIZE_PAID`] bytes of modules in total,
//! uncompressed (Cloudflare measures its 1 MiB Free / 10 MiB Paid limits after compression,
//! so checking the uncompressed total is conservative); at most four times that read from
//! disk. [`check_size`] checks a built bundle against another limit, e.g. [`MAX_SIZE_FREE`].

mod error;
mod graph;
mod hash;
mod resolve;
mod transpile;
mod wasm;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::cloudflare::types::Module;

pub use error::{Location, WorkerError};
pub use hash::content_hash;

/// Cloudflare's Worker size limit on the Free plan (1 MiB, measured after compression).
pub const MAX_SIZE_FREE: u64 = 1 << 20;
/// Cloudflare's Worker size limit on the Paid plan (10 MiB, measured after compression).
/// [`build`] refuses a bundle whose *uncompressed* total is over this.
pub const MAX_SIZE_PAID: u64 = 10 << 20;
/// Most modules [`build`] follows from one entry.
pub const MAX_MODULES: usize = 1000;

/// The modules uploaded for one Worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBundle {
    /// Uploaded name of the entry module, e.g. `index.js`.
    pub main_module: String,
    /// Every module, sorted by name (byte order); deterministic for the same files.
    pub modules: Vec<Module>,
    /// Lowercase hex SHA-256 over `main_module` and every module's (name, content type,
    /// content), in order, length-prefixed. Stable across runs and machines; changes whenever
    /// any uploaded byte or name changes; unaffected by files the entry does not reach.
    pub content_hash: String,
    /// Bytes of all modules' contents (uncompressed).
    pub total_size: u64,
    /// Canonical paths of every file read to build it (to tell when a rebuild is needed).
    pub sources: Vec<PathBuf>,
}

/// Builds the modules for the Worker whose entry file is `entry`.
///
/// `entry` is the path of the entry file (absolute, or relative to the current directory); it
/// must be a `.js`, `.mjs`, `.ts` or `.mts` file. Everything read — the entry and every file
/// it reaches — must lie inside `manifests_root` after `..` and symlinks are resolved.
/// Errors name the file, line and column, and for imports the importing file and specifier.
pub fn build(manifests_root: &Path, entry: &Path) -> Result<WorkerBundle, WorkerError> {
    build_with_limits(
        manifests_root,
        entry,
        &graph::Limits {
            max_modules: MAX_MODULES,
            max_total: MAX_SIZE_PAID,
            max_read: 4 * MAX_SIZE_PAID,
        },
    )
}

fn build_with_limits(
    manifests_root: &Path,
    entry: &Path,
    limits: &graph::Limits,
) -> Result<WorkerBundle, WorkerError> {
    let root = resolve::Root::new(manifests_root)?;
    let entry = root.entry(entry)?;
    let graph = graph::load(&root, &entry, limits)?;

    let base = graph.keys().fold(parent(&entry), |base, path| {
        common_ancestor(base, parent(path))
    });
    let mut named: std::collections::BTreeMap<String, (PathBuf, Module)> = Default::default();
    for (path, loaded) in graph {
        let name = module_name(base, &path)?;
        if let Some((first, _)) = named.get(&name) {
            return Err(WorkerError::NameCollision {
                name,
                first: root.display(first),
                second: root.display(&path),
            });
        }
        let module = Module {
            name: name.clone(),
            content_type: loaded.kind.content_type().to_string(),
            content: loaded.content,
        };
        named.insert(name, (path, module));
    }
    let main_module = module_name(base, &entry)?;
    let sources: Vec<PathBuf> = named.values().map(|(path, _)| path.clone()).collect();
    let modules: Vec<Module> = named.into_values().map(|(_, module)| module).collect();
    let total_size = modules.iter().map(|m| m.content.len() as u64).sum();
    let content_hash = hash::content_hash(&main_module, &modules);
    Ok(WorkerBundle {
        main_module,
        modules,
        content_hash,
        total_size,
        sources,
    })
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

/// The longest common leading part of two absolute paths.
fn common_ancestor<'p>(a: &'p Path, b: &Path) -> &'p Path {
    a.ancestors()
        .find(|candidate| b.starts_with(candidate))
        .unwrap_or(a)
}

/// The uploaded name of `path`: relative to `base`, `/`-separated, `.ts` → `.js`.
fn module_name(base: &Path, path: &Path) -> Result<String, WorkerError> {
    let relative = path.strip_prefix(base).unwrap_or(path);
    let mut parts = resolve::components(relative.parent().unwrap_or(Path::new("")))?;
    parts.push(resolve::uploaded_file_name(path)?);
    Ok(parts.join("/"))
}

/// Errors with [`WorkerError::TooLarge`] if the bundle's uncompressed total is over `limit`
/// (e.g. [`MAX_SIZE_FREE`] or [`MAX_SIZE_PAID`]; Cloudflare's own check is after compression,
/// so this is conservative).
pub fn check_size(bundle: &WorkerBundle, limit: u64) -> Result<(), WorkerError> {
    if bundle.total_size > limit {
        return Err(WorkerError::TooLarge {
            total: bundle.total_size,
            limit,
            largest: error::largest(
                bundle
                    .modules
                    .iter()
                    .map(|m| (m.name.clone(), m.content.len() as u64)),
            ),
        });
    }
    Ok(())
}

/// One line per module, `"name (content_type, N bytes)"`, in the bundle's order (for `plan`).
pub fn describe(bundle: &WorkerBundle) -> Vec<String> {
    bundle
        .modules
        .iter()
        .map(|m| format!("{} ({}, {} bytes)", m.name, m.content_type, m.content.len()))
        .collect()
}
