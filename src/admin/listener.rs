//! The admin API's HTTP/1 server with bounded cost per client, so that no number of clients
//! can take the daemon's descriptors (issue #12.1):
//!
//! | limit | value | what happens past it |
//! | --- | --- | --- |
//! | open connections | [`Limits::max_connections`] | the oldest connection with no request in flight is closed to make room; when every one has a request in flight, the new one is closed at once |
//! | request headers | [`Limits::header_timeout`] | the connection is closed (hyper's `header_read_timeout`) |
//! | idle keep-alive | [`Limits::header_timeout`] too | hyper times the wait for the *next* request's headers with the same timer, so an idle connection is closed after it |
//! | header buffer | [`MAX_BUF`] bytes | the request is refused (`431`) |
//! | accept errors (`EMFILE`…) | — | logged (rate-limited), a short pause, and the loop goes on |
//!
//! Evicting the oldest idle connection (rather than refusing new ones) keeps `/healthz` and
//! `/metrics` answering while a client holds many half-open connections: a probe sends its
//! request at once and is then not evictable, while a held-open connection is.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// Largest request head buffered per connection, in bytes (hyper's minimum is 8 KiB).
pub const MAX_BUF: usize = 16 * 1024;
/// Pause after an accept error for lack of descriptors; other accept errors pause [`ERROR_PAUSE`].
const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// At most one accept-error log line per this period.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once (each costs one descriptor).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
}

impl Default for Limits {
    /// 64 connections (a few scrapers and probes need a handful), 5 s.
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
        }
    }
}

/// One open connection: how many requests it has in flight, and how to close it.
struct Slot {
    in_flight: AtomicUsize,
    evict: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Slots(Mutex<VecDeque<Arc<Slot>>>);

impl Slots {
    /// Registers a new connection, evicting the oldest one without a request in flight when
    /// `max` are open; `None` when all `max` have requests in flight (the new one is refused).
    fn admit(&self, max: usize) -> Option<Arc<Slot>> {
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= max {
            let idle = slots
                .iter()
                .position(|s| s.in_flight.load(Ordering::Acquire) == 0)?;
            if let Some(victim) = slots.remove(idle) {
                victim.evict.notify_one();
            }
        }
        let slot = Arc::new(Slot {
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        slots.push_back(Arc::clone(&slot));
        Some(slot)
    }

    fn remove(&self, slot: &Arc<Slot>) {
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(i);
        }
    }
}

/// Counts a request in flight on its connection for as long as it lives.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn new(slot: &Arc<Slot>) -> InFlight {
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(slot))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting and lets open connections finish their request in flight (the caller bounds
/// how long it waits).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Slots::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut last_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                    tracing::warn!(error = %e, "admin API: accept failed; going on");
                    last_log = Some(Instant::now());
                }
                let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                tokio::time::sleep(if exhausted {
                    EXHAUSTED_PAUSE
                } else {
                    ERROR_PAUSE
                })
                .await;
                continue;
            }
        };
        let Some(slot) = slots.admit(limits.max_connections) else {
            drop(stream); // every connection has a request in flight: refuse this one
            continue;
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits,
            slot,
            Arc::clone(&slots),
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
}

/// Serves one connection until it ends, is evicted, or the server stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    slot: Arc<Slot>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
) {
    let counted = Arc::clone(&slot);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(&counted);
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = async move { stop.wait_for(|stopped| *stopped).await.is_ok() };
    let stopped = tokio::select! {
        _ = conn.as_mut() => false,
        _ = slot.evict.notified() => false,
        s = stopping => s,
    };
    if stopped {
        // Finish the request in flight, if any; an idle connection closes at once.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
    slots.remove(&slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_evicts_the_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let slots = Slots::default();
        let a = slots.admit(2).unwrap();
        let b = slots.admit(2).unwrap();
        let _busy_a = InFlight::new(&a);
        // Full: b (idle) goes, a (busy) stays.
        let c = slots.admit(2).unwrap();
        let order: Vec<bool> = slots
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|s| Arc::ptr_eq(s, &b))
            .collect();
        assert_eq!(order, [false, false]);
        let _busy_c = InFlight::new(&c);
        assert!(slots.admit(2).is_none(), "all busy: the new one is refused");
        slots.remove(&a);
        assert!(slots.admit(2).is_some());
    }
}
