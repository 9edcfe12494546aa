//! What a pass did or would do: one [`Change`] per resource that changed, for `plan` output,
//! `run --once` output and logs.

use crate::manifest::ResourceKey;
use std::fmt;

/// What was (or would be) done to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// Took over an object found by its natural key after a crash between create and record.
    Adopt,
    /// Put a drifted object back.
    Correct,
    /// Recorded drift and left it alone (report mode).
    Report,
    /// Refused to act (not ours, or an `existing` object missing): an error naming the fix.
    Refuse,
    Delete,
    /// Removed from the manifests but kept: its stage is protected.
    Retain,
    /// Removed from the manifests and only forgotten: an `existing` namespace.
    Forget,
    /// A deletion held for approval (over `--max-prune`).
    Hold,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Adopt => "adopt",
            Action::Correct => "correct",
            Action::Report => "report",
            Action::Refuse => "refuse",
            Action::Delete => "delete",
            Action::Retain => "retain",
            Action::Forget => "forget",
            Action::Hold => "hold",
        }
    }

    /// Whether it writes to the provider (or would, under `plan`).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Action::Create | Action::Update | Action::Correct | Action::Delete
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource's planned or applied change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub key: ResourceKey,
    pub action: Action,
    /// Field diffs, reasons, modules: one readable line each.
    pub details: Vec<String>,
}

impl fmt::Display for Change {
    /// `action app/stage/name` or `action app/stage/name: detail; detail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.key)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details.join("; "))?;
        }
        Ok(())
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub changes: Vec<Change>,
    /// Whether every declared resource ended `Ready` (or `Retained`) and nothing is held.
    pub converged: bool,
    /// The earliest time a failed resource wants to be retried.
    pub next_retry: Option<crate::time::Timestamp>,
}
