//! The worker kind's pure decision table (desired, applied, seen, drift mode → what to do).

use super::{worker_diff, ScriptObserved, WorkerFacts};
use crate::manifest::DriftMode;
use crate::resources::decision::drifted;
use crate::resources::Decision;

/// What lumierd knows of a worker's remote script for this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSeen {
    /// Not in the script list.
    Absent,
    /// In the list with the same etag and modified_on as recorded: unchanged since applied.
    Unchanged,
    /// In the list, changed since applied; `facts` were read from settings and content
    /// (without the unmanaged secrets, see [`split_unmanaged_secrets`]); `now` is the
    /// version the list showed, with those secrets' names.
    Changed {
        facts: WorkerFacts,
        /// Boxed: it is the large variant, and most observations are the small ones.
        now: Box<ScriptObserved>,
    },
    /// In the list, and lumierd has no record of applying it: whose tags it carries.
    Unrecorded { owner: Owner },
}

/// Whose a script lumierd has no record of is, by its tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This resource's tag and this installation's: lumierd's own (its record was lost).
    This,
    /// This resource's tag, but another installation's (another host or state folder), or
    /// none (written before installations were tagged, or this installation's state was lost).
    Other,
    /// No lumierd tag for this resource.
    Nobody,
}

/// A worker script. `adopt`: `run --adopt` was given.
pub fn decide_script(
    script: &str,
    applied: Option<&WorkerFacts>,
    desired: &WorkerFacts,
    seen: &ScriptSeen,
    mode: DriftMode,
    adopt: bool,
) -> Decision {
    match (applied, seen) {
        (None, ScriptSeen::Absent) => Decision::Create,
        (None, ScriptSeen::Unrecorded { owner: Owner::This }) => Decision::Update {
            changes: vec!["adopt: script carries this installation's tag (its record was lost); re-upload".into()],
        },
        (None, ScriptSeen::Unrecorded { owner }) if adopt => Decision::Update {
            changes: vec![format!(
                "adopt (--adopt): script {}; re-upload",
                match owner {
                    Owner::Nobody => "without lumierd's tag",
                    _ => "of another lumierd installation",
                }
            )],
        },
        (None, ScriptSeen::Unrecorded { owner: Owner::Other }) => Decision::Refuse {
            reason: format!(
                "the Worker script `{script}` carries lumierd's tag but another installation's (another host or state folder, \
                 or this one's state was lost): stop the other lumierd, or take it over here with `lumierd run --adopt`"
            ),
        },
        (None, _) => Decision::Refuse {
            reason: format!(
                "a Worker script named `{script}` already exists without lumierd's tag, so lumierd did not create it: \
                 delete it, rename the resource, or take it over with `lumierd run --adopt`"
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
        (Some(applied), ScriptSeen::Changed { facts, .. }) => {
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
    use super::super::split_unmanaged_secrets;
    use super::*;
    use crate::manifest::SecretsMode;
    use std::collections::BTreeMap;
    use DriftMode::{Correct, Report};

    fn changed(facts: WorkerFacts) -> ScriptSeen {
        ScriptSeen::Changed {
            facts,
            now: Box::default(),
        }
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
            secrets: BTreeMap::new(),
            workers_dev: None,
        }
    }

    #[test]
    fn worker_table() {
        let a = facts("aaaaaaaaaaaaaaaa", "ns1");
        let edited = facts("bbbbbbbbbbbbbbbb", "ns1");
        let rebound = facts("aaaaaaaaaaaaaaaa", "ns2");
        let s = "app-prod-api";
        assert_eq!(
            decide_script(s, None, &a, &ScriptSeen::Absent, Correct, false),
            Decision::Create
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &ScriptSeen::Unchanged, Correct, false),
            Decision::UpToDate
        );
        assert_eq!(
            decide_script(s, Some(&a), &edited, &ScriptSeen::Unchanged, Correct, false),
            Decision::Update {
                changes: vec!["content: aaaaaaaaaaaa → bbbbbbbbbbbb".into()]
            }
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(rebound.clone()), Correct, false),
            Decision::Correct {
                drift: vec!["bindings.CACHE: kv:ns1 → kv:ns2".into()],
                recreate: false
            }
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(rebound), Report, false),
            Decision::Report {
                drift: vec!["bindings.CACHE: kv:ns1 → kv:ns2".into()]
            }
        );
        // Re-uploaded with identical content and settings: nothing drifted.
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(a.clone()), Correct, false),
            Decision::UpToDate
        );
        assert_eq!(
            decide_script(s, Some(&a), &a, &ScriptSeen::Absent, Correct, false),
            Decision::Correct {
                drift: vec![format!("script {s}: deleted out of band")],
                recreate: true
            }
        );
        ownership_rows(s, &a);
    }

    /// The rows for a script the record does not know: whose it is decides.
    fn ownership_rows(s: &str, a: &WorkerFacts) {
        assert!(matches!(
            decide_script(
                s,
                None,
                a,
                &ScriptSeen::Unrecorded {
                    owner: Owner::Nobody
                },
                Correct,
                false
            ),
            Decision::Refuse { .. }
        ));
        assert!(matches!(
            decide_script(
                s,
                None,
                a,
                &ScriptSeen::Unrecorded { owner: Owner::This },
                Correct,
                false
            ),
            Decision::Update { .. }
        ));
        // Another installation's script: refused, naming --adopt; taken over with it.
        let other = ScriptSeen::Unrecorded {
            owner: Owner::Other,
        };
        let Decision::Refuse { reason } = decide_script(s, None, a, &other, Correct, false) else {
            panic!("another installation's script must be refused")
        };
        assert!(reason.contains("lumierd run --adopt"), "{reason}");
        for owner in [Owner::Other, Owner::Nobody] {
            let seen = ScriptSeen::Unrecorded { owner };
            assert!(matches!(
                decide_script(s, None, a, &seen, Correct, true),
                Decision::Update { .. }
            ));
        }
    }

    /// Secrets set outside lumierd: not drift under `keep` (listed as unmanaged), drift
    /// under `exclusive`; a declared name is never split out.
    #[test]
    fn unmanaged_secrets_table() {
        let a = facts("aaaaaaaaaaaaaaaa", "ns1");
        let mut remote = a.clone();
        remote
            .bindings
            .insert("API_KEY".into(), "secret_text".into());
        remote
            .bindings
            .insert("SIGNING".into(), "secret_key".into());
        let (kept, unmanaged) = split_unmanaged_secrets(remote.clone(), &a, &a, SecretsMode::Keep);
        assert_eq!(kept, a);
        assert_eq!(
            unmanaged,
            vec!["API_KEY".to_string(), "SIGNING".to_string()]
        );
        let s = "app-prod-api";
        let seen = ScriptSeen::Changed {
            facts: kept,
            now: Box::new(ScriptObserved {
                unmanaged_secrets: unmanaged,
                ..ScriptObserved::default()
            }),
        };
        assert_eq!(
            decide_script(s, Some(&a), &a, &seen, Correct, false),
            Decision::UpToDate
        );
        let (all, none) = split_unmanaged_secrets(remote.clone(), &a, &a, SecretsMode::Exclusive);
        assert!(none.is_empty());
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(all), Correct, false),
            Decision::Correct {
                drift: vec![
                    "bindings.API_KEY: (none) → secret_text".into(),
                    "bindings.SIGNING: (none) → secret_key".into()
                ],
                recreate: false
            }
        );
        // A declared binding replaced by a secret of the same name is drift under `keep` too.
        let mut replaced = a.clone();
        replaced
            .bindings
            .insert("STAGE".into(), "secret_text".into());
        let (kept, unmanaged) = split_unmanaged_secrets(replaced, &a, &a, SecretsMode::Keep);
        assert!(unmanaged.is_empty());
        assert_eq!(
            decide_script(s, Some(&a), &a, &changed(kept), Correct, false),
            Decision::Correct {
                drift: vec!["bindings.STAGE: text:prod → secret_text".into()],
                recreate: false
            }
        );
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
