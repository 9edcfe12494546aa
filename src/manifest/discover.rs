//! Finding and reading manifest files under the manifests root.
//!
//! Rules: files ending `.yaml`, `.yml` or `.json`, anywhere below the root; hidden entries
//! (`.git/`, `.env.yaml`) and `node_modules/` are skipped; a symlink is followed only when it
//! resolves inside the root (one pointing outside is an error, so a manifest is never silently
//! dropped); a folder reached twice through symlinks is read once. Files are read with a size cap
//! and must be UTF-8.
//!
//! Paths listed in `.lumierdignore` at the root ([`super::ignore`]) are left out (an ignored
//! folder is not entered).
//!
//! Only regular files are read: a FIFO, socket or device with a manifest's name is an error
//! naming the path (not skipped: a skipped manifest would prune what it declares; and never
//! opened blocking, so it cannot hang a load), see [`super::regular`].

use super::ignore::Ignore;
use super::yaml::Pos;
use super::Diagnostic;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Largest manifest file accepted, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most manifest files read under one root.
pub const MAX_FILES: usize = 10_000;

/// A manifest file found under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The path as shown to the user: the root as given, joined with the relative path.
    pub display: String,
    /// The canonical path of the file (inside the canonical root).
    pub path: PathBuf,
    /// Whether the file is JSON (`.json`).
    pub json: bool,
}

fn is_manifest_name(name: &str) -> Option<bool> {
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        Some(false)
    } else if name.ends_with(".json") {
        Some(true)
    } else {
        None
    }
}

fn display_join(root_display: &str, rel: &Path) -> String {
    Path::new(root_display).join(rel).display().to_string()
}

fn at_file(file: &str, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        pos: Pos { line: 1, col: 1 },
        message,
    }
}

/// Name of the ignore file at the root ([`super::ignore`]).
pub const IGNORE_FILE: &str = ".lumierdignore";
/// Largest ignore file accepted, in bytes.
const MAX_IGNORE_BYTES: u64 = 64 * 1024;

/// The text of `root/.lumierdignore` ("" when there is none; a problem reading it is a
/// diagnostic, and the text is then "" too: the load fails anyway).
pub fn read_ignore(root: &Path, root_display: &str, diags: &mut Vec<Diagnostic>) -> String {
    use super::regular::{read_regular, ReadError};
    let path = root.join(IGNORE_FILE);
    if fs::symlink_metadata(&path).is_err() {
        return String::new();
    }
    let shown = display_join(root_display, Path::new(IGNORE_FILE));
    // Like a manifest, a linked ignore file must stay inside the root.
    if !fs::canonicalize(&path).is_ok_and(|target| target.starts_with(root)) {
        diags.push(at_file(
            &shown,
            "symlink resolves outside the manifests root or to nothing; lumierd only reads files inside the root: copy the file in or remove the link".into(),
        ));
        return String::new();
    }
    let problem = match read_regular(&path, MAX_IGNORE_BYTES) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => return text,
            Err(_) => "not valid UTF-8; save it as UTF-8".to_owned(),
        },
        Err(ReadError::TooLarge(_)) => format!(
            "larger than {} KiB; an ignore file needs a few patterns",
            MAX_IGNORE_BYTES / 1024
        ),
        Err(e) => format!("cannot read this file: {e}"),
    };
    diags.push(at_file(&shown, problem));
    String::new()
}

