//! TypeScript → JavaScript for the engine, with a map back to the TypeScript positions.
//!
//! The same oxc pipeline as the worker step (parse, semantic early errors, TypeScript
//! transform, codegen), plus codegen's source map, kept as a plain table so that an engine
//! position (a stack frame's `line:col` in the printed JavaScript) can be turned back into the
//! line and column the user wrote. JavaScript files go through the same steps (printing them
//! again is harmless: they never leave the process).

use std::path::Path;

use oxc::allocator::Allocator;
use oxc::codegen::{Codegen, CodegenOptions};
use oxc::parser::Parser;
use oxc::semantic::SemanticBuilder;
use oxc::span::SourceType;
use oxc::transformer::{TransformOptions, Transformer};

/// A module ready for the engine.
#[derive(Debug, Clone)]
pub struct Stripped {
    /// The JavaScript the engine runs.
    pub code: String,
    /// (generated line, generated column, source line, source column), all 0-based, sorted by
    /// the generated position.
    map: Vec<(u32, u32, u32, u32)>,
}

impl Stripped {
    /// The source position (1-based line and column) of a 1-based generated position: the
    /// nearest mapped position at or before it on the same line (or the line's first mapping).
    pub fn original(&self, line: usize, col: usize) -> Option<(usize, usize)> {
        let line = u32::try_from(line.checked_sub(1)?).ok()?;
        let col = u32::try_from(col.saturating_sub(1)).ok()?;
        let on_line = self.map.iter().filter(|m| m.0 == line);
        let best = on_line
            .clone()
            .rev()
            .find(|m| m.1 <= col)
            .or_else(|| on_line.clone().next())?;
        // Within a mapped token the printed text is the source's, so the offset carries over.
        let delta = col.saturating_sub(best.1);
        Some((best.2 as usize + 1, (best.3 + delta) as usize + 1))
    }
}

/// Why a module could not be stripped: a message at a byte offset of the source.
#[derive(Debug, Clone)]
pub struct StripError {
    pub offset: u32,
    pub message: String,
    /// The module uses a refused global ([`REFUSED_GLOBALS`]), not a syntax error.
    pub refused: bool,
}

/// Globals a config may not use: they would reach a clock, randomness, the environment, the
/// network or files. Found statically (every value reference that no declaration binds), so
/// the error is at the exact use; `engine`'s prelude also replaces them at run time.
pub const REFUSED_GLOBALS: [&str; 25] = [
    "Date",
    "performance",
    "process",
    "fetch",
    "require",
    "module",
    "exports",
    "Buffer",
    "Deno",
    "Bun",
    "XMLHttpRequest",
    "WebSocket",
    "setTimeout",
    "setInterval",
    "setImmediate",
    "queueMicrotask",
    "crypto",
    "navigator",
    "WeakRef",
    "FinalizationRegistry",
    "os",
    "std",
    "__dirname",
    "__filename",
    "global",
];

/// Why a refused global is refused (shared with the engine's prelude).
pub const REFUSED_WHY: &str = "lumierd evaluates a config deterministically, with no clock, randomness, environment, network or file system";

