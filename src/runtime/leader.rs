//! Leader election on etcd, for replicas sharing an etcd store: only the leader reconciles
//! and writes to the provider.
//!
//! Protocol (etcd's JSON gateway, [`crate::store::etcd::Gateway`]), on the key
//! `PREFIX/leader` whose value is `{"instance": ID, "since": RFC3339}`:
//!
//! | state     | does                                                                 | goes to |
//! |-----------|----------------------------------------------------------------------|---------|
//! | candidate | every [`POLL`]: reads the key; absent → grants a lease (TTL) and creates the key under it in a txn (`create_revision == 0`) | leader when the txn succeeds |
//! | leader    | renews the lease every TTL/3 (retrying every [`POLL`] when a renewal fails) | candidate when no renewal succeeded before the deadline − margin, or etcd says the lease is gone |
//! | stopping  | revokes the lease (the key goes with it)                             | —       |
//!
//! Fencing, twice: (1) the provider client's gate ([`crate::cloudflare::Client::gate_until`])
//! is opened only up to the lease's deadline minus the margin, counted from when each renewal
//! was *sent*, and checked against the monotonic clock at every attempt — a process frozen
//! past it (SIGSTOP, a long GC-like stall) sends nothing when it thaws; (2) the store's
//! record writes are transactions that succeed only while the leader key still has the
//! create revision this replica made it with ([`crate::store::Store::set_fence`]), so a
//! replica that lost the key never overwrites a newer leader's record.
//!
//! The keeper is one thread (its HTTP calls are blocking and must not wait behind the
//! store's); its view is published on a `watch` channel for the daemon loop, status and
//! metrics.

use crate::cloudflare::Client;
use crate::store::etcd::{EtcdError, EtcdUrl, Gateway};
use crate::store::{Fence, Store};
use crate::time::Timestamp;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a candidate looks at the leader key, and a failed renewal is retried: the
/// hand-over after a SIGTERM (the lease revoked) takes at most about this long.
pub const POLL: Duration = Duration::from_millis(300);

/// The default lease TTL (`--lease-ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

pub use crate::replica::LeaderView;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: {0}")]
    Etcd(#[from] EtcdError),
    #[error("leader election: the lease TTL must be at least 2 s (got {0:?})")]
    Ttl(Duration),
    #[error("leader election: cannot start its thread: {0}")]
    Thread(String),
}

