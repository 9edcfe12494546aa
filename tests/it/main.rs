//! The one integration test binary: every test runs the real `lumierd` binary or the real
//! HTTP client against the local API over loopback.

mod bench;
mod client;
mod controller;
mod fuzz_local_api;
mod local_api;
mod ops;
mod support;
mod validate;
mod worker_upload;
