//! Resources recorded but no longer declared: retained (protected stage), forgotten (kinds
//! never deleted), held (over the prune cap), or deleted — dependents before what they bind.

use super::change::{Action, Change, PassReport};
use super::controller::{fail, note_retry, Controller, ControllerError};
use crate::manifest::ResourceKey;
use crate::resources::{Ctx, Reconciler, RemoteIndex};
use crate::source::Snapshot;
use crate::store::{Record, State};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::time::Instant;

const RETAINED: &str = "removed from the manifests; kept because its stage is protected";

/// The prune step of a pass over `gone`, the records of resources no longer declared.
pub(super) async fn prune(
    ctl: &Controller,
    snap: &Snapshot,
    gone: HashMap<ResourceKey, Record>,
    index: &RemoteIndex,
    report: &mut PassReport,
) -> Result<(), ControllerError> {
    let act = ctl.policy.act;
    let mut gone: Vec<(ResourceKey, Record)> = gone.into_iter().collect();
    gone.sort_by_key(|(k, r)| (delete_rank(r), k.clone()));
    let now = Timestamp::now();
    let mut to_delete = Vec::new();
    for (key, rec) in gone {
        // Protected when its app's current `protect` lists the stage; when the whole app is
        // gone from the manifests, what was recorded decides (never delete on a guess).
        let protected = snap
            .desired
            .is_protected(&key.stage_key())
            .unwrap_or(rec.protected);
        if never_deleted(&rec) {
            if act {
                ctl.store.remove(&key)?;
            }
            report.changes.push(Change {
                key,
                action: Action::Forget,
                details: vec!["existing namespace: no longer bound, never deleted".into()],
            });
        } else if protected {
            if rec.state != State::Retained {
                report.changes.push(Change {
                    key: key.clone(),
                    action: Action::Retain,
                    details: vec!["stage is protected: kept on Cloudflare".into()],
                });
            }
            if act && (rec.state != State::Retained || rec.message != RETAINED) {
                let mut r = rec;
                r.state = State::Retained;
                r.message = RETAINED.into();
                r.last_reconciled = Some(now);
                ctl.store.put(&key, &r)?;
            }
        } else {
            to_delete.push((key, rec));
        }
    }
    if to_delete.len() > ctl.policy.max_prune {
        let n = to_delete.len();
        let cap = ctl.policy.max_prune;
        for (key, mut rec) in to_delete {
            report.converged = false;
            report.changes.push(Change {
                key: key.clone(),
                action: Action::Hold,
                details: vec![format!(
                    "would delete {n} resources, over --max-prune {cap}"
                )],
            });
            if act {
                rec.state = State::Deleting;
                rec.message = format!(
                    "held: this pass would delete {n} resources, over --max-prune {cap}; to approve, run once with --max-prune {n}"
                );
                ctl.store.put(&key, &rec)?;
            }
        }
        return Ok(());
    }
    for (key, mut rec) in to_delete {
        report.changes.push(Change {
            key: key.clone(),
            action: Action::Delete,
            details: vec![],
        });
        if !act {
            continue;
        }
        let started = Instant::now();
        let kind = rec.kind().type_name();
        let cx = Ctx {
            client: &ctl.client,
            index,
            key: &key,
            act,
        };
        let result = crate::with_record_kind!(rec.kind(), |K| match K::status(&rec.status) {
            Some(status) => K::delete(&cx, status).await,
            None => Ok(()),
        });
        match result {
            Ok(()) => {
                ctl.metrics.reconciled(kind, "delete", started.elapsed());
                tracing::info!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "delete", "deleted");
                ctl.store.remove(&key)?;
            }
            Err(e) => {
                ctl.metrics.reconciled(kind, "error", started.elapsed());
                tracing::warn!(resource = %key, app = %key.app, stage = %key.stage, name = %key.name, action = "delete", error = %e, "delete failed");
                report.converged = false;
                fail(
                    &mut rec,
                    format!("delete failed: {e}"),
                    Vec::new(),
                    None,
                    Timestamp::now(),
                    false,
                );
                rec.state = State::Deleting;
                note_retry(report, &rec);
                ctl.store.put(&key, &rec)?;
            }
        }
    }
    Ok(())
}

fn delete_rank(rec: &Record) -> u8 {
    crate::with_record_kind!(rec.kind(), |K| K::DELETE_RANK)
}

fn never_deleted(rec: &Record) -> bool {
    crate::with_record_kind!(rec.kind(), |K| K::NEVER_DELETED)
}
