//! Pure: the scripts to serve → a workerd config (Cap'n Proto text) plus the files it embeds.
//!
//! Layout of the generated config (`workerd.capnp` is the schema):
//! * one `worker` service per script, named by the script name, with its modules (the entry
//!   first) and bindings as uploaded: `kv_namespace` → `kvNamespace` service `kv:{id}`;
//!   `plain_text` and `secret_text` → `text`; `json` → `json`; `service` → `service` (when the
//!   target is served too). Other binding types are left out and reported in
//!   [`WorkerdConfig::skipped`].
//! * one `external` service `kv:{id}` per bound namespace: the local API's KV binding listener
//!   ([`crate::local_api::LocalApi::kv_binding_router`]), with the namespace id injected as the
//!   [`KV_BINDING_NAMESPACE_HEADER`] request header.
//! * the tail worker [`TAIL_SERVICE`], listed in every served worker's `tails` with
//!   `ctx.props = {script}` (workerd's tail events carry no script name): it posts each
//!   request's console lines and uncaught exceptions to [`TAIL_PATH`] on the same loopback
//!   listener (external service [`SINK_SERVICE`]), where [`super::logs`] logs them with the
//!   worker's app, stage and name. `logging.structuredLogging` is on, so the edge can tell
//!   workerd's own lines from the workers' console lines on its output.
//! * the router worker [`ROUTER_SERVICE`] behind the one socket [`SOCKET_NAME`]: Host
//!   `{script}.localhost` goes to that script; a path `/{app}/{stage}/{name}/rest` goes to the
//!   script tagged `lumierd:{app}:{stage}:{name}` with the path `/rest`; anything else is a 404
//!   listing what is served.
//!
//! Module contents and binding texts are never written into the config text: each is a file
//! the config `embed`s (relative to the config file), so no value needs escaping and binary
//! modules stay bytes. Only names (script, module, binding names) are quoted, with
//! [`capnp_string`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::cloudflare::types::Binding;
use crate::local_api::{ServedScript, KV_BINDING_NAMESPACE_HEADER};

/// The socket's name in the config (`--socket-fd http=FD` passes the listener).
pub const SOCKET_NAME: &str = "http";
/// The router worker's service name (not a valid script name, so it never collides).
pub const ROUTER_SERVICE: &str = "lumierd:router";
/// The tail worker's service name.
pub const TAIL_SERVICE: &str = "lumierd:tail";
/// The external service the tail worker posts to (the edge's loopback listener).
pub const SINK_SERVICE: &str = "lumierd:sink";
/// The path the tail worker posts to; never a KV key path (a key is one encoded segment).
pub const TAIL_PATH: &str = "/__lumierd/tail";
/// The request header naming the script whose events a tail post carries.
pub const TAIL_SCRIPT_HEADER: &str = "x-lumierd-script";
/// Used when an upload names no compatibility date (lumierd's own default).
const DEFAULT_COMPATIBILITY_DATE: &str = "2025-01-01";

/// A generated config: the text of `config.capnp` and the files it embeds.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerdConfig {
    pub text: String,
    /// `(path relative to the config file, content)`.
    pub files: Vec<(String, Vec<u8>)>,
    /// `(script, binding name, why)` for each binding not served.
    pub skipped: Vec<(String, String, String)>,
}

/// Where a lumierd script comes from: its tag `lumierd:{app}:{stage}:{name}` split.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub app: String,
    pub stage: String,
    pub name: String,
}

/// The origin in a script's tags, if it is one of lumierd's.
pub fn origin(script: &ServedScript) -> Option<Origin> {
    script.tags.iter().find_map(|t| {
        let mut parts = t.strip_prefix("lumierd:")?.splitn(3, ':');
        Some(Origin {
            app: parts.next()?.to_owned(),
            stage: parts.next()?.to_owned(),
            name: parts.next()?.to_owned(),
        })
    })
}

