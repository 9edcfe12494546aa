//! Declared Worker secrets: where their values come from, and the keyed hash that is all
//! lumierd ever keeps of them.
//!
//! A value is read when a pass resolves the worker (`{ secret: { env: NAME } }` from lumierd's
//! environment, `{ secret: { file: NAME } }` from `--secrets-dir`, default
//! `$CREDENTIALS_DIRECTORY` as systemd's `LoadCredential=` and Kubernetes Secret volumes
//! provide, `{ secret: { age: PATH } }` from an age-encrypted file in the manifests tree,
//! decrypted with `--age-identity` ([`age_file`])), held as a [`SecretValue`] (no
//! `Debug`/`Display` of the text, no `Serialize`), and leaves the process only in the body of
//! `PUT …/secrets` or an upload. The record keeps
//! [`SecretHasher::hash`]: HMAC-SHA256 under a random 256-bit key of this state folder
//! (`secret-hash.key`, mode 0600), so a rotated value is seen as changed while the record, a
//! backup of it or a status answer gives nothing to test guesses against without the key.
//!
//! | failure | [`SecretError`] (names the source, never a value) |
//! |---|---|
//! | variable unset or not UTF-8 | `MissingEnv` |
//! | `--secrets-dir` not given and `$CREDENTIALS_DIRECTORY` unset | `NoSecretsDir` |
//! | file missing or unreadable, not UTF-8 | `File` |
//! | age file: no identity, identity or file unreadable, does not decrypt | `Age` ([`age_file::AgeError`]) |
//! | [`configure`] never called (a library use without the CLI) | `NotConfigured` |

pub mod age_file;

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a declared secret's value comes from (as the manifest says).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// An environment variable of the lumierd process.
    Env(String),
    /// A file name (one path component) in the secrets folder.
    File(String),
    /// An age-encrypted file of the manifests tree: `file` as shown (relative to the
    /// manifests root, also what the spec hash takes), `path` where it is read (inside the
    /// root; it may not exist yet).
    Age { file: String, path: PathBuf },
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(name) => write!(f, "secrets file {name}"),
            SecretSource::Age { file, .. } => write!(f, "age file {file}"),
        }
    }
}

/// A secret's text. Deliberately neither `Debug`, `Display` nor `Serialize`: it can only be
/// read with [`SecretValue::expose`], where it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The text, for the request body that sets it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// Why a declared secret has no value this pass. Names the source, never a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set (or not UTF-8): set it for lumierd, or change the binding's source")]
    MissingEnv(String),
    #[error("secrets file {0}: no --secrets-dir given and $CREDENTIALS_DIRECTORY is not set")]
    NoSecretsDir(String),
    #[error("secrets file {name} in {dir}: {why}")]
    File {
        name: String,
        dir: PathBuf,
        why: String,
    },
    #[error(transparent)]
    Age(#[from] age_file::AgeError),
    #[error("declared secrets need the state folder's hash key; they are resolved only by `lumierd run` and `plan`")]
    NotConfigured,
    #[error("cannot create or read the secret hash key {path}: {why}")]
    Key { path: PathBuf, why: String },
}

/// The keyed hash of secret values: HMAC-SHA256 (RFC 2104) under the state folder's key.
/// Written here over `sha2` because no HMAC crate is in the dependency tree; checked against
/// RFC 4231's test vectors below.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

impl SecretHasher {
    /// A hasher with `key` (tests; [`load_or_create_key`] for the real one).
    pub fn with_key(key: [u8; 32]) -> SecretHasher {
        SecretHasher { key }
    }

    /// `hmac-sha256:<hex>` of `value`.
    pub fn hash(&self, value: &SecretValue) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(hmac_sha256(&self.key, value.0.as_bytes()))
        )
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// What [`resolve`] needs: the secrets folder, the age identity file and the state folder's
/// hasher.
pub struct SecretsConfig {
    pub dir: Option<PathBuf>,
    /// `--age-identity`: read on each resolve of an age secret, not kept between them.
    pub age_identity: Option<PathBuf>,
    pub hasher: SecretHasher,
}

