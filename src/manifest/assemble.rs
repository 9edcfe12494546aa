//! Merging decoded documents into one [`Desired`] snapshot, and the checks that span
//! documents: `app.protect` agreement, stage `drift` agreement, names declared twice,
//! binding references (`{ kv: X }`, `{ service: X }`) to resources of the right kind in the
//! stage, then the cross-checks of [`crosscheck`](super::crosscheck).

use std::collections::BTreeMap;

use litemap::LiteMap;

use super::decode::{DocDecl, KindDecl, ResourceDecl};
use super::{
    crosscheck, BindingSpec, Desired, Diagnostic, DriftMode, Origin, Pos, Resource, ResourceKey,
    ResourceSpec, Stage, StageKey, WorkerSpec,
};

/// app → (its protect list, sorted, and where it was first stated as `file:line:col`).
type ProtectLists = BTreeMap<String, (Vec<String>, String)>;

/// (stage, worker, binding) → position of the binding's value, for reference errors.
type BindingPositions = BTreeMap<(StageKey, String, String), Pos>;

/// `file:line:col`.
fn at(file: &str, pos: Pos) -> String {
    format!("{file}:{}:{}", pos.line, pos.col)
}

/// Merges the documents into stages and checks what spans documents: `app.protect`
/// agreement, stage `drift` agreement, names declared twice, and `{ kv: X }` references.
pub(super) fn assemble(docs: Vec<DocDecl>, diags: &mut Vec<Diagnostic>) -> Desired {
    let (protect, protect_entries) = protect_lists(&docs, diags);
    let (stages, binding_pos) = merge(docs, &protect, diags);
    check_references(&stages, &binding_pos, diags);
    diags.extend(crosscheck::service_cycles(&stages));
    diags.extend(crosscheck::provider_name_collisions(&stages));
    diags.extend(crosscheck::protect_typos(&stages, &protect_entries));
    Desired {
        stages,
        protect: protect
            .into_iter()
            .map(|(app, (list, _))| (app, list))
            .collect(),
    }
}

/// Each app's protect list, from the first document that states one; a later document that
/// states another list is an error.
fn protect_lists(
    docs: &[DocDecl],
    diags: &mut Vec<Diagnostic>,
) -> (ProtectLists, crosscheck::ProtectEntries) {
    let mut protect: ProtectLists = BTreeMap::new();
    // app → the entries of the first document that states them, with positions and file.
    let mut protect_entries = crosscheck::ProtectEntries::new();
    for doc in docs {
        let Some((entries, pos)) = &doc.protect else {
            continue;
        };
        let list: Vec<String> = entries.iter().map(|(s, _)| s.clone()).collect();
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        match protect.get(&doc.app) {
            None => {
                protect.insert(doc.app.clone(), (sorted, at(&doc.file, *pos)));
                protect_entries.insert(doc.app.clone(), (entries.clone(), doc.file.clone()));
            }
            Some((first, first_at)) if *first != sorted => diags.push(Diagnostic {
                file: doc.file.to_string(),
                pos: *pos,
                message: format!(
                    "app `{}` has protect [{}] here but [{}] at {first_at}; make every document of the app agree",
                    doc.app,
                    list.join(", "),
                    first.join(", ")
                ),
            }),
            Some(_) => {}
        }
    }
    (protect, protect_entries)
}

/// The documents merged into stages, with where each binding's value was written.
fn merge(
    docs: Vec<DocDecl>,
    protect: &ProtectLists,
    diags: &mut Vec<Diagnostic>,
) -> (BTreeMap<StageKey, Stage>, BindingPositions) {
    let mut stages: BTreeMap<StageKey, Stage> = BTreeMap::new();
    // Each stage's resources while documents are merged (see below).
    let mut members: BTreeMap<StageKey, BTreeMap<String, Resource>> = BTreeMap::new();
    let mut stage_drift: BTreeMap<StageKey, (DriftMode, String)> = BTreeMap::new();
    let mut binding_pos = BindingPositions::new();
    for doc in docs {
        let key = StageKey {
            app: doc.app.clone(),
            stage: doc.stage.clone(),
        };
        if let Some((mode, pos)) = doc.drift {
            match stage_drift.get(&key) {
                Some((first, first_at)) if *first != mode => diags.push(Diagnostic {
                    file: doc.file.to_string(),
                    pos,
                    message: format!(
                        "stage {key} has `drift: {}` here but `drift: {}` at {first_at}; make them agree",
                        mode_name(mode),
                        mode_name(*first)
                    ),
                }),
                Some(_) => {}
                None => {
                    stage_drift.insert(key.clone(), (mode, at(&doc.file, pos)));
                }
            }
        }
        let protected = protect
            .get(&doc.app)
            .is_some_and(|(list, _)| list.contains(&doc.stage));
        let stage = stages.entry(key.clone()).or_insert_with(|| Stage {
            key: key.clone(),
            protected,
            drift: None,
            resources: LiteMap::new(),
        });
        stage.drift = stage_drift.get(&key).map(|(m, _)| *m);
        let members = members.entry(key.clone()).or_default();
        for r in doc.resources {
            add_member(&key, &doc.file, r, members, &mut binding_pos, diags);
        }
    }
    // Built in trees (inserts in any order), kept in sorted vectors (compact).
    for (key, members) in members {
        if let Some(stage) = stages.get_mut(&key) {
            stage.resources = members.into_iter().collect();
        }
    }
    (stages, binding_pos)
}

