//! The Cloudflare v4 API: wire types shared with the local API, and the one HTTP client.
//!
//! [`Client`] is a typed client for the slice lumierd uses (KV namespaces, keys and values;
//! Workers scripts, settings and content; token verify). It works the same against
//! `https://api.cloudflare.com/client/v4` and the embedded local API.
//!
//! Layout: [`client`] (config, request pipeline, retries, stats, token verify), [`limiter`]
//! (account-wide token bucket and 429 blocks), [`error`] (error type and classification),
//! [`kv`], [`workers`], [`secrets`] and [`subdomain`] (the operations), [`multipart`]
//! (response parsing), [`types`] (wire types).

pub mod client;
pub mod error;
pub mod kv;
pub mod limiter;
pub mod multipart;
pub mod secrets;
pub mod subdomain;
pub mod types;
pub mod workers;

pub use client::{Client, ClientConfig, RequestStats, Secret};
pub use error::{ApiError, ErrorKind};
pub use kv::ValueWrite;
pub use limiter::RateLimit;
pub use workers::{ScriptContent, ScriptUpload};

#[cfg(test)]
mod tests;