/// The capnp config for serving `scripts`, whose KV bindings reach the KV binding listener at
/// `kv`.
pub fn render(scripts: &[ServedScript], kv: SocketAddr) -> WorkerdConfig {
    let served: BTreeSet<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut namespaces = BTreeSet::new();
    let mut services = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        services.push(worker_service(
            i,
            script,
            &served,
            &mut files,
            &mut skipped,
            &mut namespaces,
        ));
    }
    for id in &namespaces {
        services.push(format!(
            "(name = {}, external = (address = {}, http = (injectRequestHeaders = [(name = {}, value = {})])))",
            capnp_string(&format!("kv:{id}")),
            capnp_string(&kv.to_string()),
            capnp_string(KV_BINDING_NAMESPACE_HEADER),
            capnp_string(id),
        ));
    }
    services.push(format!(
        "(name = {}, external = (address = {}, http = ()))",
        capnp_string(SINK_SERVICE),
        capnp_string(&kv.to_string()),
    ));
    files.push(("tail.js".to_owned(), tail_js().into_bytes()));
    services.push(format!(
        "(name = {}, worker = (modules = [(name = \"tail.js\", esModule = embed \"tail.js\")], compatibilityDate = {}, bindings = [(name = \"SINK\", service = {})]))",
        capnp_string(TAIL_SERVICE),
        capnp_string(DEFAULT_COMPATIBILITY_DATE),
        capnp_string(SINK_SERVICE),
    ));
    files.push(("router.js".to_owned(), router_js(scripts).into_bytes()));
    let router_bindings: Vec<String> = scripts
        .iter()
        .map(|s| {
            format!(
                "(name = {}, service = {})",
                capnp_string(&format!("w:{}", s.name)),
                capnp_string(&s.name)
            )
        })
        .collect();
    services.push(format!(
        "(name = {}, worker = (modules = [(name = \"router.js\", esModule = embed \"router.js\")], compatibilityDate = {}, bindings = [{}]))",
        capnp_string(ROUTER_SERVICE),
        capnp_string(DEFAULT_COMPATIBILITY_DATE),
        router_bindings.join(", "),
    ));
    let mut text = String::from("# Generated by lumierd (the local edge); rewritten on every reload.\nusing Workerd = import \"/workerd/workerd.capnp\";\n\nconst config :Workerd.Config = (\n  logging = (structuredLogging = true),\n  services = [\n");
    for s in &services {
        let _ = writeln!(text, "    {s},");
    }
    let _ = write!(
        text,
        "  ],\n  sockets = [(name = {}, address = \"127.0.0.1:0\", http = (), service = {})],\n);\n",
        capnp_string(SOCKET_NAME),
        capnp_string(ROUTER_SERVICE),
    );
    WorkerdConfig {
        text,
        files,
        skipped,
    }
}

/// The workerd service of one served script (`i`: its index, naming its embedded files): its
/// modules, bindings (those that cannot be served locally go to `skipped` with the reason),
/// compatibility and the tail that carries its logs.
fn worker_service(
    i: usize,
    script: &ServedScript,
    served: &BTreeSet<&str>,
    files: &mut Vec<(String, Vec<u8>)>,
    skipped: &mut Vec<(String, String, String)>,
    namespaces: &mut BTreeSet<String>,
) -> String {
    let module_items = module_items(i, script, files);
    let mut bindings = Vec::new();
    for (j, b) in script.bindings.iter().enumerate() {
        let name = b.name().unwrap_or("").to_owned();
        match binding_value(&format!("s{i}/b{j}"), b, served, files, namespaces) {
            Ok(value) if !name.is_empty() => {
                bindings.push(format!("(name = {}, {value})", capnp_string(&name)))
            }
            Ok(_) => skipped.push((script.name.clone(), name, "no binding name".to_owned())),
            Err(why) => skipped.push((script.name.clone(), name, why)),
        }
    }
    let date = script
        .compatibility_date
        .as_deref()
        .unwrap_or(DEFAULT_COMPATIBILITY_DATE);
    let flags: Vec<String> = script
        .compatibility_flags
        .iter()
        .map(|f| capnp_string(f))
        .collect();
    let props = serde_json::json!({ "script": script.name }).to_string();
    format!(
        "(name = {}, worker = (modules = [{}], compatibilityDate = {}, compatibilityFlags = [{}], bindings = [{}], tails = [(name = {}, props = (json = {}))]))",
        capnp_string(&script.name),
        module_items.join(", "),
        capnp_string(date),
        flags.join(", "),
        bindings.join(", "),
        capnp_string(TAIL_SERVICE),
        capnp_string(&props),
    )
}

/// The module list of script `i`, the entry module first; each module's content is added to
/// `files` as `s{i}/m{j}`.
fn module_items(
    i: usize,
    script: &ServedScript,
    files: &mut Vec<(String, Vec<u8>)>,
) -> Vec<String> {
    // The entry module must come first.
    let mut modules: Vec<_> = script.modules.iter().collect();
    modules.sort_by_key(|m| m.name != script.main_module);
    let mut module_items = Vec::new();
    for (j, m) in modules.iter().enumerate() {
        let path = format!("s{i}/m{j}");
        let kind = module_kind(&m.content_type);
        module_items.push(format!(
            "(name = {}, {kind} = embed {})",
            capnp_string(&m.name),
            capnp_string(&path)
        ));
        files.push((path, m.content.clone()));
    }
    module_items
}

