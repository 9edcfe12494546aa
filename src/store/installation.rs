//! This installation's id: random, made once per state folder and kept in
//! `STATE/installation-id` (0600). Scripts lumierd uploads carry it in a tag, so a second
//! lumierd (another host, a forgotten test install, a state folder started afresh) never takes
//! over the first one's objects without an explicit `run --adopt`.

use std::io::Write;
use std::path::Path;

/// The file, in the state folder.
pub const FILE: &str = "installation-id";

/// Reads this state folder's installation id, making one when there is none yet (and
/// `create` is set). Without `create` (e.g. `plan` on a fresh state) a missing id is `None`.
pub fn installation_id(state: &Path, create: bool) -> std::io::Result<Option<String>> {
    let path = state.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(Some(id.to_owned()));
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold an installation id (32 hex digits); restore it from a backup, or remove it to start as a new installation (then `run --adopt` takes over the old one's objects)",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let id = hex::encode(rand::random::<[u8; 16]>());
            let mut file = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?
            };
            file.write_all(format!("{id}\n").as_bytes())?;
            file.sync_all()?;
            Ok(Some(id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `id` as this state folder's installation id (`migrate-state`), unless the folder
/// has one already (then it is kept: an existing id is never replaced).
pub fn write_installation_id(state: &Path, id: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(state.join(FILE));
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_and_never_guessed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(installation_id(dir.path(), false).unwrap(), None);
        let id = installation_id(dir.path(), true).unwrap().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(installation_id(dir.path(), true).unwrap(), Some(id.clone()));
        assert_eq!(installation_id(dir.path(), false).unwrap(), Some(id));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(FILE), "not an id\n").unwrap();
        let err = installation_id(dir.path(), true).unwrap_err();
        assert!(err.to_string().contains("run --adopt"), "{err}");
    }
}
