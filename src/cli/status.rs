//! `lumierd status`: every resource's state, from a running daemon's socket, else from the
//! store itself (or from `--store`, e.g. a shared etcd, with who leads).

use std::time::Duration;

use super::args::StatusArgs;
use super::{runtime, state_dir, EXIT_FAILURE, EXIT_OK};
use crate::status;
use crate::store::Store;

/// `lumierd status`: a table, or JSON with `--json`.
pub(super) fn cmd_status(args: StatusArgs) -> i32 {
    let state = state_dir(args.state);
    let outcome = (|| -> anyhow::Result<serde_json::Value> {
        if let Some(location) = &args.store {
            let store = Store::open_at(location)?;
            let mut v = status::status_json(&store, args.stage.as_deref())?;
            if let crate::store::Location::Etcd(url) = location {
                // Who leads (the leader key's value), for any replica's operator.
                let gw = crate::store::etcd::Gateway::connect(url.clone())?;
                let leader = gw
                    .get(&gw.key(b"leader"))?
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                v["leader"] = leader.unwrap_or(serde_json::Value::Null);
            }
            return Ok(v);
        }
        use crate::runtime::status_socket::{self, AskError};
        let rt = runtime()?;
        let request = format!("status {}", args.stage.as_deref().unwrap_or(""));
        // `None`: no daemon listens (none runs, or one is starting); an error: one is stuck.
        let ask = || match rt.block_on(status_socket::query(&state, &request)) {
            Ok(v) => Ok(Some(v)),
            Err(AskError::NoDaemon(_)) => Ok(None),
            Err(why @ AskError::NotAnswering { .. }) => Err(anyhow::anyhow!(
                "{why}; a lumierd daemon runs on this state folder but does not answer (it may \
                 be stuck): see its log, or restart it"
            )),
        };
        if let Some(v) = ask()? {
            return Ok(v);
        }
        if !state.join("db").exists() {
            anyhow::bail!(
                "no lumierd state in {}: run `lumierd run` first, or pass --state",
                state.display()
            );
        }
        match Store::open(&state) {
            Ok(store) => Ok(status::status_json(&store, args.stage.as_deref())?),
            Err(e) => {
                // A daemon that is starting holds the store before its socket is up.
                for _ in 0..50 {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Some(v) = ask()? {
                        return Ok(v);
                    }
                }
                Err(e.into())
            }
        }
    })();
    match outcome {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else {
                print!("{}", crate::replica::header(&v));
                print!("{}", status::render_table(&v));
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_FAILURE
        }
    }
}
