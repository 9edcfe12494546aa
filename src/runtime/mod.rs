//! The reconcile runtime: the pure decision table (`plan`), the generic loop that owns policy
//! (`controller`), and the daemon wiring for `run` and `plan` (`daemon`).
//!
//! Contracts: a reconcile is not told why it runs (change, retry or resync), so it is
//! idempotent; observing never writes; only the controller turns errors into backoff.

pub mod controller;
pub mod daemon;
pub mod plan;
pub mod status_socket;
