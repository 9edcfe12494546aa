//! Files only their owner may read: the local API's state holds KV values, Worker code and
//! secret bindings, and its token file the key to all of it.
//!
//! Folders are made (or tightened to) mode 0700 and files 0600. Tightening an existing path
//! is part of opening it, so a state written by an older build (0755/0644) is private after
//! the first start of this one. Only the owner's own paths are touched: a chmod that fails
//! (e.g. a folder owned by someone else) is an error naming the path, never ignored.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::LocalApiError;

/// Mode of private folders: owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files: owner read/write only.
pub const FILE_MODE: u32 = 0o600;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalApiError + '_ {
    move |source| LocalApiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents, 0700 as well) unless it exists, then sets it to 0700.
pub fn private_dir(dir: &Path) -> Result<(), LocalApiError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io(dir))?;
    set_mode(dir, DIR_MODE)
}

/// Sets an existing regular file to 0600; a missing file is not an error, and anything else
/// (`--request-log /dev/stderr`, a FIFO) is left as it is: its mode is not ours to change.
pub fn tighten_file(path: &Path) -> Result<(), LocalApiError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => set_mode(path, FILE_MODE),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Creates (truncating) a file with mode 0600; an existing one is set to 0600 first.
pub fn create_file(path: &Path) -> Result<File, LocalApiError> {
    tighten_file(path)?;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io(path))
}

/// Opens a file for appending, created with mode 0600; an existing one is set to 0600 first.
pub fn append_file(path: &Path) -> Result<File, LocalApiError> {
    tighten_file(path)?;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io(path))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LocalApiError> {
    let current = std::fs::metadata(path).map_err(io(path))?.permissions();
    if current.mode() & 0o777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    #[allow(unsafe_code)] // mkfifo: see SAFETY below
    fn only_regular_files_are_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("log");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        tighten_file(&file).expect("tighten");
        assert_eq!(mode(&file), 0o600);

        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("c path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        tighten_file(&fifo).expect("left alone");
        assert_eq!(mode(&fifo), 0o644);
        tighten_file(&dir.path().join("missing")).expect("a missing file is fine");
    }
}
