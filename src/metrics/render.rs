//! [`Metrics::render`]: every family in the order scrapers have always seen them, one
//! function per group (process, reconciles, manifests, notifications, provider API).

use super::exposition::{bool_f, family, sample, unix};
use super::{Inner, Metrics};
use crate::cloudflare::RequestStats;
use std::time::Duration;

/// A family of one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    family(out, name, kind, help);
    sample(out, name, &[], value);
}

/// A family whose samples are keyed by one label.
fn by_label<'a>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    label: &str,
    values: impl IntoIterator<Item = (&'a &'static str, &'a u64)>,
) {
    family(out, name, kind, help);
    for (value, n) in values {
        sample(out, name, &[(label, value)], *n as f64);
    }
}

impl Metrics {
    /// The text exposition of every family, with the client's request counters.
    pub fn render(&self, api: Option<&RequestStats>, blocked_for: Option<Duration>) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let m = self.with(|m| m.clone());
        self.render_process(&mut out);
        render_reconciles(&mut out, &m);
        render_manifests(&mut out, &m);
        render_notify(&mut out, &m);
        let empty = RequestStats::default();
        render_api(&mut out, api.unwrap_or(&empty), blocked_for);
        out
    }

    fn render_process(&self, out: &mut String) {
        family(
            out,
            "lumierd_build_info",
            "gauge",
            "Always 1; the version of this lumierd.",
        );
        sample(
            out,
            "lumierd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        single(
            out,
            "lumierd_ready",
            "gauge",
            "1 once the manifests are loaded and the first reconcile pass is done, else 0.",
            bool_f(self.is_ready()),
        );
        single(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            unix(self.started),
        );
    }
}

fn render_reconciles(out: &mut String, m: &Inner) {
    family(
        out,
        "lumierd_reconciles_total",
        "counter",
        "Resource reconciles, by kind and result (the action taken, noop, pending or error).",
    );
    for ((kind, result), n) in &m.reconciles {
        let labels = [("kind", *kind), ("result", *result)];
        sample(out, "lumierd_reconciles_total", &labels, *n as f64);
    }
    family(
        out,
        "lumierd_reconcile_duration_seconds",
        "histogram",
        "Time one resource's reconcile took (observe, decide, act), by kind.",
    );
    for (kind, h) in &m.reconcile_duration {
        h.render(out, "lumierd_reconcile_duration_seconds", &[("kind", kind)]);
    }
    family(
        out,
        "lumierd_drift_events_total",
        "counter",
        "Out-of-band changes detected, by kind and field (title, content, bindings, ...).",
    );
    for ((kind, field), n) in &m.drift_events {
        let labels = [("kind", *kind), ("field", *field)];
        sample(out, "lumierd_drift_events_total", &labels, *n as f64);
    }
    by_label(
        out,
        (
            "lumierd_passes_total",
            "counter",
            "Reconcile passes over the whole snapshot, by result (error: the account could not be listed).",
        ),
        "result",
        &m.passes,
    );
    family(
        out,
        "lumierd_pass_duration_seconds",
        "histogram",
        "Time one reconcile pass took.",
    );
    m.pass_duration
        .render(out, "lumierd_pass_duration_seconds", &[]);
    by_label(
        out,
        (
            "lumierd_resources",
            "gauge",
            "Resources lumierd keeps a record of, by state, after the last pass.",
        ),
        "state",
        &m.resources,
    );
    single(
        out,
        "lumierd_queue_depth",
        "gauge",
        "Resources waiting for a retry (failing, or waiting on a dependency) after the last pass.",
        m.queue_depth as f64,
    );
}

fn render_manifests(out: &mut String, m: &Inner) {
    single(
        out,
        "lumierd_manifest_load_failures_total",
        "counter",
        "Manifest loads that failed (the last good manifests stayed in force).",
        m.load_failures as f64,
    );
    single(
        out,
        "lumierd_manifest_last_load_success_timestamp_seconds",
        "gauge",
        "When the manifests were last loaded successfully, since the Unix epoch (0: never).",
        m.last_load_success.map(unix).unwrap_or(0.0),
    );
    single(
        out,
        "lumierd_reloads_total",
        "counter",
        "Reloads asked for with SIGHUP (rescan the manifests, resync everything).",
        m.reloads as f64,
    );
}

fn render_notify(out: &mut String, m: &Inner) {
    by_label(
        out,
        (
            "lumierd_notify_deliveries_total",
            "counter",
            "Notification POSTs to --notify URLs, by result (failed: no 2xx answer; retried).",
        ),
        "result",
        &m.notify_deliveries,
    );
    single(
        out,
        "lumierd_notify_dropped_total",
        "counter",
        "Undelivered notifications dropped because the outbox was full.",
        m.notify_dropped as f64,
    );
    single(
        out,
        "lumierd_notify_queue_depth",
        "gauge",
        "Notifications waiting for delivery (summed over targets).",
        m.notify_queue as f64,
    );
}

fn render_api(out: &mut String, api: &RequestStats, blocked_for: Option<Duration>) {
    family(
        out,
        "lumierd_cloudflare_requests_total",
        "counter",
        "HTTP attempts to the Cloudflare API, retries included, by operation and status code (0: no response).",
    );
    for ((operation, code), n) in &api.by_status {
        let code = code.to_string();
        let labels = [("operation", operation.as_str()), ("code", &code)];
        sample(out, "lumierd_cloudflare_requests_total", &labels, *n as f64);
    }
    single(
        out,
        "lumierd_cloudflare_retries_total",
        "counter",
        "Cloudflare API attempts that retried an earlier failed attempt.",
        api.retries as f64,
    );
    single(
        out,
        "lumierd_cloudflare_refused_while_blocked_total",
        "counter",
        "Cloudflare API calls not sent because the account was rate-limited for too long.",
        api.refused_while_blocked as f64,
    );
    single(
        out,
        "lumierd_cloudflare_ratelimit_wait_seconds_total",
        "counter",
        "Time spent waiting for the client-side rate limiter, summed over all tasks.",
        api.limiter_wait.as_secs_f64(),
    );
    single(
        out,
        "lumierd_cloudflare_ratelimit_blocked_seconds",
        "gauge",
        "How much longer an account-wide rate-limit block (429 Retry-After) lasts; 0 when none.",
        blocked_for.unwrap_or_default().as_secs_f64(),
    );
}
