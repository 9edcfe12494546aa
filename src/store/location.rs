//! Where a store lives, as given on the command line (`--state`, `--store`).

use std::path::PathBuf;

use super::{etcd, StoreError};

/// Where a store lives: `sled:DIR` (or a bare DIR) or `etcd://HOST:PORT[,...]/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sled(PathBuf),
    Etcd(etcd::EtcdUrl),
}

impl Location {
    pub fn parse(s: &str) -> Result<Location, StoreError> {
        if s.starts_with("etcd://") {
            return Ok(Location::Etcd(etcd::EtcdUrl::parse(s)?));
        }
        Ok(Location::Sled(PathBuf::from(
            s.strip_prefix("sled:").unwrap_or(s),
        )))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sled(dir) => write!(f, "sled:{}", dir.display()),
            Location::Etcd(url) => url.fmt(f),
        }
    }
}