/// Strips the types of `source` (TypeScript when `typescript`, else JavaScript), keeping a
/// position map. `file` is the transform's source path (it does not read it).
pub fn strip(file: &Path, source: &str, typescript: bool) -> Result<Stripped, StripError> {
    let allocator = Allocator::default();
    let source_type = if typescript {
        SourceType::ts().with_module(true)
    } else {
        SourceType::mjs()
    };
    let parsed = Parser::new(&allocator, source, source_type).parse();
    if let Some(d) = parsed.diagnostics.errors().next() {
        return Err(error(d));
    }
    if parsed.panicked {
        return Err(StripError {
            offset: 0,
            message: "the parser gave up on this file".to_owned(),
            refused: false,
        });
    }
    let mut program = parsed.program;
    let semantic = SemanticBuilder::new()
        .with_check_syntax_error(true)
        // Nodes: the refused-globals check reads a reference's span from its node.
        .with_build_nodes(true)
        .with_enum_eval(true)
        .build(&program);
    if let Some(d) = semantic.diagnostics.errors().next() {
        return Err(error(d));
    }
    if let Some(e) = refused_global(&semantic.semantic) {
        return Err(e);
    }
    let scoping = semantic.semantic.into_scoping();
    let options = TransformOptions::default();
    let transformed =
        Transformer::new(&allocator, file, &options).build_with_scoping(scoping, &mut program);
    if let Some(d) = transformed.diagnostics.errors().next() {
        return Err(error(d));
    }
    let printed = Codegen::new()
        .with_options(CodegenOptions {
            source_map_path: Some(file.to_path_buf()),
            ..CodegenOptions::default()
        })
        .build(&program);
    let map = printed.map.map_or_else(Vec::new, |m| {
        sorted(m.get_tokens().map(|t| {
            let (dst, src) = (
                (t.get_dst_line(), t.get_dst_col()),
                (t.get_src_line(), t.get_src_col()),
            );
            (dst.0, dst.1, src.0, src.1)
        }))
    });
    Ok(Stripped {
        code: printed.code,
        map,
    })
}

/// A parser, semantic or transform diagnostic as this file's error, at its primary label.
fn error(d: &oxc::diagnostics::OxcDiagnostic) -> StripError {
    let offset = d
        .labels
        .iter()
        .find(|l| l.primary())
        .or_else(|| d.labels.first())
        .map_or(0, |l| l.offset());
    let mut message = d.message.to_string();
    if let Some(help) = &d.help {
        message.push_str(&format!(" ({help})"));
    }
    StripError {
        offset,
        message,
        refused: false,
    }
}

/// The codegen's source-map tokens (printed line, col, source line, col), sorted.
fn sorted(tokens: impl Iterator<Item = (u32, u32, u32, u32)>) -> Vec<(u32, u32, u32, u32)> {
    let mut tokens: Vec<_> = tokens.collect();
    tokens.sort_unstable();
    tokens
}

/// The first value use (by offset) of a [`REFUSED_GLOBALS`] name that nothing declares.
fn refused_global(semantic: &oxc::semantic::Semantic<'_>) -> Option<StripError> {
    use oxc::span::GetSpan;
    let scoping = semantic.scoping();
    scoping
        .root_unresolved_references()
        .iter()
        .filter(|(name, _)| REFUSED_GLOBALS.contains(&name.as_str()))
        .flat_map(|(name, ids)| {
            ids.iter().filter_map(move |id| {
                let reference = scoping.get_reference(*id);
                reference.is_value().then(|| {
                    let span = semantic.nodes().get_node(reference.node_id()).span();
                    (span.start, name.as_str())
                })
            })
        })
        .min()
        .map(|(offset, name)| StripError {
            offset,
            message: format!("`{name}` is not available in a Lumier config: {REFUSED_WHY}"),
            refused: true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_positions_back_to_the_typescript() {
        let src = "type T = { a: string };\nconst x: T = { a: \"b\" };\nthrow new Error(x.a);\n";
        let s = strip(Path::new("a.ts"), src, true).unwrap();
        assert!(!s.code.contains("type T"), "{}", s.code);
        let line = s.code.lines().position(|l| l.contains("throw")).unwrap() + 1;
        let col = s.code.lines().nth(line - 1).unwrap().find("throw").unwrap() + 1;
        assert_eq!(s.original(line, col), Some((3, 1)));
    }

    #[test]
    fn refused_globals_are_found_at_their_first_use_unless_declared() {
        let e = strip(
            Path::new("a.ts"),
            "let d: Date;\nconst x = 1 + Date.now();",
            true,
        )
        .unwrap_err();
        assert!(e.refused && e.offset == 27, "{e:?}");
        let shadowed = "const process = { env: {} };\nexport const x = process.env;";
        assert!(strip(Path::new("a.ts"), shadowed, true).is_ok());
    }

    #[test]
    fn syntax_errors_have_an_offset() {
        let e = strip(Path::new("a.ts"), "const = 1;", true).unwrap_err();
        assert_eq!(e.offset, 6, "{}", e.message);
    }
}
