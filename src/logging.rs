//! The log subscriber `lumierd` installs (stderr), and its JSON line format.
//!
//! | `--log-format` | one line                                | the spans it is logged in        |
//! | -------------- | --------------------------------------- | -------------------------------- |
//! | `human`        | tracing_subscriber's full format        | `reconcile{resource=… kind=…}:` before the target, as by default |
//! | `json`         | one object: `timestamp`, `level`, the event's fields (`message` first), its spans' fields, `target` | flattened to the top level |
//!
//! Why flattened: whatever reads the JSON lines finds `app`, `stage`, `name`, `resource` and
//! `kind` at the top level of every line logged inside a reconcile (`runtime::controller`),
//! whether the event or its span carried them. tracing_subscriber 0.3's own JSON format nests
//! span fields under `span`/`spans`. A name is written once: an event's own field wins over a
//! span's, an inner span's over an outer one's.
//!
//! What it costs: a span's fields are written once, as JSON text, when the span is created
//! ([`SpanFields`]: no map, no value copied but into that text, one allocation) and read back
//! only when an event inside it is logged. A span of a level the filter disables is never
//! created, so it costs nothing (the `tracing` macros do not even evaluate its fields).

use serde_json::{Map, Value};
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    // (Plain comments: a doc comment here would become `--help` text.)
    // tracing_subscriber's full format, span context before the target.
    Human,
    // One `FlatJson` object per line.
    Json,
}

/// Installs the process's log subscriber on stderr: human-readable (colours only on a
/// terminal) or [`FlatJson`] lines. The level is `level` (`--log-level`, an `EnvFilter`
/// directive such as `info` or `lumierd=debug`), else `RUST_LOG`, else `info`. A second call
/// does nothing.
pub fn init(format: LogFormat, level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = level
        .and_then(|l| EnvFilter::try_new(l).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Already installed (a test, a second command in one process): the first one stays.
    let _ = match format {
        LogFormat::Human => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .try_init(),
        LogFormat::Json => json(filter, std::io::stderr).try_init(),
    };
}

/// The `json` subscriber: [`FlatJson`] lines to `writer`.
fn json<W>(filter: tracing_subscriber::EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .fmt_fields(SpanFields)
        .event_format(FlatJson)
        .finish()
}

/// Formats a span's fields as one JSON object's text (`{"app":"shop","kind":"kv"}`), kept by
/// the subscriber beside the span for [`FlatJson`]. Strings (and `?`/`%` values) are JSON
/// strings; integers, floats and booleans are JSON numbers and booleans.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut out = Batched::new(&mut writer);
        out.write_char('{')?;
        let mut v = ObjectWriter::new(&mut out, true);
        fields.record(&mut v);
        v.result?;
        out.write_char('}')?;
        out.flush()
    }

    /// `span.record(…)`: the new fields go inside the object already written.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let text = &mut current.fields;
        if text.pop() != Some('}') {
            text.clear();
            text.push('{');
        }
        let first = text.len() == 1;
        let mut v = ObjectWriter::new(text, first);
        fields.record(&mut v);
        v.result?;
        text.push('}');
        Ok(())
    }
}

/// Gathers small writes on the stack and hands them on in one piece (when full, and at
/// [`Batched::flush`]): a span's fields then grow the subscriber's `String` once, not at each
/// doubling (one allocation per span instead of about five).
struct Batched<'a> {
    out: &'a mut dyn fmt::Write,
    buf: [u8; 256],
    len: usize,
}

impl<'a> Batched<'a> {
    fn new(out: &'a mut dyn fmt::Write) -> Self {
        Batched {
            out,
            buf: [0; 256],
            len: 0,
        }
    }

    /// Hands on what is gathered. Only whole `&str`s are gathered, so it is UTF-8.
    fn flush(&mut self) -> fmt::Result {
        let text = std::str::from_utf8(&self.buf[..self.len]).map_err(|_| fmt::Error)?;
        self.len = 0;
        self.out.write_str(text)
    }
}

impl fmt::Write for Batched<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > self.buf.len() {
            self.flush()?;
            if s.len() > self.buf.len() {
                return self.out.write_str(s);
            }
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Writes each field it visits as `"name":value` into a JSON object under construction.
struct ObjectWriter<'a> {
    out: &'a mut dyn fmt::Write,
    /// No member written yet (no comma before the next).
    first: bool,
    result: fmt::Result,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut dyn fmt::Write, first: bool) -> Self {
        ObjectWriter {
            out,
            first,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let comma = if std::mem::take(&mut self.first) {
            ""
        } else {
            ","
        };
        self.result = write!(self.out, "{comma}\"")
            .and_then(|()| JsonText(&mut *self.out).write_str(field.name()))
            .and_then(|()| self.out.write_str("\":"))
            .and_then(|()| value(&mut *self.out));
    }

    fn string(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        self.member(field, |out| {
            out.write_char('"')?;
            JsonText(&mut *out).write_fmt(value)?;
            out.write_char('"')
        });
    }
}

impl Visit for ObjectWriter<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, format_args!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, format_args!("{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |out| write!(out, "{value}"));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |out| write!(out, "{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        match value.is_finite() {
            true => self.member(field, |out| write!(out, "{value}")),
            false => self.member(field, |out| out.write_str("null")),
        }
    }
}

/// Writes what it is given as the inside of a JSON string (quotes, backslashes and control
/// characters escaped).
struct JsonText<'a>(&'a mut dyn fmt::Write);

impl fmt::Write for JsonText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c.is_control()) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{:04x}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// The `json` line format: see the module doc. Reads the span fields [`SpanFields`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S> FormatEvent<S, SpanFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;

        let mut fields = Members::default();
        event.record(&mut fields);
        for span in ctx.event_scope().into_iter().flatten() {
            let ext = span.extensions();
            let Some(text) = ext.get::<FormattedFields<SpanFields>>() else {
                continue;
            };
            // Written by `SpanFields`, so always an object; anything else is left out.
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text.fields) {
                fields.add_absent(map);
            }
        }

        write_line(&mut writer, &timestamp, meta, &fields.0)
    }
}

/// `{timestamp, level, fields…, target}` and a newline.
fn write_line(
    writer: &mut Writer<'_>,
    timestamp: &str,
    meta: &tracing::Metadata<'_>,
    fields: &[(String, Value)],
) -> fmt::Result {
    let text = |s: &str| Value::String(s.to_owned());
    write!(writer, "{{\"timestamp\":{},", text(timestamp))?;
    write!(writer, "\"level\":\"{}\",", meta.level())?;
    for (name, value) in fields {
        write!(writer, "{}:{value},", text(name))?;
    }
    writeln!(writer, "\"target\":{}}}", text(meta.target()))
}

/// An event's fields in the order given, then those of its spans not already present.
#[derive(Default)]
struct Members(Vec<(String, Value)>);

impl Members {
    fn add(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.0.push((name.to_owned(), value));
    }

    fn add_absent(&mut self, map: Map<String, Value>) {
        for (name, value) in map {
            if !self.0.iter().any(|(n, _)| *n == name) {
                self.0.push((name, value));
            }
        }
    }
}

impl Visit for Members {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, value.into());
    }
}

#[cfg(test)]
mod tests;
