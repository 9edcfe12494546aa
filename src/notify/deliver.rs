//! Delivery: one background task per `--notify` target POSTs its outbox entries in push
//! order, one at a time; a 2xx answer acks the entry, anything else (or no answer within
//! [`POST_TIMEOUT`]) is retried after [`backoff`] — 500 ms doubling to 60 s — for as long as
//! it takes (the outbox is bounded; the oldest entries drop when it is full).
//!
//! Replicas sharing an etcd store share one outbox: there only the leader delivers (each
//! task waits while its replica follows, [`Gate`]), so an entry is POSTed by one replica
//! rather than by each, and no replica drops another's entries as orphans at start (their
//! `--notify` lists should match: a target only a follower knows waits until it leads).
//! Every POST names the replica in its User-Agent, `lumierd/VERSION (instance ID)`.

use super::{Entry, Sink, Target};
use crate::replica::LeaderView;
use std::time::Duration;
use tokio::sync::watch;

/// With an election, the leader view: delivery waits while this replica does not lead.
pub type Gate = Option<watch::Receiver<LeaderView>>;

/// How long one POST may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry's delay; it doubles per consecutive failure up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often an idle task looks at the outbox even when nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// The same for a shared outbox (etcd, replicas: a `gate` is set). An event another replica
/// queued wakes nothing here, and a replica that sees an event already recorded by another
/// does not queue it again, so the leader finds such entries only by looking: one small
/// etcd read per target and second.
const SHARED_IDLE_POLL: Duration = Duration::from_secs(1);

/// The delay before retry number `failures` (1 = the first retry).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("notifications: HTTP client: {0}")]
    Client(String),
}

/// The running delivery tasks; stopped (aborted) by [`Delivery::stop`]. An entry whose POST
/// was cut short stays in the outbox and is sent again after a restart.
pub struct Delivery {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    gate: Gate,
}

/// Just the target of an entry, read without decoding the event.
#[derive(serde::Deserialize)]
struct Head {
    target: String,
}

fn is_for(bytes: &[u8], key: &str) -> bool {
    serde_json::from_slice::<Head>(bytes).is_ok_and(|h| h.target == key)
}

impl Delivery {
    /// Drops entries for targets no longer configured (not with a `gate`: the outbox is
    /// shared), then starts one task per target. `instance`: this replica's id, for the
    /// User-Agent.
    pub fn start(sink: &Sink, instance: &str, gate: Gate) -> Result<Delivery, DeliveryError> {
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!(
                "lumierd/{} (instance {instance})",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| DeliveryError::Client(e.without_url().to_string()))?;
        if gate.is_none() {
            sweep_orphans(sink);
        }
        if let Ok(n) = sink.store().outbox_len() {
            sink.metrics().set_notify_queue(n as u64);
        }
        let tasks = sink
            .targets()
            .iter()
            .map(|t| tokio::spawn(run(sink.clone(), t.clone(), http.clone(), gate.clone())))
            .collect();
        Ok(Delivery { tasks, gate })
    }

    /// Waits, at most `within`, for the outbox to empty (what was queued just before an exit,
    /// e.g. by `run --once`, goes out now rather than at the next start), then stops. A
    /// follower does not wait: the leader delivers.
    pub async fn finish(self, sink: &Sink, within: Duration) {
        let leads = self.gate.as_ref().is_none_or(|g| g.borrow().leading);
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = Duration::from_millis(10);
        while leads
            && sink.store().outbox_len().is_ok_and(|n| n > 0)
            && tokio::time::Instant::now() + pause < deadline
        {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        self.stop();
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Acks the entries of targets no longer configured (one replica owns its outbox).
fn sweep_orphans(sink: &Sink) {
    let keys: Vec<&str> = sink.targets().iter().map(Target::key).collect();
    let mut orphans = 0usize;
    let mut after = None;
    loop {
        let next = sink.store().outbox_next(after, |b| {
            serde_json::from_slice::<Head>(b).map_or(true, |h| !keys.contains(&h.target.as_str()))
        });
        match next {
            Ok(Some((seq, _))) => {
                after = Some(seq);
                if sink.store().outbox_ack(seq).is_ok() {
                    orphans += 1;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "notification outbox: sweeping old targets");
                break;
            }
        }
    }
    if orphans > 0 {
        tracing::info!(
            dropped = orphans,
            "notification outbox: dropped entries for URLs no longer given with --notify"
        );
    }
}

/// POSTs `event` to `target`: Ok on a 2xx answer. The error never contains the URL.
async fn post(http: &reqwest::Client, target: &Target, body: &[u8]) -> Result<(), String> {
    let answer = http
        .post(target.url())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// One target's task: deliver in order, retry with backoff, sleep when the outbox is empty.
async fn run(sink: Sink, target: Target, http: reqwest::Client, mut gate: Gate) {
    let mut woken = sink.woken();
    let mut failures: u32 = 0;
    loop {
        if let Some(g) = gate.as_mut() {
            if !leads(g).await {
                return; // the election ended: the daemon is stopping
            }
        }
        woken.borrow_and_update();
        let next = sink.store().outbox_next(None, |b| is_for(b, target.key()));
        let (seq, bytes) = match next {
            Ok(Some(found)) => found,
            Ok(None) => {
                let idle = if gate.is_some() {
                    SHARED_IDLE_POLL
                } else {
                    IDLE_POLL
                };
                tokio::select! {
                    changed = woken.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(idle).await;
                        }
                    }
                    _ = tokio::time::sleep(idle) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, target = target.key(), "notification outbox unreadable");
                tokio::time::sleep(BACKOFF_MAX).await;
                continue;
            }
        };
        let body = match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) => serde_json::to_vec(&entry.event).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, target = target.key(), "notification entry unreadable: dropped");
                let _ = sink.store().outbox_ack(seq);
                continue;
            }
        };
        match post(&http, &target, &body).await {
            Ok(()) => {
                failures = 0;
                sink.metrics().notify_delivered(true);
                if let Err(e) = sink.store().outbox_ack(seq) {
                    tracing::warn!(error = %e, "notification delivered but not acked (it will be sent again)");
                }
                if let Ok(n) = sink.store().outbox_len() {
                    sink.metrics().set_notify_queue(n as u64);
                }
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                sink.metrics().notify_delivered(false);
                let delay = backoff(failures);
                tracing::warn!(target = target.key(), error = %reason, retry_in_ms = delay.as_millis() as u64, "notification not delivered; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Waits until this replica leads; false when the election has ended.
async fn leads(gate: &mut watch::Receiver<LeaderView>) -> bool {
    loop {
        if gate.borrow_and_update().leading {
            return true;
        }
        if gate.changed().await.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let ms = |n| backoff(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(8), ms(100)],
            [500, 1000, 2000, 60_000, 60_000]
        );
    }
}
