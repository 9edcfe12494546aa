//! The events lumierd announces, and the pure rule that finds them in a resource's record
//! before and after a reconcile ([`transitions`]).
//!
//! | kind | when | id (dedup) |
//! | --- | --- | --- |
//! | `drift_detected` | drift recorded in report mode | resource + drift count |
//! | `drift_corrected` | drift recorded and put back | resource + drift count |
//! | `error` | a resource enters `Error` | resource + when |
//! | `recovered` | a resource leaves `Error` for `Ready` or `Drifted` | resource + when |
//! | `prune_held` | a deletion is held for approval (state becomes `Deleting`) | resource + when |
//! | `load_failed` | a manifest load fails (or fails differently) | when |
//! | `load_recovered` | a manifest load succeeds after a failure | when |
//!
//! An event carries names, states, drift lines and error messages: never a secret value or
//! the API token (neither is ever in a record or a message).

use crate::manifest::ResourceKey;
use crate::store::{Record, State};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DriftDetected,
    DriftCorrected,
    Error,
    Recovered,
    PruneHeld,
    LoadFailed,
    LoadRecovered,
    /// Another replica leads (HA with an etcd store).
    LeaderChanged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DriftDetected => "drift_detected",
            EventKind::DriftCorrected => "drift_corrected",
            EventKind::Error => "error",
            EventKind::Recovered => "recovered",
            EventKind::PruneHeld => "prune_held",
            EventKind::LoadFailed => "load_failed",
            EventKind::LoadRecovered => "load_recovered",
            EventKind::LeaderChanged => "leader_changed",
        }
    }

    /// How the `text` line says it.
    fn phrase(self) -> &'static str {
        match self {
            EventKind::DriftDetected => "drift detected (report mode, left alone)",
            EventKind::DriftCorrected => "drift corrected",
            EventKind::Error => "entered Error",
            EventKind::Recovered => "recovered from Error",
            EventKind::PruneHeld => "deletion held for approval",
            EventKind::LoadFailed => "manifests failed to load (the last good ones stay in force)",
            EventKind::LoadRecovered => "manifests load again",
            EventKind::LeaderChanged => "the leader changed",
        }
    }
}

/// One notification: the JSON body POSTed to every `--notify` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable per event: a receiver that sees an id twice (at-least-once) can drop the copy.
    pub id: String,
    pub kind: EventKind,
    /// One line that Slack, Mattermost and Teams incoming webhooks render as the message.
    pub text: String,
    pub app: Option<String>,
    pub stage: Option<String>,
    pub name: Option<String>,
    /// The resource's state after the event, when it is about a resource.
    pub state: Option<String>,
    pub at: Timestamp,
    /// Drift lines, the error message, the hold's reason, or the load errors (one per line).
    pub details: Vec<String>,
}

/// Slack's control characters in message text (its docs ask for exactly these three).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Most characters of details carried in the `text` line (the fields carry all of them).
const TEXT_DETAILS: usize = 300;

impl Event {
    fn new(
        kind: EventKind,
        id: String,
        key: Option<&ResourceKey>,
        state: Option<State>,
        at: Timestamp,
        details: Vec<String>,
    ) -> Event {
        let subject = key.map_or_else(|| "manifests".to_owned(), ToString::to_string);
        let mut text = format!("lumierd: {subject}: {}", kind.phrase());
        if !details.is_empty() {
            let joined = details.join("; ");
            let cut: String = joined.chars().take(TEXT_DETAILS).collect();
            let more = if cut.len() < joined.len() { "…" } else { "" };
            text.push_str(&format!(": {cut}{more}"));
        }
        Event {
            id,
            kind,
            text: slack_escape(&text),
            app: key.map(|k| k.app.clone()),
            stage: key.map(|k| k.stage.clone()),
            name: key.map(|k| k.name.clone()),
            state: state.map(|s| s.as_str().to_owned()),
            at,
            details,
        }
    }

    /// A deletion of `key` held for approval, for `reason`.
    pub fn prune_held(key: &ResourceKey, reason: &str, at: Timestamp) -> Event {
        Event::new(
            EventKind::PruneHeld,
            format!("prune_held:{key}:{at}"),
            Some(key),
            Some(State::Deleting),
            at,
            vec![reason.to_owned()],
        )
    }

    /// The replicas' leader is now `leader` (since `since`, as the lease records it). Every
    /// replica that sees the change emits the same id, so a shared outbox delivers it once.
    pub fn leader_changed(leader: &str, since: Option<&str>, at: Timestamp) -> Event {
        let since = since.unwrap_or("");
        let mut event = Event::new(
            EventKind::LeaderChanged,
            format!("leader_changed:{leader}:{since}"),
            None,
            None,
            at,
            vec![format!("leader: {leader}")],
        );
        event.text = slack_escape(&format!("lumierd: replicas: now led by {leader}"));
        event
    }

    /// A manifest load's outcome, when it differs from the previous one (`was`: the previous
    /// load error); `None` when nothing changed.
    pub fn load(was: Option<&str>, now: Option<&str>, at: Timestamp) -> Option<Event> {
        match (was, now) {
            (a, b) if a == b => None,
            (_, Some(error)) => Some(Event::new(
                EventKind::LoadFailed,
                format!("load_failed:{at}"),
                None,
                None,
                at,
                error.lines().map(str::to_owned).collect(),
            )),
            (Some(_), None) => Some(Event::new(
                EventKind::LoadRecovered,
                format!("load_recovered:{at}"),
                None,
                None,
                at,
                Vec::new(),
            )),
            (None, None) => None,
        }
    }
}

