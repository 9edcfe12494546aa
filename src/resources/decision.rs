//! What one reconcile decides: the result of a kind's pure decision table (desired, status,
//! observation, drift mode → what to do).
//!
//! Drift is "the remote differs from what lumierd last applied". When drift is found, `correct`
//! mode puts the remote back and `report` mode records it and writes nothing. A manifest change
//! with no drift is an ordinary update.

use crate::manifest::DriftMode;

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

pub(crate) fn drifted(mode: DriftMode, drift: Vec<String>, recreate: bool) -> Decision {
    match mode {
        DriftMode::Correct => Decision::Correct { drift, recreate },
        DriftMode::Report => Decision::Report { drift },
    }
}
