//! From the flags `run` and `plan` share ([`Common`]) to the daemon's [`RunConfig`]: the
//! state folder, the provider (embedded, an API URL, or Cloudflare with its token from the
//! environment or systemd credentials), the secrets' folder and key, and the usage checks on
//! addresses that would leave this host.

use std::path::PathBuf;
use std::time::Duration;

use super::args::{Common, Provider};
use super::state_dir;
use crate::cloudflare::{ClientConfig, RateLimit};
use crate::manifest;
use crate::runtime::controller::Policy;
use crate::runtime::daemon::RunConfig;
use crate::runtime::provider::ProviderConfig;

/// `HOSTNAME:PID`, the default `--instance-id`.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The provider from the flags: the embedded API, an API at `--api-url` (the emulator: its
/// default account and token unless the environment names others), or Cloudflare (token and
/// account from the environment or systemd credentials), paced by `--api-budget`/`--api-reserve`.
fn provider_config(common: &Common) -> anyhow::Result<ProviderConfig> {
    let rate = RateLimit {
        budget: Some(common.api_budget),
        reserve_percent: common.api_reserve,
    };
    rate.validate()
        .map_err(|e| anyhow::anyhow!("--api-budget/--api-reserve: {e}"))?;
    match (common.provider, &common.api_url) {
        (Provider::Local, None) => Ok(ProviderConfig::Embedded {
            listen: common.local_api_listen,
        }),
        (Provider::Local, Some(url)) => Ok(ProviderConfig::Remote {
            base_url: url.clone(),
            account_id: std::env::var("CLOUDFLARE_ACCOUNT_ID")
                .unwrap_or_else(|_| crate::local_api::DEFAULT_ACCOUNT_ID.to_owned()),
            token: std::env::var("CLOUDFLARE_API_TOKEN")
                .unwrap_or_else(|_| crate::local_api::DEFAULT_TOKEN.to_owned()),
            rate,
        }),
        (Provider::Cloudflare, url) => {
            let token = read_token()?;
            let account_id = std::env::var("CLOUDFLARE_ACCOUNT_ID").map_err(|_| {
                anyhow::anyhow!(
                    "--provider cloudflare needs CLOUDFLARE_ACCOUNT_ID (the 32-hex account id)"
                )
            })?;
            Ok(ProviderConfig::Remote {
                base_url: url
                    .clone()
                    .unwrap_or_else(|| ClientConfig::CLOUDFLARE_BASE_URL.to_owned()),
                account_id,
                token,
                rate,
            })
        }
    }
}

/// The API token: `CLOUDFLARE_API_TOKEN`, or systemd's credential `cloudflare-api-token`.
fn read_token() -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("CLOUDFLARE_API_TOKEN") {
        if !t.is_empty() {
            return Ok(t);
        }
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = PathBuf::from(dir).join("cloudflare-api-token");
        if let Ok(t) = std::fs::read_to_string(&path) {
            return Ok(t.trim().to_owned());
        }
    }
    anyhow::bail!("--provider cloudflare needs CLOUDFLARE_API_TOKEN (or the systemd credential `cloudflare-api-token`)")
}

/// Refuses a non-loopback `--local-api-listen` without `--local-api-allow-remote` (the embedded
/// API holds the sandbox's data; like `--admin-listen`, leaving this host is a decision).
pub(super) fn check_local_api_listen(common: &Common) -> Result<(), String> {
    match common.local_api_listen {
        Some(addr) if !crate::admin::is_local(&addr) && !common.local_api_allow_remote => {
            Err(format!(
                "error: --local-api-listen {addr} is not a loopback address; serving the \
                 embedded API beyond this host needs --local-api-allow-remote (clients then \
                 need the token in STATE/local-api/token)"
            ))
        }
        _ => Ok(()),
    }
}

/// The daemon's configuration from the shared flags; `run` sets its own flags on top.
pub(super) fn run_config(
    common: &Common,
    once: bool,
    policy: Policy,
    resync: Duration,
    debounce: Duration,
) -> anyhow::Result<RunConfig> {
    let state = state_dir(common.state.clone());
    // Declared secrets are hashed under the state folder's key (made on first use).
    crate::secrets::configure(crate::secrets::SecretsConfig {
        dir: common.secrets_dir.clone(),
        age_identity: common.age_identity.clone(),
        hasher: crate::secrets::load_or_create_key(&state)?,
    });
    Ok(RunConfig {
        manifests: common.manifests.clone(),
        state,
        store: common.store.clone(),
        instance_id: default_instance_id(),
        lease_ttl: crate::runtime::leader::DEFAULT_TTL,
        once,
        resync,
        debounce,
        policy,
        provider: provider_config(common)?,
        admin_listen: None,
        load: manifest::LoadOptions {
            allow_empty: common.allow_empty,
        },
        stuck_after: crate::metrics::STUCK_AFTER,
        serve: None,
        admin_token: None,
        notify: Vec::new(),
    })
}
