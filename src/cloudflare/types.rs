//! Wire types of the Cloudflare v4 API slice lumierd uses, shared by the client
//! (`cloudflare::client`) and the local API (`local_api`), so both sides agree by construction.
//!
//! Field names and shapes follow `../shared/cloudflare/API-NOTES.md` and the official OpenAPI
//! slice. Unknown fields are ignored on input (real clients send more than we read).

use serde::{Deserialize, Serialize};

/// One entry of `errors[]` / `messages[]` in the response envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiMessage {
    pub code: u32,
    pub message: String,
}

/// `result_info` of a list response: page-based (`page`, `per_page`, `count`, `total_count`)
/// or cursor-based (`count`, `cursor`). Every field is optional because the real API omits some.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The v4 response envelope. `success: false` is an error even on HTTP 200.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<ApiMessage>,
    #[serde(default)]
    pub messages: Vec<ApiMessage>,
    pub result: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_info: Option<ResultInfo>,
}

/// A KV namespace (`GET/POST …/storage/kv/namespaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// 32 lowercase hex characters.
    pub id: String,
    /// Unique per account, at most 512 characters.
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_url_encoding: Option<bool>,
}

/// One key of a KV key list (`GET …/keys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvKey {
    pub name: String,
    /// Unix seconds; omitted for keys that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// A Worker binding as sent in upload metadata and returned by settings.
///
/// Only the kinds lumierd manages are typed; any other kind round-trips as `Other` so that
/// settings written by other tools are neither lost nor rejected.
///
/// `Debug` redacts secret material (a `secret_text`'s text; `text`, `key_base64` and
/// `key_jwk` of an `Other` binding), so a binding list can be logged or put in an error.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Binding {
    #[serde(rename = "kv_namespace")]
    KvNamespace { name: String, namespace_id: String },
    #[serde(rename = "plain_text")]
    PlainText { name: String, text: String },
    /// `text` is write-only: the API omits it on read, so it is `None` there.
    #[serde(rename = "secret_text")]
    SecretText {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    #[serde(untagged)]
    Other(serde_json::Value),
}

/// Fields of an untyped binding that hold secret material (redacted by `Debug`).
const SECRET_FIELDS: &[&str] = &["text", "key_base64", "key_jwk"];

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Binding::KvNamespace { name, namespace_id } => f
                .debug_struct("KvNamespace")
                .field("name", name)
                .field("namespace_id", namespace_id)
                .finish(),
            Binding::PlainText { name, text } => f
                .debug_struct("PlainText")
                .field("name", name)
                .field("text", text)
                .finish(),
            Binding::SecretText { name, text } => f
                .debug_struct("SecretText")
                .field("name", name)
                .field("text", &text.as_ref().map(|_| "[redacted]"))
                .finish(),
            Binding::Other(v) => {
                let mut v = v.clone();
                if let Some(obj) = v.as_object_mut() {
                    for key in SECRET_FIELDS {
                        if let Some(field) = obj.get_mut(*key) {
                            *field = serde_json::Value::String("[redacted]".to_owned());
                        }
                    }
                }
                f.debug_tuple("Other").field(&v).finish()
            }
        }
    }
}

impl Binding {
    /// The JavaScript name the binding is exposed as, when it has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Binding::KvNamespace { name, .. }
            | Binding::PlainText { name, .. }
            | Binding::SecretText { name, .. } => Some(name),
            Binding::Other(v) => v.get("name").and_then(|n| n.as_str()),
        }
    }
}

/// The `metadata` part of a module Worker upload (`PUT …/workers/scripts/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptMetadata {
    /// Part name of the ES-module entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_module: Option<String>,
    /// Part name of a service-worker script (the other upload syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_part: Option<String>,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatibility_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Binding types kept from the previous version when this upload does not name them
    /// (e.g. [`KEEP_SECRET_BINDINGS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_bindings: Vec<String>,
}

impl ScriptMetadata {
    /// Adds [`KEEP_SECRET_BINDINGS`] to `keep_bindings` (once), so the upload keeps the
    /// script's secrets.
    pub fn keep_secrets(mut self) -> Self {
        for kind in KEEP_SECRET_BINDINGS {
            if !self.keep_bindings.iter().any(|k| k == kind) {
                self.keep_bindings.push(kind.to_owned());
            }
        }
        self
    }
}

