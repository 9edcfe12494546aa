//! The served workers' output in lumierd's log, with each worker's app, stage and name.
//!
//! Two sources:
//! * **Tail posts** (the config's tail worker, see [`super::config`]): per request, the
//!   worker's console lines and uncaught exceptions, posted to [`TAIL_PATH`] with the script
//!   named in [`TAIL_SCRIPT_HEADER`]. Logged at the console level (`console.error` → error,
//!   `console.warn` → warn, `console.debug` → debug, else info), exceptions at error.
//! * **workerd's stdout/stderr**, structured (one JSON object a line): workerd's own lines
//!   (they carry a `source`) are logged at info, or warn when workerd says error; a line about
//!   a served script (`service NAME: …`) carries that worker's fields. Console lines also
//!   appear there, without the worker's name: they are logged at debug only, as the tail post
//!   brings the attributed copy (console lines printed while a module loads have no tail
//!   event; they are seen at debug).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::config::{Origin, TAIL_PATH, TAIL_SCRIPT_HEADER};
use super::supervisor::service_of;

/// Script name → where it comes from, for the served generation.
pub type Origins = Arc<RwLock<BTreeMap<String, Origin>>>;

/// The tail sink: `POST` [`TAIL_PATH`] with the tail worker's JSON.
pub fn router(origins: Origins) -> Router {
    Router::new()
        .route(TAIL_PATH, post(tail))
        .with_state(origins)
}

#[derive(Deserialize)]
struct TailEvent {
    #[serde(default)]
    logs: Vec<TailLog>,
    #[serde(default)]
    exceptions: Vec<TailException>,
}

#[derive(Deserialize)]
struct TailLog {
    #[serde(default)]
    level: String,
    #[serde(default)]
    message: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct TailException {
    #[serde(default)]
    name: String,
    #[serde(default)]
    message: String,
}

async fn tail(State(origins): State<Origins>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let script = headers
        .get(TAIL_SCRIPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let Ok(events) = serde_json::from_slice::<Vec<TailEvent>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let origin = origins
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&script)
        .cloned()
        .unwrap_or_else(|| Origin {
            app: String::new(),
            stage: String::new(),
            name: script.clone(),
        });
    for e in events {
        for log in e.logs {
            let text = log
                .message
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            console(&origin, &script, &log.level, &text);
        }
        for x in e.exceptions {
            tracing::error!(
                target: "workerd",
                app = %origin.app, stage = %origin.stage, resource = %origin.name, script = %script,
                "uncaught {}: {}", x.name, x.message
            );
        }
    }
    StatusCode::OK
}

fn console(o: &Origin, script: &str, level: &str, text: &str) {
    macro_rules! at {
        ($mac:ident) => {
            tracing::$mac!(
                target: "workerd",
                app = %o.app, stage = %o.stage, resource = %o.name, script = %script,
                "{text}"
            )
        };
    }
    match level {
        "error" => at!(error),
        "warn" => at!(warn),
        "debug" => at!(debug),
        _ => at!(info),
    }
}

/// One line of workerd's output, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// A worker's console line (no `source`), not workerd's own.
    pub console: bool,
    /// workerd said `error` (or `fatal`).
    pub error: bool,
    /// The message (may span lines: an exception and its stack).
    pub text: String,
}

/// Decodes a structured line; a line that is not JSON is workerd's own, as is.
pub fn parse_output(line: &str) -> OutputLine {
    let v: Option<serde_json::Value> = line
        .trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str(line).ok())
        .flatten();
    let Some(v) = v else {
        return OutputLine {
            console: false,
            error: false,
            text: line.to_owned(),
        };
    };
    let level = v["level"].as_str().unwrap_or("");
    OutputLine {
        console: v.get("source").is_none(),
        error: matches!(level, "error" | "fatal"),
        text: v["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| line.to_owned()),
    }
}

/// Logs one decoded output line (see the module doc).
pub fn log_output(line: &OutputLine, stream: &str, origins: &BTreeMap<String, Origin>) {
    let origin = line
        .text
        .lines()
        .next()
        .and_then(service_of)
        .and_then(|s| origins.get(s));
    let text = &line.text;
    match (line.console, line.error, origin) {
        (true, _, _) => tracing::debug!(target: "workerd", stream, "{text}"),
        (false, true, Some(o)) => tracing::warn!(
            target: "workerd", app = %o.app, stage = %o.stage, resource = %o.name, stream, "{text}"
        ),
        (false, false, Some(o)) => tracing::info!(
            target: "workerd", app = %o.app, stage = %o.stage, resource = %o.name, stream, "{text}"
        ),
        (false, true, None) => tracing::warn!(target: "workerd", stream, "{text}"),
        (false, false, None) => tracing::info!(target: "workerd", stream, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_workerd_lines_from_console_lines() {
        assert_eq!(
            parse_output(r#"{"timestamp":1,"level":"log","message":"hello"}"#),
            OutputLine {
                console: true,
                error: false,
                text: "hello".into()
            }
        );
        assert_eq!(
            parse_output(
                r#"{"timestamp":"1","level":"error","source":"server.c++:1","message":"service a: Uncaught Error: x\n  at a.js:1:7"}"#
            ),
            OutputLine {
                console: false,
                error: true,
                text: "service a: Uncaught Error: x\n  at a.js:1:7".into()
            }
        );
        assert_eq!(
            parse_output("plain text"),
            OutputLine {
                console: false,
                error: false,
                text: "plain text".into()
            }
        );
    }
}
