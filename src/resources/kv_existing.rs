//! An `existing` KV namespace (`KV.existing("name", { id })`): observed and bound, never
//! created, renamed or deleted.

use super::kv_namespace::{kv_output, KvStatus};
use super::{Bound, Ctx, Decision, Kind, Reconciler, Rules, Status};
use crate::cloudflare::ApiError;
use crate::manifest::ResourceKey;
use crate::source::Snapshot;

/// The kind.
pub struct KvExisting;

impl Reconciler for KvExisting {
    /// The declared id.
    type Spec = str;
    type Desired = String;
    type Status = KvStatus;
    /// Whether the namespace is on the account.
    type Observation = bool;

    const KIND: Kind = Kind::KvExisting;
    const NEVER_DELETED: bool = true;

    fn dependencies(_: &str) -> Vec<&str> {
        Vec::new()
    }

    fn desired(_: &ResourceKey, id: &str, _: &Snapshot, _: &Bound) -> Result<String, String> {
        Ok(id.to_owned())
    }

    fn status(status: &Status) -> Option<&KvStatus> {
        KvStatus::of(status)
    }

    fn wrap(status: KvStatus) -> Status {
        Status::Kv(status)
    }

    fn published(status: &KvStatus) -> Option<String> {
        status.namespace_id()
    }

    async fn observe(cx: &Ctx<'_>, id: &String, _: &KvStatus) -> Result<bool, ApiError> {
        Ok(cx.index.namespace(id).is_some())
    }

    fn decide(_: &ResourceKey, id: &String, _: &KvStatus, exists: &bool, _: Rules) -> Decision {
        decide_existing(id, *exists)
    }

    fn up_to_date(id: &String, _: KvStatus) -> KvStatus {
        KvStatus::with_id(id.clone(), None)
    }

    fn adopt(id: &String, _: &str) -> KvStatus {
        KvStatus::with_id(id.clone(), None)
    }

    async fn create(_: &Ctx<'_>, id: &String) -> Result<KvStatus, ApiError> {
        Err(never_written(id))
    }

    async fn update(_: &Ctx<'_>, id: &String, _: &KvStatus) -> Result<KvStatus, ApiError> {
        Err(never_written(id))
    }

    async fn delete(_: &Ctx<'_>, _: &KvStatus) -> Result<(), ApiError> {
        Ok(())
    }

    fn output(key: &ResourceKey, status: &KvStatus) -> Option<serde_json::Value> {
        kv_output(key, status)
    }
}

/// The decision table never asks to write an existing namespace; if it ever did, refuse.
fn never_written(id: &str) -> ApiError {
    ApiError::new(
        "existing namespace",
        crate::cloudflare::ErrorKind::Invalid,
        format!("the existing KV namespace {id} is never written by lumierd"),
    )
}

/// An `existing` namespace: only observed.
pub fn decide_existing(id: &str, exists: bool) -> Decision {
    if exists {
        Decision::UpToDate
    } else {
        Decision::Missing {
            reason: format!(
                "the existing KV namespace {id} is not on the account: check `existing.id`, or create the namespace"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_existing_table() {
        assert_eq!(decide_existing("x", true), Decision::UpToDate);
        assert!(matches!(
            decide_existing("x", false),
            Decision::Missing { .. }
        ));
    }
}