/// The running election; [`Leader::resign`] ends it (revoking the lease if held).
pub struct Leader {
    view: watch::Receiver<LeaderView>,
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Leader {
    /// Starts campaigning as `instance` with a lease of `ttl`. The client's gate is closed
    /// until this replica leads; the store's record writes are fenced while it does.
    pub fn start(
        url: &EtcdUrl,
        instance: &str,
        ttl: Duration,
        store: Store,
        client: Client,
    ) -> Result<Leader, LeaderError> {
        if ttl < Duration::from_secs(2) {
            return Err(LeaderError::Ttl(ttl));
        }
        let gw = Gateway::connect(url.clone())?;
        client.gate_until(Some(Instant::now()));
        let (tx, view) = watch::channel(LeaderView::default());
        let (stop, stopped) = mpsc::channel();
        let keeper = Keeper {
            key: gw.key(b"leader"),
            gw,
            instance: instance.to_owned(),
            ttl,
            store,
            client,
            tx,
            stopped,
            stopping: std::cell::Cell::new(false),
        };
        let thread = std::thread::Builder::new()
            .name("leader-lease".into())
            .spawn(move || keeper.run())
            .map_err(|e| LeaderError::Thread(e.to_string()))?;
        Ok(Leader {
            view,
            stop,
            thread: Some(thread),
        })
    }

    /// The current view; `changed()` on a clone wakes on every change.
    pub fn watch(&self) -> watch::Receiver<LeaderView> {
        self.view.clone()
    }

    pub fn is_leading(&self) -> bool {
        self.view.borrow().leading
    }

    /// Stops campaigning and revokes the lease if this replica holds it, so that a standby
    /// takes over within [`POLL`] instead of a TTL. Blocks until done (at most one etcd call,
    /// [`crate::store::etcd::CALL_TIMEOUT`]).
    pub fn resign(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Keeper {
    gw: Gateway,
    key: Vec<u8>,
    instance: String,
    ttl: Duration,
    store: Store,
    client: Client,
    tx: watch::Sender<LeaderView>,
    stopped: mpsc::Receiver<()>,
    /// Set once the stop was received (it is received once).
    stopping: std::cell::Cell<bool>,
}

/// The held lease.
struct Held {
    id: String,
    /// When the lease expires at the latest, as etcd counts it (from the send time of the
    /// grant or of the last successful renewal).
    deadline: Instant,
    last_renewal: Instant,
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

impl Keeper {
    /// The margin before the deadline at which a leader stops writing: a fifth of the TTL,
    /// at least 1 s (clock-rate differences, an attempt already past the gate).
    fn margin(&self) -> Duration {
        (self.ttl / 5).max(Duration::from_secs(1))
    }

    /// Waits `d`; true when asked to stop.
    fn pause(&self, d: Duration) -> bool {
        if self.stopping.get() {
            return true;
        }
        let stop = !matches!(
            self.stopped.recv_timeout(d),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        self.stopping.set(stop);
        stop
    }

    fn publish(&self, leading: bool, leader: Option<String>, since: Option<String>) {
        self.tx.send_if_modified(|v| {
            if v.leading == leading && v.leader == leader {
                return false;
            }
            let changes = v.changes + 1;
            match (&leader, leading) {
                (_, true) => {
                    tracing::info!(instance = %self.instance, "leader: this replica leads")
                }
                (Some(l), false) => tracing::info!(leader = %l, "leader: following"),
                (None, false) => tracing::warn!("leader: no replica leads"),
            }
            *v = LeaderView {
                leading,
                leader,
                since,
                changes,
            };
            true
        });
    }

    fn run(self) {
        let mut held: Option<Held> = None;
        loop {
            let stop = match &mut held {
                None => match self.campaign() {
                    Ok(Some(h)) => {
                        held = Some(h);
                        false
                    }
                    Ok(None) => self.pause(POLL),
                    Err(e) => {
                        tracing::warn!(error = %e, "leader: campaign failed; retrying");
                        self.pause(POLL)
                    }
                },
                Some(_) if self.stopping.get() => true,
                Some(h) => {
                    let next = h.last_renewal + self.ttl / 3;
                    let wait = next.saturating_duration_since(Instant::now());
                    if self.pause(wait) {
                        true
                    } else {
                        if !self.renew(h) {
                            held = None;
                        }
                        false
                    }
                }
            };
            if stop {
                break;
            }
        }
        // Stopping: revoke, so a standby takes over at its next poll.
        self.client.gate_until(Some(Instant::now()));
        if let Some(h) = held {
            match self.gw.post("/v3/lease/revoke", json!({ "ID": h.id })) {
                Ok(_) => tracing::info!("leader: lease revoked (resigned)"),
                Err(e) => {
                    tracing::warn!(error = %e, "leader: revoking the lease; it expires within its TTL")
                }
            }
        }
    }

    /// One candidate round: `Some` when this replica now leads.
    fn campaign(&self) -> Result<Option<Held>, EtcdError> {
        if let Some(v) = self.gw.get(&self.key)? {
            let v: Value = serde_json::from_slice(&v).unwrap_or(Value::Null);
            let leader = v["instance"].as_str().map(str::to_owned);
            let since = v["since"].as_str().map(str::to_owned);
            self.publish(false, leader, since);
            return Ok(None);
        }
        let sent = Instant::now();
        let grant = self.gw.post(
            "/v3/lease/grant",
            json!({ "TTL": self.ttl.as_secs().to_string() }),
        )?;
        let id = int(&grant["ID"]).to_string();
        let since = Timestamp::now().to_string();
        let value = json!({ "instance": self.instance, "since": since }).to_string();
        let out = self.gw.post(
            "/v3/kv/txn",
            json!({
                "compare": [{ "key": B64.encode(&self.key), "target": "CREATE",
                              "result": "EQUAL", "create_revision": "0" }],
                "success": [{ "request_put": { "key": B64.encode(&self.key),
                                               "value": B64.encode(&value), "lease": id } }],
            }),
        )?;
        if out["succeeded"].as_bool() != Some(true) {
            let _ = self.gw.post("/v3/lease/revoke", json!({ "ID": id }));
            return Ok(None);
        }
        let deadline = sent + self.ttl;
        // The key's create revision is the txn's revision.
        let revision = int(&out["header"]["revision"]);
        self.store.set_fence(Some(Fence {
            key: self.key.clone(),
            create_revision: revision,
        }));
        self.client.gate_until(Some(deadline - self.margin()));
        self.publish(true, Some(self.instance.clone()), Some(since));
        Ok(Some(Held {
            id,
            deadline,
            last_renewal: sent,
        }))
    }

    /// One renewal (retried until the deadline minus the margin); false when leadership is
    /// lost.
    fn renew(&self, h: &mut Held) -> bool {
        loop {
            let sent = Instant::now();
            match self.gw.post("/v3/lease/keepalive", json!({ "ID": h.id })) {
                Ok(out) if int(&out["result"]["TTL"]) > 0 => {
                    h.deadline = sent + self.ttl;
                    h.last_renewal = sent;
                    self.client.gate_until(Some(h.deadline - self.margin()));
                    return true;
                }
                Ok(_) => {
                    tracing::warn!("leader: the lease has expired; back to candidate");
                    self.lose();
                    return false;
                }
                Err(e) => tracing::warn!(error = %e, "leader: renewing the lease failed"),
            }
            if Instant::now() + POLL >= h.deadline - self.margin() {
                tracing::warn!("leader: could not renew the lease in time; stopped writing");
                self.lose();
                return false;
            }
            if self.pause(POLL) {
                return true; // stopping: run() revokes
            }
        }
    }

    fn lose(&self) {
        self.client.gate_until(Some(Instant::now()));
        self.publish(false, None, None);
    }
}
