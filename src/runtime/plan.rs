//! The decision table: (desired, record, observation, drift mode) → what to do. Pure.
//!
//! Drift is "the remote differs from what lumierd last applied". When drift is found, `correct`
//! mode puts the remote back and `report` mode records it and writes nothing. A manifest change
//! with no drift is an ordinary update.

use crate::manifest::DriftMode;
use std::collections::BTreeMap;

/// What one reconcile of one resource should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The remote is as declared.
    UpToDate,
    /// Create the object (a namespace; a script upload).
    Create,
    /// A managed object found by its natural key after a crash between create and record: take
    /// it over (its id is recorded), then check it like any other.
    Adopt { id: String },
    /// The manifest changed: apply it. `changes` are field diffs for plan and logs.
    Update { changes: Vec<String> },
    /// The remote drifted: record it, then put it back (`recreate` when it was deleted).
    Correct { drift: Vec<String>, recreate: bool },
    /// The remote drifted: record it and leave it alone.
    Report { drift: Vec<String> },
    /// Refuse to touch a remote object lumierd did not create.
    Refuse { reason: String },
    /// An `existing` namespace that is not there: nothing lumierd may do but say so.
    Missing { reason: String },
}

impl Decision {
    /// Whether acting on this decision writes to the provider.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Decision::Create | Decision::Update { .. } | Decision::Correct { .. }
        )
    }
}

fn drifted(mode: DriftMode, drift: Vec<String>, recreate: bool) -> Decision {
    match mode {
        DriftMode::Correct => Decision::Correct { drift, recreate },
        DriftMode::Report => Decision::Report { drift },
    }
}

/// A managed KV namespace.
///
/// * `recorded_id`: the id lumierd created or adopted (None: never created, or state lost);
/// * `pending`: the create-pending marker is set (a create may have happened before a crash);
/// * `by_id`: the title of the namespace with `recorded_id`, if it still exists;
/// * `by_title`: the id of a namespace titled `title`, if any.
pub fn kv_namespace(
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
                     declare it with `existing: {{ id: {id} }}`, or delete it"
                ),
            },
            None => Decision::Create,
        },
    }
}

/// An `existing` namespace: only observed.
pub fn kv_existing(id: &str, exists: bool) -> Decision {
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

/// A worker's spec in comparable form: what is applied, and what is desired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkerFacts {
    pub content_hash: String,
    /// binding name → `kv:<namespace id>` | `text:<value>` | `<type>` for other kinds.
    pub bindings: BTreeMap<String, String>,
    pub compatibility_date: String,
    pub compatibility_flags: Vec<String>,
}

/// Field-level differences from `from` to `to`, one readable line each
/// (`bindings.CACHE: kv:a → kv:b`). Plain-text values are shown; lumierd manages no secrets.
pub fn worker_diff(from: &WorkerFacts, to: &WorkerFacts) -> Vec<String> {
    let mut out = Vec::new();
    if from.content_hash != to.content_hash {
        out.push(format!(
            "content: {} → {}",
            short(&from.content_hash),
            short(&to.content_hash)
        ));
    }
    for (name, value) in &from.bindings {
        match to.bindings.get(name) {
            None => out.push(format!("bindings.{name}: {value} → (removed)")),
            Some(v) if v != value => out.push(format!("bindings.{name}: {value} → {v}")),
            Some(_) => {}
        }
    }
    for (name, value) in &to.bindings {
        if !from.bindings.contains_key(name) {
            out.push(format!("bindings.{name}: (none) → {value}"));
        }
    }
    if from.compatibility_date != to.compatibility_date {
        out.push(format!(
            "compatibility_date: {} → {}",
            from.compatibility_date, to.compatibility_date
        ));
    }
    if from.compatibility_flags != to.compatibility_flags {
        out.push(format!(
            "compatibility_flags: [{}] → [{}]",
            from.compatibility_flags.join(", "),
            to.compatibility_flags.join(", ")
        ));
    }
    out
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// What lumierd knows of a worker's remote script for this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSeen {
    /// Not in the script list.
    Absent,
    /// In the list with the same etag and modified_on as recorded: unchanged since applied.
    Unchanged,
    /// In the list, changed since applied; `facts` were read from settings and content.
    Changed { facts: WorkerFacts },
    /// In the list, and lumierd has no record of applying it: `owned` says whether it carries
    /// lumierd's tag for this resource.
    Unrecorded { owned: bool },
}