/// Lists the manifest files under `root` (canonical) in a stable order, leaving out what
/// `ignore` lists. `root_display` is how the user spelled the root, used to show paths.
pub fn find(
    root: &Path,
    root_display: &str,
    ignore: &Ignore,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Found> {
    let mut found = Vec::new();
    let mut seen_dirs: HashSet<PathBuf> = HashSet::new();
    seen_dirs.insert(root.to_path_buf());
    // (canonical dir, its path relative to the root as the user sees it)
    let mut pending: Vec<(PathBuf, PathBuf)> = vec![(root.to_path_buf(), PathBuf::new())];
    while let Some((dir, rel_dir)) = pending.pop() {
        let Some(names) = list_dir(&dir, &rel_dir, root_display, ignore, diags) else {
            continue;
        };
        for (name, path, file_type) in names {
            let rel = rel_dir.join(&name);
            let shown = display_join(root_display, &rel);
            let Some((target, is_dir)) = resolve(root, &name, path, file_type, &shown, diags)
            else {
                continue;
            };
            if is_dir {
                if seen_dirs.insert(target.clone()) {
                    pending.push((target, rel));
                }
                continue;
            }
            if let Some(json) = is_manifest_name(&name) {
                if found.len() >= MAX_FILES {
                    diags.push(at_file(
                        &shown,
                        format!("more than {MAX_FILES} manifest files under the root; point --manifests at the folder that holds the stage manifests"),
                    ));
                    return found;
                }
                found.push(Found {
                    display: shown,
                    path: target,
                    json,
                });
            }
        }
    }
    found.sort_by(|a, b| a.display.cmp(&b.display));
    found
}

/// The entries of `dir` (at `rel_dir` below the root) that may lead to a manifest, sorted by
/// name: folders, symlinks and manifest files that are neither hidden, `node_modules` nor
/// ignored. A manifest name on a FIFO, socket or device is an error. `None` when the folder
/// cannot be read (an error too).
fn list_dir(
    dir: &Path,
    rel_dir: &Path,
    root_display: &str,
    ignore: &Ignore,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<(String, PathBuf, fs::FileType)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let shown = display_join(root_display, rel_dir);
            diags.push(at_file(&shown, format!("cannot read this folder: {e}")));
            return None;
        }
    };
    let mut names: Vec<(String, PathBuf, fs::FileType)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        // The type comes with the folder listing on Linux (no stat per file), so the
        // worker sources and other files that share the tree cost nothing here.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_file() && is_manifest_name(&name).is_none() {
            continue;
        }
        // A symlink counts as a folder for `dir/` patterns when it leads to one.
        let rel = rel_dir.join(&name);
        let is_dir = file_type.is_dir() || (file_type.is_symlink() && entry.path().is_dir());
        if ignore.is_ignored(&rel.to_string_lossy(), is_dir) {
            continue;
        }
        if !file_type.is_file() && !file_type.is_dir() && !file_type.is_symlink() {
            if is_manifest_name(&name).is_some() {
                let shown = display_join(root_display, &rel);
                diags.push(at_file(
                    &shown,
                    "this is not a regular file (a FIFO, socket or device); lumierd reads only regular files: remove it or rename it".into(),
                ));
            }
            continue;
        }
        names.push((name, entry.path(), file_type));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Some(names)
}

/// Where entry `name` (at `path`, shown as `shown`) leads: `(canonical target, is a folder)`.
/// A symlink is followed only inside `root`; one that dangles or leads outside is skipped,
/// and is an error when it names a manifest or leads to a folder outside.
fn resolve(
    root: &Path,
    name: &str,
    path: PathBuf,
    file_type: fs::FileType,
    shown: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(PathBuf, bool)> {
    if !file_type.is_symlink() {
        return Some((path, file_type.is_dir()));
    }
    let Ok(target) = fs::canonicalize(&path) else {
        if is_manifest_name(name).is_some() {
            diags.push(at_file(
                shown,
                "symlink points to nothing; fix or remove the link".into(),
            ));
        }
        return None;
    };
    let is_dir = target.is_dir();
    if !target.starts_with(root) {
        if is_dir || is_manifest_name(name).is_some() {
            diags.push(at_file(
                shown,
                format!(
                    "symlink resolves outside the manifests root (to {}); \
                     lumierd only reads files inside the root: copy the file in or remove the link",
                    target.display()
                ),
            ));
        }
        return None;
    }
    Some((target, is_dir))
}

/// Reads a manifest file: a regular file, at most [`MAX_FILE_BYTES`] (never more read), UTF-8.
pub fn read(found: &Found) -> Result<String, Diagnostic> {
    use super::regular::{read_regular, ReadError};
    let bytes = read_regular(&found.path, MAX_FILE_BYTES).map_err(|e| {
        let message = match e {
            ReadError::TooLarge(_) => format!(
                "file is larger than {} KiB; split it into several manifest files",
                MAX_FILE_BYTES / 1024
            ),
            ReadError::NotRegular(_) => {
                format!("cannot read this file: {e}: remove it or rename it")
            }
            ReadError::Io(e) => format!("cannot read this file: {e}"),
        };
        at_file(&found.display, message)
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        Diagnostic {
            file: found.display.clone(),
            pos: Pos { line, col },
            message: "file is not valid UTF-8; save it as UTF-8".into(),
        }
    })
}
