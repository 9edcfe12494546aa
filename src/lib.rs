//! lumierd — a GitOps controller for Cloudflare Workers and KV namespaces.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! manifests dir ─▶ watch ─▶ runtime::scheduler ─▶ source::reload ─▶ Arc<Snapshot>
//!                  (only manifest-relevant   (leading-edge debounce, resync, retries,
//!                   changes)                  edit priority; tested with paused time)
//!                                                  │
//!   store (sled) ◀── runtime::controller (generic over kinds: order, board, prune, backoff,
//!                          │               write-ahead records, the one error policy)
//!                          │ observe → decide → act → record, per resource
//!                          ▼
//!                  resources::{kv_namespace, kv_existing, worker_script}: one file per kind,
//!                          │  each implementing resources::Reconciler
//!                          ▼
//!                  cloudflare::Client (reqwest, paced by the API's budget) ──HTTP──▶
//!                          api.cloudflare.com | local_api (axum) ──▶ edge (workerd)
//! ```
//!
//! `yaml` is the spanned YAML reader that `manifest` and `lumier` (Lumier's TypeScript configs)
//! both read through. `manifest` turns a directory of YAML/JSON stage manifests into an immutable, validated
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
pub mod logging;
pub mod lumier;
pub mod manifest;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod replica;
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
pub mod yaml;
