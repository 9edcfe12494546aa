//! What the list endpoints showed at the start of a pass, indexed for the kinds' `observe`.

use crate::cloudflare::types::{Namespace, ScriptSummary};
use crate::cloudflare::{ApiError, Client};

/// What the list endpoints showed at the start of a pass: the only reads most passes make.
///
/// Sorted vectors searched by halving, not hash maps keyed by copies of the ids and titles:
/// at 5,000 namespaces and 5,000 scripts that is ~1 MB less per pass, for lookups that are
/// still O(log n).
#[derive(Debug, Default, Clone)]
pub struct RemoteIndex {
    /// Sorted by id.
    namespaces: Vec<Namespace>,
    /// Positions in `namespaces`, sorted by title.
    by_title: Vec<u32>,
    /// Sorted by name (`id`).
    scripts: Vec<ScriptSummary>,
    /// The account's workers.dev subdomain, read by the pass's first worker that turns its
    /// route on, then shared: a cold converge of W workers reads it once, not W times.
    account_subdomain: tokio::sync::OnceCell<Option<String>>,
}

impl RemoteIndex {
    pub fn new(mut namespaces: Vec<Namespace>, mut scripts: Vec<ScriptSummary>) -> RemoteIndex {
        namespaces.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        namespaces.dedup_by(|a, b| a.id == b.id);
        let mut by_title: Vec<u32> = (0..namespaces.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        by_title.sort_by(|&a, &b| {
            namespaces[a as usize]
                .title
                .cmp(&namespaces[b as usize].title)
        });
        scripts.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        scripts.dedup_by(|a, b| a.id == b.id);
        RemoteIndex {
            namespaces,
            by_title,
            scripts,
            account_subdomain: tokio::sync::OnceCell::new(),
        }
    }

    /// The namespace with this id, if listed.
    pub fn namespace(&self, id: &str) -> Option<&Namespace> {
        let i = self
            .namespaces
            .binary_search_by(|n| n.id.as_str().cmp(id))
            .ok()?;
        self.namespaces.get(i)
    }

    /// The id of the namespace titled `title`, if listed (titles are unique per account).
    pub fn namespace_id_by_title(&self, title: &str) -> Option<&str> {
        let i = self
            .by_title
            .binary_search_by(|&i| self.namespaces[i as usize].title.as_str().cmp(title))
            .ok()?;
        Some(self.namespaces[self.by_title[i] as usize].id.as_str())
    }

    /// The account's workers.dev subdomain (`None`: the account has none), read once per
    /// pass through `client`; a failed read is not kept (the next caller tries again).
    pub async fn account_subdomain(&self, client: &Client) -> Result<Option<String>, ApiError> {
        self.account_subdomain
            .get_or_try_init(|| client.get_account_subdomain())
            .await
            .cloned()
    }

    /// The script with this name, if listed.
    pub fn script(&self, name: &str) -> Option<&ScriptSummary> {
        let i = self
            .scripts
            .binary_search_by(|s| s.id.as_str().cmp(name))
            .ok()?;
        self.scripts.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_what_the_lists_showed() {
        let ns = |id: &str, title: &str| Namespace {
            id: id.into(),
            title: title.into(),
            supports_url_encoding: None,
        };
        let script = |id: &str| ScriptSummary {
            id: id.into(),
            etag: format!("etag-{id}"),
            modified_on: String::new(),
            tags: None,
        };
        let index = RemoteIndex::new(
            vec![ns("c", "alpha"), ns("a", "zulu"), ns("b", "mike")],
            vec![script("w2"), script("w1")],
        );
        assert_eq!(index.namespace("a").map(|n| n.title.as_str()), Some("zulu"));
        assert_eq!(index.namespace("d"), None);
        for (title, id) in [
            ("alpha", Some("c")),
            ("mike", Some("b")),
            ("zulu", Some("a")),
            ("x", None),
        ] {
            assert_eq!(index.namespace_id_by_title(title), id, "{title}");
        }
        assert_eq!(index.script("w1").map(|s| s.etag.as_str()), Some("etag-w1"));
        assert_eq!(index.script("w3"), None);
        assert!(RemoteIndex::default().namespace("a").is_none());
    }
}
