//! `lumierd run`: the usage checks (each refusal is exit 2 before anything starts), logging,
//! then the daemon ([`daemon::run`]) on its runtime; its outcome as an exit code.

use std::time::Duration;

use super::args::{Provider, RunArgs};
use super::config::{check_local_api_listen, run_config};
use super::{runtime, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::admin::AdminToken;
use crate::runtime::controller::Policy;
use crate::runtime::daemon::{self, DaemonError, RunConfig};

/// `--serve` needs the embedded provider (workerd's KV bindings read and write the local
/// API's store; a remote API's namespaces are out of its reach), the daemon (not `--once`)
/// and a loopback address (the edge has no authentication).
fn check_serve(args: &RunArgs) -> Result<(), String> {
    let Some(addr) = args.serve else {
        return Ok(());
    };
    if args.common.provider != Provider::Local || args.common.api_url.is_some() {
        return Err(format!(
            "--serve {addr} runs the workers against the embedded local API (their KV bindings \
             read and write its store); it is refused with --provider cloudflare or --api-url, \
             whose namespaces the local runtime cannot reach"
        ));
    }
    if args.once {
        return Err("--serve keeps serving while the daemon runs; drop --once".into());
    }
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--serve {addr}: the local edge serves loopback addresses only (it has no \
             authentication), e.g. --serve 127.0.0.1:8788"
        ));
    }
    Ok(())
}

/// `lumierd run`: refuses bad usage (exit 2), then runs the daemon until it stops (or one
/// pass with `--once`).
pub(super) fn cmd_run(args: RunArgs) -> i32 {
    let admin_token = match check(&args) {
        Ok(token) => token,
        Err(line) => {
            eprintln!("{line}");
            return EXIT_USAGE;
        }
    };
    crate::logging::init(args.log_format, args.log_level.as_deref());
    crate::fdlimit::raise_nofile_logged();
    crate::fdlimit::private_umask();
    let outcome = (|| -> anyhow::Result<Result<bool, DaemonError>> {
        let cfg = daemon_config(&args, admin_token)?;
        let rt = runtime()?;
        let result = rt.block_on(daemon::run(cfg));
        // A flush stuck on a frozen disk runs on a blocking thread: don't wait for it.
        rt.shutdown_timeout(Duration::from_secs(1));
        Ok(result)
    })();
    exit_code(outcome)
}

/// The usage checks, before anything starts: the line to print on a refusal, else the
/// admin token read from `--admin-token-file`.
fn check(args: &RunArgs) -> Result<Option<AdminToken>, String> {
    if let Some(level) = args.log_level.as_deref() {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
            return Err(format!(
                "error: --log-level `{level}`: {e}; write e.g. info, debug or lumierd=debug,warn"
            ));
        }
    }
    if let Some(addr) = args.admin_listen {
        if !crate::admin::is_local(&addr) && !args.admin_allow_remote {
            return Err(format!(
                "error: --admin-listen {addr} is not a loopback address; the admin API has no \
                 authentication, so serving it beyond this host needs --admin-allow-remote \
                 (and a firewall or NetworkPolicy)"
            ));
        }
    }
    check_local_api_listen(&args.common)?;
    check_serve(args).map_err(|why| format!("error: {why}"))?;
    for url in &args.notify {
        // The URL may carry a token (Slack's do): never echoed.
        let ok = reqwest::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err("error: --notify needs an http:// or https:// URL (the value given is not one; it is not shown, as it may hold a token)".to_owned());
        }
    }
    args.admin_token_file
        .as_deref()
        .map(AdminToken::from_file)
        .transpose()
        .map_err(|e| format!("error: {e}"))
}

/// The daemon's configuration: the shared flags ([`run_config`]) and `run`'s own.
fn daemon_config(args: &RunArgs, admin_token: Option<AdminToken>) -> anyhow::Result<RunConfig> {
    let policy = Policy {
        drift: args.drift.into(),
        max_prune: args.max_prune,
        concurrency: args.concurrency,
        act: true,
        approve_delete: args.approve_delete.clone(),
        adopt: args.adopt,
    };
    let mut cfg = run_config(&args.common, args.once, policy, args.resync, args.debounce)?;
    cfg.admin_listen = args.admin_listen;
    cfg.stuck_after = args.stuck_after;
    cfg.serve = args.serve.map(|listen| crate::edge::ServeConfig {
        listen,
        workerd: args.workerd.clone(),
    });
    cfg.admin_token = admin_token;
    cfg.notify = args.notify.clone();
    if let Some(id) = &args.instance_id {
        cfg.instance_id = id.clone();
    }
    cfg.lease_ttl = args.lease_ttl;
    Ok(cfg)
}

/// The exit code of the daemon's outcome: 0 converged (or stopped), 1 not converged or a
/// runtime failure, 2 invalid manifests or a configuration refused.
fn exit_code(outcome: anyhow::Result<Result<bool, DaemonError>>) -> i32 {
    match outcome {
        Ok(Ok(true)) => EXIT_OK,
        Ok(Ok(false)) => {
            eprintln!("lumierd: not everything converged; see `lumierd status`");
            EXIT_FAILURE
        }
        Ok(Err(DaemonError::Manifests(e))) => {
            eprintln!("{e}");
            EXIT_USAGE
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}
