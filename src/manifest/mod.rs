//! Stage manifests: discovery, parsing with locations, validation, the [`Desired`] snapshot.
//!
//! [`load`] is all-or-nothing: it returns a complete snapshot, or every error found (each as
//! `file:line:col: message`). A caller that holds an older snapshot keeps it on error, so a
//! broken manifest never deletes anything.

mod decode;
mod desired;
mod discover;
mod hash;
mod names;
pub mod schema;
pub mod yaml;

pub use desired::{
    provider_name, BindingSpec, Desired, DriftMode, Origin, Resource, ResourceKey, ResourceSpec,
    Stage, StageKey, WorkerSpec, DEFAULT_COMPATIBILITY_DATE,
};
pub use discover::{MAX_FILES, MAX_FILE_BYTES};
pub use hash::spec_hash;
pub use yaml::Pos;

use decode::{DocDecl, KindDecl};
use litemap::LiteMap;
use std::collections::BTreeMap;
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

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }
}

/// Why manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("manifests folder `{path}`: {source}; pass an existing folder with --manifests")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful load: the snapshot, and the JSON files skipped as not being manifests.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub desired: Desired,
    /// The canonical manifests root the snapshot was read from.
    pub root: PathBuf,
    /// JSON files without `app`, `stage` or `resources` (a worker's data, `package.json`).
    pub skipped: Vec<String>,
    /// The fingerprint of the files it was decoded from ([`Sources::fingerprint`]).
    pub fingerprint: [u8; 32],
}

/// Reads and validates every manifest under `root`.
pub fn load(root: &Path) -> Result<Loaded, LoadError> {
    read(root)?.decode()
}

/// Every manifest file under a root, read but not yet parsed, with a fingerprint of them all.
#[derive(Debug)]
pub struct Sources {
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
    for found in discover::find(&canonical, &root_display, &mut diags) {
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
        canonical,
        files,
        diags,
        fingerprint: hasher.finalize().into(),
    })
}

impl Sources {
    /// Parses and validates what [`read`] found: a complete snapshot or every problem.
    pub fn decode(self) -> Result<Loaded, LoadError> {
        let Sources {
            canonical,
            files,
            mut diags,
            fingerprint,
        } = self;
        let mut docs = Vec::new();
        let mut skipped = Vec::new();
        for (found, text) in files {
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
            if found.json && !parsed.iter().any(|d| decode::looks_like_manifest(&d.root)) {
                skipped.push(found.display.clone());
                continue;
            }
            for doc in &parsed {
                if let Some(decl) = decode::document(&ctx, &doc.root, &mut diags) {
                    docs.push(decl);
                }
            }
        }
        let desired = assemble(docs, &mut diags);
        if diags.is_empty() {
            Ok(Loaded {
                desired,
                root: canonical,
                skipped,
                fingerprint,
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
    for doc in &docs {
        let Some((list, pos)) = &doc.protect else {
            continue;
        };
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        match protect.get(&doc.app) {
            None => {
                protect.insert(doc.app.clone(), (sorted, at(&doc.file, *pos)));
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
                let BindingSpec::Kv(target) = spec else {
                    continue;
                };
                let problem = match stage.resources.get(target) {
                    Some(t) if t.spec.type_name() == "kv" => continue,
                    Some(t) => format!("`{target}` is a {}, not a kv resource", t.spec.type_name()),
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
                        "worker `{}` binding `{binding}`: {problem}; declare `{target}: {{ type: kv }}` in this stage or fix the name",
                        r.key.name
                    ),
                });
            }
        }
    }
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
