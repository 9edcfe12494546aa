//! Paths a manifest names (a worker's `entry`, an age secret's file), resolved against the
//! file system and kept inside the manifests root, whatever `..` and symlinks say.

use super::decode::Ctx;
use std::path::{Component, Path, PathBuf};

/// Resolves a worker's `entry` (relative to the manifest's folder) and checks it stays inside
/// the root after `..` and symlinks, and is a file.
pub fn resolve_entry(ctx: &Ctx<'_>, entry: &str) -> Result<PathBuf, String> {
    let rel = Path::new(entry);
    if entry.is_empty() {
        return Err("`entry` is empty; give the worker's source file, e.g. `src/index.ts`".into());
    }
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
    {
        return Err(format!(
            "`entry` `{entry}` is absolute; write it relative to this manifest's folder"
        ));
    }
    let joined = ctx.dir.join(rel);
    let resolved = match resolve_under(ctx.dir, rel) {
        Ok(resolved) => resolved,
        // A path that leads out of the root is refused for that reason, whether or not
        // something happens to exist out there: the verdict must not depend on where the
        // repository is checked out or on what the machine has.
        Err(lexical) if !lexical.starts_with(ctx.root) => {
            return Err(format!(
                "`entry` `{entry}` resolves outside the manifests root (to {}); keep worker sources inside the repository",
                lexical.display()
            ));
        }
        Err(_) => {
            return Err(format!(
                "`entry` `{entry}` does not exist (looked for {}); fix the path",
                joined.display()
            ))
        }
    };
    if !resolved.starts_with(ctx.root) {
        return Err(format!(
            "`entry` `{entry}` resolves outside the manifests root (to {}); keep worker sources inside the repository",
            resolved.display()
        ));
    }
    if !resolved.is_file() {
        return Err(format!(
            "`entry` `{entry}` is not a file; point it at the worker's source file"
        ));
    }
    Ok(resolved)
}

/// Resolves a file a binding names (`what`, e.g. `` `age` ``), relative to the manifest's
/// folder, and checks it stays inside the root after `..` and symlinks. Unlike an entry it
/// may not exist yet (reading it is the pass's business, an error on that worker only).
/// Returns (the path relative to the root, as shown in messages; the path to read).
pub fn resolve_inside(
    ctx: &Ctx<'_>,
    what: &str,
    written: &str,
) -> Result<(String, PathBuf), String> {
    let rel = Path::new(written);
    if written.is_empty() {
        return Err(format!(
            "{what} is empty; give a path relative to this manifest"
        ));
    }
    if rel.has_root() || rel.components().any(|c| matches!(c, Component::Prefix(_))) {
        return Err(format!(
            "{what} `{written}` is absolute; write it relative to this manifest's folder"
        ));
    }
    // Missing (`Err`): where it would be, `..` and existing symlinks followed.
    let path = resolve_under(ctx.dir, rel).unwrap_or_else(|lexical| lexical);
    let Ok(inside) = path.strip_prefix(ctx.root) else {
        return Err(format!(
            "{what} `{written}` resolves outside the manifests root (to {}); keep it inside the repository",
            path.display()
        ));
    };
    if path.is_dir() {
        return Err(format!("{what} `{written}` is a folder; name a file"));
    }
    Ok((inside.display().to_string(), path))
}

