//! Resources recorded but no longer declared: retained (protected stage), forgotten (kinds
//! never deleted), held (over the prune cap), or deleted — dependents before what they bind.

use super::change::{Action, Change, PassReport};
use super::controller::{fail, note_retry, Controller, ControllerError, Policy};
use crate::manifest::ResourceKey;
use crate::resources::{Ctx, Reconciler, RemoteIndex};
use crate::source::Snapshot;
use crate::store::{Record, State};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::time::Instant;

const RETAINED: &str = "removed from the manifests; kept because its stage is protected";

/// What becomes of one removed resource, before the prune cap.
enum Verdict {
    Delete,
    /// Kept for good (protected stage): the message says why.
    Retain(String),
    /// Kept until approved: the message names the approval.
    Hold(String),
}

impl Verdict {
    fn of(snap: &Snapshot, policy: &Policy, key: &ResourceKey, rec: &Record) -> Verdict {
        let approved = policy.approves(key);
        let stage = key.stage_key();
        match (snap.desired.is_protected(&stage), rec.protected) {
            // Protected now, or (no document of the app says otherwise) when last declared.
            (Some(true), _) | (None, true) => Verdict::Retain(RETAINED.into()),
            // Protection lifted in the same change that removes the resource.
            (Some(false), true) if !approved => Verdict::Hold(format!(
                "held: `{}` was protected, and its protection was removed in the same change that removed this resource; \
                 to delete it, run once with --approve-delete {stage} (or apply the protect change first, then the removal)",
                stage.stage
            )),
            _ if !approved && !snap.desired.declares_app(&key.app) => Verdict::Hold(format!(
                "held: app `{}` is no longer declared by any manifest, so this pass would delete everything it declared; \
                 to approve, run once with --approve-delete {}",
                key.app, key.app
            )),
            _ => Verdict::Delete,
        }
    }
}

/// Writes `rec` kept in `state` with `message` (only when that changes it).
fn keep(
    ctl: &Controller,
    key: &ResourceKey,
    mut rec: Record,
    state: State,
    message: String,
    now: Timestamp,
) -> Result<(), ControllerError> {
    if ctl.policy.act && (rec.state != state || rec.message != message) {
        rec.state = state;
        rec.message = message;
        rec.last_reconciled = Some(now);
        ctl.store.put(key, &rec)?;
    }
    Ok(())
}

/// The prune step of a pass over `gone`, the records of resources no longer declared.
pub(super) async fn prune(
    ctl: &Controller,
    snap: &Snapshot,
    gone: HashMap<ResourceKey, Record>,
    index: &RemoteIndex,
    report: &mut PassReport,
) -> Result<(), ControllerError> {
    let now = Timestamp::now();
    let to_delete = classify(ctl, snap, gone, report, now)?;
    if to_delete.len() > ctl.policy.max_prune {
        let (n, cap) = (to_delete.len(), ctl.policy.max_prune);
        let message = format!(
            "held: this pass would delete {n} resources, over --max-prune {cap}; to approve, run once with --max-prune {n}"
        );
        for (key, rec) in to_delete {
            hold(ctl, key, rec, message.clone(), report, now)?;
        }
        return Ok(());
    }
    for (key, rec) in to_delete {
        report.changes.push(Change {
            key: key.clone(),
            action: Action::Delete,
            details: vec![],
        });
        if !ctl.policy.act {
            continue;
        }
        if ctl.client.is_stopping() {
            report.converged = false;
            break;
        }
        delete(ctl, index, key, rec, report).await?;
    }
    Ok(())
}

/// Forgets, retains or holds what must not be deleted (dependents first); returns the rest.
fn classify(
    ctl: &Controller,
    snap: &Snapshot,
    gone: HashMap<ResourceKey, Record>,
    report: &mut PassReport,
    now: Timestamp,
) -> Result<Vec<(ResourceKey, Record)>, ControllerError> {
    let mut gone: Vec<(ResourceKey, Record)> = gone.into_iter().collect();
    gone.sort_by_key(|(k, r)| (delete_rank(r), k.clone()));
    // A worker before the workers its service bindings name.
    let gone = crate::resources::dependents_first(
        gone,
        |(k, _)| k.provider_name(),
        |(_, r)| crate::resources::binds_recorded(r.kind(), &r.status),
    );
    let mut to_delete = Vec::new();
    for (key, rec) in gone {
        if never_deleted(&rec) {
            if ctl.policy.act {
                ctl.store.remove(&key)?;
            }
            report.changes.push(Change {
                key,
                action: Action::Forget,
                details: vec!["existing namespace: no longer bound, never deleted".into()],
            });
            continue;
        }
        match Verdict::of(snap, &ctl.policy, &key, &rec) {
            Verdict::Delete => to_delete.push((key, rec)),
            Verdict::Retain(message) => {
                if rec.state != State::Retained {
                    report.changes.push(Change {
                        key: key.clone(),
                        action: Action::Retain,
                        details: vec!["stage is protected: kept on Cloudflare".into()],
                    });
                }
                keep(ctl, &key, rec, State::Retained, message, now)?;
            }
            Verdict::Hold(message) => hold(ctl, key, rec, message, report, now)?,
        }
    }
    Ok(to_delete)
}

/// A deletion held until approved: `Deleting` with the message naming the approval, a change,
/// and (the first time) a notification.
fn hold(
    ctl: &Controller,
    key: ResourceKey,
    rec: Record,
    message: String,
    report: &mut PassReport,
    now: Timestamp,
) -> Result<(), ControllerError> {
    if rec.state != State::Deleting {
        ctl.emit(|| [crate::notify::Event::prune_held(&key, &message, now)]);
    }
    report.converged = false;
    report.changes.push(Change {
        key: key.clone(),
        action: Action::Hold,
        details: vec![message.clone()],
    });
    keep(ctl, &key, rec, State::Deleting, message, now)
}

/// Deletes one removed resource through its kind, recorded (flushed) before the call. In one
/// span per resource, as a reconcile is (`Controller::reconcile_one`).
#[tracing::instrument(
    name = "prune",
    skip_all,
    fields(
        resource = %key,
        kind = %rec.kind().type_name(),
        app = %key.app,
        stage = %key.stage,
        name = %key.name,
    )
)]
async fn delete(
    ctl: &Controller,
    index: &RemoteIndex,
    key: ResourceKey,
    mut rec: Record,
    report: &mut PassReport,
) -> Result<(), ControllerError> {
    // Recorded before the call: no provider write whose outcome cannot be recorded.
    rec.state = State::Deleting;
    rec.message = "deleting".into();
    ctl.store.put_durable(&key, &rec).await?;
    let started = Instant::now();
    let kind = rec.kind().type_name();
    let cx = Ctx {
        client: &ctl.client,
        index,
        key: &key,
        act: ctl.policy.act,
        installation: &ctl.installation,
    };
    let result = crate::with_record_kind!(rec.kind(), |K| match K::status(&rec.status) {
        Some(status) => K::delete(&cx, status).await,
        None => Ok(()),
    });
    match result {
        Ok(()) => {
            ctl.metrics.reconciled(kind, "delete", started.elapsed());
            tracing::info!(action = "delete", "deleted");
            ctl.store.remove(&key)?;
        }
        Err(e) => {
            ctl.metrics.reconciled(kind, "error", started.elapsed());
            tracing::warn!(action = "delete", error = %e, "delete failed");
            report.converged = false;
            let message = format!("delete failed: {e}");
            fail(&mut rec, message, Vec::new(), None, Timestamp::now(), false);
            rec.state = State::Deleting;
            note_retry(report, &rec);
            ctl.store.put(&key, &rec)?;
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
