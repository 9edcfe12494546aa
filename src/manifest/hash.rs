//! The desired spec's fingerprint: a hash of what would be applied, for change detection.

use super::{BindingSpec, ResourceSpec, SecretsMode};
use crate::secrets::SecretSource;
use sha2::{Digest, Sha256};

/// A hash of a resource's desired spec; `content_hash` is a worker's built modules' hash.
/// Lowercase hex SHA-256; equal exactly when the spec (and the worker's modules) are equal.
pub fn spec_hash(spec: &ResourceSpec, content_hash: Option<&str>) -> String {
    let mut h = Sha256::new();
    match spec {
        ResourceSpec::Kv => h.update(b"kv"),
        ResourceSpec::KvExisting { id } => {
            h.update(b"kv-existing\0");
            h.update(id.as_bytes());
        }
        ResourceSpec::Worker(w) => {
            h.update(b"worker\0");
            h.update(content_hash.unwrap_or("").as_bytes());
            for (name, b) in &w.bindings {
                h.update(b"\0");
                h.update(name.as_bytes());
                match b {
                    BindingSpec::Kv(t) => {
                        h.update(b"\0kv\0");
                        h.update(t.as_bytes());
                    }
                    BindingSpec::Text(t) => {
                        h.update(b"\0text\0");
                        h.update(t.as_bytes());
                    }
                    BindingSpec::Json(t) => {
                        h.update(b"\0json\0");
                        h.update(t.as_bytes());
                    }
                    BindingSpec::Service(t) => {
                        h.update(b"\0service\0");
                        h.update(t.as_bytes());
                    }
                    // The source, not the value (which is never stored).
                    BindingSpec::Secret(SecretSource::Env(t)) => {
                        h.update(b"\0secret-env\0");
                        h.update(t.as_bytes());
                    }
                    BindingSpec::Secret(SecretSource::File(t)) => {
                        h.update(b"\0secret-file\0");
                        h.update(t.as_bytes());
                    }
                    // Relative to the root: the same wherever the repository is checked out.
                    BindingSpec::Secret(SecretSource::Age { file, .. }) => {
                        h.update(b"\0secret-age\0");
                        h.update(file.as_bytes());
                    }
                }
            }
            h.update(b"\0");
            h.update(w.compatibility_date.as_bytes());
            for f in &w.compatibility_flags {
                h.update(b"\0");
                h.update(f.as_bytes());
            }
            // Only what differs from the default is hashed: hashes of specs written before
            // the key existed stay as they were.
            if w.secrets == SecretsMode::Exclusive {
                h.update(b"\0secrets:exclusive");
            }
            // Always hashed since `workersDev` defaults to on: a spec that did not write it
            // hashes differently once (which only restarts a failing resource's backoff).
            h.update(if w.workers_dev {
                &b"\0workers-dev:on"[..]
            } else {
                &b"\0workers-dev:off"[..]
            });
        }
    }
    hex::encode(h.finalize())
}
