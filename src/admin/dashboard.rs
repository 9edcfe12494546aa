//! The dashboard (`GET /` on the admin listener): one self-contained HTML page, rendered here
//! (no CDN, no build step, no framework), read-only.
//!
//! What it shows: resources by state (counts, coloured), apps → stages → resources with state,
//! outputs (namespace ids, script names, URLs), message, last error and next retry, and a drift
//! timeline per resource (the recorded history with its field diffs); the last passes (when,
//! how long, what changed); the API requests spent in the current budget window; the manifest
//! load errors (`file:line:col: message`, one per line). Filters: `?app=&stage=&state=`;
//! pages of `?limit=` (default [`PAGE`], at most [`PAGE_MAX`]) from `?offset=`, so the page
//! stays the same size however many resources there are.
//!
//! Live: a few lines of inline script fetch the same URL with `fragment=1` every
//! [`REFRESH_MS`] (while the tab is visible) and swap the live part in, keeping open drift
//! timelines open. The fragment is this same renderer's output, so every user-provided string
//! (names, messages, drift lines, load errors) is escaped in exactly one place: [`esc`].
//! Without script, the page still works (the filter form and pager are plain GETs).

use super::passes::{PassSummary, BUDGET_WINDOW};
use crate::manifest::ResourceKey;
use crate::status::{Filter, Selection};
use crate::store::{Record, State};
use crate::time::Timestamp;
use std::fmt::Write as _;
use std::time::SystemTime;

/// Rows per page by default.
pub const PAGE: usize = 100;
/// Most rows per page.
pub const PAGE_MAX: usize = 500;
/// How often the page refreshes itself, in milliseconds.
pub const REFRESH_MS: u64 = 5000;

/// HTML-escapes `s` for text and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Everything a page shows besides the selected records.
pub struct Extras {
    pub passes: Vec<PassSummary>,
    /// Requests sent in the current budget window, and the client's cumulative limiter wait.
    pub budget_spent: Option<u64>,
    pub limiter_wait_s: f64,
    pub blocked_for_s: Option<f64>,
    pub ready: bool,
    pub notify_queue: Option<usize>,
}

