//! Workers script operations (`/accounts/{a}/workers/scripts`): list, upload, settings,
//! content, delete. See API-NOTES §1.3 and §6.

use bytes::Bytes;
use reqwest::Method;

use super::client::{segment, Body, Client, FormPart, Request, Response};
use super::error::{ApiError, ErrorKind};
use super::multipart;
use super::types::{Module, Script, ScriptMetadata, ScriptSettings, ScriptSummary};

/// A module Worker upload: the `metadata` part and the module files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptUpload {
    /// `main_module` must name one of `modules` (or `body_part` for service-worker syntax).
    pub metadata: ScriptMetadata,
    pub modules: Vec<Module>,
}

/// A script's code as returned by `GET …/content/v2`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptContent {
    /// From the `cf-entrypoint` response header; `None` when the API did not say.
    pub main_module: Option<String>,
    /// One entry per module, in the order the API sent them; empty on 204 No Content.
    pub modules: Vec<Module>,
}

/// The module name used for a raw (service-worker, non-multipart) content answer without a
/// `cf-entrypoint` header.
pub const RAW_SCRIPT_NAME: &str = "script";

impl Client {
    fn scripts_path(&self) -> String {
        format!("{}/workers/scripts", self.account_path())
    }

    fn script_path(&self, op: &'static str, name: &str) -> Result<String, ApiError> {
        Ok(format!(
            "{}/{}",
            self.scripts_path(),
            segment(op, "script name", name)?
        ))
    }

    /// Every script of the account (the endpoint is not paginated), as summaries.
    pub async fn list_scripts(&self) -> Result<Vec<ScriptSummary>, ApiError> {
        const OP: &str = "list_scripts";
        let (result, _) = self
            .call_envelope::<Vec<ScriptSummary>>(Request::new(OP, Method::GET, self.scripts_path()))
            .await?;
        Ok(result.unwrap_or_default())
    }

    /// Uploads (creates or replaces) and deploys a Worker with `PUT …/scripts/{name}`:
    /// multipart with part `metadata` (`application/json`) first, then one file part per
    /// module (part name = file name = module name, the module's content type).
    /// `Invalid` on 10016 (bad name), 10021 (validation), 10041 (bound namespace missing).
    pub async fn upload_script(
        &self,
        name: &str,
        upload: &ScriptUpload,
    ) -> Result<Script, ApiError> {
        const OP: &str = "upload_script";
        let metadata = serde_json::to_vec(&upload.metadata).map_err(|e| {
            ApiError::new(
                OP,
                ErrorKind::Invalid,
                format!("cannot encode metadata: {e}"),
            )
        })?;
        let mut parts = Vec::with_capacity(upload.modules.len() + 1);
        parts.push(FormPart {
            name: "metadata".to_owned(),
            filename: None,
            content_type: Some("application/json".to_owned()),
            data: Bytes::from(metadata),
        });
        for module in &upload.modules {
            parts.push(FormPart {
                name: module.name.clone(),
                filename: Some(module.name.clone()),
                content_type: Some(module.content_type.clone()),
                data: Bytes::from(module.content.clone()),
            });
        }
        let req =
            Request::new(OP, Method::PUT, self.script_path(OP, name)?).body(Body::Multipart(parts));
        self.call(req).await
    }

    /// The script's settings (bindings without secret text, compatibility, tags, …).
    pub async fn get_settings(&self, name: &str) -> Result<ScriptSettings, ApiError> {
        const OP: &str = "get_settings";
        let path = format!("{}/settings", self.script_path(OP, name)?);
        self.call(Request::new(OP, Method::GET, path)).await
    }

    /// Patches the script's settings: multipart with one part `settings` (`application/json`).
    /// Returns the settings as the API now has them.
    pub async fn patch_settings(
        &self,
        name: &str,
        settings: &ScriptSettings,
    ) -> Result<ScriptSettings, ApiError> {
        const OP: &str = "patch_settings";
        let path = format!("{}/settings", self.script_path(OP, name)?);
        let json = serde_json::to_vec(settings).map_err(|e| {
            ApiError::new(
                OP,
                ErrorKind::Invalid,
                format!("cannot encode settings: {e}"),
            )
        })?;
        let part = FormPart {
            name: "settings".to_owned(),
            filename: None,
            content_type: Some("application/json".to_owned()),
            data: Bytes::from(json),
        };
        let req = Request::new(OP, Method::PATCH, path).body(Body::Multipart(vec![part]));
        self.call(req).await
    }

