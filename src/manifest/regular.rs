//! Reading a file that must be a regular file, with a bounded read.
//!
//! A FIFO named `*.yaml` would block `open`/`read` forever (and a daemon with it), a device
//! could stream without end. So [`read_regular`] opens without blocking (`O_NONBLOCK`, which
//! regular files ignore), checks the opened descriptor is a regular file (`fstat`, so a swap
//! between a check and the open cannot slip past), and reads at most `limit + 1` bytes: more
//! than `limit` is [`ReadError::TooLarge`], never read whole. Used for manifests, the
//! `.lumierdignore` file and worker modules.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path is a FIFO, socket, device or folder.
    #[error("it is {0}, not a regular file; lumierd reads only regular files")]
    NotRegular(&'static str),
    /// The file holds more than the limit.
    #[error("it is larger than {0} bytes")]
    TooLarge(u64),
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A word for what a non-regular file is: "a FIFO", "a socket", ...
fn kind(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a folder")
    } else if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_block_device() || file_type.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// Reads `path` (symlinks followed) when it is a regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // A socket cannot even be opened (ENXIO): name it rather than report the errno.
    if let Some(k) = std::fs::metadata(path)
        .ok()
        .and_then(|m| kind(m.file_type()))
    {
        return Err(ReadError::NotRegular(k));
    }
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if let Some(k) = kind(file.metadata()?.file_type()) {
        return Err(ReadError::NotRegular(k));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // mkfifo: see SAFETY below
    fn only_regular_files_are_read_and_never_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        for p in [&fifo, &link] {
            let err = read_regular(p, 10).unwrap_err();
            assert!(
                matches!(err, ReadError::NotRegular(k) if k.contains("FIFO")),
                "{err}"
            );
        }
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(ReadError::NotRegular("a folder"))
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_regular(&file, 9),
            Err(ReadError::TooLarge(9))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("a device"))
        ));
    }
}
