//! The embedded Cloudflare-compatible local API (axum), served by `lumierd emulator` and
//! embedded in `lumierd run` by default.
