//! The Cloudflare v4 API: wire types shared with the local API, and the one HTTP client.

pub mod types;