/// A worker script.
pub fn worker_script(
    script: &str,
    applied: Option<&WorkerFacts>,
    desired: &WorkerFacts,
    seen: &ScriptSeen,
    mode: DriftMode,
) -> Decision {
    match (applied, seen) {
        (None, ScriptSeen::Absent) => Decision::Create,
        (None, ScriptSeen::Unrecorded { owned: true }) => Decision::Update {
            changes: vec!["adopt: script carries lumierd's tag (state was lost or a run crashed); re-upload".into()],
        },
        (None, ScriptSeen::Unrecorded { owned: false }) | (None, _) => Decision::Refuse {
            reason: format!(
                "a Worker script named `{script}` already exists without lumierd's tag, so lumierd did not create it: \
                 delete it, or rename the resource"
            ),
        },
        (Some(_), ScriptSeen::Absent) => {
            drifted(mode, vec![format!("script {script}: deleted out of band")], true)
        }
        (Some(applied), ScriptSeen::Unchanged) | (Some(applied), ScriptSeen::Unrecorded { .. }) => {
            let changes = worker_diff(applied, desired);
            if changes.is_empty() {
                Decision::UpToDate
            } else {
                Decision::Update { changes }
            }
        }
        (Some(applied), ScriptSeen::Changed { facts }) => {
            let drift = worker_diff(applied, facts);
            if drift.is_empty() {
                let changes = worker_diff(applied, desired);
                if changes.is_empty() {
                    Decision::UpToDate
                } else {
                    Decision::Update { changes }
                }
            } else {
                drifted(mode, drift, false)
            }
        }
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
                kv_namespace(t, rec, pending, by_id, by_title, mode),
                want,
                "case {i}"
            );
        }
        let refused = kv_namespace(t, None, false, None, Some("id7"), Correct);
        let Decision::Refuse { reason } = refused else {
            panic!("{refused:?}")
        };
        assert!(
            reason.contains("declare it with `existing: { id: id7 }`, or delete it"),
            "{reason}"
        );
    }

    #[test]
    fn kv_existing_table() {
        assert_eq!(kv_existing("x", true), Decision::UpToDate);
        assert!(matches!(kv_existing("x", false), Decision::Missing { .. }));
    }

    fn facts(hash: &str, cache: &str) -> WorkerFacts {
        WorkerFacts {
            content_hash: hash.into(),
            bindings: [
                ("CACHE".to_string(), format!("kv:{cache}")),
                ("STAGE".to_string(), "text:prod".to_string()),
            ]
            .into_iter()
            .collect(),
            compatibility_date: "2025-01-01".into(),
            compatibility_flags: vec![],
        }
    }

    #[test]
    fn worker_table() {
        let a = facts("aaaaaaaaaaaaaaaa", "ns1");
        let edited = facts("bbbbbbbbbbbbbbbb", "ns1");
        let rebound = facts("aaaaaaaaaaaaaaaa", "ns2");
        let s = "app-prod-api";
        assert_eq!(
            worker_script(s, None, &a, &ScriptSeen::Absent, Correct),
            Decision::Create
        );
        assert_eq!(
            worker_script(s, Some(&a), &a, &ScriptSeen::Unchanged, Correct),
            Decision::UpToDate
        );
        assert_eq!(
            worker_script(s, Some(&a), &edited, &ScriptSeen::Unchanged, Correct),
            Decision::Update {
                changes: vec!["content: aaaaaaaaaaaa → bbbbbbbbbbbb".into()]
            }
        );
        assert_eq!(
            worker_script(
                s,
                Some(&a),
                &a,
                &ScriptSeen::Changed {
                    facts: rebound.clone()
                },
                Correct
            ),
            Decision::Correct {
                drift: vec!["bindings.CACHE: kv:ns1 → kv:ns2".into()],
                recreate: false
            }
        );
        assert_eq!(
            worker_script(
                s,
                Some(&a),
                &a,
                &ScriptSeen::Changed { facts: rebound },
                Report
            ),
            Decision::Report {
                drift: vec!["bindings.CACHE: kv:ns1 → kv:ns2".into()]
            }
        );
        // Re-uploaded with identical content and settings: nothing drifted.
        assert_eq!(
            worker_script(
                s,
                Some(&a),
                &a,
                &ScriptSeen::Changed { facts: a.clone() },
                Correct
            ),
            Decision::UpToDate
        );
        assert_eq!(
            worker_script(s, Some(&a), &a, &ScriptSeen::Absent, Correct),
            Decision::Correct {
                drift: vec![format!("script {s}: deleted out of band")],
                recreate: true
            }
        );
        assert!(matches!(
            worker_script(
                s,
                None,
                &a,
                &ScriptSeen::Unrecorded { owned: false },
                Correct
            ),
            Decision::Refuse { .. }
        ));
        assert!(matches!(
            worker_script(
                s,
                None,
                &a,
                &ScriptSeen::Unrecorded { owned: true },
                Correct
            ),
            Decision::Update { .. }
        ));
    }

    #[test]
    fn diff_lines() {
        let mut from = facts("a", "ns1");
        from.bindings.insert("OLD".into(), "text:x".into());
        let mut to = facts("a", "ns1");
        to.bindings.insert("NEW".into(), "text:y".into());
        to.compatibility_flags = vec!["nodejs_compat".into()];
        assert_eq!(
            worker_diff(&from, &to),
            vec![
                "bindings.OLD: text:x → (removed)".to_string(),
                "bindings.NEW: (none) → text:y".to_string(),
                "compatibility_flags: [] → [nodejs_compat]".to_string(),
            ]
        );
    }
}
