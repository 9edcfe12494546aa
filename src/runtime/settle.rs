//! The state a decision leaves a resource in: its record's state and message, its change
//! (for the pass report), its drift events, and the one log line of a decided action. Logged
//! inside the reconcile's span (`Controller::reconcile_one`), which carries `resource`,
//! `kind`, `app`, `stage` and `name`; the line adds `action` and what was done.

use super::change::{Action, Change};
use super::controller::{fail, Controller};
use crate::manifest::ResourceKey;
use crate::resources::Decision;
use crate::store::{DriftEvent, Record, State};
use crate::time::Timestamp;

impl Controller {
    /// The state a decision leaves a resource in, and its change.
    pub(super) fn settle(
        &self,
        key: &ResourceKey,
        mut rec: Record,
        decision: Decision,
        now: Timestamp,
    ) -> (Record, Option<Change>) {
        rec.last_reconciled = Some(now);
        let change = |action: Action, details: Vec<String>| {
            Some(Change {
                key: key.clone(),
                action,
                details,
            })
        };
        let ok = |rec: &mut Record, state: State, message: String| {
            rec.failures = 0;
            rec.next_retry = None;
            rec.last_error = None;
            rec.error_codes.clear();
            rec.state = state;
            rec.message = message;
        };
        let applied = if self.policy.act {
            State::Ready
        } else {
            State::Pending
        };
        match decision {
            Decision::UpToDate => {
                rec.open_drift.clear();
                ok(&mut rec, State::Ready, String::new());
                (rec, None)
            }
            Decision::Create | Decision::Update { .. } | Decision::Adopt { .. } => {
                let (action, details) = match decision {
                    Decision::Adopt { id } => (Action::Adopt, vec![format!("id: {id}")]),
                    Decision::Update { changes } => (Action::Update, changes),
                    _ => (Action::Create, vec![]),
                };
                rec.open_drift.clear();
                ok(&mut rec, applied, String::new());
                tracing::info!(action = action.as_str(), details = ?details, "reconciled");
                (rec, change(action, details))
            }
            Decision::Correct { drift, .. } => {
                self.record_drift(&mut rec, &drift, true, now);
                rec.open_drift.clear();
                let state = if self.policy.act {
                    State::Ready
                } else {
                    State::Drifted
                };
                ok(
                    &mut rec,
                    state,
                    format!("drift corrected: {}", drift.join("; ")),
                );
                tracing::warn!(action = "correct", drift = ?drift, "drift corrected");
                (rec, change(Action::Correct, drift))
            }
            Decision::Report { drift } => {
                if self.record_drift(&mut rec, &drift, false, now) {
                    tracing::warn!(action = "report", drift = ?drift, "drift detected (report mode: left alone)");
                }
                rec.open_drift = drift.clone();
                let message = format!("drift (report mode, not corrected): {}", drift.join("; "));
                ok(&mut rec, State::Drifted, message);
                (rec, change(Action::Report, drift))
            }
            Decision::Refuse { reason } | Decision::Missing { reason } => {
                tracing::warn!(action = "refuse", reason, "cannot reconcile");
                fail(&mut rec, reason.clone(), Vec::new(), None, now, true);
                (rec, change(Action::Refuse, vec![reason]))
            }
        }
    }

    /// Records a drift event (and counts it) unless the same drift is already standing, so
    /// one drift seen on several passes is recorded once. Returns whether it was new.
    fn record_drift(
        &self,
        rec: &mut Record,
        drift: &[String],
        corrected: bool,
        now: Timestamp,
    ) -> bool {
        if rec.open_drift == drift {
            return false;
        }
        self.metrics.drift(rec.kind().type_name(), drift);
        rec.push_drift(DriftEvent {
            at: now,
            changes: drift.to_vec(),
            corrected,
        });
        true
    }
}
