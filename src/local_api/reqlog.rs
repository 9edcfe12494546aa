//! The request log: every request, kept in memory and optionally appended to a JSON-lines file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{now_micros, rfc3339_micros};
use super::LocalApiError;

/// One logged request. `status` is 0 for a connection dropped by fault injection.
/// Headers (and so the token) are never logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub method: String,
    /// The raw (percent-encoded) path.
    pub path: String,
    /// The raw query string, without `?` (empty when none).
    pub query: String,
    pub status: u16,
    pub duration_ms: f64,
}

/// A line of the log file: the request plus its completion time (RFC 3339).
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    request: &'a LoggedRequest,
    ts: String,
}

#[derive(Debug)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
    file: Option<Mutex<File>>,
}

impl RequestLog {
    /// Opens (creating, appending) the log file when a path is given.
    pub fn open(path: Option<&Path>) -> Result<RequestLog, LocalApiError> {
        let file = match path {
            None => None,
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| LocalApiError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| LocalApiError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some(Mutex::new(file))
            }
        };
        Ok(RequestLog {
            entries: Mutex::new(Vec::new()),
            file,
        })
    }

    /// Records one request. A failing log file write is reported through `tracing` and does
    /// not fail the request.
    pub fn record(&self, method: String, path: String, query: String, status: u16, took: Duration) {
        let entry = LoggedRequest {
            method,
            path,
            query,
            status,
            duration_ms: took.as_secs_f64() * 1000.0,
        };
        if let Some(file) = &self.file {
            let line = Line {
                request: &entry,
                ts: rfc3339_micros(now_micros()),
            };
            if let Ok(mut text) = serde_json::to_string(&line) {
                text.push('\n');
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = f.write_all(text.as_bytes()) {
                    tracing::warn!(error = %e, "local API: cannot append to the request log");
                }
            }
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
