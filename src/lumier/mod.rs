//! Lumier `$config` programs as manifests (issue 18).
//!
//! A manifest document `lumier: lumier.config.ts` + `stages: [...]` points at a config; for
//! each stage, [`evaluate`] runs the config's `app()` and `run({ stage })` in an embedded
//! QuickJS ([`engine`]; types stripped by oxc, [`strip`]; modules through [`hooks`]) inside a
//! child process ([`sandbox`], limited by [`confine`]), so a config that crashes the engine
//! is one load error, not a dead daemon; [`document::document`] turns the calls
//! it recorded into the same document tree a YAML stage manifest gives, and the manifest
//! validator checks that as it checks YAML. [`render::yaml`] prints the tree as YAML
//! (`lumierd render`). The pointer document itself is handled in `manifest::lumier`.

mod confine;
pub mod document;
pub mod engine;
mod hooks;
pub mod render;
pub mod sandbox;
mod strip;

pub use engine::{Evaluation, Failure, FailureKind, Input, CPU_LIMIT, MEMORY_LIMIT};
pub use sandbox::evaluate;
