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

mod bindings;
mod crosscheck;
mod decode;
mod desired;
mod discover;
#[cfg(test)]
mod fuzz;
mod hash;
pub mod ignore;
pub mod lumier;
mod names;
mod paths;
pub mod regular;
pub mod schema;
mod strict_json;
pub mod text;
pub mod yaml;

pub use desired::{
    canonical_json, provider_name, BindingSpec, Desired, DriftMode, Origin, Resource, ResourceKey,
    ResourceSpec, SecretsMode, Stage, StageKey, WorkerSpec, DEFAULT_COMPATIBILITY_DATE,
};
pub use discover::{MAX_FILES, MAX_FILE_BYTES};
pub use hash::spec_hash;
pub use yaml::Pos;

use decode::{DocDecl, KindDecl};
use litemap::LiteMap;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use strict_json::strict_json;

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

/// Every manifest file under a root, read but not yet parsed, with a fingerprint of them all.
#[derive(Debug)]
pub struct Sources {
    /// The root as the caller gave it (for messages).
    root_given: PathBuf,
    canonical: PathBuf,
    files: Vec<(discover::Found, String)>,
    /// Problems met while finding and reading (unreadable, too large, not UTF-8, ...).
    diags: Vec<Diagnostic>,
    /// SHA-256 over the root (as given and canonical) and every file's path and text: equal
    /// fingerprints mean [`Sources::decode`] would give the same result, so a reload may skip it.
    pub fingerprint: [u8; 32],
}

impl Sources {
    /// Whether something could not be read (then `decode` reports it).
    pub fn has_problems(&self) -> bool {
        !self.diags.is_empty()
    }
}

