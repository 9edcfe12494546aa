//! The commands that read manifests and need neither network nor state: `validate` (exit 2
//! on any problem, all of them listed), `render` (Lumier configs as YAML manifests) and
//! `schema` (the manifest format's JSON Schema).

use std::io::Write;

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::manifest::{self, LoadError};

/// `lumierd validate DIR`: every manifest and worker built; the problems, all of them.
pub(super) fn validate(dir: &std::path::Path, allow_empty: bool) -> i32 {
    let options = manifest::LoadOptions { allow_empty };
    match crate::source::load_with(dir, &options) {
        Ok(loaded) => {
            for file in &loaded.unclassified {
                eprintln!(
                    "note: {}: a worker module, not a stage manifest",
                    manifest::text::escape(&file.display)
                );
            }
            println!("ok: {}", loaded.desired.summary());
            EXIT_OK
        }
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} problem{} in manifests under {}",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" },
                manifest::text::escape(&dir.display().to_string())
            );
            EXIT_USAGE
        }
        Err(e @ (LoadError::Root { .. } | LoadError::Empty { .. })) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// `lumierd render DIR`: the stage manifests the Lumier configs under DIR are equivalent to.
pub(super) fn render(dir: &std::path::Path, stage: Option<&str>) -> i32 {
    let options = manifest::LoadOptions { allow_empty: true };
    let loaded = match manifest::load_with(dir, &options) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "error: {} problem(s) in manifests under {}",
                diags.len(),
                manifest::text::escape(&dir.display().to_string())
            );
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let chosen: Vec<_> = loaded
        .lumier_rendered
        .iter()
        .filter(|r| stage.is_none_or(|s| s == r.stage))
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "error: no Lumier config{} under {}; a manifest document `lumier: lumier.config.ts` with `stages: [...]` points at one",
            stage.map(|s| format!(" with stage `{}`", manifest::text::escape(s))).unwrap_or_default(),
            manifest::text::escape(&dir.display().to_string())
        );
        return EXIT_USAGE;
    }
    let mut out = std::io::stdout().lock();
    for r in chosen {
        if let Err(e) = out.write_all(r.yaml.as_bytes()) {
            eprintln!("error: writing the manifests: {e}");
            return EXIT_FAILURE;
        }
    }
    EXIT_OK
}

/// `lumierd schema`: the manifest format's JSON Schema on stdout.
pub(super) fn schema() -> i32 {
    let schema = manifest::schema::manifest_schema();
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer_pretty(&mut out, &schema)
        .and_then(|()| writeln!(out).map_err(serde_json::Error::io))
    {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: writing the schema: {e}");
            EXIT_FAILURE
        }
    }
}