static CONFIG: OnceLock<SecretsConfig> = OnceLock::new();

/// Sets the process's secrets configuration (once; later calls are ignored: one process
/// serves one state folder).
pub fn configure(config: SecretsConfig) {
    let _ = CONFIG.set(config);
}

/// The key file's name in the state folder.
pub const KEY_FILE: &str = "secret-hash.key";

/// The state folder's hash key: read from `state/secret-hash.key`, or 32 random bytes written
/// there first (mode 0600, created exclusively so two processes agree on one key).
pub fn load_or_create_key(state: &Path) -> Result<SecretHasher, SecretError> {
    let path = state.join(KEY_FILE);
    let err = |why: String| SecretError::Key {
        path: path.clone(),
        why,
    };
    if let Ok(bytes) = std::fs::read(&path) {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("not 32 bytes long; delete it to make a new key (every declared secret is then put once more)".into()))?;
        return Ok(SecretHasher { key });
    }
    std::fs::create_dir_all(state).map_err(|e| err(e.to_string()))?;
    let mut key = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            f.write_all(&key).map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
            Ok(SecretHasher { key })
        }
        // Another process created it between the read and the create: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| err("not 32 bytes long".into()))?;
            Ok(SecretHasher { key })
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The value of `source` now, with its keyed hash.
pub fn resolve(source: &SecretSource) -> Result<(SecretValue, String), SecretError> {
    let config = CONFIG.get().ok_or(SecretError::NotConfigured)?;
    let value = read(
        source,
        config.dir.as_deref(),
        config.age_identity.as_deref(),
    )?;
    let hash = config.hasher.hash(&value);
    Ok((value, hash))
}

/// The value of `source`: `dir` is the secrets folder, `identity` the age identity file.
fn read(
    source: &SecretSource,
    dir: Option<&Path>,
    identity: Option<&Path>,
) -> Result<SecretValue, SecretError> {
    match source {
        SecretSource::Env(name) => std::env::var(name)
            .map(SecretValue)
            .map_err(|_| SecretError::MissingEnv(name.clone())),
        SecretSource::Age { file, path } => Ok(age_file::decrypt(file, path, identity)?),
        SecretSource::File(name) => {
            let dir = dir.ok_or_else(|| SecretError::NoSecretsDir(name.clone()))?;
            let bytes = std::fs::read(dir.join(name)).map_err(|e| SecretError::File {
                name: name.clone(),
                dir: dir.to_owned(),
                why: e.kind().to_string(),
            })?;
            let text = String::from_utf8(bytes).map_err(|_| SecretError::File {
                name: name.clone(),
                dir: dir.to_owned(),
                why: "not UTF-8 text".into(),
            })?;
            // A credential file usually ends with one newline that is not part of the value.
            let text = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            Ok(SecretValue(text.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1 and 6 (a key longer than a block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn sources_name_themselves_and_never_a_value() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("db"), "s3cr3t-value\n").unwrap_or_else(|e| panic!("{e}"));
        let v = read(&SecretSource::File("db".into()), Some(dir.path()), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.expose(), "s3cr3t-value");
        assert_eq!(format!("{v:?}"), "SecretValue([redacted])");
        let e = read(&SecretSource::File("nope".into()), Some(dir.path()), None).err();
        assert!(matches!(e, Some(SecretError::File { .. })), "{e:?}");
        let e = read(&SecretSource::File("db".into()), None, None).err();
        assert_eq!(e, Some(SecretError::NoSecretsDir("db".into())));
        let e = read(
            &SecretSource::Env("LUMIERD_TEST_SURELY_UNSET".into()),
            None,
            None,
        )
        .err();
        assert!(e.is_some_and(|e| e.to_string().contains("LUMIERD_TEST_SURELY_UNSET")));
        let h = SecretHasher::with_key([7; 32]);
        assert_ne!(h.hash(&v), SecretHasher::with_key([8; 32]).hash(&v));
        assert!(!h.hash(&v).contains("s3cr3t"));
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let a = load_or_create_key(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let b = load_or_create_key(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap_or_else(|e| panic!("{e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
