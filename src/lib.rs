//! lumierd — a GitOps controller for Cloudflare Workers and KV namespaces.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! manifests dir ─▶ watch ─▶ manifest::load ─▶ Arc<Desired> snapshot
//!                                                  │
//!   store (sled) ◀── runtime::controller ◀── runtime::scheduler
//!                          │ observe → plan → act → persist → requeue
//!                          ▼
//!                  resources::{kv_namespace, kv_existing, worker_script}
//!                          ▼
//!                  cloudflare::Client (reqwest) ──HTTP──▶ api.cloudflare.com | local_api (axum)
//! ```
//!
//! `manifest` turns a directory of YAML/JSON stage manifests into an immutable, validated
//! [`manifest::Desired`] snapshot. `cloudflare` is the one HTTP client; `local_api` is the
//! embedded Cloudflare-compatible server that the same client talks to by default. `edge`
//! (`run --serve`) runs the workers that server holds on workerd, their KV bindings backed by
//! its store.

pub mod admin;
pub mod cli;
pub mod cloudflare;
pub mod edge;
pub mod fdlimit;
pub mod local_api;
pub mod manifest;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod resources;
pub mod runtime;
pub mod sdnotify;
pub mod secrets;
pub mod source;
pub mod status;
pub mod store;
pub mod time;
pub mod watch;
pub mod worker;
