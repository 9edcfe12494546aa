//! Notifications (`run --notify URL`, repeatable): a JSON [`Event`] POSTed to every URL on
//! drift, on a resource entering or leaving `Error`, on a prune held for approval, and on a
//! manifest load failing or recovering.
//!
//! The path of an event: the controller (or the daemon, for loads) hands it to the [`Sink`],
//! which queues one entry per target in the store's outbox (`Store::outbox_push`: bounded,
//! deduplicated by event id, on disk with the pass's next flush) and wakes the delivery tasks
//! ([`deliver`]): one per target, POSTing its entries in order, retrying with backoff until a
//! 2xx answer, then acking. Delivery is at-least-once (a crash between a POST and its ack
//! repeats it; the body's `id` lets a receiver drop the copy) and never blocks a pass: the
//! sink only writes to sled's memory, and the tasks run beside the loop.
//!
//! A webhook URL is a credential (Slack's carry their token in the path): it is never logged
//! nor stored. The outbox names a target by a hash of its URL ([`Target::key`]); entries for a
//! URL no longer configured are dropped at start.

pub mod deliver;
pub mod event;

pub use deliver::Delivery;
pub use event::{transitions, Event, EventKind};

use crate::store::{Pushed, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// One `--notify` URL.
#[derive(Clone)]
pub struct Target {
    url: String,
    key: String,
}

impl Target {
    pub fn new(url: &str) -> Target {
        let digest = Sha256::digest(url.as_bytes());
        Target {
            url: url.to_owned(),
            key: hex::encode(&digest[..8]),
        }
    }

    /// The URL (for the HTTP client only: never log it).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The name the outbox and the logs use: 16 hex digits of the URL's SHA-256.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for Target {
    /// The key only: the URL may carry a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.key)
    }
}

/// An outbox entry: the event and the target it is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub target: String,
    pub event: Event,
}

/// Where events go. Cheap to clone; a sink with no targets drops everything.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    store: Store,
    targets: Vec<Target>,
    wake: tokio::sync::watch::Sender<u64>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Sink {
    /// A sink queueing into `store` for `targets`.
    pub fn new(store: Store, targets: Vec<Target>, metrics: Arc<crate::metrics::Metrics>) -> Sink {
        let (wake, _) = tokio::sync::watch::channel(0);
        Sink {
            inner: Arc::new(SinkInner {
                store,
                targets,
                wake,
                metrics,
            }),
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.inner.targets
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// A receiver that changes whenever something was queued.
    pub(crate) fn woken(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.wake.subscribe()
    }

    /// Queues `event` for every target. Never blocks on the network; a store failure is
    /// logged and the event dropped (the store's own failure is reported by readiness).
    pub fn emit(&self, event: Event) {
        if let Err(e) = self.queue(&event) {
            tracing::warn!(error = %e, event = event.kind.as_str(), "notification not queued");
        }
    }

    fn queue(&self, event: &Event) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut queued = false;
        for target in &inner.targets {
            let entry = Entry {
                target: target.key.clone(),
                event: event.clone(),
            };
            let bytes = serde_json::to_vec(&entry)?;
            match inner
                .store
                .outbox_push(&format!("{}:{}", target.key, event.id), &bytes)?
            {
                Pushed::Queued { dropped } => {
                    queued = true;
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            "notification outbox full: the oldest undelivered events were dropped"
                        );
                        inner.metrics.notify_dropped(dropped as u64);
                    }
                }
                // Already queued, by this replica earlier or by another replica sharing the
                // outbox (etcd): it is there to deliver all the same, so the task is woken.
                // Not waking it left a leader asleep until its idle poll (30 s) when a
                // follower had pushed the event it saw too.
                Pushed::Duplicate => queued = true,
            }
        }
        if queued {
            inner.wake.send_modify(|n| *n = n.wrapping_add(1));
            if let Ok(n) = inner.store.outbox_len() {
                inner.metrics.set_notify_queue(n as u64);
            }
        }
        Ok(())
    }

    /// Queues every event of `events`.
    pub fn emit_all(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.emit(e);
        }
    }
}
