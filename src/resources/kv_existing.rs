//! An existing KV namespace (`KV.existing("name", { id })`): observed and bound, never created,
//! renamed or deleted. Its only verb is `observe`.

use super::RemoteIndex;

/// Whether the namespace with `id` is on the account. Never writes.
pub fn observe(index: &RemoteIndex, id: &str) -> bool {
    index.namespace(id).is_some()
}