/// The events in one resource's reconcile: its record `before` (None: first seen) and
/// `after`, at `now`. Pure.
pub fn transitions(
    key: &ResourceKey,
    before: Option<&Record>,
    after: &Record,
    now: Timestamp,
) -> Vec<Event> {
    let mut out = Vec::new();
    let was_drifts = before.map_or(0, |b| b.drift_count);
    if after.drift_count > was_drifts {
        if let Some(d) = after.drift_history.last() {
            let kind = if d.corrected {
                EventKind::DriftCorrected
            } else {
                EventKind::DriftDetected
            };
            out.push(Event::new(
                kind,
                format!("drift:{key}:{}", after.drift_count),
                Some(key),
                Some(after.state),
                d.at,
                d.changes.clone(),
            ));
        }
    }
    let was = before.map(|b| b.state);
    match (was, after.state) {
        (Some(State::Error), State::Error) => {}
        (_, State::Error) => out.push(Event::new(
            EventKind::Error,
            format!("error:{key}:{now}"),
            Some(key),
            Some(State::Error),
            now,
            vec![after
                .last_error
                .clone()
                .unwrap_or_else(|| after.message.clone())],
        )),
        (Some(State::Error), State::Ready | State::Drifted) => out.push(Event::new(
            EventKind::Recovered,
            format!("recovered:{key}:{now}"),
            Some(key),
            Some(after.state),
            now,
            Vec::new(),
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DriftEvent;

    fn key() -> ResourceKey {
        ResourceKey {
            app: "shop".into(),
            stage: "prod".into(),
            name: "cache".into(),
        }
    }

    fn rec(state: State, drifts: u64, corrected: bool) -> Record {
        let mut r = Record {
            state,
            last_error: (state == State::Error).then(|| "HTTP 500 <boom> & co".into()),
            ..Record::default()
        };
        for _ in 0..drifts {
            r.push_drift(DriftEvent {
                at: Timestamp::parse("2026-11-30T01:00:00Z").unwrap(),
                changes: vec!["title: a → b".into()],
                corrected,
            });
        }
        r
    }

    #[test]
    fn the_transition_table() {
        let now = Timestamp::parse("2026-11-30T02:00:00Z").unwrap();
        let kinds = |before: Option<Record>, after: Record| -> Vec<&'static str> {
            transitions(&key(), before.as_ref(), &after, now)
                .iter()
                .map(|e| e.kind.as_str())
                .collect()
        };
        let table: Vec<(Option<Record>, Record, Vec<&str>)> = vec![
            (None, rec(State::Ready, 0, true), vec![]),
            (None, rec(State::Error, 0, true), vec!["error"]),
            (
                Some(rec(State::Ready, 0, true)),
                rec(State::Ready, 0, true),
                vec![],
            ),
            (
                Some(rec(State::Ready, 1, true)),
                rec(State::Ready, 2, true),
                vec!["drift_corrected"],
            ),
            (
                Some(rec(State::Ready, 0, false)),
                rec(State::Drifted, 1, false),
                vec!["drift_detected"],
            ),
            (
                Some(rec(State::Drifted, 1, false)),
                rec(State::Drifted, 1, false),
                vec![],
            ),
            (
                Some(rec(State::Ready, 0, true)),
                rec(State::Error, 0, true),
                vec!["error"],
            ),
            (
                Some(rec(State::Error, 0, true)),
                rec(State::Error, 0, true),
                vec![],
            ),
            (
                Some(rec(State::Error, 0, true)),
                rec(State::Ready, 0, true),
                vec!["recovered"],
            ),
            (
                Some(rec(State::Error, 0, true)),
                rec(State::Pending, 0, true),
                vec![],
            ),
            (
                Some(rec(State::Error, 0, true)),
                rec(State::Ready, 1, true),
                vec!["drift_corrected", "recovered"],
            ),
        ];
        for (i, (before, after, want)) in table.into_iter().enumerate() {
            assert_eq!(kinds(before, after), want, "row {i}");
        }
    }

    #[test]
    fn ids_are_stable_and_text_is_escaped_for_slack() {
        let now = Timestamp::parse("2026-11-30T02:00:00Z").unwrap();
        let before = rec(State::Ready, 1, true);
        let after = rec(State::Ready, 2, true);
        let a = transitions(&key(), Some(&before), &after, now);
        let b = transitions(&key(), Some(&before), &after, now);
        assert_eq!(a, b);
        assert_eq!(a[0].id, "drift:shop/prod/cache:2");
        let e = &transitions(&key(), None, &rec(State::Error, 0, true), now)[0];
        assert_eq!(
            e.text,
            "lumierd: shop/prod/cache: entered Error: HTTP 500 &lt;boom&gt; &amp; co"
        );
        assert_eq!(e.details, vec!["HTTP 500 <boom> & co".to_owned()]);
        let body = serde_json::to_value(e).unwrap();
        assert_eq!(body["kind"], "error");
        assert_eq!(body["app"], "shop");
    }

    #[test]
    fn load_events_only_on_change() {
        let at = Timestamp::parse("2026-11-30T02:00:00Z").unwrap();
        assert!(Event::load(None, None, at).is_none());
        assert!(Event::load(Some("x"), Some("x"), at).is_none());
        let failed = Event::load(None, Some("a.yaml:1:2: bad\nb.yaml:3:4: worse"), at).unwrap();
        assert_eq!(failed.kind, EventKind::LoadFailed);
        assert_eq!(failed.details.len(), 2);
        let back = Event::load(Some("x"), None, at).unwrap();
        assert_eq!(back.kind, EventKind::LoadRecovered);
    }
}
