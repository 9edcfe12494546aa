//! A managed KV namespace (`KV("name")`), titled `{app}-{stage}-{name}`.

use super::decision::drifted;
use super::{Bound, Ctx, Decision, Kind, Reconciler, Rules, Status};
use crate::cloudflare::{ApiError, ErrorKind};
use crate::manifest::{DriftMode, ResourceKey};
use crate::source::Snapshot;
use serde::{Deserialize, Serialize};

/// The kind.
pub struct KvNamespace;

/// What a namespace's record keeps (`existing` namespaces keep the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStatus {
    #[serde(default)]
    pub observed: KvObserved,
}

/// The namespace as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvObserved {
    /// The id lumierd created, adopted or was given (`existing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl KvStatus {
    /// The namespace status inside a record's [`Status`] (managed and `existing` alike).
    pub fn of(status: &Status) -> Option<&KvStatus> {
        match status {
            Status::Kv(s) => Some(s),
            _ => None,
        }
    }

    /// The namespace id, what a worker binding it is given.
    pub fn namespace_id(&self) -> Option<String> {
        self.observed.namespace_id.clone()
    }

    pub fn with_id(id: String, title: Option<String>) -> KvStatus {
        KvStatus {
            observed: KvObserved {
                namespace_id: Some(id),
                title,
            },
        }
    }
}

/// What the list shows for a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSeen {
    /// The title of the recorded namespace, if it still exists.
    pub by_id: Option<String>,
    /// The id of a namespace titled as desired, if any.
    pub by_title: Option<String>,
}

impl Reconciler for KvNamespace {
    type Spec = ();
    /// The title.
    type Desired = String;
    type Status = KvStatus;
    type Observation = NamespaceSeen;

    const KIND: Kind = Kind::KvNamespace;
    const CREATE_IS_PENDING: bool = true;

    fn dependencies(_: &()) -> Vec<&str> {
        Vec::new()
    }

    fn desired(key: &ResourceKey, _: &(), _: &Snapshot, _: &Bound) -> Result<String, String> {
        Ok(key.provider_name())
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

    async fn observe(
        cx: &Ctx<'_>,
        title: &String,
        status: &KvStatus,
    ) -> Result<NamespaceSeen, ApiError> {
        Ok(NamespaceSeen {
            by_id: status
                .observed
                .namespace_id
                .as_deref()
                .and_then(|id| cx.index.namespace(id))
                .map(|n| n.title.clone()),
            by_title: cx.index.namespace_id_by_title(title).map(str::to_owned),
        })
    }

    fn decide(
        _: &ResourceKey,
        title: &String,
        status: &KvStatus,
        seen: &NamespaceSeen,
        rules: Rules,
    ) -> Decision {
        decide_namespace(
            title,
            status.observed.namespace_id.as_deref(),
            rules.pending || rules.adopt,
            seen.by_id.as_deref(),
            seen.by_title.as_deref(),
            rules.mode,
        )
    }

    fn up_to_date(title: &String, mut status: KvStatus) -> KvStatus {
        status.observed.title = Some(title.clone());
        status
    }

    fn adopt(title: &String, id: &str) -> KvStatus {
        KvStatus::with_id(id.to_owned(), Some(title.clone()))
    }

    /// Not idempotent: the controller has flushed a create-pending marker first. A
    /// duplicate-title answer is ours only when this call retried an attempt whose answer was
    /// lost (that attempt may have created it): then the title is looked up. Otherwise someone
    /// else created the title since the pass listed the account: refused, never adopted.
    async fn create(cx: &Ctx<'_>, title: &String) -> Result<KvStatus, ApiError> {
        let id = match cx.client.create_namespace(title).await {
            Ok(ns) => ns.id,
            Err(e) if e.kind == ErrorKind::AlreadyExists && e.attempts <= 1 => {
                return Err(ApiError::new(
                    "create_namespace",
                    ErrorKind::AlreadyExists,
                    format!(
                        "a KV namespace titled `{title}` was created by someone else since this pass listed the account; \
                         lumierd did not create it: declare it with `existing: {{ id }}`, or delete it"
                    ),
                ));
            }
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let all = cx.client.list_namespaces().await?;
                all.into_iter()
                    .find(|n| &n.title == title)
                    .map(|n| n.id)
                    .ok_or(e)?
            }
            Err(e) => return Err(e),
        };
        Ok(KvStatus::with_id(id, Some(title.clone())))
    }

