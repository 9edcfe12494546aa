//! One file per resource kind: how to observe, create, update and delete it. No policy here:
//! the controller decides (see `runtime::plan`), these act. Every verb is idempotent except
//! `kv_namespace::create`, which the controller guards with a flushed create-pending marker.

pub mod kv_existing;
pub mod kv_namespace;
pub mod worker_script;

use crate::cloudflare::types::{Namespace, Script};
use std::collections::HashMap;

/// What the list endpoints showed at the start of a pass: the only reads most passes make.
#[derive(Debug, Default, Clone)]
pub struct RemoteIndex {
    /// id → namespace.
    pub namespaces_by_id: HashMap<String, Namespace>,
    /// title → id.
    pub namespace_ids_by_title: HashMap<String, String>,
    /// script name → script (with etag, modified_on, tags).
    pub scripts: HashMap<String, Script>,
}

impl RemoteIndex {
    pub fn new(namespaces: Vec<Namespace>, scripts: Vec<Script>) -> RemoteIndex {
        let namespace_ids_by_title = namespaces
            .iter()
            .map(|n| (n.title.clone(), n.id.clone()))
            .collect();
        RemoteIndex {
            namespaces_by_id: namespaces.into_iter().map(|n| (n.id.clone(), n)).collect(),
            namespace_ids_by_title,
            scripts: scripts.into_iter().map(|s| (s.id.clone(), s)).collect(),
        }
    }
}
