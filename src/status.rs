//! `status`: every resource's state as CONTRACT.md's JSON, or as a table; and a filtered,
//! paged [`select`]ion of the records (the admin API's `/status?app=&state=&offset=&limit=`
//! and the dashboard).

use crate::manifest::ResourceKey;
use crate::store::{Record, Store, StoreError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
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

/// Which records a [`select`] keeps: every filter that is set must match; then `offset`
/// matching records are skipped and at most `limit` kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub app: Option<String>,
    pub stage: Option<String>,
    /// A state as `status` spells it (`Error`, `Drifted`, …).
    pub state: Option<String>,
    pub offset: usize,
    pub limit: Option<usize>,
}

impl Filter {
    fn matches(&self, key: &ResourceKey, rec: &Record) -> bool {
        self.app.as_ref().is_none_or(|a| *a == key.app)
            && self.stage.as_ref().is_none_or(|s| *s == key.stage)
            && self.state.as_ref().is_none_or(|s| s == rec.state.as_str())
    }
}

/// A page of records, and what the whole store holds (for filters and summaries).
#[derive(Debug, Default)]
pub struct Selection {
    /// The page, in key order (app, stage, name).
    pub rows: Vec<(ResourceKey, Record)>,
    /// How many records match the filter (all pages).
    pub matching: usize,
    /// Every record's state, counted (unfiltered).
    pub by_state: BTreeMap<&'static str, usize>,
    /// Every app and its stages (unfiltered).
    pub apps: BTreeMap<String, BTreeSet<String>>,
    pub last_pass: Option<crate::time::Timestamp>,
    pub load_error: Option<String>,
}

/// One pass over the store: the page of `filter`, and the unfiltered counts. Memory holds the
/// page only (records are decoded one at a time).
pub fn select(store: &Store, filter: &Filter) -> Result<Selection, StoreError> {
    let mut sel = Selection {
        last_pass: store.last_pass()?,
        load_error: store.load_error()?,
        ..Selection::default()
    };
    let limit = filter.limit.unwrap_or(usize::MAX);
    for item in store.records() {
        let (key, rec) = item?;
        *sel.by_state.entry(rec.state.as_str()).or_insert(0) += 1;
        if !sel
            .apps
            .get(&key.app)
            .is_some_and(|s| s.contains(&key.stage))
        {
            sel.apps
                .entry(key.app.clone())
                .or_default()
                .insert(key.stage.clone());
        }
        if !filter.matches(&key, &rec) {
            continue;
        }
        if sel.matching >= filter.offset && sel.rows.len() < limit {
            sel.rows.push((key, rec));
        }
        sel.matching += 1;
    }
    Ok(sel)
}

/// [`status_json`] of a [`select`]ion, plus `total` (records matching the filter) and
/// `offset`.
pub fn selection_json(sel: &Selection, offset: usize) -> Value {
    let resources: Vec<Value> = sel
        .rows
        .iter()
        .map(|(k, r)| resource_json(k, r, sel.last_pass))
        .collect();
    json!({
        "resources": resources,
        "loadError": sel.load_error,
        "total": sel.matching,
        "offset": offset,
    })
}

/// One resource as CONTRACT.md's status JSON. Additions beyond the contract: `drift.history`
/// (the recorded drift events, oldest first, each `{at, changes, corrected}`), `lastError`,
/// `nextRetry` and `failures`.
pub fn resource_json(
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
        "drift": { "count": rec.drift_count, "last": last, "history": rec.drift_history },
        "message": message,
        "lastError": rec.last_error,
        "nextRetry": rec.next_retry,
        "failures": rec.failures,
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