    /// Puts the title back.
    async fn update(cx: &Ctx<'_>, title: &String, status: &KvStatus) -> Result<KvStatus, ApiError> {
        let mut status = status.clone();
        if let Some(id) = &status.observed.namespace_id {
            cx.client.rename_namespace(id, title).await?;
            status.observed.title = Some(title.clone());
        }
        Ok(status)
    }

    async fn delete(cx: &Ctx<'_>, status: &KvStatus) -> Result<(), ApiError> {
        match status.observed.namespace_id.as_deref() {
            Some(id) if cx.index.namespace(id).is_some() => {
                match cx.client.delete_namespace(id).await {
                    Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
                    other => other,
                }
            }
            _ => Ok(()),
        }
    }

    fn output(key: &ResourceKey, status: &KvStatus) -> Option<serde_json::Value> {
        kv_output(key, status)
    }
}

/// `{ "type": "kv", "name", "namespaceId" }` once the namespace id is known.
pub(super) fn kv_output(key: &ResourceKey, status: &KvStatus) -> Option<serde_json::Value> {
    status
        .observed
        .namespace_id
        .as_ref()
        .map(|id| serde_json::json!({ "type": "kv", "name": key.name, "namespaceId": id }))
}

/// A managed KV namespace.
///
/// * `recorded_id`: the id lumierd created or adopted (None: never created, or state lost);
/// * `pending`: the create-pending marker is set (a create may have happened before a crash);
/// * `by_id`: the title of the namespace with `recorded_id`, if it still exists;
/// * `by_title`: the id of a namespace titled `title`, if any.
pub fn decide_namespace(
    title: &str,
    recorded_id: Option<&str>,
    pending: bool,
    by_id: Option<&str>,
    by_title: Option<&str>,
    mode: DriftMode,
) -> Decision {
    match (recorded_id, by_id) {
        (Some(_), Some(remote_title)) if remote_title == title => Decision::UpToDate,
        (Some(_), Some(remote_title)) => drifted(
            mode,
            vec![format!("title: {title} → {remote_title}")],
            false,
        ),
        (Some(id), None) => drifted(
            mode,
            vec![format!("namespace {id}: deleted out of band")],
            true,
        ),
        (None, _) => match by_title {
            Some(id) if pending => Decision::Adopt { id: id.to_owned() },
            Some(id) => Decision::Refuse {
                reason: format!(
                    "a KV namespace titled `{title}` (id {id}) already exists and lumierd did not create it: \
                     declare it with `existing: {{ id: {id} }}`, or delete it; if it is lumierd's own and its state was lost, adopt it with `lumierd run --adopt`"
                ),
            },
            None => Decision::Create,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DriftMode::{Correct, Report};

    #[test]
    #[allow(clippy::type_complexity)]
    fn kv_namespace_table() {
        let t = "app-prod-cache";
        let cases: Vec<(
            Option<&str>,
            bool,
            Option<&str>,
            Option<&str>,
            DriftMode,
            Decision,
        )> = vec![
            (None, false, None, None, Correct, Decision::Create),
            (
                Some("id1"),
                false,
                Some(t),
                Some("id1"),
                Correct,
                Decision::UpToDate,
            ),
            (
                Some("id1"),
                false,
                Some("renamed"),
                None,
                Correct,
                Decision::Correct {
                    drift: vec![format!("title: {t} → renamed")],
                    recreate: false,
                },
            ),
            (
                Some("id1"),
                false,
                Some("renamed"),
                None,
                Report,
                Decision::Report {
                    drift: vec![format!("title: {t} → renamed")],
                },
            ),
            (
                Some("id1"),
                false,
                None,
                None,
                Correct,
                Decision::Correct {
                    drift: vec!["namespace id1: deleted out of band".into()],
                    recreate: true,
                },
            ),
            (
                None,
                true,
                None,
                Some("id9"),
                Correct,
                Decision::Adopt { id: "id9".into() },
            ),
            (None, true, None, None, Correct, Decision::Create),
        ];
        for (i, (rec, pending, by_id, by_title, mode, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                decide_namespace(t, rec, pending, by_id, by_title, mode),
                want,
                "case {i}"
            );
        }
        let refused = decide_namespace(t, None, false, None, Some("id7"), Correct);
        let Decision::Refuse { reason } = refused else {
            panic!("{refused:?}")
        };
        assert!(
            reason.contains("declare it with `existing: { id: id7 }`, or delete it"),
            "{reason}"
        );
    }
}
