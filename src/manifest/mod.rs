//! Stage manifests: discovery, parsing with locations, validation, the [`Desired`] snapshot.
//!
//! [`load`] is all-or-nothing: it returns a complete snapshot, or every error found (each as
//! `file:line:col: message`). A caller that holds an older snapshot keeps it on error, so a
//! broken manifest never deletes anything.
//!
//! Rules against a typo or a passing glitch pruning the fleet:
//! - No manifest at all is [`LoadError::Empty`] unless [`LoadOptions::allow_empty`]: an empty
//!   folder (a git-sync or CI step caught half-way) must not read as "delete everything".
//! - A `.json` file is strict JSON (a trailing comma is an error, as in every JSON tool).
//! - A `.json` file that is not a stage manifest is kept aside in [`Loaded::unclassified`]: it
//!   is fine only as a module some worker imports (the caller checks that with
//!   [`unclassified_errors`] once the workers are built) or when `.lumierdignore` lists it.
//!
//! The steps: `discover` (which files), [`sources`](read) (read, fingerprint, decode each
//! file: `strict_json`, [`yaml`], `decode`, [`lumier`]), `assemble` (merge into stages and
//! check across documents, then `crosscheck`). The result types and errors are here.

mod assemble;
mod bindings;
mod crosscheck;
mod decode;
mod desired;
mod discover;
mod hash;
pub mod ignore;
pub mod lumier;
mod names;
mod paths;
pub mod regular;
pub mod schema;
mod sources;
mod strict_json;
pub mod text;
pub use crate::yaml;

pub use desired::{
    canonical_json, provider_name, BindingSpec, Desired, DriftMode, Origin, Resource, ResourceKey,
    ResourceSpec, SecretsMode, Stage, StageKey, WorkerSpec, DEFAULT_COMPATIBILITY_DATE,
};
pub use discover::{MAX_FILES, MAX_FILE_BYTES};
pub use hash::spec_hash;
pub use sources::{read, Sources};
pub use yaml::Pos;

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the manifests, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file as shown to the user (the root as given, joined with the relative path).
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

/// `file:line:col: message` on one line: the file and the message (which quotes user text)
/// are shown through [`text::escape`], so no input can break the line or reach the terminal.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            text::escape(&self.file),
            self.pos.line,
            self.pos.col,
            text::escape(&self.message)
        )
    }
}

/// Why manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("manifests folder `{}`: {source}; pass an existing folder with --manifests", text::escape(&path.display().to_string()))]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
    /// No stage manifest under the root, and [`LoadOptions::allow_empty`] is off.
    #[error("no stage manifests under `{}`: lumierd will not read an empty folder as \"delete every resource\"; add the manifests, or pass --allow-empty if every resource should really be deleted", text::escape(&path.display().to_string()))]
    Empty { path: PathBuf },
}

/// How [`load_with`] and [`Sources::decode_with`] treat edge cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept a root with no stage manifest (Argo CD's `allowEmpty`): the snapshot is then
    /// empty and a controller deletes what it manages. Off by default (`--allow-empty`).
    pub allow_empty: bool,
}

/// A `.json` file under the root that is not a stage manifest: acceptable only as a worker
/// module (see [`unclassified_errors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclassified {
    /// The file as shown to the user.
    pub display: String,
    /// Its canonical path (compare with the paths a worker build read).
    pub path: PathBuf,
    /// Why it is not a manifest, with a suggestion when its keys look like a typo.
    reason: String,
}

/// The errors for the JSON files of `unclassified` that no worker imports (`is_module` says
/// whether a canonical path is a module of some built worker). Empty when all are modules.
pub fn unclassified_errors(
    unclassified: &[Unclassified],
    is_module: impl Fn(&Path) -> bool,
) -> Vec<Diagnostic> {
    unclassified
        .iter()
        .filter(|u| !is_module(&u.path))
        .map(|u| Diagnostic {
            file: u.display.clone(),
            pos: Pos { line: 1, col: 1 },
            message: format!(
                "{}, and no worker imports it as a module; fix it, or list it in .lumierdignore if it is not a manifest",
                u.reason
            ),
        })
        .collect()
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful load: the snapshot, and the JSON files that are not manifests.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub desired: Desired,
    /// The canonical manifests root the snapshot was read from.
    pub root: PathBuf,
    /// JSON files without `app`, `stage` or `resources`: each must be a worker's module
    /// (check with [`unclassified_errors`] after building the workers), else it is an error.
    pub unclassified: Vec<Unclassified>,
    /// The fingerprint of the files it was decoded from ([`Sources::fingerprint`]).
    pub fingerprint: [u8; 32],
    /// Canonical paths of the Lumier configs and the files they import (read by the
    /// evaluations of pointer documents, [`lumier`]), sorted: the fingerprint does not cover
    /// them, so a reload compares them itself.
    pub lumier_files: Vec<PathBuf>,
    /// Every stage of every Lumier config, as the YAML manifest it is equivalent to (for
    /// `lumierd render`), in file and stage order.
    pub lumier_rendered: Vec<lumier::Rendered>,
}

/// Reads and validates every manifest under `root` (an empty root is an error).
pub fn load(root: &Path) -> Result<Loaded, LoadError> {
    load_with(root, &LoadOptions::default())
}

/// Reads and validates every manifest under `root`, as `options` say.
pub fn load_with(root: &Path, options: &LoadOptions) -> Result<Loaded, LoadError> {
    read(root)?.decode_with(options)
}
