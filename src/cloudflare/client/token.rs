//! The API token: a string that never prints. `Debug` and `Display` show `[redacted]`; the
//! value only leaves this type as the `Authorization` header (marked sensitive), through
//! [`Secret::expose`].

use std::fmt;

/// An API token. `Debug` and `Display` print `[redacted]`; the value only leaves this type
/// as the `Authorization` header (marked sensitive).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Secret {
        Secret(token.into())
    }

    /// The token itself. Only for building the `Authorization` header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the token is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(token: String) -> Secret {
        Secret(token)
    }
}

impl From<&str> for Secret {
    fn from(token: &str) -> Secret {
        Secret(token.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
