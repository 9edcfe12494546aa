//! A managed KV namespace (`KV("name")`), titled `{app}-{stage}-{name}`.

use super::RemoteIndex;
use crate::cloudflare::{ApiError, Client, ErrorKind};

/// What the list shows for a namespace: the title of `recorded_id` (if it still exists) and
/// the id of a namespace titled `title` (if any). Never writes.
pub fn observe<'a>(
    index: &'a RemoteIndex,
    title: &str,
    recorded_id: Option<&str>,
) -> (Option<&'a str>, Option<&'a str>) {
    let by_id = recorded_id
        .and_then(|id| index.namespace(id))
        .map(|n| n.title.as_str());
    let by_title = index.namespace_id_by_title(title);
    (by_id, by_title)
}

/// Creates the namespace and returns its id. Not idempotent: the caller has flushed a
/// create-pending marker first. A duplicate-title answer (a timed-out earlier attempt that
/// did succeed) is resolved by looking the title up.
pub async fn create(client: &Client, title: &str) -> Result<String, ApiError> {
    match client.create_namespace(title).await {
        Ok(ns) => Ok(ns.id),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let all = client.list_namespaces().await?;
            all.into_iter()
                .find(|n| n.title == title)
                .map(|n| n.id)
                .ok_or(e)
        }
        Err(e) => Err(e),
    }
}

/// Puts the title back (idempotent).
pub async fn update(client: &Client, id: &str, title: &str) -> Result<(), ApiError> {
    client.rename_namespace(id, title).await.map(|_| ())
}

/// Deletes the namespace; already gone is success.
pub async fn delete(client: &Client, id: &str) -> Result<(), ApiError> {
    match client.delete_namespace(id).await {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
