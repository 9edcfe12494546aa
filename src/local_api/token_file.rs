//! The bearer token of a persisted local API: random per data folder, generated on first open,
//! kept in `DATA/token` (mode 0600, folder 0700) and reused afterwards, so that only the
//! folder's owner (and the tools they hand it to) can call the API. The token is never
//! printed or logged; [`token_path`] is what to show the user.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::private_fs;
use super::LocalApiError;

/// The token file's name inside the data folder.
pub const TOKEN_FILE: &str = "token";
/// Random bytes in a generated token (written as 64 lowercase hex characters).
const TOKEN_BYTES: usize = 32;

/// Where the token of the data folder `data_dir` is kept.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// The token of `data_dir`: read from its token file (tightened to 0600), or generated and
/// written there when the file is missing or empty. Creates `data_dir` (0700) if needed.
pub fn load_or_create(data_dir: &Path) -> Result<String, LocalApiError> {
    private_fs::private_dir(data_dir)?;
    let path = token_path(data_dir);
    private_fs::tighten_file(&path)?;
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(LocalApiError::Io { path, source }),
    }
    let token = generate();
    // Written to a private temporary file and renamed, so a reader never sees half a token.
    let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| LocalApiError::Io { path: p, source }
    };
    let mut f = private_fs::create_file(&tmp)?;
    f.write_all(format!("{token}\n").as_bytes())
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(token)
}

/// A fresh token from the thread's CSPRNG (ChaCha, seeded from the OS).
fn generate() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn generated_once_private_and_reused() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/local-api");
        let first = load_or_create(&dir).expect("create");
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&token_path(&dir)), 0o600);
        assert_eq!(load_or_create(&dir).expect("reuse"), first);
        let other = load_or_create(&root.path().join("b")).expect("create");
        assert_ne!(other, first);

        // A token file left readable by others is tightened, and kept.
        std::fs::set_permissions(token_path(&dir), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(load_or_create(&dir).expect("reuse"), first);
        assert_eq!(mode(&token_path(&dir)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
}
