//! The reconcile runtime: the generic loop that owns policy (`controller`, with `order`,
//! `board`, `prune` and `backoff`), what a pass reports (`change`), and the daemon wiring for
//! `run` and `plan` (`daemon`).
//!
//! Contracts: a reconcile is not told why it runs (change, retry or resync), so it is
//! idempotent; observing never writes; only the controller turns errors into backoff.

pub mod backoff;
mod board;
pub mod change;
pub mod controller;
pub mod daemon;
pub mod order;
mod prune;