/// Adds resource `r` of a document in `file` to its stage's `members`, unless the stage
/// already declares that name (an error).
fn add_member(
    key: &StageKey,
    file: &std::sync::Arc<str>,
    r: ResourceDecl,
    members: &mut BTreeMap<String, Resource>,
    binding_pos: &mut BindingPositions,
    diags: &mut Vec<Diagnostic>,
) {
    let origin = Origin {
        file: file.clone(),
        pos: r.pos,
    };
    if let Some(first) = members.get(&r.name) {
        diags.push(Diagnostic {
            file: file.to_string(),
            pos: r.pos,
            message: format!(
                "resource `{}` of stage {key} is declared twice: here and at {}; remove one",
                r.name, first.origin
            ),
        });
        return;
    }
    let spec = match r.kind {
        KindDecl::Kv => ResourceSpec::Kv,
        KindDecl::KvExisting { id } => ResourceSpec::KvExisting { id },
        KindDecl::Worker {
            entry,
            entry_path,
            bindings,
            compatibility_date,
            compatibility_flags,
            secrets,
            workers_dev,
        } => {
            // References are checked once the stage is whole (`check_references`).
            for (n, _, p) in &bindings {
                binding_pos.insert((key.clone(), r.name.clone(), n.clone()), *p);
            }
            ResourceSpec::Worker(WorkerSpec {
                entry,
                entry_path,
                bindings: bindings.into_iter().map(|(n, b, _)| (n, b)).collect(),
                compatibility_date,
                compatibility_flags,
                secrets,
                workers_dev,
            })
        }
    };
    members.insert(
        r.name.clone(),
        Resource {
            key: ResourceKey {
                app: key.app.clone(),
                stage: key.stage.clone(),
                name: r.name,
            },
            spec,
            drift: r.drift,
            origin,
        },
    );
}

/// Every `{ kv: X }` and `{ service: X }` binding names a resource of that kind in its stage.
fn check_references(
    stages: &BTreeMap<StageKey, Stage>,
    binding_pos: &BindingPositions,
    diags: &mut Vec<Diagnostic>,
) {
    for stage in stages.values() {
        for r in stage.resources.values() {
            let ResourceSpec::Worker(w) = &r.spec else {
                continue;
            };
            for (binding, spec) in &w.bindings {
                let (target, wanted) = match spec {
                    BindingSpec::Kv(target) => (target, "kv"),
                    BindingSpec::Service(target) => (target, "worker"),
                    BindingSpec::Text(_) | BindingSpec::Json(_) | BindingSpec::Secret(_) => {
                        continue
                    }
                };
                let problem = match stage.resources.get(target) {
                    Some(t) if t.spec.type_name() == wanted => continue,
                    Some(t) => format!(
                        "`{target}` is a {}, not a {wanted} resource",
                        t.spec.type_name()
                    ),
                    None => format!("stage {} declares no resource `{target}`", stage.key),
                };
                let pos = binding_pos
                    .get(&(stage.key.clone(), r.key.name.clone(), binding.clone()))
                    .copied()
                    .unwrap_or(r.origin.pos);
                diags.push(Diagnostic {
                    file: r.origin.file.to_string(),
                    pos,
                    message: format!(
                        "worker `{}` binding `{binding}`: {problem}; declare `{target}: {{ type: {wanted} }}` in this stage or fix the name",
                        r.key.name
                    ),
                });
            }
        }
    }
}

fn mode_name(mode: DriftMode) -> &'static str {
    match mode {
        DriftMode::Correct => "correct",
        DriftMode::Report => "report",
    }
}
