//! The text exposition format (Prometheus 0.0.4) as written by hand: `# HELP`/`# TYPE` lines,
//! samples with escaped labels, and the duration histogram.

use std::fmt::Write as _;
use std::time::SystemTime;

/// Reconcile and API call durations: 5 ms to 2 min.
pub(super) const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram with [`DURATION_BUCKETS`] (non-cumulative counts, summed when rendered).
#[derive(Debug, Clone, Default)]
pub(super) struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub(super) fn observe(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    pub(super) fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i];
            let le = format_float(*le);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            sample(out, &format!("{name}_bucket"), &l, cumulative as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        sample(out, &format!("{name}_bucket"), &l, self.count as f64);
        sample(out, &format!("{name}_sum"), labels, self.sum);
        sample(out, &format!("{name}_count"), labels, self.count as f64);
    }
}

pub(super) fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

pub(super) fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(super) fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_float(value));
}

/// A sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN` as Prometheus spells them.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}
