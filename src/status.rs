//! `status`: every resource's state as CONTRACT.md's JSON, or as a table.

use crate::store::{Record, Store, StoreError};
use serde_json::{json, Value};
use std::time::SystemTime;

/// The status object: `{ "resources": [...], "loadError": ... }`.
pub fn status_json(store: &Store, stage: Option<&str>) -> Result<Value, StoreError> {
    let last_pass = store.last_pass()?;
    let mut resources = Vec::new();
    for item in store.records() {
        let (key, rec) = item?;
        if stage.is_some_and(|s| s != key.stage) {
            continue;
        }
        resources.push(resource_json(&key, &rec, last_pass));
    }
    Ok(json!({
        "resources": resources,
        "loadError": store.load_error()?,
    }))
}

fn resource_json(
    key: &crate::manifest::ResourceKey,
    rec: &Record,
    last_pass: Option<crate::time::Timestamp>,
) -> Value {
    let kind = rec.kind();
    let mut output = crate::resources::output(kind, key, &rec.status);
    let mut message = rec.message.clone();
    if kind.type_name() == "worker" {
        // The local edge's view (#16): `output.localUrl`, a failed start in `message`.
        crate::edge::annotate_status(&key.provider_name(), &mut output, &mut message);
    }
    let last = rec
        .drift_history
        .last()
        .map(|d| json!({ "at": d.at, "changes": d.changes, "corrected": d.corrected }));
    json!({
        "app": key.app,
        "stage": key.stage,
        "name": key.name,
        "type": kind.type_name(),
        "state": rec.state.as_str(),
        "output": output,
        "lastReconciled": rec.reconciled_at(last_pass),
        "drift": { "count": rec.drift_count, "last": last },
        "message": message,
    })
}

/// A table: app, stage, name, type, state, age (since last reconcile), message.
pub fn render_table(status: &Value) -> String {
    let mut rows = vec![[
        "APP".to_owned(),
        "STAGE".to_owned(),
        "NAME".to_owned(),
        "TYPE".to_owned(),
        "STATE".to_owned(),
        "AGE".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    let now = SystemTime::now();
    let empty = Vec::new();
    for r in status["resources"].as_array().unwrap_or(&empty) {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let age = r["lastReconciled"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| {
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
            })
            .unwrap_or_else(|| "-".into());
        rows.push([
            s("app"),
            s("stage"),
            s("name"),
            s("type"),
            s("state"),
            age,
            s("message"),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths.iter())
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 6 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if let Some(err) = status["loadError"].as_str() {
        out.push_str(&format!(
            "\nlast manifest load failed (the last good manifests stay in force):\n{err}\n"
        ));
    }
    out
}