/// Finds and reads every manifest under `root` (cheap next to [`Sources::decode`]).
pub fn read(root: &Path) -> Result<Sources, LoadError> {
    use sha2::{Digest, Sha256};
    let canonical = std::fs::canonicalize(root).map_err(|source| LoadError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !canonical.is_dir() {
        return Err(LoadError::Root {
            path: root.to_path_buf(),
            source: std::io::Error::other("not a folder"),
        });
    }
    let root_display = root.display().to_string();
    let mut hasher = Sha256::new();
    let mut feed = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    feed(root_display.as_bytes());
    feed(canonical.as_os_str().as_encoded_bytes());
    let mut diags = Vec::new();
    let mut files = Vec::new();
    let ignore_text = discover::read_ignore(&canonical, &root_display, &mut diags);
    feed(ignore_text.as_bytes());
    let ignore = ignore::Ignore::parse(&ignore_text);
    for found in discover::find(&canonical, &root_display, &ignore, &mut diags) {
        match discover::read(&found) {
            Ok(text) => {
                feed(found.display.as_bytes());
                feed(found.path.as_os_str().as_encoded_bytes());
                feed(text.as_bytes());
                files.push((found, text));
            }
            Err(d) => diags.push(d),
        }
    }
    Ok(Sources {
        root_given: root.to_path_buf(),
        canonical,
        files,
        diags,
        fingerprint: hasher.finalize().into(),
    })
}

impl Sources {
    /// Parses and validates what [`read`] found: a complete snapshot or every problem (an
    /// empty root is an error).
    pub fn decode(self) -> Result<Loaded, LoadError> {
        self.decode_with(&LoadOptions::default())
    }

    /// Parses and validates what [`read`] found, as `options` say.
    pub fn decode_with(self, options: &LoadOptions) -> Result<Loaded, LoadError> {
        let Sources {
            root_given,
            canonical,
            files,
            mut diags,
            fingerprint,
        } = self;
        let mut docs = Vec::new();
        let mut unclassified = Vec::new();
        let mut lumier_files = Vec::new();
        let mut lumier_rendered = Vec::new();
        let root_display = root_given.display().to_string();
        for (found, text) in files {
            if found.json {
                if let Err(d) = strict_json(&found.display, &text) {
                    diags.push(d);
                    continue;
                }
            }
            let parsed = match yaml::parse(&text) {
                Ok(parsed) => parsed,
                Err(e) => {
                    diags.push(Diagnostic {
                        file: found.display.clone(),
                        pos: e.pos,
                        message: format!(
                            "not valid {}: {}",
                            if found.json { "JSON" } else { "YAML" },
                            e.message
                        ),
                    });
                    continue;
                }
            };
            let dir = found.path.parent().unwrap_or(&canonical).to_path_buf();
            let ctx = decode::Ctx {
                root: &canonical,
                dir: &dir,
                file: &found.display,
            };
            if found.json
                && !parsed
                    .iter()
                    .any(|d| decode::looks_like_manifest(&d.root) || lumier::is_pointer(&d.root))
            {
                unclassified.push(Unclassified {
                    reason: decode::not_a_manifest(parsed.first().map(|d| &d.root)),
                    display: found.display,
                    path: found.path,
                });
                continue;
            }
            for doc in &parsed {
                if lumier::is_pointer(&doc.root) {
                    let expanded = lumier::expand(
                        &ctx,
                        &root_display,
                        &doc.root,
                        &mut diags,
                        &mut lumier_files,
                    );
                    for (file, dir, stage_doc) in expanded
                        .iter()
                        .flat_map(|e| e.docs.iter().map(move |d| (&e.file, &e.dir, d)))
                    {
                        lumier_rendered.push(lumier::Rendered::of(file, stage_doc));
                        let stage_doc = &stage_doc.root;
                        let config_ctx = decode::Ctx {
                            root: &canonical,
                            dir,
                            file,
                        };
                        if let Some(decl) = decode::document(&config_ctx, stage_doc, &mut diags) {
                            docs.push(decl);
                        }
                    }
                    continue;
                }
                if let Some(decl) = decode::document(&ctx, &doc.root, &mut diags) {
                    docs.push(decl);
                }
            }
        }
        let no_documents = docs.is_empty();
        let desired = assemble(docs, &mut diags);
        if diags.is_empty() && no_documents && !options.allow_empty {
            return Err(LoadError::Empty { path: root_given });
        }
        if diags.is_empty() {
            lumier_files.sort();
            lumier_files.dedup();
            Ok(Loaded {
                desired,
                root: canonical,
                unclassified,
                fingerprint,
                lumier_files,
                lumier_rendered,
            })
        } else {
            diags.sort();
            diags.dedup();
            Err(LoadError::Invalid(diags))
        }
    }
}

/// Merges the documents into stages and checks what spans documents: `app.protect`
/// agreement, stage `drift` agreement, names declared twice, and `{ kv: X }` references.
fn assemble(docs: Vec<DocDecl>, diags: &mut Vec<Diagnostic>) -> Desired {
    let at = |file: &str, pos: Pos| format!("{file}:{}:{}", pos.line, pos.col);
    // app → (protect list, where it was stated)
    let mut protect: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    // app → the entries of the first document that states them, with positions and file.
    let mut protect_entries = crosscheck::ProtectEntries::new();
    for doc in &docs {
        let Some((entries, pos)) = &doc.protect else {
            continue;
        };
        let list: Vec<String> = entries.iter().map(|(s, _)| s.clone()).collect();
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        match protect.get(&doc.app) {
            None => {
                protect.insert(doc.app.clone(), (sorted, at(&doc.file, *pos)));
                protect_entries.insert(doc.app.clone(), (entries.clone(), doc.file.clone()));
            }
            Some((first, first_at)) if *first != sorted => diags.push(Diagnostic {
                file: doc.file.to_string(),
                pos: *pos,
                message: format!(
                    "app `{}` has protect [{}] here but [{}] at {first_at}; make every document of the app agree",
                    doc.app,
                    list.join(", "),
                    first.join(", ")
                ),
            }),
            Some(_) => {}
        }
    }

    let mut stages: BTreeMap<StageKey, Stage> = BTreeMap::new();
    // Each stage's resources while documents are merged (see below).
    let mut members: BTreeMap<StageKey, BTreeMap<String, Resource>> = BTreeMap::new();
    let mut stage_drift: BTreeMap<StageKey, (DriftMode, String)> = BTreeMap::new();
    // (stage, worker, binding) → position of the binding's value, for reference errors.
    let mut binding_pos: BTreeMap<(StageKey, String, String), Pos> = BTreeMap::new();
    for doc in docs {
        let key = StageKey {
            app: doc.app.clone(),
            stage: doc.stage.clone(),
        };
        if let Some((mode, pos)) = doc.drift {
            match stage_drift.get(&key) {
                Some((first, first_at)) if *first != mode => diags.push(Diagnostic {
                    file: doc.file.to_string(),
                    pos,
                    message: format!(
                        "stage {key} has `drift: {}` here but `drift: {}` at {first_at}; make them agree",
                        mode_name(mode),
                        mode_name(*first)
                    ),
                }),
                Some(_) => {}
                None => {
                    stage_drift.insert(key.clone(), (mode, at(&doc.file, pos)));
                }
            }
        }
        let protected = protect
            .get(&doc.app)
            .is_some_and(|(list, _)| list.contains(&doc.stage));
        let stage = stages.entry(key.clone()).or_insert_with(|| Stage {
            key: key.clone(),
            protected,
            drift: None,
            resources: LiteMap::new(),
        });
        stage.drift = stage_drift.get(&key).map(|(m, _)| *m);
        let members = members.entry(key.clone()).or_default();
        for r in doc.resources {
            let origin = Origin {
                file: doc.file.clone(),
                pos: r.pos,
            };
            if let Some(first) = members.get(&r.name) {
                diags.push(Diagnostic {
                    file: doc.file.to_string(),
                    pos: r.pos,
                    message: format!(
                        "resource `{}` of stage {key} is declared twice: here and at {}; remove one",
                        r.name, first.origin
                    ),
                });
                continue;
            }
            let spec = match r.kind {
                KindDecl::Kv => ResourceSpec::Kv,
                KindDecl::KvExisting { id } => ResourceSpec::KvExisting { id },
                KindDecl::Worker {
                    entry,
                    entry_path,
                    bindings,
                    compatibility_date,
                    compatibility_flags,
                    secrets,
                    workers_dev,
                } => {
                    // References are checked once the stage is whole (below).
                    for (n, _, p) in &bindings {
                        binding_pos.insert((key.clone(), r.name.clone(), n.clone()), *p);
                    }
                    ResourceSpec::Worker(WorkerSpec {
                        entry,
                        entry_path,
                        bindings: bindings.into_iter().map(|(n, b, _)| (n, b)).collect(),
                        compatibility_date,
                        compatibility_flags,
                        secrets,
                        workers_dev,
                    })
                }
            };
            members.insert(
                r.name.clone(),
                Resource {
                    key: ResourceKey {
                        app: key.app.clone(),
                        stage: key.stage.clone(),
                        name: r.name,
                    },
                    spec,
                    drift: r.drift,
                    origin,
                },
            );
        }
    }

    // Built in trees (inserts in any order), kept in sorted vectors (compact).
    for (key, members) in members {
        if let Some(stage) = stages.get_mut(&key) {
            stage.resources = members.into_iter().collect();
        }
    }
    for stage in stages.values() {
        for r in stage.resources.values() {
            let ResourceSpec::Worker(w) = &r.spec else {
                continue;
            };
            for (binding, spec) in &w.bindings {
                let (target, wanted) = match spec {
                    BindingSpec::Kv(target) => (target, "kv"),
                    BindingSpec::Service(target) => (target, "worker"),
                    BindingSpec::Text(_) | BindingSpec::Json(_) | BindingSpec::Secret(_) => {
                        continue
                    }
                };
                let problem = match stage.resources.get(target) {
                    Some(t) if t.spec.type_name() == wanted => continue,
                    Some(t) => format!(
                        "`{target}` is a {}, not a {wanted} resource",
                        t.spec.type_name()
                    ),
                    None => format!("stage {} declares no resource `{target}`", stage.key),
                };
                let pos = binding_pos
                    .get(&(stage.key.clone(), r.key.name.clone(), binding.clone()))
                    .copied()
                    .unwrap_or(r.origin.pos);
                diags.push(Diagnostic {
                    file: r.origin.file.to_string(),
                    pos,
                    message: format!(
                        "worker `{}` binding `{binding}`: {problem}; declare `{target}: {{ type: {wanted} }}` in this stage or fix the name",
                        r.key.name
                    ),
                });
            }
        }
    }
    diags.extend(crosscheck::service_cycles(&stages));
    diags.extend(crosscheck::provider_name_collisions(&stages));
    diags.extend(crosscheck::protect_typos(&stages, &protect_entries));
    Desired {
        stages,
        protect: protect
            .into_iter()
            .map(|(app, (list, _))| (app, list))
            .collect(),
    }
}

fn mode_name(mode: DriftMode) -> &'static str {
    match mode {
        DriftMode::Correct => "correct",
        DriftMode::Report => "report",
    }
}
