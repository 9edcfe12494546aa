//! Checks across documents that need the whole snapshot: provider names that two resources
//! would share, service bindings that form a cycle, and `app.protect` entries that look like
//! a typo of a declared stage.
//!
//! Pure: takes the merged stages, returns diagnostics (each at the second place, naming the
//! first as `file:line:col`).

use super::desired::{BindingSpec, ResourceSpec, Stage, StageKey};
use super::names;
use super::yaml::Pos;
use super::Diagnostic;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Per app: the `protect` entries (each with its position) and the file that states them.
pub type ProtectEntries = BTreeMap<String, (Vec<(String, Pos)>, Arc<str>)>;

/// Service bindings that form a cycle (`a` binds `b` binds `a`, or a worker binding itself):
/// no order converges one before the other. One diagnostic per cycle, at the worker of the
/// cycle that sorts first, naming the whole cycle.
pub fn service_cycles(stages: &BTreeMap<StageKey, Stage>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for stage in stages.values() {
        let services = |name: &str| -> Vec<&str> {
            match stage.resources.get(name).map(|r| &r.spec) {
                Some(ResourceSpec::Worker(w)) => w
                    .bindings
                    .values()
                    .filter_map(|b| match b {
                        BindingSpec::Service(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        for start in stage.resources.keys() {
            if reported.contains(start.as_str()) {
                continue;
            }
            // Depth-first from `start`, looking for a path back to it.
            let mut stack: Vec<(&str, Vec<&str>)> = vec![(start.as_str(), vec![start.as_str()])];
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            while let Some((at, path)) = stack.pop() {
                for next in services(at) {
                    if next == start {
                        let mut cycle = path.clone();
                        cycle.push(next);
                        reported.extend(path.iter().copied());
                        if let Some(r) = stage.resources.get(start) {
                            diags.push(Diagnostic {
                                file: r.origin.file.to_string(),
                                pos: r.origin.pos,
                                message: format!(
                                    "service bindings of stage {} form a cycle: {}; a worker cannot be converged before itself: remove one of these bindings",
                                    stage.key,
                                    cycle.join(" → ")
                                ),
                            });
                        }
                        stack.clear();
                        break;
                    }
                    if seen.insert(next) {
                        let mut p = path.clone();
                        p.push(next);
                        stack.push((next, p));
                    }
                }
            }
        }
    }
    diags
}

/// Two resources whose provider names are equal: `{app}-{stage}-{name}` is not injective
/// (`a-b`/`c`/`d` and `a`/`b-c`/`d` both give `a-b-c-d`), and one Cloudflare namespace or
/// script cannot be two resources. Managed kv namespaces are compared by title, workers by
/// script name (the two live in separate Cloudflare namespaces); `existing` namespaces are not
/// named by lumierd and are left out.
pub fn provider_name_collisions(stages: &BTreeMap<StageKey, Stage>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    // provider name → the first resource that has it (stages and resources in sorted order,
    // so "first" is the same on every run).
    let mut titles: HashMap<String, &super::Resource> = HashMap::new();
    let mut scripts: HashMap<String, &super::Resource> = HashMap::new();
    for r in stages.values().flat_map(|s| s.resources.values()) {
        let (seen, what, fix) = match r.spec {
            ResourceSpec::Kv => (&mut titles, "KV namespace title", "namespace"),
            ResourceSpec::Worker(_) => (&mut scripts, "worker script name", "script"),
            ResourceSpec::KvExisting { .. } => continue,
        };
        let name = r.key.provider_name();
        match seen.get(&name) {
            Some(first) => diags.push(Diagnostic {
                file: r.origin.file.to_string(),
                pos: r.origin.pos,
                message: format!(
                    "{what} `{name}` of {} is also the {what} of {} at {}; one Cloudflare {fix} cannot be two resources: rename one of them (or its stage or app)",
                    r.key, first.key, first.origin
                ),
            }),
            None => {
                seen.insert(name, r);
            }
        }
    }
    diags
}

/// An `app.protect` entry that names no stage of its app but is close to one (edit distance,
/// as the key suggestions): `protect: [prodution]` would protect nothing. An entry far from
/// every declared stage is accepted (a stage may be protected before it is declared).
///
/// `protect` is, per app, the entries (with positions) and the file of the document that
/// stated them (documents of one app must agree, checked elsewhere).
pub fn protect_typos(
    stages: &BTreeMap<StageKey, Stage>,
    protect: &ProtectEntries,
) -> Vec<Diagnostic> {
    let mut declared: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for key in stages.keys() {
        declared.entry(&key.app).or_default().insert(&key.stage);
    }
    let mut diags = Vec::new();
    for (app, (entries, file)) in protect {
        let Some(stages_of_app) = declared.get(app.as_str()) else {
            continue;
        };
        let candidates: Vec<&str> = stages_of_app.iter().copied().collect();
        for (entry, pos) in entries {
            if stages_of_app.contains(entry.as_str()) {
                continue;
            }
            if let Some(near) = names::closest(entry, &candidates) {
                diags.push(Diagnostic {
                    file: file.to_string(),
                    pos: *pos,
                    message: format!(
                        "`app.protect` lists `{entry}`, but app `{app}` declares no such stage (so it would protect nothing); did you mean `{near}`?"
                    ),
                });
            }
        }
    }
    diags
}
