//! The one integration test binary: every test runs the real `lumierd` binary or the real
//! HTTP client against the local API over loopback.

// A test reports a failure by panicking, so `unwrap()`/`expect()` are its assertions here
// (Cargo.toml's [lints] forbids them in the product).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A scenario reads top to bottom; the 80-line rule (Cargo.toml [lints]) is for the product.
#![allow(clippy::too_many_lines)]

mod age_secret;
mod bench;
mod bindings;
mod client;
mod controller;
mod dashboard;
mod edge;
mod fuzz_local_api;
mod ha;
mod local_api;
mod lumier;
mod notify;
mod ops;
mod pacing;
mod reliability;
mod support;
mod validate;
mod worker_upload;
