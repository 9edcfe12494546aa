//! What one running replica reports beside its records — on `/readyz`, `/metrics`, `/status`
//! and the status socket (`lumierd status`): who leads and since when, and whether the status
//! it serves is fresh or its last view of a store it cannot read now (stale).
//!
//! | store | who leads | a status read fails |
//! | --- | --- | --- |
//! | sled | this replica, since it started (one replica: status JSON unchanged) | the error, as before |
//! | etcd | the election's view ([`LeaderView`]): `leader`, `replica` in status JSON | the last view, with `stale: true`, `staleSince` (the first failed read) and `staleError` |
//!
//! The last view is the whole status of the last successful read, kept for etcd stores only
//! (a sled store is this host's own disk; a copy would cost memory for nothing). It is
//! refreshed by every status request and, while the store cannot be read, [`Replica::probe`]
//! (one small read every [`PROBE_EVERY`]) keeps `stale` up to date without a reader, and
//! reads a fresh view as soon as the store answers again. A failed read only ever marks the
//! view stale: nothing is written or deleted because of it.

use crate::store::{Store, StoreError};
use crate::time::Timestamp;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What every replica knows about the leadership (the election in `runtime::leader` keeps it
/// up to date; it lives here so that what reads it needs no `runtime`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// Whether this replica leads now.
    pub leading: bool,
    /// The leader's instance id, if one is known.
    pub leader: Option<String>,
    /// Since when it leads (its own record in the leader key).
    pub since: Option<String>,
    /// How many times this replica's view of who leads changed.
    pub changes: u64,
}

/// How often a replica with an etcd store checks that it can still read it.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Who leads, as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// This replica's instance id (`--instance-id`).
    pub instance: String,
    /// Whether replicas elect a leader (an etcd store); without it this replica always leads.
    pub elected: bool,
    /// Whether this replica leads now.
    pub leading: bool,
    /// The leader's instance id, when one is known.
    pub leader: Option<String>,
    /// Since when it leads (it took the lease; without an election: since this replica
    /// started).
    pub since: Option<Timestamp>,
    /// How many times this replica's view of who leads changed.
    pub changes: u64,
}

/// Since when the status served is the last view, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The first failed read since the last successful one.
    pub since: Timestamp,
    /// The last failed read's error (store errors name endpoints and keys, no secret).
    pub error: String,
}

/// The replica's report; shared as `Arc<Replica>` by the daemon loop, the admin API and the
/// status socket.
pub struct Replica {
    inner: Mutex<Inner>,
}

struct Inner {
    leadership: Leadership,
    last: Option<Arc<Value>>,
    stale: Option<Stale>,
}

