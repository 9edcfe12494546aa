//! What a store operation can fail with, for either backend.

use super::{etcd, SCHEMA_VERSION};

/// A store failure. Every message starts `state store`, names the folder where one is
/// involved, and says what to do when there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store at {path}: {source}{}", open_hint(source))]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "state store: a record is not readable ({0}); move the state folder away to start afresh"
    )]
    Decode(#[from] serde_json::Error),
    #[error("state store at {path} has schema version {found}, newer than this lumierd understands ({SCHEMA_VERSION}); upgrade lumierd")]
    TooNew { path: String, found: u32 },
    #[error("state store: a flush did not finish: {0}")]
    Flush(String),
    #[error("state store: {0}")]
    Etcd(#[from] etcd::EtcdError),
}

/// What to do about a failed open: a lock held means another process has the folder.
fn open_hint(e: &sled::Error) -> &'static str {
    if e.to_string().contains("could not acquire lock") {
        "; only one lumierd process can open a state folder at a time: is another one using it?"
    } else {
        ""
    }
}
