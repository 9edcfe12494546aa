//! The bundle's content hash.
//!
//! Contract of [`content_hash`]: lowercase hex SHA-256 over, in order, a version tag, the main
//! module's name, the number of modules, and for every module (in the given order, which the
//! caller makes sorted by name) its name, content type and content, each prefixed by its
//! length as a little-endian `u64`. Length prefixes make the encoding unambiguous, so the hash
//! changes whenever any uploaded byte, name, type, or the main module changes, and depends on
//! nothing else (no paths, times or machine state).

use sha2::{Digest, Sha256};

use crate::cloudflare::types::Module;

/// Bumped if the encoding below ever changes (so old and new hashes never collide).
const VERSION: &[u8] = b"lumierd-worker-bundle/v1";

/// The content hash of a bundle; see the module doc. `modules` must be in the bundle's order
/// (sorted by name) for the result to match [`super::WorkerBundle::content_hash`], e.g. when
/// hashing the modules read back from Cloudflare.
pub fn content_hash(main_module: &str, modules: &[Module]) -> String {
    let mut hasher = Sha256::new();
    field(&mut hasher, VERSION);
    field(&mut hasher, main_module.as_bytes());
    hasher.update((modules.len() as u64).to_le_bytes());
    for module in modules {
        field(&mut hasher, module.name.as_bytes());
        field(&mut hasher, module.content_type.as_bytes());
        field(&mut hasher, &module.content);
    }
    hex::encode(hasher.finalize())
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, content: &[u8]) -> Module {
        Module {
            name: name.to_string(),
            content_type: "text/plain".to_string(),
            content: content.to_vec(),
        }
    }

    #[test]
    fn boundaries_between_fields_matter() {
        let a = content_hash("a", &[module("ab", b"c")]);
        let b = content_hash("a", &[module("a", b"bc")]);
        assert_ne!(a, b);
        assert_ne!(a, content_hash("b", &[module("ab", b"c")]));
        assert_eq!(a, content_hash("a", &[module("ab", b"c")]));
        assert_eq!(a.len(), 64);
    }
}
