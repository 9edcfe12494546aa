//! How a record's [`ResourceKey`] is written as a store key: `app \0 stage \0 name`, the same
//! bytes in sled's `resources` tree and under an etcd prefix's `resources/`.

use crate::manifest::ResourceKey;

pub(super) fn encode_key(key: &ResourceKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.app.len() + key.stage.len() + key.name.len() + 2);
    out.extend_from_slice(key.app.as_bytes());
    out.push(0);
    out.extend_from_slice(key.stage.as_bytes());
    out.push(0);
    out.extend_from_slice(key.name.as_bytes());
    out
}

/// The etcd key (under the prefix's `resources/`) of a record.
pub(super) fn resource_key(key: &ResourceKey) -> Vec<u8> {
    encode_key(key)
}

pub(super) fn decode_key(bytes: &[u8]) -> Option<ResourceKey> {
    let mut parts = bytes.split(|b| *b == 0);
    let app = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let stage = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let name = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some(ResourceKey { app, stage, name })
}