/// The whole page (`fragment` = false) or only its live part.
pub fn render(sel: &Selection, filter: &Filter, extras: &Extras, fragment: bool) -> String {
    let mut live = String::with_capacity(64 * 1024);
    live_part(&mut live, sel, filter, extras);
    if fragment {
        return live;
    }
    let mut out = String::with_capacity(live.len() + 8 * 1024);
    out.push_str(HEAD);
    filter_form(&mut out, sel, filter);
    out.push_str("<div id=\"live\">");
    out.push_str(&live);
    out.push_str("</div>");
    let _ = write!(
        out,
        "<script>const REFRESH_MS={REFRESH_MS};{SCRIPT}</script>"
    );
    out.push_str("</body></html>\n");
    out
}

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lumierd</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#1b1f24;background:#fafafa}
h1{font-size:1.3em;margin:.8em 0 .3em}h2{font-size:1.15em;margin:1.2em 0 .2em}
h3{font-size:1em;margin:.8em 0 .2em;color:#444}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e3e3;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}
code,pre{font:12px/1.35 ui-monospace,monospace}pre{white-space:pre-wrap;margin:0}
.st{display:inline-block;padding:0 6px;border-radius:8px;font-weight:600;font-size:12px}
.Ready{background:#d4f5dc;color:#11612a}.Pending{background:#e4ecfb;color:#1e4597}
.Drifted{background:#fff0c2;color:#7a5600}.Error{background:#fddcdc;color:#9b1c1c}
.Retained{background:#e9e2fb;color:#4b2a99}.Deleting{background:#ffe2cc;color:#8a3b00}
.chips a{margin-right:.6em;text-decoration:none}
.err{background:#fff4f4;border:1px solid #f1b5b5;padding:.5em .8em;margin:.6em 0}
.muted{color:#666}.drift li{margin:.2em 0}.meta span{margin-right:1.4em}
form{margin:.5em 0}select,button{font:inherit}
</style></head><body><h1>lumierd</h1>
"#;

/// Keeps open timelines open across refreshes; pauses while the tab is hidden.
const SCRIPT: &str = r#"
(function(){
const live=document.getElementById('live');
document.documentElement.dataset.rendered=String(Math.round(performance.now()));
async function tick(){
 if(document.hidden)return;
 const u=new URL(location.href);u.searchParams.set('fragment','1');
 try{
  const r=await fetch(u,{cache:'no-store',credentials:'same-origin'});
  if(!r.ok)return;
  const html=await r.text();
  const open=[...live.querySelectorAll('details[open]')].map(d=>d.id);
  live.innerHTML=html;
  for(const id of open){const d=document.getElementById(id);if(d)d.open=true;}
  document.documentElement.dataset.refreshed=new Date().toISOString();
 }catch(e){}
}
setInterval(tick,REFRESH_MS);
})();
"#;

fn filter_form(out: &mut String, sel: &Selection, filter: &Filter) {
    out.push_str("<form method=\"get\" action=\"/\" id=\"filters\">");
    let select =
        |out: &mut String, name: &str, label: &str, options: &[String], chosen: &Option<String>| {
            let _ = write!(
                out,
                "<label>{label} <select name=\"{name}\"><option value=\"\">all</option>"
            );
            for o in options {
                let sel = if chosen.as_deref() == Some(o.as_str()) {
                    " selected"
                } else {
                    ""
                };
                let _ = write!(out, "<option{sel} value=\"{v}\">{v}</option>", v = esc(o));
            }
            out.push_str("</select></label> ");
        };
    let apps: Vec<String> = sel.apps.keys().cloned().collect();
    let stages: Vec<String> = sel
        .apps
        .iter()
        .filter(|(a, _)| filter.app.as_ref().is_none_or(|f| f == *a))
        .flat_map(|(_, s)| s.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let states: Vec<String> = STATES.iter().map(|s| s.as_str().to_owned()).collect();
    select(out, "app", "app", &apps, &filter.app);
    select(out, "stage", "stage", &stages, &filter.stage);
    select(out, "state", "state", &states, &filter.state);
    if let Some(limit) = filter.limit.filter(|l| *l != PAGE) {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"limit\" value=\"{limit}\">"
        );
    }
    out.push_str("<button type=\"submit\">filter</button></form>\n");
}

const STATES: [State; 6] = [
    State::Error,
    State::Drifted,
    State::Deleting,
    State::Pending,
    State::Retained,
    State::Ready,
];

/// A query string for `filter` with `offset`, for links.
fn query(filter: &Filter, state: Option<&str>, offset: usize) -> String {
    let mut q = Vec::new();
    if let Some(a) = &filter.app {
        q.push(format!("app={}", enc(a)));
    }
    if let Some(s) = &filter.stage {
        q.push(format!("stage={}", enc(s)));
    }
    if let Some(s) = state {
        q.push(format!("state={}", enc(s)));
    }
    if offset > 0 {
        q.push(format!("offset={offset}"));
    }
    if let Some(l) = filter.limit.filter(|l| *l != PAGE) {
        q.push(format!("limit={l}"));
    }
    if q.is_empty() {
        "/".into()
    } else {
        format!("/?{}", q.join("&"))
    }
}

fn ago(t: Timestamp, now: SystemTime) -> String {
    let t = t.system_time();
    let (secs, future) = match now.duration_since(t) {
        Ok(d) => (d.as_secs(), false),
        Err(e) => (e.duration().as_secs(), true),
    };
    let span = humantime::format_duration(std::time::Duration::from_secs(secs)).to_string();
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn live_part(out: &mut String, sel: &Selection, filter: &Filter, x: &Extras) {
    let now = SystemTime::now();
    // Summary: counts by state (links filter), readiness, last pass, budget.
    out.push_str("<p class=\"chips\" id=\"counts\">");
    let total: usize = sel.by_state.values().sum();
    let _ = write!(
        out,
        "<a href=\"{}\">{total} resources</a> ",
        esc(&query(filter, None, 0))
    );
    for s in STATES {
        let n = sel.by_state.get(s.as_str()).copied().unwrap_or(0);
        if n > 0 {
            let _ = write!(
                out,
                "<a href=\"{}\"><span class=\"st {s}\">{s} {n}</span></a>",
                esc(&query(filter, Some(s.as_str()), 0)),
                s = s.as_str()
            );
        }
    }
    out.push_str("</p>\n<p class=\"meta\">");
    let _ = write!(
        out,
        "<span id=\"ready\">{}</span>",
        if x.ready { "ready" } else { "not ready yet" }
    );
    if let Some(t) = sel.last_pass {
        let _ = write!(
            out,
            "<span>last complete pass: {t} ({})</span>",
            ago(t, now)
        );
    }
    match x.budget_spent {
        Some(n) => {
            let _ = write!(
                out,
                "<span id=\"budget\">API budget: {n} requests in the last {} min (Cloudflare allows 1200)</span>",
                BUDGET_WINDOW.as_secs() / 60
            );
        }
        None => out.push_str("<span id=\"budget\">API budget: no client</span>"),
    }
    let _ = write!(out, "<span>limiter wait: {:.1} s</span>", x.limiter_wait_s);
    if let Some(b) = x.blocked_for_s {
        let _ = write!(
            out,
            "<span class=\"st Error\">rate-limited for {b:.0} s</span>"
        );
    }
    if let Some(q) = x.notify_queue {
        let _ = write!(out, "<span>notifications waiting: {q}</span>");
    }
    out.push_str("</p>\n");

    if let Some(err) = &sel.load_error {
        out.push_str("<div class=\"err\" id=\"load-error\"><b>Manifests not loaded</b> (the last good ones stay in force):<pre>");
        out.push_str(&esc(err));
        out.push_str("</pre></div>\n");
    }

    resources(out, sel, filter, now);
    passes(out, &x.passes);
}

fn resources(out: &mut String, sel: &Selection, filter: &Filter, now: SystemTime) {
    let limit = filter.limit.unwrap_or(PAGE);
    let first = if sel.rows.is_empty() {
        0
    } else {
        filter.offset + 1
    };
    let last = filter.offset + sel.rows.len();
    let _ = write!(
        out,
        "<h2>Resources</h2><p class=\"muted\" id=\"page\">{first}–{last} of {} matching",
        sel.matching
    );
    if filter.offset > 0 {
        let _ = write!(
            out,
            " · <a href=\"{}\">previous</a>",
            esc(&query(
                filter,
                filter.state.as_deref(),
                filter.offset.saturating_sub(limit)
            ))
        );
    }
    if last < sel.matching {
        let _ = write!(
            out,
            " · <a href=\"{}\" id=\"next\">next</a>",
            esc(&query(filter, filter.state.as_deref(), last))
        );
    }
    out.push_str("</p>\n");
    let mut group: Option<(&str, &str)> = None;
    let mut app: Option<&str> = None;
    for (key, rec) in &sel.rows {
        if app != Some(key.app.as_str()) {
            if group.is_some() {
                out.push_str("</tbody></table>\n");
            }
            let _ = write!(out, "<h2 class=\"app\">{}</h2>", esc(&key.app));
            app = Some(&key.app);
            group = None;
        }
        if group != Some((key.app.as_str(), key.stage.as_str())) {
            if group.is_some() {
                out.push_str("</tbody></table>\n");
            }
            let _ = write!(
                out,
                "<h3 class=\"stage\">{}</h3><table><thead><tr><th>name</th><th>type</th><th>state</th><th>output</th><th>last reconciled</th><th>message</th><th>drift</th></tr></thead><tbody>",
                esc(&key.stage)
            );
            group = Some((&key.app, &key.stage));
        }
        row(out, key, rec, sel.last_pass, now);
    }
    if group.is_some() {
        out.push_str("</tbody></table>\n");
    }
}

fn row(
    out: &mut String,
    key: &ResourceKey,
    rec: &Record,
    last_pass: Option<Timestamp>,
    now: SystemTime,
) {
    let kind = rec.kind();
    let id = format!("{}/{}/{}", key.app, key.stage, key.name);
    let _ = write!(
        out,
        "<tr data-key=\"{id}\" data-state=\"{st}\"><td><b>{name}</b></td><td>{ty}</td><td><span class=\"st {st}\">{st}</span></td><td>",
        id = esc(&id),
        st = rec.state.as_str(),
        name = esc(&key.name),
        ty = esc(kind.type_name()),
    );
    if let Some(serde_json::Value::Object(o)) = crate::resources::output(kind, key, &rec.status) {
        for (k, v) in &o {
            if k == "type" || k == "name" {
                continue;
            }
            let Some(v) = v.as_str() else { continue };
            let value = if (v.starts_with("https://") || v.starts_with("http://"))
                && !v.contains(char::is_whitespace)
            {
                format!("<a href=\"{u}\" rel=\"noreferrer\">{u}</a>", u = esc(v))
            } else {
                format!("<code>{}</code>", esc(v))
            };
            let _ = write!(out, "<div class=\"out\">{}: {value}</div>", esc(k));
        }
    }
    out.push_str("</td><td>");
    if let Some(t) = rec.reconciled_at(last_pass) {
        let _ = write!(out, "<span title=\"{t}\">{}</span>", ago(t, now));
    }
    out.push_str("</td><td>");
    if !rec.message.is_empty() {
        let _ = write!(out, "<div class=\"msg\">{}</div>", esc(&rec.message));
    }
    if let Some(e) = rec.last_error.as_ref().filter(|e| **e != rec.message) {
        let _ = write!(out, "<div class=\"lasterr\">last error: {}</div>", esc(e));
    }
    if let Some(t) = rec.next_retry {
        let _ = write!(
            out,
            "<div class=\"retry muted\">next retry {} ({} failures)</div>",
            ago(t, now),
            rec.failures
        );
    }
    out.push_str("</td><td>");
    if rec.drift_count > 0 {
        let _ = write!(
            out,
            "<details class=\"drift\" id=\"d-{}\"><summary>{} drift event{}</summary><ol>",
            esc(&enc(&id)),
            rec.drift_count,
            if rec.drift_count == 1 { "" } else { "s" }
        );
        for d in rec.drift_history.iter().rev() {
            let _ = write!(
                out,
                "<li><span title=\"{at}\">{ago}</span> <span class=\"st {cls}\">{what}</span><ul>",
                at = d.at,
                ago = ago(d.at, now),
                cls = if d.corrected { "Ready" } else { "Drifted" },
                what = if d.corrected { "corrected" } else { "reported" },
            );
            for c in &d.changes {
                let _ = write!(out, "<li><code>{}</code></li>", esc(c));
            }
            out.push_str("</ul></li>");
        }
        out.push_str("</ol></details>");
    }
    out.push_str("</td></tr>\n");
}

fn passes(out: &mut String, passes: &[PassSummary]) {
    out.push_str("<h2>Last passes</h2>");
    if passes.is_empty() {
        out.push_str("<p class=\"muted\">none yet</p>");
        return;
    }
    out.push_str("<table id=\"passes\"><thead><tr><th>started</th><th>took</th><th>result</th><th>changes</th></tr></thead><tbody>");
    for p in passes {
        let result = match (&p.error, p.converged) {
            (Some(e), _) => format!("<span class=\"st Error\">failed</span> {}", esc(e)),
            (None, true) => "<span class=\"st Ready\">converged</span>".to_owned(),
            (None, false) => "<span class=\"st Pending\">not converged</span>".to_owned(),
        };
        let counts: Vec<String> = p.actions.iter().map(|(a, n)| format!("{n} {a}")).collect();
        let _ = write!(
            out,
            "<tr><td>{at}</td><td>{ms} ms</td><td>{result}</td><td>{counts}",
            at = p.at,
            ms = p.took_ms,
            counts = esc(&counts.join(", ")),
        );
        if !p.lines.is_empty() {
            out.push_str("<pre>");
            for l in &p.lines {
                out.push_str(&esc(l));
                out.push('\n');
            }
            out.push_str("</pre>");
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_string_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let key = ResourceKey {
            app: "a<b".into(),
            stage: "s\"t".into(),
            name: "n'x".into(),
        };
        let rec = Record {
            state: State::Error,
            message: "<script>alert(1)</script>".into(),
            last_error: Some("<img src=x onerror=alert(2)>".into()),
            ..Record::default()
        };
        let sel = Selection {
            rows: vec![(key, rec)],
            matching: 1,
            load_error: Some("<b>bad.yaml</b>:1:2: oops".into()),
            ..Selection::default()
        };
        let extras = Extras {
            passes: vec![],
            budget_spent: Some(3),
            limiter_wait_s: 0.0,
            blocked_for_s: None,
            ready: true,
            notify_queue: None,
        };
        let html = render(&sel, &Filter::default(), &extras, false);
        for bad in ["<script>alert", "<img", "<b>bad", "a<b", "s\"t", "n'x"] {
            assert!(!html.contains(bad), "{bad} unescaped");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;bad.yaml&lt;/b&gt;:1:2: oops"));
    }

    #[test]
    fn links_keep_the_filter_and_encode_it() {
        let f = Filter {
            app: Some("my app&x".into()),
            limit: Some(50),
            ..Filter::default()
        };
        assert_eq!(
            query(&f, Some("Error"), 100),
            "/?app=my%20app%26x&state=Error&offset=100&limit=50"
        );
        assert_eq!(query(&Filter::default(), None, 0), "/");
    }
}
