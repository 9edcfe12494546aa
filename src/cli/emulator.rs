//! `lumierd emulator`: the local Cloudflare-compatible API on its own, with its fault knobs;
//! until SIGTERM or SIGINT.

use super::args::{parse_duration, EmulatorArgs, LogFormat};
use super::{runtime, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// Refuses `lumierd emulator --listen` on a non-loopback address without `--allow-remote`,
/// and with it but without `--token` (the default token is written in this README).
fn check_emulator_listen(args: &EmulatorArgs) -> Result<(), String> {
    if crate::admin::is_local(&args.listen) {
        return Ok(());
    }
    if !args.allow_remote {
        return Err(format!(
            "error: --listen {} is not a loopback address; serving the emulator beyond this \
             host needs --allow-remote (and a --token of your own)",
            args.listen
        ));
    }
    if args.token.as_deref().is_none_or(str::is_empty) {
        return Err(
            "error: --allow-remote needs --token (or LUMIERD_EMULATOR_TOKEN): the default \
             token is public"
                .to_owned(),
        );
    }
    Ok(())
}

/// Parses the emulator's rate-limit model `N/DURATION`, e.g. `1200/5m`.
fn parse_rate_limit(s: &str) -> Result<crate::local_api::RateLimitModel, String> {
    let (n, window) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a rate limit; write N/DURATION, e.g. 1200/5m"))?;
    let requests = n
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("`{n}` is not a request count; write N/DURATION, e.g. 1200/5m"))?;
    Ok(crate::local_api::RateLimitModel {
        requests,
        window: parse_duration(window.trim())?,
    })
}

/// `lumierd emulator --listen ADDR`.
pub(super) fn cmd_emulator(args: EmulatorArgs) -> i32 {
    if let Err(e) = check_emulator_listen(&args) {
        eprintln!("{e}");
        return EXIT_USAGE;
    }
    crate::logging::init(LogFormat::Human, None);
    let outcome = (|| -> anyhow::Result<()> {
        let rate_limit = args
            .rate_limit
            .as_deref()
            .map(parse_rate_limit)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let faults = crate::local_api::Faults {
            latency: args.latency.unwrap_or_default(),
            error_rate: args.error_rate,
            reset_rate: args.reset_rate,
            applied_lost_rate: args.applied_lost_rate,
            rate_limit,
        };
        let api = crate::local_api::LocalApi::open(crate::local_api::LocalApiConfig {
            token: args
                .token
                .unwrap_or_else(|| crate::local_api::DEFAULT_TOKEN.to_owned()),
            account_id: args
                .account_id
                .unwrap_or_else(|| crate::local_api::DEFAULT_ACCOUNT_ID.to_owned()),
            data_dir: args.data,
            faults,
            request_log: args.request_log,
        })?;
        let account = api.account_id().to_owned();
        runtime()?.block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            let addr = listener.local_addr()?;
            println!("base URL: http://{addr}/client/v4");
            println!("account id: {account}");
            let shutdown = async {
                use tokio::signal::unix::{signal, SignalKind};
                if let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                } else {
                    std::future::pending::<()>().await;
                }
            };
            api.serve(listener, shutdown).await?;
            Ok::<(), anyhow::Error>(())
        })
    })();
    match outcome {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}