/// A binding's value in workerd's config, or why it is not served locally. A text it needs is
/// added to `files` as `path`; a KV namespace it names to `namespaces`.
fn binding_value(
    path: &str,
    b: &Binding,
    served: &BTreeSet<&str>,
    files: &mut Vec<(String, Vec<u8>)>,
    namespaces: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut embed_text = |text: &str| {
        files.push((path.to_owned(), text.as_bytes().to_vec()));
        path.to_owned()
    };
    match b {
        Binding::KvNamespace { namespace_id, .. } => {
            namespaces.insert(namespace_id.clone());
            Ok(format!(
                "kvNamespace = {}",
                capnp_string(&format!("kv:{namespace_id}"))
            ))
        }
        Binding::PlainText { text, .. } => {
            Ok(format!("text = embed {}", capnp_string(&embed_text(text))))
        }
        Binding::SecretText {
            text: Some(text), ..
        } => Ok(format!("text = embed {}", capnp_string(&embed_text(text)))),
        Binding::SecretText { text: None, .. } => {
            Err("the local API holds no text for this secret".to_owned())
        }
        Binding::Other(v) => match v.get("type").and_then(|t| t.as_str()) {
            Some("json") => match v.get("json") {
                Some(json) => Ok(format!(
                    "json = embed {}",
                    capnp_string(&embed_text(&json.to_string()))
                )),
                None => Err("a json binding without `json`".to_owned()),
            },
            Some("service") => match v.get("service").and_then(|s| s.as_str()) {
                Some(target) if served.contains(target) => {
                    Ok(format!("service = {}", capnp_string(target)))
                }
                Some(target) => Err(format!("service {target:?} is not served here")),
                None => Err("a service binding without `service`".to_owned()),
            },
            Some(other) => Err(format!("binding type {other:?} is not served locally")),
            None => Err("a binding without a type".to_owned()),
        },
    }
}

/// The workerd module kind for an uploaded part's content type.
fn module_kind(content_type: &str) -> &'static str {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "application/javascript+module" | "text/javascript+module" => "esModule",
        "application/javascript" | "text/javascript" => "commonJsModule",
        "application/json" => "json",
        "application/wasm" => "wasm",
        t if t.starts_with("text/") => "text",
        _ => "data",
    }
}

/// The router worker's source: a route table (script names, and `app/stage/name` → script)
/// and the dispatch described in the module doc.
fn router_js(scripts: &[ServedScript]) -> String {
    let mut paths = BTreeMap::new();
    for s in scripts {
        if let Some(o) = origin(s) {
            paths.insert(format!("{}/{}/{}", o.app, o.stage, o.name), s.name.clone());
        }
    }
    let table = serde_json::json!({
        "scripts": scripts.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "paths": paths,
    });
    format!(
        r#"// Generated by lumierd: routes {{script}}.localhost and /{{app}}/{{stage}}/{{name}}/… to the served workers.
const ROUTES = {table};
export default {{
  async fetch(request, env) {{
    const url = new URL(request.url);
    const host = (request.headers.get("host") || url.host).replace(/:\d+$/, "").toLowerCase();
    if (host.endsWith(".localhost")) {{
      const script = host.slice(0, -".localhost".length);
      if (ROUTES.scripts.includes(script)) return env["w:" + script].fetch(request);
    }}
    const parts = url.pathname.split("/");
    if (parts.length >= 4) {{
      const script = ROUTES.paths[parts[1] + "/" + parts[2] + "/" + parts[3]];
      if (script !== undefined) {{
        const target = new URL("/" + parts.slice(4).join("/") + url.search, url);
        return env["w:" + script].fetch(new Request(target, request));
      }}
    }}
    const list = Object.keys(ROUTES.paths).map((p) => "  /" + p + "/").join("\n");
    return new Response("lumierd edge: no served worker here. Served:\n" + list + "\n", {{ status: 404 }});
  }},
}};
"#
    )
}

/// The tail worker's source: posts each event's console lines, exceptions and outcome.
fn tail_js() -> String {
    format!(
        r#"// Generated by lumierd: forwards the served workers' console lines to lumierd's log.
export default {{
  async tail(events, env, ctx) {{
    const body = JSON.stringify(events.map((e) => ({{ logs: e.logs, exceptions: e.exceptions, outcome: e.outcome }})));
    await env.SINK.fetch("http://lumierd{TAIL_PATH}", {{
      method: "POST",
      headers: {{ "{TAIL_SCRIPT_HEADER}": String(ctx.props.script) }},
      body,
    }});
  }},
}};
"#
    )
}

