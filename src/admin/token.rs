//! The admin listener's bearer token (`--admin-token-file FILE`, with `--admin-allow-remote`):
//! every path but `/healthz` needs `Authorization: Bearer TOKEN` — or, for a browser opening
//! the dashboard, HTTP Basic with TOKEN as the password (any user name), which the browser
//! asks for once and then sends with every request of the page, its refreshes included.
//!
//! The comparison is constant-time (both sides hashed with SHA-256, the digests compared
//! without an early exit), and the token is never logged: its `Debug` prints nothing of it.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--admin-token-file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--admin-token-file {path} is empty; write the token on its first line")]
    Empty { path: String },
}

/// The token, as its SHA-256 digest (the plain token is not kept).
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(redacted)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl AdminToken {
    /// The token in `path`: its first line, surrounding whitespace trimmed.
    pub fn from_file(path: &Path) -> Result<AdminToken, TokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(TokenError::Empty { path: shown });
        }
        Ok(AdminToken::new(token))
    }

    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: digest(token.as_bytes()),
        }
    }

    fn matches(&self, candidate: &[u8]) -> bool {
        let other = digest(candidate);
        self.digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether an `Authorization` header value carries the token (Bearer, or Basic with the
    /// token as password).
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.matches(rest.as_bytes())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            let password = match decoded.iter().position(|b| *b == b':') {
                Some(i) => &decoded[i + 1..],
                None => return false,
            };
            self.matches(password)
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let t = AdminToken::new("s3cret");
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let table: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("Bearer s3cret"), true),
            (Some("bearer  s3cret "), true),
            (Some("Bearer s3cre"), false),
            (Some("Bearer s3cretx"), false),
            (Some("s3cret"), false),
            (Some(&basic("admin:s3cret")), true),
            (Some(&basic(":s3cret")), true),
            (Some(&basic("s3cret")), false),
            (Some(&basic("admin:nope")), false),
            (Some("Basic !!!"), false),
        ];
        for (i, (header, want)) in table.iter().enumerate() {
            assert_eq!(t.allows(header.map(str::as_bytes)), *want, "row {i}");
        }
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
