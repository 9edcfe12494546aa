//! Locating the workerd binary: `--workerd PATH` when given, else `workerd` on `PATH`, else
//! `./node_modules/.bin/workerd` (an `npm i -D workerd` in the working folder).

use std::path::{Path, PathBuf};

use super::EdgeError;

/// The npm package pinned by this build's CI and named in the "not found" error.
pub const WORKERD_PACKAGE: &str = "workerd@1.20261117.1";

/// The workerd binary to run. `explicit` must name an executable file; otherwise `PATH`
/// (from `path_var`) is searched, then `cwd/node_modules/.bin`. The error names the install
/// command.
pub fn locate(
    explicit: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
    cwd: &Path,
) -> Result<PathBuf, EdgeError> {
    if let Some(p) = explicit {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(EdgeError::WorkerdNotFound(format!(
                "--workerd {}: not an executable file",
                p.display()
            )))
        };
    }
    let on_path = path_var
        .map(|v| std::env::split_paths(v).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(std::iter::once(cwd.join("node_modules").join(".bin")))
        .map(|dir| dir.join("workerd"))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            EdgeError::WorkerdNotFound(format!(
                "workerd (Cloudflare's Workers runtime) is not on PATH nor in ./node_modules/.bin: \
                 install it with `npm i -D {WORKERD_PACKAGE}` (or `npm i -g {WORKERD_PACKAGE}`), \
                 or pass --workerd PATH"
            ))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn explicit_then_path_then_node_modules_and_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("bin");
        let nm = dir.path().join("node_modules").join(".bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::create_dir_all(&nm).unwrap();
        let exe = |p: &Path| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let empty = dir.path().join("empty");
        let err = locate(None, Some(empty.as_os_str()), dir.path()).unwrap_err();
        assert!(err.to_string().contains("npm i -D workerd@"), "{err}");
        exe(&nm.join("workerd"));
        assert_eq!(
            locate(None, Some(empty.as_os_str()), dir.path()).unwrap(),
            nm.join("workerd")
        );
        exe(&bin_dir.join("workerd"));
        assert_eq!(
            locate(None, Some(bin_dir.as_os_str()), dir.path()).unwrap(),
            bin_dir.join("workerd")
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        assert!(locate(Some(&plain), None, dir.path()).is_err());
        assert_eq!(
            locate(Some(&nm.join("workerd")), None, dir.path()).unwrap(),
            nm.join("workerd")
        );
    }
}
