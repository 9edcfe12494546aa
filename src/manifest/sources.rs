//! Reading the manifests root ([`read`]: find and read every file, fingerprint them all) and
//! decoding what was read ([`Sources::decode_with`]: strict JSON, YAML with positions, stage
//! documents, Lumier pointer documents expanded, then [`assemble`](super::assemble)d into one
//! snapshot). All-or-nothing: every problem found is reported, none is skipped.

use std::path::{Path, PathBuf};

use super::assemble::assemble;
use super::decode::{self, DocDecl};
use super::strict_json::strict_json;
use super::{
    discover, ignore, lumier, yaml, Diagnostic, LoadError, LoadOptions, Loaded, Unclassified,
};

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
            diags,
            fingerprint,
        } = self;
        let mut decoding = Decoding {
            root: &canonical,
            root_display: root_given.display().to_string(),
            docs: Vec::new(),
            unclassified: Vec::new(),
            lumier_files: Vec::new(),
            lumier_rendered: Vec::new(),
            diags,
        };
        for (found, text) in files {
            decoding.file(found, &text);
        }
        let Decoding {
            docs,
            unclassified,
            mut lumier_files,
            lumier_rendered,
            mut diags,
            ..
        } = decoding;
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

/// What decoding the files has gathered so far.
struct Decoding<'r> {
    /// The canonical root.
    root: &'r Path,
    /// The root as the caller gave it (for messages).
    root_display: String,
    docs: Vec<DocDecl>,
    unclassified: Vec<Unclassified>,
    lumier_files: Vec<PathBuf>,
    lumier_rendered: Vec<lumier::Rendered>,
    diags: Vec<Diagnostic>,
}

impl Decoding<'_> {
    /// Decodes one file: its documents, or why it is not a manifest, or its problems.
    fn file(&mut self, found: discover::Found, text: &str) {
        if found.json {
            if let Err(d) = strict_json(&found.display, text) {
                self.diags.push(d);
                return;
            }
        }
        let parsed = match yaml::parse(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.diags.push(Diagnostic {
                    file: found.display.clone(),
                    pos: e.pos,
                    message: format!(
                        "not valid {}: {}",
                        if found.json { "JSON" } else { "YAML" },
                        e.message
                    ),
                });
                return;
            }
        };
        let dir = found.path.parent().unwrap_or(self.root).to_path_buf();
        if found.json
            && !parsed
                .iter()
                .any(|d| decode::looks_like_manifest(&d.root) || lumier::is_pointer(&d.root))
        {
            self.unclassified.push(Unclassified {
                reason: decode::not_a_manifest(parsed.first().map(|d| &d.root)),
                display: found.display,
                path: found.path,
            });
            return;
        }
        let root = self.root;
        let ctx = decode::Ctx {
            root,
            dir: &dir,
            file: &found.display,
        };
        for doc in &parsed {
            if lumier::is_pointer(&doc.root) {
                self.pointer(&ctx, &doc.root);
                continue;
            }
            if let Some(decl) = decode::document(&ctx, &doc.root, &mut self.diags) {
                self.docs.push(decl);
            }
        }
    }

    /// Expands a Lumier pointer document (`ctx` is where it is) into the stage documents its
    /// config renders, each decoded as if written beside the config.
    fn pointer(&mut self, ctx: &decode::Ctx<'_>, pointer: &yaml::Node) {
        let expanded = lumier::expand(
            ctx,
            &self.root_display,
            pointer,
            &mut self.diags,
            &mut self.lumier_files,
        );
        for (file, dir, stage_doc) in expanded
            .iter()
            .flat_map(|e| e.docs.iter().map(move |d| (&e.file, &e.dir, d)))
        {
            self.lumier_rendered
                .push(lumier::Rendered::of(file, stage_doc));
            let config_ctx = decode::Ctx {
                root: self.root,
                dir,
                file,
            };
            if let Some(decl) = decode::document(&config_ctx, &stage_doc.root, &mut self.diags) {
                self.docs.push(decl);
            }
        }
    }
}
