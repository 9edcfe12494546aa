//! The JSON Schema (draft 2020-12) of the stage manifest format, printed by `lumierd schema`.
//!
//! It states what the loader accepts structurally; rules that need the file system or other
//! documents (entry paths, `{ kv: X }` references, provider-name lengths and collisions,
//! `protect` typos) are only in the loader.

use serde_json::{json, Value};

/// The schema as a JSON value.
pub fn manifest_schema() -> Value {
    let name = json!({
        "type": "string",
        "minLength": 1,
        "pattern": "^[^\\s/]+$"
    });
    let drift = json!({
        "enum": ["correct", "report"],
        "description": "How out-of-band edits are handled: `correct` puts the remote back, `report` only records them."
    });
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lumierd.dev/schema/stage-manifest.json",
        "title": "lumierd stage manifest",
        "description": "One stage of one app: its KV namespaces and Workers. Provider names are `{app}-{stage}-{name}`.",
        "type": "object",
        "additionalProperties": false,
        "required": ["app", "stage"],
        "properties": {
            "app": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {
                    "name": name,
                    "protect": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "Stages whose resources are never deleted. An entry close to a declared stage of the app but naming none (a typo such as `prodution`) is an error."
                    }
                }
            },
            "stage": name,
            "drift": drift,
            "resources": {
                "type": ["object", "null"],
                "propertyNames": { "pattern": "^[^\\s/]+$" },
                "additionalProperties": { "$ref": "#/$defs/resource" }
            }
        },
        "$defs": {
            "resource": {
                "type": "object",
                "required": ["type"],
                "properties": { "type": { "enum": ["kv", "worker"] } },
                "oneOf": [
                    { "$ref": "#/$defs/kv" },
                    { "$ref": "#/$defs/worker" }
                ]
            },
            "kv": {
                "type": "object",
                "additionalProperties": false,
                "required": ["type"],
                "properties": {
                    "type": { "const": "kv" },
                    "drift": drift,
                    "existing": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["id"],
                        "properties": {
                            "id": { "type": "string", "pattern": "^[0-9a-f]{32}$" }
                        },
                        "description": "An existing namespace: observed and bound, never created, renamed or deleted."
                    }
                }
            },
            "worker": worker_schema(&drift)
        }
    });
    with_lumier_pointer(&mut schema);
    schema
}

/// The `worker` resource.
fn worker_schema(drift: &Value) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["type", "entry"],
        "properties": {
            "type": { "const": "worker" },
            "drift": drift,
            "entry": {
                "type": "string",
                "minLength": 1,
                "description": "The worker's source (.ts, .mts, .js, .mjs), relative to this manifest's folder; must stay inside the manifests root."
            },
            "bindings": {
                "type": ["object", "null"],
                "maxProperties": super::bindings::MAX_BINDINGS,
                "propertyNames": { "pattern": "^[A-Za-z_$][A-Za-z0-9_$]*$" },
                "additionalProperties": {
                    "oneOf": binding_kinds()
                }
            },
            "workersDev": {
                "type": "boolean",
                "description": "The script's workers.dev route: `true` (the default, as wrangler) serves it at https://{script}.{account subdomain}.workers.dev, `false` turns it off.",
                "default": true
            },
            "secrets": {
                "enum": ["keep", "exclusive"],
                "default": "keep",
                "description": "Remote secrets no binding declares: `keep` leaves them (set by `wrangler secret put` or the dashboard; uploads keep them, status lists them as unmanaged); `exclusive` removes them."
            },
            "compatibility": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "date": {
                        "type": "string",
                        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                        "default": super::DEFAULT_COMPATIBILITY_DATE
                    },
                    "flags": {
                        "type": "array",
                        "items": { "type": "string", "minLength": 1, "pattern": "^[^\\s]+$" },
                        "description": "Compatibility flags, each one word without whitespace, e.g. `nodejs_compat`."
                    }
                }
            }
        }
    })
}

/// The forms of one binding (`oneOf`).
fn binding_kinds() -> Value {
    // Apart: one `json!` of all forms would pass the macro's recursion limit.
    let secret_binding = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["secret"],
        "properties": {
            "secret": {
                "type": "object",
                "additionalProperties": false,
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "env": { "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$" },
                    "file": { "type": "string", "minLength": 1, "pattern": "^[^/\\\\]+$" },
                    "age": { "type": "string", "minLength": 1 }
                }
            }
        },
        "description": "A secret (secret_text) read on each pass from lumierd's environment (`env`), a file in --secrets-dir (`file`) or an age-encrypted file of the manifests tree, relative to this manifest and decrypted with --age-identity (`age`); only a keyed hash is stored."
    });
    let mut kinds = json!([
        {
            "type": "string",
            "description": "A plain-text var; `${app}` and `${stage}` are substituted."
        },
        {
            "type": "object",
            "additionalProperties": false,
            "required": ["kv"],
            "properties": { "kv": { "type": "string", "minLength": 1 } },
            "description": "A KV namespace binding to a kv resource of the same stage."
        },
        {
            "type": "object",
            "additionalProperties": false,
            "required": ["json"],
            "properties": { "json": {} },
            "description": "A JSON var: any value; compared by value (key order does not matter)."
        },
        {
            "type": "object",
            "additionalProperties": false,
            "required": ["service"],
            "properties": { "service": { "type": "string", "minLength": 1 } },
            "description": "A service binding to a worker resource of the same stage (converged first, deleted last; no cycles)."
        }
    ]);
    if let Some(list) = kinds.as_array_mut() {
        list.push(secret_binding);
    }
    kinds
}

/// A document may instead point at a Lumier config (`lumier` + `stages`): the schema accepts
/// either form (`oneOf`), the stage manifest's rules unchanged.
fn with_lumier_pointer(schema: &mut Value) {
    let Some(root) = schema.as_object_mut() else {
        return;
    };
    let manifest: serde_json::Map<String, Value> =
        ["type", "additionalProperties", "required", "properties"]
            .iter()
            .filter_map(|k| root.remove(*k).map(|v| ((*k).to_owned(), v)))
            .collect();
    let pointer = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["lumier", "stages"],
        "properties": {
            "lumier": {
                "type": "string",
                "minLength": 1,
                "description": "A Lumier config (`lumier.config.ts`), relative to this file and inside the manifests root: evaluated per stage into the same declarations."
            },
            "stages": {
                "type": "array",
                "minItems": 1,
                "items": { "type": "string", "minLength": 1, "pattern": "^[^\\s/]+$" },
                "description": "The stages to converge: each evaluates the config's run({ stage })."
            }
        }
    });
    if let Some(defs) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        defs.insert("stageManifest".into(), Value::Object(manifest));
        defs.insert("lumierPointer".into(), pointer);
    }
    root.insert(
        "oneOf".into(),
        json!([{ "$ref": "#/$defs/stageManifest" }, { "$ref": "#/$defs/lumierPointer" }]),
    );
}
