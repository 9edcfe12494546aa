//! The reconcile runtime: the generic loop that owns policy (`controller`, with `order`,
//! `board`, `settle`, `prune` and `backoff`), what a pass reports (`change`), when a pass runs
//! (`scheduler`), and the commands: `run` (`daemon`: the boot list and the loop, with
//! `provider`, `ops` and `signals`) and `plan`.
//!
//! Contracts: a reconcile is not told why it runs (change, retry or resync), so it is
//! idempotent; observing never writes; only the controller turns errors into backoff.

pub mod backoff;
mod board;
pub mod change;
pub mod controller;
pub mod daemon;
pub mod leader;
mod ops;
pub mod order;
mod pass_summary;
pub mod plan;
pub mod provider;
mod prune;
mod run_loop;
pub mod scheduler;
mod settle;
mod signals;
pub mod status_socket;
