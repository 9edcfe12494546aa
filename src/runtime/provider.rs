//! The provider lumierd talks to: the embedded local API (started here, on loopback) or any
//! Cloudflare-compatible API (the real one, or a separately started emulator).

use super::daemon::{DaemonError, STOP_SERVER};
use crate::cloudflare::{Client, ClientConfig, RateLimit};
use crate::local_api::{LocalApi, LocalApiConfig};
use crate::manifest::ResourceSpec;
use crate::source::Snapshot;
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::oneshot;

/// Which API lumierd talks to. Its `Debug` output redacts the token.
#[derive(Clone)]
pub enum ProviderConfig {
    /// The embedded local API, persisted under the state folder.
    Embedded { listen: Option<SocketAddr> },
    /// Any Cloudflare-compatible API: the real one, or a separately started emulator.
    Remote {
        base_url: String,
        account_id: String,
        token: String,
        /// The API budget and the reserve left to the token's other clients.
        rate: RateLimit,
    },
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderConfig::Embedded { listen } => {
                f.debug_struct("Embedded").field("listen", listen).finish()
            }
            ProviderConfig::Remote {
                base_url,
                account_id,
                rate,
                ..
            } => f
                .debug_struct("Remote")
                .field("base_url", base_url)
                .field("account_id", account_id)
                .field("token", &"[redacted]")
                .field("rate", rate)
                .finish(),
        }
    }
}

/// The provider in use: the client, and the embedded server's handle while it runs.
pub struct Provider {
    pub client: Client,
    pub base_url: String,
    /// The embedded API's handle (the local edge reads and serves what it holds); `None` for a
    /// remote API.
    pub local_api: Option<LocalApi>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Provider {
    /// Starts the embedded API when asked, and builds the client.
    ///
    /// The embedded API is a sandbox: an `existing` namespace in `seed` that it lacks is
    /// created there with that id, so the examples run on a fresh machine. Never done against
    /// a remote API, where an existing namespace must really exist.
    pub async fn start(
        config: &ProviderConfig,
        state: &Path,
        seed: &[String],
    ) -> Result<Provider, DaemonError> {
        match config {
            ProviderConfig::Remote {
                base_url,
                account_id,
                token,
                rate,
            } => {
                let mut cfg = ClientConfig::new(
                    base_url.trim_end_matches('/'),
                    account_id.clone(),
                    token.clone(),
                );
                cfg.rate = *rate;
                let client = Client::new(cfg)?;
                Ok(Provider {
                    client,
                    base_url: base_url.clone(),
                    local_api: None,
                    stop: None,
                    server: None,
                })
            }
            ProviderConfig::Embedded { listen } => {
                // The data folder's own random token (0600 file), not a well-known one.
                let data_dir = state.join("local-api");
                let token = crate::local_api::load_or_create_token(&data_dir)?;
                let api = LocalApi::open(LocalApiConfig {
                    token: token.clone(),
                    account_id: crate::local_api::DEFAULT_ACCOUNT_ID.to_owned(),
                    data_dir: Some(data_dir),
                    faults: Default::default(),
                    request_log: None,
                })?;
                for id in seed {
                    if api.seed_namespace(id, &format!("existing-{id}")).await? {
                        tracing::info!(id = %id, "embedded API: created the existing namespace in the sandbox");
                    }
                }
                let addr = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| DaemonError::Io(format!("local API listen on {addr}: {e}")))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| DaemonError::Io(format!("local API address: {e}")))?;
                let base_url = format!("http://{bound}/client/v4");
                let handle = api.clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let server = tokio::spawn(async move {
                    if let Err(e) = api
                        .serve(listener, async {
                            let _ = stopped.await;
                        })
                        .await
                    {
                        tracing::error!(error = %e, "embedded local API stopped");
                    }
                });
                let mut cfg = ClientConfig::new(
                    base_url.clone(),
                    crate::local_api::DEFAULT_ACCOUNT_ID,
                    token,
                );
                cfg.rate = RateLimit::unlimited();
                let client = Client::new(cfg)?;
                Ok(Provider {
                    client,
                    base_url,
                    local_api: Some(handle),
                    stop: Some(stop),
                    server: Some(server),
                })
            }
        }
    }

    /// Stops the embedded API (if any), waiting at most [`STOP_SERVER`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(STOP_SERVER, server).await;
        }
    }
}

/// The ids of `existing` namespaces a snapshot declares.
pub fn existing_ids(snap: &Snapshot) -> Vec<String> {
    snap.desired
        .resources()
        .filter_map(|r| match &r.spec {
            ResourceSpec::KvExisting { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}
