//! A pass's report summarised for the admin API's pass ring ([`PassSummary`]). Written here,
//! beside the report it reads, so that `admin` (which `runtime` starts) does not import
//! `runtime` back.

use std::collections::BTreeMap;
use std::time::Duration;

use super::change::PassReport;
use crate::admin::passes::{PassSummary, LINES_KEPT};
use crate::time::Timestamp;

impl PassSummary {
    /// The summary of a pass that started at `at` and took `took`.
    pub fn of<E: std::fmt::Display>(
        at: Timestamp,
        took: Duration,
        outcome: Result<&PassReport, &E>,
    ) -> PassSummary {
        let mut s = PassSummary {
            at,
            took_ms: took.as_millis().try_into().unwrap_or(u64::MAX),
            ok: outcome.is_ok(),
            converged: false,
            actions: BTreeMap::new(),
            lines: Vec::new(),
            error: None,
        };
        match outcome {
            Ok(report) => {
                s.converged = report.converged;
                for c in &report.changes {
                    *s.actions.entry(c.action.as_str().to_owned()).or_insert(0) += 1;
                }
                s.lines = report
                    .changes
                    .iter()
                    .take(LINES_KEPT)
                    .map(ToString::to_string)
                    .collect();
            }
            Err(e) => s.error = Some(e.to_string()),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_and_a_failure_summarised() {
        let report = PassReport::default();
        let s = PassSummary::of::<String>(Timestamp::now(), Duration::from_millis(7), Ok(&report));
        assert!(s.ok && s.error.is_none() && s.actions.is_empty() && s.lines.is_empty());
        assert_eq!(s.took_ms, 7);
        let failed = PassSummary::of(
            Timestamp::now(),
            Duration::ZERO,
            Err::<&PassReport, _>(&"the account could not be listed"),
        );
        assert!(!failed.ok);
        assert_eq!(
            failed.error.as_deref(),
            Some("the account could not be listed")
        );
    }
}
