//! What the store keeps per resource: its [`Record`] (state, the kind's status, errors,
//! retry and drift history), and the [`State`] `status` shows.

use crate::resources::{Kind, Status};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Drift events kept per resource.
pub const DRIFT_HISTORY: usize = 20;

/// The state of a resource, as shown by `status` (CONTRACT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum State {
    #[default]
    Pending,
    Ready,
    Drifted,
    Error,
    Retained,
    Deleting,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Ready => "Ready",
            State::Drifted => "Drifted",
            State::Error => "Error",
            State::Retained => "Retained",
            State::Deleting => "Deleting",
        }
    }
}

/// One detected drift: when, and what differed (one line per field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    pub at: Timestamp,
    pub changes: Vec<String>,
    /// Whether it was corrected (`correct` mode) or only reported.
    pub corrected: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// Everything lumierd keeps about one resource (its key is the sled key, not repeated here).
/// Fields at their default are left out of the stored JSON: 10,000 records are held in memory
/// by sled, so every byte counts ten thousand times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The kind's own state (what it observed and applied), tagged `kind`: `kv` or `worker`.
    #[serde(flatten)]
    pub status: Status,
    /// Whether the resource is an `existing` namespace (never created or deleted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub existing: bool,
    /// Whether its stage was protected when last declared: if its whole app disappears from
    /// the manifests, this alone keeps it from being deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub protected: bool,
    pub state: State,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Hash of the desired spec seen last.
    #[serde(default)]
    pub desired_hash: String,
    /// Set (and flushed) before a non-idempotent create; cleared once the result is recorded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_pending: bool,
    /// Last error, with Cloudflare's codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u32>,
    /// Consecutive failures (drives backoff); 0 after a success.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// When the next retry is due, while failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The drift lines currently standing (report mode), so one drift is recorded once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_drift: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_count: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_history: Vec<DriftEvent>,
}

impl Record {
    /// The recorded resource's kind.
    pub fn kind(&self) -> Kind {
        Kind::of_record(&self.status, self.existing)
    }

    /// Whether `other` is this record with at most a different `last_reconciled`.
    pub fn same_apart_from_time(&self, other: &Record) -> bool {
        // Destructured in full (no `..`): a field added to Record must be placed here, so it
        // can never be forgotten by the pass's write-on-change check. No clone per record.
        let Record {
            status,
            existing,
            protected,
            state,
            message,
            desired_hash,
            create_pending,
            last_error,
            error_codes,
            failures,
            next_retry,
            created_at,
            open_drift,
            drift_count,
            drift_history,
            last_reconciled: _,
        } = self;
        *status == other.status
            && *existing == other.existing
            && *protected == other.protected
            && *state == other.state
            && *message == other.message
            && *desired_hash == other.desired_hash
            && *create_pending == other.create_pending
            && *last_error == other.last_error
            && *error_codes == other.error_codes
            && *failures == other.failures
            && *next_retry == other.next_retry
            && *created_at == other.created_at
            && *open_drift == other.open_drift
            && *drift_count == other.drift_count
            && *drift_history == other.drift_history
    }

    /// When this resource was last reconciled, given when the last complete pass ran
    /// (`last_pass`): a healthy record is not rewritten by a pass that changes nothing, so
    /// that pass's time stands for it. A failing or waiting one was not necessarily
    /// reconciled by that pass, and keeps its own time.
    pub fn reconciled_at(&self, last_pass: Option<Timestamp>) -> Option<Timestamp> {
        let own = self.last_reconciled;
        let healthy = matches!(self.state, State::Ready | State::Drifted)
            && self.failures == 0
            && self.next_retry.is_none();
        match (own, last_pass) {
            (Some(own), Some(pass)) if healthy && pass > own => Some(pass),
            (own, _) => own,
        }
    }

    /// Appends a drift event, keeping the last [`DRIFT_HISTORY`].
    pub fn push_drift(&mut self, event: DriftEvent) {
        self.drift_count += 1;
        self.drift_history.push(event);
        let excess = self.drift_history.len().saturating_sub(DRIFT_HISTORY);
        self.drift_history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_that_changes_nothing_stands_for_healthy_records_only() {
        let at = |t: &str| Timestamp::parse(t);
        let ready = Record {
            state: State::Ready,
            last_reconciled: at("2026-11-25T10:00:00Z"),
            ..Record::default()
        };
        let restamped = Record {
            last_reconciled: at("2026-11-25T11:00:00Z"),
            ..ready.clone()
        };
        assert!(ready.same_apart_from_time(&restamped));
        let changed = Record {
            message: "x".into(),
            ..restamped.clone()
        };
        assert!(!ready.same_apart_from_time(&changed));

        let failing = Record {
            state: State::Error,
            failures: 2,
            next_retry: at("2026-11-25T12:00:00Z"),
            ..ready.clone()
        };
        let table: &[(&Record, Option<&str>, Option<&str>)] = &[
            (
                &ready,
                Some("2026-11-25T11:00:00Z"),
                Some("2026-11-25T11:00:00Z"),
            ),
            (
                &ready,
                Some("2026-11-25T09:00:00Z"),
                Some("2026-11-25T10:00:00Z"),
            ),
            (&ready, None, Some("2026-11-25T10:00:00Z")),
            (
                &failing,
                Some("2026-11-25T11:00:00Z"),
                Some("2026-11-25T10:00:00Z"),
            ),
            (&Record::default(), Some("2026-11-25T11:00:00Z"), None),
        ];
        for (i, (rec, pass, want)) in table.iter().enumerate() {
            assert_eq!(
                rec.reconciled_at(pass.and_then(Timestamp::parse)),
                want.and_then(Timestamp::parse),
                "row {i}"
            );
        }
    }

    #[test]
    fn records_written_by_earlier_builds_still_read() {
        // As stored before defaults were left out: the key repeated, every field present.
        let old = r#"{"key":{"app":"a","stage":"s","name":"kv"},"kind":"kv","existing":false,"protected":true,"state":"Ready","message":"","desired_hash":"h","observed":{"namespace_id":"id"},"create_pending":false,"error_codes":[],"failures":0,"last_reconciled":"2026-11-25T22:34:44Z","drift_count":0,"drift_history":[]}"#;
        let rec: Record = serde_json::from_str(old).unwrap();
        assert!(rec.protected);
        assert_eq!(rec.kind(), Kind::KvNamespace);
        let Status::Kv(kv) = &rec.status else {
            panic!("{rec:?}")
        };
        assert_eq!(kv.observed.namespace_id.as_deref(), Some("id"));
        let now = serde_json::to_string(&rec).unwrap();
        assert!(
            !now.contains("\"key\"") && !now.contains("error_codes"),
            "{now}"
        );
        assert_eq!(serde_json::from_str::<Record>(&now).unwrap(), rec);
    }

    #[test]
    fn drift_history_is_bounded() {
        let mut r = Record::default();
        for i in 0..30 {
            r.push_drift(DriftEvent {
                at: Timestamp::from(
                    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i),
                ),
                changes: vec![],
                corrected: true,
            });
        }
        assert_eq!(r.drift_count, 30);
        assert_eq!(r.drift_history.len(), DRIFT_HISTORY);
        assert_eq!(r.drift_history[0].at.to_string(), "1970-01-01T00:00:10Z");
    }
}
