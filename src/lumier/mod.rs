//! Lumier `$config` programs as manifests (issue 18).
//!
//! A manifest document `lumier: lumier.config.ts` + `stages: [...]` points at a config; for
//! each stage, [`engine::evaluate`] runs the config's `app()` and `run({ stage })` in an
//! embedded QuickJS (types stripped by oxc, [`strip`]), [`document::document`] turns the calls
//! it recorded into the same document tree a YAML stage manifest gives, and the manifest
//! validator checks that as it checks YAML. [`render::yaml`] prints the tree as YAML
//! (`lumierd render`). The pointer document itself is handled in `manifest::lumier`.

pub mod document;
pub mod engine;
pub mod render;
mod strip;

pub use engine::{evaluate, Evaluation, Failure, FailureKind, Input, CPU_LIMIT, MEMORY_LIMIT};
