//! The order a pass starts reconciles in, from the kinds' dependency edges. Pure.
//!
//! Every resource comes after the resources it binds — that is what keeps a bounded window of
//! reconciles from filling with dependents waiting on dependencies not yet started. Within
//! that rule, what an edit touched (`first`, and what it binds) goes before the rest.

use crate::manifest::{Desired, Resource, ResourceKey, Stage};
use crate::resources::Reconciler;
use std::collections::{HashMap, HashSet};

/// The resources of `desired` in the order a pass starts them, and the set of resources
/// something depends on (those publish their value for their dependents).
pub struct PassOrder<'a> {
    pub order: Vec<(&'a Stage, &'a Resource)>,
    pub depended_on: HashSet<&'a ResourceKey>,
}

/// Names (in the same stage) that `resource` binds.
fn dependencies(resource: &Resource) -> Vec<&str> {
    crate::with_kind!(&resource.spec, |K, spec| K::dependencies(spec))
}

pub fn pass_order<'a>(desired: &'a Desired, first: &HashSet<ResourceKey>) -> PassOrder<'a> {
    let mut depended_on: HashSet<&ResourceKey> = HashSet::new();
    let mut depth: HashMap<&ResourceKey, usize> = HashMap::new();
    for stage in desired.stages.values() {
        for r in stage.resources.values() {
            for dep in dependencies(r) {
                if let Some(d) = stage.resources.get(dep) {
                    depended_on.insert(&d.key);
                }
            }
            depth_of(stage, r, &mut depth, 0);
        }
    }
    // What `first` names, and everything it binds (transitively), is urgent.
    let mut urgent: HashSet<&ResourceKey> = HashSet::new();
    let mut todo: Vec<&Resource> = first.iter().filter_map(|k| desired.resource(k)).collect();
    while let Some(r) = todo.pop() {
        if !urgent.insert(&r.key) {
            continue;
        }
        if let Some(stage) = desired.stage(&r.key.stage_key()) {
            todo.extend(
                dependencies(r)
                    .into_iter()
                    .filter_map(|d| stage.resources.get(d)),
            );
        }
    }
    let mut order: Vec<(&Stage, &Resource)> = desired
        .stages
        .values()
        .flat_map(|stage| stage.resources.values().map(move |r| (stage, r)))
        .collect();
    // Stable: (app, stage, name) order within a class.
    order.sort_by_key(|(_, r)| {
        (
            !urgent.contains(&r.key),
            depth.get(&r.key).copied().unwrap_or(0),
        )
    });
    PassOrder { order, depended_on }
}

/// How many dependency edges lie below `r` (0: binds nothing). Validation refuses cycles; a
/// cycle that slipped through is cut at the manifest's own bound on nesting.
fn depth_of<'a>(
    stage: &'a Stage,
    r: &'a Resource,
    memo: &mut HashMap<&'a ResourceKey, usize>,
    level: usize,
) -> usize {
    if let Some(d) = memo.get(&r.key) {
        return *d;
    }
    if level > 64 {
        return 0;
    }
    let d = dependencies(r)
        .into_iter()
        .filter_map(|dep| stage.resources.get(dep))
        .map(|dep| depth_of(stage, dep, memo, level + 1) + 1)
        .max()
        .unwrap_or(0);
    memo.insert(&r.key, d);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_comes_after_the_namespaces_it_binds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.js"), "export default {};\n").unwrap();
        std::fs::write(
            dir.path().join("m.yaml"),
            "app: { name: a }\nstage: s\nresources:\n  k1: { type: kv }\n  k2: { type: kv }\n  k3: { type: kv }\n  w1: { type: worker, entry: w.js, bindings: { A: { kv: k1 } } }\n  w2: { type: worker, entry: w.js, bindings: { A: { kv: k2 }, B: { kv: k3 } } }\n",
        )
        .unwrap();
        let desired = crate::manifest::load(dir.path()).unwrap().desired;
        let key = |n: &str| ResourceKey {
            app: "a".into(),
            stage: "s".into(),
            name: n.into(),
        };
        let names = |first: &[&str]| -> Vec<String> {
            let first: HashSet<ResourceKey> = first.iter().map(|n| key(n)).collect();
            pass_order(&desired, &first)
                .order
                .iter()
                .map(|(_, r)| r.key.name.clone())
                .collect()
        };
        assert_eq!(names(&[]), ["k1", "k2", "k3", "w1", "w2"]);
        assert_eq!(names(&["w2"]), ["k2", "k3", "w2", "k1", "w1"]);
        assert_eq!(names(&["k1", "w2"]), ["k1", "k2", "k3", "w2", "w1"]);
        for first in [vec![], vec!["w2"], vec!["w1", "k3"]] {
            let order = names(&first);
            let at = |n: &str| order.iter().position(|x| x == n).unwrap();
            assert!(
                at("k1") < at("w1") && at("k2") < at("w2") && at("k3") < at("w2"),
                "{order:?}"
            );
        }
        let depended: HashSet<String> = pass_order(&desired, &HashSet::new())
            .depended_on
            .iter()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(depended, ["k1", "k2", "k3"].map(String::from).into());
    }
}
