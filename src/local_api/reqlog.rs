//! The request log: every request appended to an optional JSON-lines file, and the most recent
//! ones kept in memory for [`super::LocalApi::request_log`].
//!
//! The in-memory log is a ring bounded twice, so that no stream of requests (hostile ones
//! with long paths included) can grow the process: at most [`MEMORY_ENTRIES`] entries and at
//! most [`MEMORY_BYTES`] bytes of path and query text; the oldest entries go first. The file,
//! when configured, keeps every request.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
#[cfg(test)]
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{now_micros, rfc3339_micros};
use super::LocalApiError;

/// Most requests kept in memory (the newest). Above the request count of a cold converge of
/// 10,000 resources, so tests and benchmarks see every request of one scenario.
pub const MEMORY_ENTRIES: usize = 32_768;
/// Most bytes of method, path and query text kept in memory (the newest entries; about
/// 100 bytes of bookkeeping per entry come on top: at most ~7.5 MiB in all).
pub const MEMORY_BYTES: usize = 4 * 1024 * 1024;

/// One logged request. `status` is 0 for a request that got no answer: a connection dropped
/// by fault injection, or a client that went away before the answer was written.
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
    /// The request's User-Agent (lumierd's names its instance: who sent what), at most
    /// 200 bytes; empty when none was sent.
    #[serde(default)]
    pub user_agent: String,
    /// The request was handled (with `status`), then its answer was dropped by fault injection
    /// ("applied, answer lost"): the client saw a reset. Absent from the file when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_lost: bool,
}

impl LoggedRequest {
    /// Bytes of text this entry holds (what [`MEMORY_BYTES`] counts).
    fn text_bytes(&self) -> usize {
        self.method.len() + self.path.len() + self.query.len() + self.user_agent.len()
    }
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
    ring: Mutex<Ring>,
    file: Option<Mutex<File>>,
}

/// The newest entries, within `max_entries` and `max_bytes` (see the module doc).
#[derive(Debug)]
struct Ring {
    entries: VecDeque<LoggedRequest>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Ring {
    fn new(max_entries: usize, max_bytes: usize) -> Ring {
        Ring {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    fn push(&mut self, entry: LoggedRequest) {
        self.bytes += entry.text_bytes();
        self.entries.push_back(entry);
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.text_bytes(),
                None => break,
            }
        }
        // Give back what a burst of long entries left allocated.
        if self.entries.capacity() > 2 * self.entries.len().max(1024) {
            self.entries.shrink_to_fit();
        }
    }

    fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
    }
}

impl RequestLog {
    /// Opens (creating, appending) the log file when a path is given; the in-memory ring has
    /// the default bounds [`MEMORY_ENTRIES`] and [`MEMORY_BYTES`].
    pub fn open(path: Option<&Path>) -> Result<RequestLog, LocalApiError> {
        Self::open_bounded(path, MEMORY_ENTRIES, MEMORY_BYTES)
    }

    /// [`RequestLog::open`] with other bounds for the in-memory ring.
    pub fn open_bounded(
        path: Option<&Path>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<RequestLog, LocalApiError> {
        let file = match path {
            None => None,
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| LocalApiError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                // Private: it names every key and script the clients touched.
                let file = super::private_fs::append_file(path)?;
                Some(Mutex::new(file))
            }
        };
        Ok(RequestLog {
            ring: Mutex::new(Ring::new(max_entries, max_bytes)),
            file,
        })
    }

    /// Records one request. A failing log file write is reported through `tracing` and does
    /// not fail the request.
    #[cfg(test)]
    pub fn record(&self, method: String, path: String, query: String, status: u16, took: Duration) {
        self.record_entry(LoggedRequest {
            method,
            path,
            query,
            status,
            duration_ms: took.as_secs_f64() * 1000.0,
            user_agent: String::new(),
            answer_lost: false,
        });
    }

    /// Appends `entry` to the file (when configured) and the ring.
    fn record_entry(&self, entry: LoggedRequest) {
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
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    /// Starts the entry of a request that is being handled: it is recorded by
    /// [`PendingEntry::finish`], or, if the handling ends without an answer (a panic, or a
    /// future dropped), with status 0 when the entry is dropped.
    pub fn start(&self, method: String, path: String, query: String) -> PendingEntry<'_> {
        PendingEntry {
            log: self,
            request: Some((method, path, query)),
            started: std::time::Instant::now(),
            user_agent: String::new(),
        }
    }

    /// The entries in memory, oldest first.
    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.entries.iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A request being handled; see [`RequestLog::start`].
#[derive(Debug)]
pub struct PendingEntry<'a> {
    log: &'a RequestLog,
    request: Option<(String, String, String)>,
    started: std::time::Instant,
    user_agent: String,
}

impl PendingEntry<'_> {
    /// Records the request's User-Agent with it (cut to 200 bytes at a char boundary).
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        let mut end = user_agent.len().min(200);
        while !user_agent.is_char_boundary(end) {
            end -= 1;
        }
        self.user_agent = user_agent[..end].to_owned();
        self
    }

    /// Records the request with its answer's `status` (0: dropped without an answer).
    pub fn finish(mut self, status: u16) {
        self.record(status);
    }

    /// Records the request as handled with `status`, its answer then lost by fault injection.
    pub fn finish_answer_lost(mut self, status: u16) {
        self.record_as(status, true);
    }

    fn record(&mut self, status: u16) {
        self.record_as(status, false);
    }

    fn record_as(&mut self, status: u16, answer_lost: bool) {
        if let Some((method, path, query)) = self.request.take() {
            self.log.record_entry(LoggedRequest {
                method,
                path,
                query,
                status,
                duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                user_agent: std::mem::take(&mut self.user_agent),
                answer_lost,
            });
        }
    }
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        self.record(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(log: &RequestLog, path: &str) {
        log.record(
            "GET".into(),
            path.into(),
            String::new(),
            200,
            Duration::ZERO,
        );
    }

    #[test]
    fn the_ring_keeps_the_newest_entries_within_both_bounds() {
        let log = RequestLog::open_bounded(None, 3, 1 << 20).expect("memory log");
        for i in 0..10 {
            record(&log, &format!("/p{i}"));
        }
        let paths: Vec<String> = log.snapshot().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["/p7", "/p8", "/p9"]);

        let log = RequestLog::open_bounded(None, 1000, 100).expect("memory log");
        for i in 0..10 {
            record(&log, &format!("/{i}{}", "x".repeat(40)));
        }
        // 3 + 42 bytes per entry: two fit in 100 bytes.
        assert_eq!(log.snapshot().len(), 2);
        log.clear();
        assert!(log.snapshot().is_empty());
        record(&log, "/after");
        assert_eq!(log.snapshot().len(), 1);
    }

    #[test]
    fn an_unfinished_entry_is_recorded_with_status_0() {
        let log = RequestLog::open(None).expect("memory log");
        log.start("GET".into(), "/a".into(), String::new())
            .finish(200);
        drop(log.start("PUT".into(), "/b".into(), "x=1".into()));
        let got: Vec<(String, u16)> = log
            .snapshot()
            .into_iter()
            .map(|e| (e.path, e.status))
            .collect();
        assert_eq!(got, [("/a".to_owned(), 200), ("/b".to_owned(), 0)]);
    }
}