impl Replica {
    /// A replica named `instance`; `elected`: replicas elect a leader (etcd store), else this
    /// one leads from now on.
    pub fn new(instance: &str, elected: bool) -> Replica {
        let leadership = Leadership {
            instance: instance.to_owned(),
            elected,
            leading: !elected,
            leader: (!elected).then(|| instance.to_owned()),
            since: (!elected).then(Timestamp::now),
            changes: 0,
        };
        Replica {
            inner: Mutex::new(Inner {
                leadership,
                last: None,
                stale: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the election's current view.
    pub fn observe(&self, view: &LeaderView) {
        let l = &mut self.lock().leadership;
        l.leading = view.leading;
        l.leader = view.leader.clone();
        l.since = view.since.as_deref().and_then(Timestamp::parse);
        l.changes = view.changes;
    }

    pub fn leadership(&self) -> Leadership {
        self.lock().leadership.clone()
    }

    /// Whether this replica may write (no election, or it leads). Only then does a store that
    /// cannot write make it unhealthy (`/healthz`, the watchdog) or unready: a follower writes
    /// nothing, and restarting it would not bring etcd back but would lose its last view.
    pub fn writes(&self) -> bool {
        let l = &self.lock().leadership;
        !l.elected || l.leading
    }

    /// `Some` while the status served is the last view of a store that cannot be read.
    pub fn stale(&self) -> Option<Stale> {
        self.lock().stale.clone()
    }

    fn mark_stale(&self, error: &StoreError) {
        let mut inner = self.lock();
        let error = error.to_string();
        match &mut inner.stale {
            Some(s) => s.error = error,
            None => {
                tracing::warn!(error = %error, "status: the store cannot be read; serving the last view, marked stale");
                inner.stale = Some(Stale {
                    since: Timestamp::now(),
                    error,
                });
            }
        }
    }

    /// The status JSON of `stage` (all when `None`), read from `store`; when the read fails
    /// and a last view is kept, that view marked stale. Blocks on the store: call it off the
    /// async workers.
    pub fn status(&self, store: &Store, stage: Option<&str>) -> Result<Value, StoreError> {
        let keep = store.etcd().is_some();
        let (mut v, stale) = match crate::status::status_json(store, None) {
            Ok(v) => {
                let mut inner = self.lock();
                if inner.stale.take().is_some() {
                    tracing::info!("status: the store answers again; the view is fresh");
                }
                if keep {
                    inner.last = Some(Arc::new(v.clone()));
                }
                (v, None)
            }
            Err(e) => {
                let Some(last) = self.lock().last.clone() else {
                    return Err(e);
                };
                self.mark_stale(&e);
                (Value::clone(&last), self.stale())
            }
        };
        if let (Some(stage), Some(list)) = (stage, v["resources"].as_array_mut()) {
            list.retain(|r| r["stage"].as_str() == Some(stage));
        }
        self.annotate(&mut v, stale.as_ref());
        Ok(v)
    }

    /// Adds who leads and the staleness to a status object (with an election only).
    fn annotate(&self, v: &mut Value, stale: Option<&Stale>) {
        let l = self.leadership();
        if !l.elected {
            return;
        }
        v["leader"] = match &l.leader {
            Some(id) => json!({ "instance": id, "since": l.since }),
            None => Value::Null,
        };
        v["replica"] = json!({
            "instance": l.instance,
            "leading": l.leading,
            "leaderChanges": l.changes,
        });
        v["stale"] = json!(stale.is_some());
        v["staleSince"] = json!(stale.map(|s| s.since));
        v["staleError"] = json!(stale.map(|s| &s.error));
    }

    /// One small read of `store`: a failure marks the view stale; once the store answers
    /// again (or while no view is kept yet) a fresh view is read. Blocks on the store.
    pub fn probe(&self, store: &Store) {
        match store.last_pass() {
            Err(e) => self.mark_stale(&e),
            Ok(_) => {
                let refresh = {
                    let inner = self.lock();
                    inner.stale.is_some() || inner.last.is_none()
                };
                if refresh {
                    if let Err(e) = self.status(store, None) {
                        self.mark_stale(&e);
                    }
                }
            }
        }
    }

    /// The lines `/readyz` adds after its first line: who leads, whom this replica follows,
    /// and the staleness.
    pub fn readyz_lines(&self) -> String {
        let l = self.leadership();
        let mut out = String::new();
        if !l.elected {
            return out;
        }
        let since = |s: Option<Timestamp>| s.map_or("?".to_owned(), |t| t.to_string());
        match (&l.leader, l.leading) {
            (_, true) => out.push_str(&format!(
                "leader: {} (this replica) since {}\n",
                l.instance,
                since(l.since)
            )),
            (Some(leader), false) => out.push_str(&format!(
                "leader: {leader} since {}; this replica ({}) follows\n",
                since(l.since),
                l.instance
            )),
            (None, false) => out.push_str(&format!(
                "leader: none known; this replica ({}) is a candidate\n",
                l.instance
            )),
        }
        if let Some(s) = self.stale() {
            out.push_str(&format!(
                "stale: true since {} (the store cannot be read: {}); status serves the last view\n",
                s.since, s.error
            ));
        }
        out
    }
}

/// The lines `lumierd status` prints above its table: who leads (`leader: ID since T`),
/// this replica's part, and whether the view is stale.
pub fn header(status: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    if let Some(l) = status.get("leader").filter(|l| !l.is_null()) {
        out.push_str(&format!(
            "leader: {} since {}\n",
            text(&l["instance"]),
            text(&l["since"])
        ));
    }
    if let Some(r) = status.get("replica").filter(|r| r.is_object()) {
        let part = if r["leading"].as_bool() == Some(true) {
            "leading"
        } else {
            "following"
        };
        out.push_str(&format!(
            "this replica: {} ({part})\n",
            text(&r["instance"])
        ));
    }
    if status["stale"].as_bool() == Some(true) {
        out.push_str(&format!(
            "stale: the store cannot be read since {} ({}); this is the last view\n",
            text(&status["staleSince"]),
            text(&status["staleError"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_serves_the_last_view_marked_stale_and_a_good_one_clears_it() {
        let r = Replica::new("b", true);
        r.observe(&LeaderView {
            leading: false,
            leader: Some("a".into()),
            since: Some("2026-11-30T08:00:00Z".into()),
            changes: 1,
        });
        // No view yet: the error itself.
        let e = StoreError::Flush("etcd down".into());
        r.mark_stale(&e);
        let stale = r.stale().unwrap();
        r.mark_stale(&StoreError::Flush("still down".into()));
        assert_eq!(
            r.stale().unwrap().since,
            stale.since,
            "since the first failure"
        );
        let mut v = json!({ "resources": [] });
        r.annotate(&mut v, r.stale().as_ref());
        assert_eq!(v["stale"], true);
        assert!(v["staleError"].as_str().unwrap().contains("still down"));
        assert_eq!(v["leader"]["instance"], "a");
        assert_eq!(v["replica"]["leading"], false);
        let h = header(&v);
        assert!(
            h.starts_with("leader: a since 2026-11-30T08:00:00Z\n"),
            "{h}"
        );
        assert!(h.contains("this replica: b (following)"), "{h}");
        assert!(h.contains("stale: the store cannot be read since"), "{h}");
        assert!(r.readyz_lines().contains("this replica (b) follows"));
        assert!(r.readyz_lines().contains("stale: true since"));

        // sled: this replica leads and status JSON is left as it was.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let one = Replica::new("solo", false);
        let v = one.status(&store, None).unwrap();
        assert!(v.get("leader").is_none() && v.get("stale").is_none(), "{v}");
        assert!(one.leadership().leading);
        assert_eq!(one.readyz_lines(), "");
    }
}
