//! Traversal of the import graph from the entry.
//!
//! Contract of [`load`]: starting from the (canonical) entry, every module reachable through
//! relative imports is read once (cycles are fine: modules are keyed by canonical path),
//! scripts are transpiled with their specifiers rewritten to uploaded names, and data modules
//! are checked (JSON parses, text is UTF-8, wasm is a well-formed module) and kept byte for byte.
//! Work is bounded by [`Limits`]: module count, bytes read, and the modules' total size. The
//! traversal order is fixed (breadth-first, imports in source order), so the first error is
//! the same on every run.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::error::{Location, WorkerError};
use super::resolve::{relative_specifier, ModuleKind, Resolution, Root};
use super::transpile::{transpile, Language};

/// Bounds on the work of one build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most modules a Worker may reach.
    pub max_modules: usize,
    /// Most bytes of all modules (after transpiling), uncompressed.
    pub max_total: u64,
    /// Most bytes read from disk over the whole build.
    pub max_read: u64,
}

/// One loaded module: its kind and the bytes to upload.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub kind: ModuleKind,
    pub content: Vec<u8>,
}

/// Every module reachable from the entry, by canonical path.
pub(crate) type Graph = BTreeMap<PathBuf, Loaded>;

/// Loads the graph from `entry` (canonical, a script inside `root`); see the module doc.
pub(crate) fn load(root: &Root, entry: &Path, limits: &Limits) -> Result<Graph, WorkerError> {
    let entry_kind = ModuleKind::of(entry).ok_or_else(|| WorkerError::UnsupportedEntry {
        path: root.display(entry),
    })?;
    let mut walk = Walk {
        root,
        limits,
        queue: VecDeque::from([(entry.to_path_buf(), entry_kind)]),
        seen: HashSet::from([entry.to_path_buf()]),
    };
    let mut graph = Graph::new();
    let mut read_budget = limits.max_read;
    let mut total: u64 = 0;

    while let Some((path, kind)) = walk.queue.pop_front() {
        let display = root.display(&path);
        let bytes = read_bounded(&path, &display, &mut read_budget, limits.max_read)?;
        let content = match kind {
            ModuleKind::JavaScript | ModuleKind::TypeScript => {
                walk.script(&path, &display, &bytes, kind)?
            }
            ModuleKind::Json | ModuleKind::Text | ModuleKind::Wasm => {
                check_data(kind, &display, bytes)?
            }
        };
        total = total.saturating_add(content.len() as u64);
        if total > limits.max_total {
            let sizes = graph
                .iter()
                .map(|(p, m)| (root.display(p), m.content.len() as u64))
                .chain([(display.clone(), content.len() as u64)])
                .map(|(p, n)| (p.display().to_string(), n));
            return Err(WorkerError::TooLarge {
                total,
                limit: limits.max_total,
                largest: super::error::largest(sizes),
            });
        }
        graph.insert(path, Loaded { kind, content });
    }
    Ok(graph)
}

/// The traversal's frontier: modules queued (breadth-first) and every module seen.
struct Walk<'a> {
    root: &'a Root,
    limits: &'a Limits,
    queue: VecDeque<(PathBuf, ModuleKind)>,
    seen: HashSet<PathBuf>,
}

impl Walk<'_> {
    /// Transpiles the script at `path`, queueing each module it imports that was not seen
    /// (more than [`Limits::max_modules`] is an error) and rewriting its specifiers.
    fn script(
        &mut self,
        path: &Path,
        display: &Path,
        bytes: &[u8],
        kind: ModuleKind,
    ) -> Result<Vec<u8>, WorkerError> {
        let source = utf8(display, bytes)?;
        let language = if kind == ModuleKind::TypeScript {
            Language::TypeScript
        } else {
            Language::JavaScript
        };
        let code = transpile(display, source, language, |specifier, offset| {
            let at = Location::at(display, source, offset);
            match self.root.resolve(path, specifier, &at)? {
                Resolution::Builtin => Ok(None),
                Resolution::Module(target, target_kind) => {
                    if self.seen.insert(target.clone()) {
                        if self.seen.len() > self.limits.max_modules {
                            return Err(WorkerError::TooManyModules {
                                at,
                                limit: self.limits.max_modules,
                            });
                        }
                        self.queue.push_back((target.clone(), target_kind));
                    }
                    relative_specifier(path, &target).map(Some)
                }
            }
        })?;
        Ok(code.into_bytes())
    }
}

/// Checks a data module (JSON parses, text is UTF-8, wasm is a well-formed module) and
/// returns its bytes unchanged.
fn check_data(kind: ModuleKind, display: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, WorkerError> {
    match kind {
        ModuleKind::Json => {
            let text = utf8(display, &bytes)?;
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
                return Err(WorkerError::InvalidJson {
                    at: Location {
                        file: display.to_path_buf(),
                        line: e.line(),
                        column: e.column(),
                    },
                    message: e.to_string(),
                });
            }
        }
        ModuleKind::Text => {
            utf8(display, &bytes)?;
        }
        ModuleKind::Wasm => {
            if let Err(reason) = super::wasm::check(&bytes) {
                return Err(WorkerError::InvalidWasm {
                    path: display.to_path_buf(),
                    reason,
                });
            }
        }
        ModuleKind::JavaScript | ModuleKind::TypeScript => {}
    }
    Ok(bytes)
}

/// Reads `path` whole, charging `budget`; more than the budget left is an error, and so is a
/// path that is not a regular file (a FIFO would block the build).
fn read_bounded(
    path: &Path,
    display: &Path,
    budget: &mut u64,
    limit: u64,
) -> Result<Vec<u8>, WorkerError> {
    use crate::manifest::regular::{read_regular, ReadError};
    // Only a regular file, opened without blocking, read to at most the budget left + 1 byte.
    let bytes = read_regular(path, *budget).map_err(|e| match e {
        ReadError::TooLarge(_) => WorkerError::SourcesTooLarge {
            path: display.to_path_buf(),
            limit,
        },
        ReadError::NotRegular(kind) => WorkerError::NotRegular {
            path: display.to_path_buf(),
            kind,
        },
        ReadError::Io(source) => WorkerError::Read {
            path: display.to_path_buf(),
            source,
        },
    })?;
    let len = bytes.len() as u64;
    *budget -= len;
    Ok(bytes)
}

/// `bytes` as UTF-8, or [`WorkerError::NonUtf8`] at the first invalid byte.
fn utf8<'b>(display: &Path, bytes: &'b [u8]) -> Result<&'b str, WorkerError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let prefix = std::str::from_utf8(valid).unwrap_or_default();
        WorkerError::NonUtf8 {
            at: Location::at(
                display,
                prefix,
                u32::try_from(prefix.len()).unwrap_or(u32::MAX),
            ),
        }
    })
}