/// A Cap'n Proto text literal: `"…"` with `\`, `"` and control characters escaped.
pub fn capnp_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::types::Module;

    fn script(name: &str, tag: &str, bindings: Vec<Binding>) -> ServedScript {
        ServedScript {
            name: name.to_owned(),
            etag: "e1".to_owned(),
            main_module: "index.js".to_owned(),
            modules: vec![
                Module {
                    name: "lib.js".to_owned(),
                    content_type: "application/javascript+module".to_owned(),
                    content: b"export const x = 1;".to_vec(),
                },
                Module {
                    name: "index.js".to_owned(),
                    content_type: "application/javascript+module".to_owned(),
                    content: b"export default {}".to_vec(),
                },
                Module {
                    name: "data.json".to_owned(),
                    content_type: "application/json".to_owned(),
                    content: b"{}".to_vec(),
                },
            ],
            bindings,
            compatibility_date: Some("2025-01-01".to_owned()),
            compatibility_flags: vec!["nodejs_compat".to_owned()],
            tags: vec![tag.to_owned()],
        }
    }

    #[test]
    fn renders_workers_namespaces_router_and_embedded_files() {
        let kv = SocketAddr::from(([127, 0, 0, 1], 4000));
        let a = script(
            "my-app-staging-api",
            "lumierd:my-app:staging:api",
            vec![
                Binding::KvNamespace {
                    name: "CACHE".into(),
                    namespace_id: "ab".repeat(16),
                },
                Binding::PlainText {
                    name: "STAGE".into(),
                    text: "sta\"ging".into(),
                },
                Binding::SecretText {
                    name: "TOKEN".into(),
                    text: None,
                },
                Binding::Other(
                    serde_json::json!({"type": "service", "name": "B", "service": "other-b"}),
                ),
                Binding::Other(
                    serde_json::json!({"type": "service", "name": "C", "service": "missing"}),
                ),
                Binding::Other(serde_json::json!({"type": "json", "name": "J", "json": {"a": 1}})),
            ],
        );
        let b = script("other-b", "someone-else", vec![]);
        let cfg = render(&[a, b], kv);
        let t = &cfg.text;
        assert!(t.contains("(name = \"my-app-staging-api\", worker = (modules = [(name = \"index.js\", esModule = embed \"s0/m0\"), (name = \"lib.js\", esModule = embed \"s0/m1\"), (name = \"data.json\", json = embed \"s0/m2\")], compatibilityDate = \"2025-01-01\", compatibilityFlags = [\"nodejs_compat\"], bindings = [(name = \"CACHE\", kvNamespace = \"kv:abababababababababababababababab\"), (name = \"STAGE\", text = embed \"s0/b1\"), (name = \"B\", service = \"other-b\"), (name = \"J\", json = embed \"s0/b5\")], tails = [(name = \"lumierd:tail\", props = (json = \"{\\\"script\\\":\\\"my-app-staging-api\\\"}\"))]))"), "{t}");
        assert!(
            t.contains(
                "(name = \"lumierd:sink\", external = (address = \"127.0.0.1:4000\", http = ()))"
            ),
            "{t}"
        );
        assert!(t.contains("logging = (structuredLogging = true)"), "{t}");
        assert!(t.contains("(name = \"kv:abababababababababababababababab\", external = (address = \"127.0.0.1:4000\", http = (injectRequestHeaders = [(name = \"x-lumierd-kv-namespace\", value = \"abababababababababababababababab\")])))"), "{t}");
        assert!(
            t.contains("(name = \"w:other-b\", service = \"other-b\")"),
            "{t}"
        );
        assert!(t.contains("sockets = [(name = \"http\", address = \"127.0.0.1:0\", http = (), service = \"lumierd:router\")]"), "{t}");
        let file = |p: &str| {
            cfg.files
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, c)| c.clone())
        };
        assert_eq!(file("s0/b1").unwrap(), b"sta\"ging");
        assert_eq!(file("s0/b5").unwrap(), b"{\"a\":1}");
        assert_eq!(file("s0/m0").unwrap(), b"export default {}");
        let router = String::from_utf8(file("router.js").unwrap()).unwrap();
        assert!(
            router.contains(r#""paths":{"my-app/staging/api":"my-app-staging-api"}"#),
            "{router}"
        );
        let skipped: Vec<&str> = cfg.skipped.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["TOKEN", "C"]);
    }

    #[test]
    fn module_kinds_and_string_escapes() {
        for (ct, kind) in [
            ("application/javascript+module", "esModule"),
            ("application/javascript", "commonJsModule"),
            ("application/json", "json"),
            ("text/plain", "text"),
            ("text/html; charset=utf-8", "text"),
            ("application/wasm", "wasm"),
            ("application/octet-stream", "data"),
        ] {
            assert_eq!(module_kind(ct), kind, "{ct}");
        }
        assert_eq!(capnp_string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
    }

    #[test]
    fn origin_comes_from_the_lumierd_tag() {
        let s = script("x", "lumierd:app:stage:na:me", vec![]);
        assert_eq!(
            origin(&s),
            Some(Origin {
                app: "app".into(),
                stage: "stage".into(),
                name: "na:me".into()
            })
        );
        assert_eq!(origin(&script("x", "other", vec![])), None);
    }
}
