//! Parts of `run`'s boot list and of its stop, kept out of [`super::daemon::run`] so that it
//! reads as the list it is: the election with what depends on it (the replica's report, the
//! notification delivery it gates), and the ordered stop.

use super::daemon::{DaemonError, RunConfig, STOP_SERVER};
use super::leader::Leader;
use super::ops::{AdminServer, Ops};
use super::provider::{Provider, ProviderConfig};
use crate::cloudflare::Client;
use crate::notify::{Delivery, Sink, Target};
use crate::store::{Location, Store};
use std::sync::Arc;
use std::time::Duration;

/// Says where the embedded API listens; then the local edge (#16) when `--serve` asks for it:
/// started after the provider, updated after each pass, stopped at shutdown (before the
/// provider, whose KV store it serves).
pub(super) async fn start_edge(
    cfg: &RunConfig,
    provider: &Provider,
) -> Result<Option<crate::edge::Edge>, DaemonError> {
    if matches!(cfg.provider, ProviderConfig::Embedded { .. }) {
        println!(
            "local API: {} (account {}, token in {})",
            provider.base_url,
            crate::local_api::DEFAULT_ACCOUNT_ID,
            crate::local_api::token_path(&cfg.state.join("local-api")).display()
        );
    }
    match (&cfg.serve, &provider.local_api) {
        (Some(serve), Some(api)) => {
            let edge =
                crate::edge::Edge::start(api.clone(), serve.listen, serve.workerd.clone()).await?;
            println!("serving: http://{}", edge.addr());
            Ok(Some(edge))
        }
        _ => Ok(None),
    }
}

/// The admin API, when `--admin-listen` asks for it.
pub(super) async fn start_admin(
    cfg: &RunConfig,
    ops: &Ops,
    store: &Store,
    client: &Client,
) -> Result<Option<AdminServer>, DaemonError> {
    match cfg.admin_listen {
        Some(addr) => {
            let state = ops.admin_state(store, client, cfg.admin_token.clone());
            Ok(Some(AdminServer::start(addr, state).await?))
        }
        None => Ok(None),
    }
}

/// The election (etcd store, not `--once`) and the notifications.
pub(super) struct Replication {
    pub leader: Option<Leader>,
    pub events: Option<Sink>,
    pub delivery: Option<Delivery>,
}

/// Whether this run campaigns: with an etcd store, except `--once` (a one-off).
pub(super) fn elected(cfg: &RunConfig) -> bool {
    matches!(cfg.store, Some(Location::Etcd(_))) && !cfg.once
}

/// Starts the election when [`elected`] (the replica's report then follows it), then the
/// notification sink and its delivery, which only the leader performs.
pub(super) fn start_replication(
    cfg: &RunConfig,
    store: &Store,
    client: &Client,
    ops: &mut Ops,
) -> Result<Replication, DaemonError> {
    // Only the leader reconciles. With sled this replica always leads.
    let leader = match &cfg.store {
        Some(Location::Etcd(url)) if elected(cfg) => Some(
            Leader::start(
                url,
                &cfg.instance_id,
                cfg.lease_ttl,
                store.clone(),
                client.clone(),
            )
            .map_err(|e| DaemonError::Io(e.to_string()))?,
        ),
        _ => None,
    };
    if let Some(l) = &leader {
        ops.follow(l.watch(), store);
    }
    let events = (!cfg.notify.is_empty()).then(|| {
        let targets = cfg.notify.iter().map(|u| Target::new(u)).collect();
        Sink::new(store.clone(), targets, Arc::clone(&ops.metrics))
    });
    let delivery = match &events {
        Some(sink) => {
            // Replicas share the outbox: only the leader delivers.
            let gate = leader.as_ref().map(|l| l.watch());
            Some(
                Delivery::start(sink, &cfg.instance_id, gate)
                    .map_err(|e| DaemonError::Io(e.to_string()))?,
            )
        }
        None => None,
    };
    Ok(Replication {
        leader,
        events,
        delivery,
    })
}

/// What runs until the stop, stopped in order by [`stop`].
pub(super) struct Running {
    pub edge: Option<crate::edge::Edge>,
    pub delivery: Option<Delivery>,
    pub admin: Option<AdminServer>,
    pub provider: Provider,
    pub ops: Ops,
}

/// Stops everything in order: the edge (before the provider whose KV store it serves), the
/// notifications (a short drain; `drain` with `--once`), a bounded flush of the store (a
/// frozen disk must not keep the process from stopping), the admin API, the provider, ops.
pub(super) async fn stop(
    running: Running,
    events: Option<&Sink>,
    store: &Store,
    drain: Duration,
) -> Result<(), DaemonError> {
    if let Some(edge) = running.edge {
        edge.stop().await; // local edge (#16)
    }
    if let (Some(delivery), Some(sink)) = (running.delivery, events) {
        delivery.finish(sink, drain).await;
    }
    let flushed = match tokio::time::timeout(STOP_SERVER, store.flush_durable()).await {
        Ok(flushed) => flushed,
        Err(_) => {
            tracing::error!(
                "the state store did not flush within {STOP_SERVER:?}; stopping anyway"
            );
            Ok(())
        }
    };
    if let Some(admin) = running.admin {
        admin.stop().await;
    }
    running.provider.stop().await;
    running.ops.stop();
    Ok(flushed?)
}
