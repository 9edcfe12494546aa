//! `{ secret: { age: FILE } }`: a secret kept in git, encrypted with [age](https://age-encryption.org)
//! to an X25519 recipient, decrypted in-process with the identity file `--age-identity`
//! (as `age-keygen` writes it: `AGE-SECRET-KEY-1…` lines, `#` comments).
//!
//! Both files are read when a pass resolves the worker, so a rotated identity or an edited
//! `.age` file is used without a restart. The plaintext is a [`SecretValue`] at once; the
//! identity's lines are parsed by the `age` crate, whose errors give line numbers, never
//! contents.
//!
//! | failure | [`AgeError`] (names files, never a value or a key) |
//! |---|---|
//! | no `--age-identity` | `NoIdentity` |
//! | identity file unreadable, or no identity in it | `Identity` |
//! | `.age` file missing or unreadable | `Read` |
//! | not an age file, or not encrypted to the identity | `Decrypt` |
//! | the plaintext is not UTF-8 | `NotText` |

use super::SecretValue;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why an age secret has no value this pass. `file` is the path as shown (relative to the
/// manifests root); the identity is named by its path, or its public recipient.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgeError {
    #[error("age file {file}: no --age-identity given; pass lumierd the identity file (from `age-keygen`) the file is encrypted to")]
    NoIdentity { file: String },
    #[error("age identity {}: {why}; fix --age-identity (an `age-keygen` key file)", path.display())]
    Identity { path: PathBuf, why: String },
    #[error(
        "age file {file}: {why}; commit it, or fix the binding's path (relative to its manifest)"
    )]
    Read { file: String, why: String },
    #[error("age file {file} does not decrypt with --age-identity {} ({why}); encrypt it to {recipients} (`age -r …`)", identity.display())]
    Decrypt {
        file: String,
        identity: PathBuf,
        recipients: String,
        why: String,
    },
    #[error("age file {file}: the decrypted value is not UTF-8 text")]
    NotText { file: String },
}

/// The value of the age file at `path` (`file` as shown in messages), decrypted with the
/// identity file `identity`. A final newline (`echo value | age -r …`) is dropped.
pub fn decrypt(file: &str, path: &Path, identity: Option<&Path>) -> Result<SecretValue, AgeError> {
    let identity = identity.ok_or_else(|| AgeError::NoIdentity {
        file: file.to_owned(),
    })?;
    let identities = read_identities(identity)?;
    let ciphertext = std::fs::read(path).map_err(|e| AgeError::Read {
        file: file.to_owned(),
        why: e.kind().to_string(),
    })?;
    let failed = |why: String| AgeError::Decrypt {
        file: file.to_owned(),
        identity: identity.to_owned(),
        recipients: recipients(&identities),
        why,
    };
    let decryptor =
        age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext.as_slice()))
            .map_err(|e| failed(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| failed(e.to_string()))?;
    let mut plaintext = Vec::new();
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| failed(e.kind().to_string()))?;
    let text = String::from_utf8(plaintext).map_err(|_| AgeError::NotText {
        file: file.to_owned(),
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(SecretValue(value.to_owned()))
}

/// The X25519 identities of an identity file (at least one).
fn read_identities(path: &Path) -> Result<Vec<age::x25519::Identity>, AgeError> {
    let err = |why: String| AgeError::Identity {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.kind().to_string()))?;
    let mut identities = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line is a key: its text never goes into a message.
        let identity = line
            .parse::<age::x25519::Identity>()
            .map_err(|_| err(format!("line {} is not an age X25519 identity", n + 1)))?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(err("it holds no identity".into()));
    }
    Ok(identities)
}

/// The public recipients (`age1…`) of `identities`, for the message that says what to
/// encrypt to.
fn recipients(identities: &[age::x25519::Identity]) -> String {
    identities
        .iter()
        .map(|i| i.to_public().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn decrypts_binary_and_armored_files_and_names_files_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let key = age::x25519::Identity::generate();
        let id_path = dir.path().join("key.txt");
        let key_text = key.to_string();
        std::fs::write(
            &id_path,
            format!("# created: now\n{}\n", key_text.expose_secret()),
        )
        .unwrap();
        let value = "age-canary-5e1b0c";
        let binary = age::encrypt(&key.to_public(), format!("{value}\n").as_bytes()).unwrap();
        std::fs::write(dir.path().join("a.age"), binary).unwrap();
        let armored = age::encrypt_and_armor(&key.to_public(), value.as_bytes()).unwrap();
        std::fs::write(dir.path().join("b.age"), armored).unwrap();
        for f in ["a.age", "b.age"] {
            let v = decrypt(f, &dir.path().join(f), Some(&id_path)).unwrap();
            assert_eq!(v.expose(), value, "{f}");
        }

        let e = decrypt("a.age", &dir.path().join("a.age"), None).unwrap_err();
        assert!(matches!(e, AgeError::NoIdentity { .. }), "{e}");
        let e = decrypt("gone.age", &dir.path().join("gone.age"), Some(&id_path)).unwrap_err();
        assert!(e.to_string().contains("gone.age"), "{e}");
        // Encrypted to another key: the message names the recipient to use.
        let other = age::x25519::Identity::generate();
        let wrong = age::encrypt(&other.to_public(), b"x").unwrap();
        std::fs::write(dir.path().join("c.age"), wrong).unwrap();
        let e = decrypt("c.age", &dir.path().join("c.age"), Some(&id_path)).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("c.age") && m.contains(&key.to_public().to_string()),
            "{m}"
        );
        // A broken identity file: the line number, never the line.
        std::fs::write(&id_path, format!("{}x\n", key_text.expose_secret())).unwrap();
        let e = decrypt("a.age", &dir.path().join("a.age"), Some(&id_path)).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 1"), "{m}");
        assert!(!m.contains("AGE-SECRET-KEY"), "{m}");
    }
}