/// One module of a Worker: its name (the multipart part and file name), content type and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// e.g. `application/javascript+module`, `application/json`, `text/plain`, `application/wasm`.
    pub content_type: String,
    pub content: Vec<u8>,
}

/// A script as returned by the script list and by an upload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// The script name.
    pub id: String,
    #[serde(default)]
    pub etag: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_on: String,
    /// RFC 3339; changes on every upload and settings patch.
    #[serde(default)]
    pub modified_on: String,
    #[serde(default)]
    pub has_modules: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_date: Option<String>,
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    #[serde(default)]
    pub handlers: Vec<String>,
    #[serde(default = "default_usage_model")]
    pub usage_model: String,
}

/// The fields of a script-list entry that lumierd decides on. The other fields of each entry
/// are skipped while parsing: the list of every script of the account is read on every pass.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScriptSummary {
    /// The script name.
    pub id: String,
    #[serde(default)]
    pub etag: String,
    /// RFC 3339; changes on every upload and settings patch.
    #[serde(default)]
    pub modified_on: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

fn default_usage_model() -> String {
    "standard".to_owned()
}

/// `GET/PATCH …/workers/scripts/{name}/settings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptSettings {
    #[serde(default)]
    pub bindings: Vec<Binding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_date: Option<String>,
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default = "default_usage_model")]
    pub usage_model: String,
    #[serde(default)]
    pub logpush: bool,
}

/// The binding types an upload sends in `keep_bindings` to keep the script's secrets, which
/// it cannot re-send (their text is never read back): what wrangler sends (API-NOTES §7.1).
pub const KEEP_SECRET_BINDINGS: [&str; 2] = ["secret_text", "secret_key"];

/// A Worker secret as the API answers it (`GET …/secrets`, `PUT …/secrets`): never its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    /// `secret_text` or `secret_key`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A script's workers.dev route (`GET/POST …/scripts/{name}/subdomain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptSubdomain {
    /// Served at `https://{script}.{account subdomain}.workers.dev`.
    pub enabled: bool,
    /// Preview URLs of versions served on workers.dev.
    #[serde(default)]
    pub previews_enabled: bool,
}

/// Result of token verify (`GET /accounts/{a}/tokens/verify`, `GET /user/tokens/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    pub id: String,
    /// `active`, `disabled` or `expired`.
    pub status: String,
}

/// Error codes of the real service that both sides use (see API-NOTES.md §5 "Emulator notes").
pub mod codes {
    /// Authentication error (bad or missing token).
    pub const AUTH_ERROR: u32 = 10000;
    /// Invalid API token (e.g. an account token verified on the user endpoint).
    pub const INVALID_TOKEN: u32 = 1000;
    pub const NO_ROUTE: u32 = 7003;
    pub const RATE_LIMITED: u32 = 971;
    pub const KEY_NOT_FOUND: u32 = 10009;
    pub const NAMESPACE_NOT_FOUND: u32 = 10013;
    pub const DUPLICATE_TITLE: u32 = 10014;
    pub const SCRIPT_NOT_FOUND: u32 = 10007;
    pub const INVALID_SCRIPT_NAME: u32 = 10016;
    pub const VALIDATION: u32 = 10021;
    pub const SCRIPT_TOO_LARGE: u32 = 10027;
    pub const BOUND_NAMESPACE_MISSING: u32 = 10041;
    pub const NAMESPACE_STILL_BOUND: u32 = 10052;
    /// A binding (secret) of that name does not exist on the script.
    pub const BINDING_NOT_FOUND: u32 = 10056;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_debug_redacts_secret_material() {
        let canary = "canary-secret-material";
        let bindings = [
            Binding::SecretText {
                name: "A".into(),
                text: Some(canary.into()),
            },
            Binding::Other(
                serde_json::json!({"type": "secret_key", "name": "K", "key_base64": canary}),
            ),
            Binding::Other(
                serde_json::json!({"type": "secret_key", "name": "J", "key_jwk": {"k": canary}}),
            ),
        ];
        for b in &bindings {
            let debug = format!("{b:?}");
            assert!(!debug.contains(canary), "{debug}");
            assert!(debug.contains("[redacted]"), "{debug}");
        }
        let meta = ScriptMetadata {
            bindings: bindings.to_vec(),
            ..ScriptMetadata::default()
        };
        assert!(!format!("{meta:?}").contains(canary));
        // Serialization still carries the text: it is what the upload sends.
        assert!(serde_json::to_string(&bindings[0])
            .unwrap_or_default()
            .contains(canary));
    }
}
