//! workers.dev: the account subdomain and a script's route on it (API-NOTES §7.2).
//!
//! | call | API | answer / errors |
//! |---|---|---|
//! | [`Client::get_account_subdomain`] | `GET /workers/subdomain` | `Some(name)`; `None` when the account has none (10007) |
//! | [`Client::get_script_subdomain`] | `GET …/scripts/{n}/subdomain` | [`ScriptSubdomain`]; `NotFound` (10007) |
//! | [`Client::set_script_subdomain`] | `POST …/scripts/{n}/subdomain` `{enabled, previews_enabled}` | the state after; `NotFound` (10007) |
//!
//! The route of a script is `https://{script}.{account subdomain}.workers.dev`
//! ([`workers_dev_url`]).

use reqwest::Method;
use serde::Deserialize;

use super::client::{segment, Client, Request};
use super::error::{ApiError, ErrorKind};
use super::types::{codes, ScriptSubdomain};

#[derive(Deserialize)]
struct AccountSubdomain {
    subdomain: String,
}

/// The workers.dev URL of `script` on the account subdomain `subdomain`.
pub fn workers_dev_url(script: &str, subdomain: &str) -> String {
    format!("https://{script}.{subdomain}.workers.dev")
}

impl Client {
    fn script_subdomain_path(&self, op: &'static str, script: &str) -> Result<String, ApiError> {
        Ok(format!(
            "{}/workers/scripts/{}/subdomain",
            self.account_path(),
            segment(op, "script name", script)?
        ))
    }

    /// The account's workers.dev subdomain (`my-team` in `x.my-team.workers.dev`); `None`
    /// when none is registered.
    pub async fn get_account_subdomain(&self) -> Result<Option<String>, ApiError> {
        const OP: &str = "get_account_subdomain";
        let path = format!("{}/workers/subdomain", self.account_path());
        match self
            .call::<AccountSubdomain>(Request::new(OP, Method::GET, path))
            .await
        {
            Ok(a) => Ok(Some(a.subdomain)),
            Err(e)
                if e.kind == ErrorKind::NotFound
                    && e.errors.iter().any(|m| m.code == codes::SCRIPT_NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `script` is served on workers.dev (and its version previews).
    pub async fn get_script_subdomain(&self, script: &str) -> Result<ScriptSubdomain, ApiError> {
        const OP: &str = "get_script_subdomain";
        let path = self.script_subdomain_path(OP, script)?;
        self.call(Request::new(OP, Method::GET, path)).await
    }

    /// Turns `script`'s workers.dev route on or off; version previews follow it (both are
    /// sent, so the answer does not depend on the API's default for an omitted
    /// `previews_enabled`). Returns the state after the change.
    pub async fn set_script_subdomain(
        &self,
        script: &str,
        enabled: bool,
    ) -> Result<ScriptSubdomain, ApiError> {
        const OP: &str = "set_script_subdomain";
        let path = self.script_subdomain_path(OP, script)?;
        let body = ScriptSubdomain {
            enabled,
            previews_enabled: enabled,
        };
        self.call(Request::new(OP, Method::POST, path).json(&body)?)
            .await
    }
}