    /// The script's code (`GET …/content/v2`). A multipart answer gives one module per part
    /// (named by the part's file name, else its field name) and the main module from
    /// `cf-entrypoint`; a raw answer is one service-worker module; 204 gives no modules.
    pub async fn get_content(&self, name: &str) -> Result<ScriptContent, ApiError> {
        const OP: &str = "get_content";
        let path = format!("{}/content/v2", self.script_path(OP, name)?);
        let resp = self.send(Request::new(OP, Method::GET, path).raw()).await?;
        parse_content(&resp).map_err(|detail| ApiError::new(OP, ErrorKind::Invalid, detail))
    }

    /// Deletes a script. With `force`, also when other Workers still reference it.
    pub async fn delete_script(&self, name: &str, force: bool) -> Result<(), ApiError> {
        const OP: &str = "delete_script";
        let req = Request::new(OP, Method::DELETE, self.script_path(OP, name)?)
            .query("force", if force { "true" } else { "false" });
        self.call_envelope::<serde_json::Value>(req).await?;
        Ok(())
    }
}

/// Turns a content/v2 answer into modules (see [`Client::get_content`]).
fn parse_content(resp: &Response) -> Result<ScriptContent, String> {
    let entrypoint = resp
        .header("cf-entrypoint")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if resp.status == 204 {
        return Ok(ScriptContent {
            main_module: entrypoint,
            modules: Vec::new(),
        });
    }
    let content_type = resp.header("content-type").unwrap_or("");
    let Some(boundary) = multipart::boundary(content_type) else {
        let name = entrypoint
            .clone()
            .unwrap_or_else(|| RAW_SCRIPT_NAME.to_owned());
        let content_type = content_type
            .split(';')
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("application/javascript")
            .to_owned();
        return Ok(ScriptContent {
            main_module: entrypoint,
            modules: vec![Module {
                name,
                content_type,
                content: resp.body.to_vec(),
            }],
        });
    };
    let parts = multipart::parse(&resp.body, &boundary)
        .map_err(|e| format!("undecodable multipart script content: {e}"))?;
    let mut modules = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let name = part
            .filename
            .filter(|f| !f.is_empty())
            .or(part.name.filter(|n| !n.is_empty()))
            .ok_or_else(|| format!("script content part {} has no name", i + 1))?;
        let content_type = part
            .content_type
            .unwrap_or_else(|| guess_content_type(&name).to_owned());
        modules.push(Module {
            name,
            content_type,
            content: part.data,
        });
    }
    Ok(ScriptContent {
        main_module: entrypoint,
        modules,
    })
}

/// The content type Workers uses for a module file name, when the answer did not say.
pub fn guess_content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("js" | "mjs") => "application/javascript+module",
        Some("cjs") => "application/javascript",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("txt" | "html" | "css") => "text/plain",
        Some("map") => "application/source-map",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn response(status: u16, headers: &[(&'static str, &str)], body: &[u8]) -> Response {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        Response {
            status,
            headers: map,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn multipart_content() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"index.js\"; filename=\"index.js\"\r\nContent-Type: application/javascript+module\r\n\r\nimport x from './lib.mjs';\r\n--B\r\nContent-Disposition: form-data; name=\"lib.mjs\"\r\n\r\nexport default 1\r\n--B--\r\n";
        let resp = response(
            200,
            &[
                ("content-type", "multipart/form-data; boundary=B"),
                ("cf-entrypoint", "index.js"),
            ],
            body,
        );
        let c = parse_content(&resp).expect("parses");
        assert_eq!(c.main_module.as_deref(), Some("index.js"));
        assert_eq!(c.modules.len(), 2);
        assert_eq!(c.modules[0].name, "index.js");
        assert_eq!(c.modules[0].content, b"import x from './lib.mjs';".to_vec());
        assert_eq!(c.modules[1].name, "lib.mjs");
        assert_eq!(c.modules[1].content_type, "application/javascript+module");
        assert_eq!(c.modules[1].content, b"export default 1".to_vec());
    }

    #[test]
    fn raw_and_empty_content() {
        let resp = response(
            200,
            &[("content-type", "application/javascript; charset=utf-8")],
            b"addEventListener('fetch', e => {})",
        );
        let c = parse_content(&resp).expect("raw");
        assert_eq!(c.main_module, None);
        assert_eq!(c.modules.len(), 1);
        assert_eq!(c.modules[0].name, RAW_SCRIPT_NAME);
        assert_eq!(c.modules[0].content_type, "application/javascript");

        let c = parse_content(&response(204, &[], b"")).expect("204");
        assert!(c.modules.is_empty());

        let bad = response(
            200,
            &[("content-type", "multipart/form-data; boundary=B")],
            b"junk",
        );
        assert!(parse_content(&bad).is_err());
    }

    #[test]
    fn content_type_guesses() {
        assert_eq!(guess_content_type("a.JS"), "application/javascript+module");
        assert_eq!(guess_content_type("a.wasm"), "application/wasm");
        assert_eq!(guess_content_type("noext"), "application/octet-stream");
    }
}
