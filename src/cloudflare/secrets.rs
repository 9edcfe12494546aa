//! Worker secrets (`/accounts/{a}/workers/scripts/{name}/secrets…`, API-NOTES §7.1).
//!
//! A secret's text is write-only: it goes out as a [`Secret`] (whose `Debug` and `Display`
//! are redacted), only inside the PUT body, and the API never answers it (every read gives
//! [`SecretInfo`], names and types only). Errors carry the operation, status and the API's
//! codes, never the request body.
//!
//! | call | API | errors |
//! |---|---|---|
//! | [`Client::put_secret`] | `PUT …/secrets` `{name, text, type:"secret_text"}` | `NotFound` (10007, no script); `Invalid` (10053 name held by another binding, 10215 newest version not deployed) |
//! | [`Client::list_secrets`] | `GET …/secrets` | `NotFound` (10007; the real API has also answered 10007 for a Worker that never had a secret) |
//! | [`Client::delete_secret`] | `DELETE …/secrets/{name}?url_encoded=true` | `Ok(false)` when no such secret (10056); `NotFound` (10007) |
//!
//! Each change creates and deploys a new version of the script (no re-upload needed).

use reqwest::Method;
use serde::Serialize;

use super::client::{segment, Client, Request, Secret};
use super::error::{ApiError, ErrorKind};
use super::types::{codes, SecretInfo};

/// The PUT body. Not `Debug`: it holds the text.
#[derive(Serialize)]
struct PutSecret<'a> {
    name: &'a str,
    text: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Client {
    fn secrets_path(&self, op: &'static str, script: &str) -> Result<String, ApiError> {
        Ok(format!(
            "{}/workers/scripts/{}/secrets",
            self.account_path(),
            segment(op, "script name", script)?
        ))
    }

    /// Sets (creates or replaces) the `secret_text` `name` of `script`; the script gets a
    /// new deployed version. Returns what the API answers: the name and type.
    pub async fn put_secret(
        &self,
        script: &str,
        name: &str,
        text: &Secret,
    ) -> Result<SecretInfo, ApiError> {
        const OP: &str = "put_secret";
        let body = PutSecret {
            name,
            text: text.expose(),
            kind: "secret_text",
        };
        let req = Request::new(OP, Method::PUT, self.secrets_path(OP, script)?).json(&body)?;
        self.call(req).await
    }

    /// The script's secrets: names and types, never texts.
    pub async fn list_secrets(&self, script: &str) -> Result<Vec<SecretInfo>, ApiError> {
        const OP: &str = "list_secrets";
        let (result, _) = self
            .call_envelope::<Vec<SecretInfo>>(Request::new(
                OP,
                Method::GET,
                self.secrets_path(OP, script)?,
            ))
            .await?;
        Ok(result.unwrap_or_default())
    }

    /// Deletes the secret `name` of `script` (a new deployed version without it). `Ok(true)`
    /// when deleted, `Ok(false)` when the script has no such secret (10056).
    pub async fn delete_secret(&self, script: &str, name: &str) -> Result<bool, ApiError> {
        const OP: &str = "delete_secret";
        let path = format!(
            "{}/{}",
            self.secrets_path(OP, script)?,
            segment(OP, "secret name", name)?
        );
        let req = Request::new(OP, Method::DELETE, path).query("url_encoded", "true");
        match self.call_envelope::<serde_json::Value>(req).await {
            Ok(_) => Ok(true),
            Err(e)
                if e.kind == ErrorKind::NotFound
                    && e.errors.iter().any(|m| m.code == codes::BINDING_NOT_FOUND) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}