/// `dir.join(rel)` made canonical, where `dir` is already canonical: one `lstat` per component
/// of `rel` instead of `realpath`'s walk over the whole absolute path (a reload resolves every
/// worker's entry); a symlink met on the way hands over to [`std::fs::canonicalize`].
///
/// When it does not resolve (something is missing), the error is where the path would lead,
/// following the symlinks that exist and `..` lexically: the caller decides "outside the
/// root" from that, so the verdict does not depend on what exists outside.
fn resolve_under(dir: &Path, rel: &Path) -> Result<PathBuf, PathBuf> {
    let mut out = dir.to_path_buf();
    let mut components = rel.components();
    while let Some(component) = components.next() {
        match component {
            Component::CurDir => {}
            // `out` is canonical so far, so its parent is the real parent.
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                let rest = components.as_path();
                let Ok(meta) = std::fs::symlink_metadata(&out) else {
                    return Err(lexically_normal(&out.join(rest)));
                };
                if meta.file_type().is_symlink() {
                    let link = out.clone();
                    let whole = if rest.as_os_str().is_empty() {
                        link.clone()
                    } else {
                        link.join(rest)
                    };
                    return std::fs::canonicalize(&whole).map_err(|_| {
                        let target = std::fs::read_link(&link).unwrap_or_default();
                        let base = link.parent().unwrap_or(dir);
                        lexically_normal(&base.join(target).join(rest))
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                let whole = dir.join(rel);
                return std::fs::canonicalize(&whole).map_err(|_| lexically_normal(&whole));
            }
        }
    }
    Ok(out)
}

/// `path` with `.` dropped and each `..` cancelling the component before it, without touching
/// the file system (so it works for paths that do not exist). `..` at the root stays at the root.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_under_a_canonical_folder_matches_realpath() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("a/b/x.js"), "").unwrap();
        std::fs::write(root.join("real/y.js"), "").unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("a/link")).unwrap();
        for rel in [
            "b/x.js",
            "./b/../b/x.js",
            "link/y.js",
            "link/../real/y.js",
            "../a/b/x.js",
        ] {
            let a = root.join("a");
            assert_eq!(
                resolve_under(&a, Path::new(rel)).unwrap(),
                std::fs::canonicalize(a.join(rel)).unwrap(),
                "{rel}"
            );
        }
        assert_eq!(
            resolve_under(&root.join("a"), Path::new("b/missing.js")),
            Err(root.join("a/b/missing.js"))
        );
        // A dangling link is followed lexically, so an escape is seen as one.
        std::os::unix::fs::symlink("/nowhere/x.js", root.join("a/gone.js")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../x.js", root.join("a/up.js")).unwrap();
        assert_eq!(
            resolve_under(&root.join("a"), Path::new("gone.js")),
            Err(PathBuf::from("/nowhere/x.js"))
        );
        assert_eq!(
            resolve_under(&root.join("a"), Path::new("up.js")),
            Err(PathBuf::from("/x.js"))
        );
    }

    #[test]
    fn lexical_normalisation_table() {
        let table = [
            ("/r/a/../b", "/r/b"),
            ("/r/./a/b/../../c", "/r/c"),
            ("/r/a/../../../../etc/passwd", "/etc/passwd"),
            ("/r", "/r"),
        ];
        for (input, want) in table {
            assert_eq!(
                lexically_normal(Path::new(input)),
                Path::new(want),
                "{input}"
            );
        }
    }

    #[test]
    fn a_file_a_binding_names_may_be_missing_but_never_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("app/secrets")).unwrap();
        std::fs::write(root.join("app/secrets/k.age"), "").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("app/out")).unwrap();
        let app = root.join("app");
        let ctx = Ctx {
            root: &root,
            dir: &app,
            file: "app/dev.yaml",
        };
        let ok = |w: &str| resolve_inside(&ctx, "`age`", w);
        assert_eq!(
            ok("secrets/k.age"),
            Ok(("app/secrets/k.age".into(), app.join("secrets/k.age")))
        );
        assert_eq!(
            ok("../app/secrets/new.age"),
            Ok(("app/secrets/new.age".into(), app.join("secrets/new.age")))
        );
        for (written, why) in [
            ("../../x.age", "outside the manifests root"),
            ("out/passwd", "outside the manifests root"),
            ("/etc/passwd", "is absolute"),
            ("", "is empty"),
            ("secrets", "is a folder"),
        ] {
            let e = ok(written).unwrap_err();
            assert!(e.contains(why), "{written}: {e}");
        }
    }
}
