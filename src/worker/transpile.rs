//! In-process TypeScript stripping (oxc) and import-specifier rewriting.
//!
//! Contract of [`transpile`]:
//! - The source is parsed as an ES module (TypeScript or JavaScript), then checked by oxc's
//!   semantic builder (early errors). Any error becomes [`WorkerError::Syntax`] at the first
//!   labelled span, as `file:line:col`.
//! - TypeScript goes through oxc's TypeScript transform with default options: types,
//!   interfaces, generics, `import type`/`export type` and imports used only as types are
//!   removed, `enum`s become plain JavaScript, and the result is printed by oxc's codegen.
//!   Nothing is down-levelled (the Workers runtime is current V8).
//! - JavaScript is not re-printed: the only change is the specifiers, spliced into the
//!   original text, so the uploaded bytes are otherwise the user's own.
//! - Every static specifier that remains after the transform — `import … from`, `import "…"`,
//!   `export … from`, `export * from`, and `import()` whose argument is a string literal or a
//!   template literal without substitutions — is passed to `rewrite` with its byte offset, in
//!   source order. `rewrite` returns the replacement specifier (or `None` to leave it); its
//!   first error stops the work and is returned. `import()` of anything else (a variable, a
//!   template with substitutions) is [`WorkerError::DynamicImport`] at the `import(`: its
//!   targets cannot be known, so they would never be uploaded.

use std::path::Path;

use oxc::allocator::{Allocator, FromIn};
use oxc::ast::ast::{
    ExportAllDeclaration, ExportFromDeclaration, Expression, ImportDeclaration, ImportExpression,
    Program, Statement, StringLiteral, TSModuleReference,
};
use oxc::ast_visit::{walk_mut, VisitMut};
use oxc::codegen::Codegen;
use oxc::diagnostics::OxcDiagnostic;
use oxc::parser::Parser;
use oxc::semantic::SemanticBuilder;
use oxc::span::{SourceType, Span};
use oxc::str::Str;
use oxc::transformer::{TransformOptions, Transformer};

use super::error::{Location, WorkerError};

/// The language of a script module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    JavaScript,
    TypeScript,
}

/// Transpiles (TypeScript) and rewrites the specifiers of one module; see the module doc.
///
/// `file` is used for messages and as the transform's source path; `source` is the text.
pub(crate) fn transpile<F>(
    file: &Path,
    source: &str,
    language: Language,
    rewrite: F,
) -> Result<String, WorkerError>
where
    F: FnMut(&str, u32) -> Result<Option<String>, WorkerError>,
{
    let allocator = Allocator::default();
    let source_type = match language {
        Language::JavaScript => SourceType::mjs(),
        Language::TypeScript => SourceType::ts().with_module(true),
    };
    let syntax_error = |diagnostic: &OxcDiagnostic| syntax_error(file, source, diagnostic);

    let parsed = Parser::new(&allocator, source, source_type).parse();
    if let Some(d) = parsed.diagnostics.errors().next() {
        return Err(syntax_error(d));
    }
    if parsed.panicked {
        return Err(WorkerError::Syntax {
            at: Location::at(file, source, 0),
            message: "the parser gave up on this file".to_string(),
        });
    }
    let mut program = parsed.program;

    let semantic = SemanticBuilder::new()
        .with_check_syntax_error(true)
        .with_excess_capacity(2.0)
        .with_enum_eval(true)
        .build(&program);
    if let Some(d) = semantic.diagnostics.errors().next() {
        return Err(syntax_error(d));
    }

    if let Some((span, message)) = commonjs_syntax(&program) {
        return Err(WorkerError::Syntax {
            at: Location::at(file, source, span.start),
            message: message.to_string(),
        });
    }

    match language {
        Language::JavaScript => {
            let mut rewriter = Rewriter::new(&allocator, rewrite, Mode::Splice);
            rewriter.visit_program(&mut program);
            let edits = rewriter.finish(file, source)?;
            Ok(splice(source, edits))
        }
        Language::TypeScript => {
            let scoping = semantic.semantic.into_scoping();
            let options = TransformOptions::default();
            let transformed = Transformer::new(&allocator, file, &options)
                .build_with_scoping(scoping, &mut program);
            if let Some(d) = transformed.diagnostics.errors().next() {
                return Err(syntax_error(d));
            }
            let mut rewriter = Rewriter::new(&allocator, rewrite, Mode::Mutate);
            rewriter.visit_program(&mut program);
            rewriter.finish(file, source)?;
            Ok(Codegen::new().build(&program).code)
        }
    }
}

/// TypeScript's CommonJS forms, which would otherwise become `require`/`module.exports` that
/// the Workers ES-module runtime does not have and this traversal would not follow.
fn commonjs_syntax(program: &Program<'_>) -> Option<(Span, &'static str)> {
    program.body.iter().find_map(|statement| match statement {
        Statement::TSImportEqualsDeclaration(declaration)
            if declaration.import_kind.is_value()
                && matches!(
                    declaration.module_reference,
                    TSModuleReference::ExternalModuleReference(_)
                ) =>
        {
            Some((
                declaration.span,
                "`import … = require(…)` is CommonJS, which Workers ES modules cannot use; write `import … from \"…\"`",
            ))
        }
        Statement::TSExportAssignment(assignment) => Some((
            assignment.span,
            "`export = …` is CommonJS, which Workers ES modules cannot use; write `export default …`",
        )),
        _ => None,
    })
}

/// An oxc diagnostic as a located [`WorkerError::Syntax`].
fn syntax_error(file: &Path, source: &str, diagnostic: &OxcDiagnostic) -> WorkerError {
    let labels = &diagnostic.labels;
    let offset = labels
        .iter()
        .find(|label| label.primary())
        .or_else(|| labels.first())
        .map_or(0, |label| label.offset());
    let mut message = diagnostic.message.to_string();
    if labels.len() > 1 {
        // e.g. a redeclaration: say where each part is.
        for label in labels.iter() {
            let at = Location::at(file, source, label.offset());
            let text = label.label().unwrap_or("here");
            message.push_str(&format!("; {text} at {}:{}", at.line, at.column));
        }
    }
    if let Some(help) = &diagnostic.help {
        message.push_str(" (");
        message.push_str(help);
        message.push(')');
    }
    WorkerError::Syntax {
        at: Location::at(file, source, offset),
        message,
    }
}

/// Replaces `edits` (byte span → new text; non-overlapping) in `source`.
fn splice(source: &str, mut edits: Vec<(Span, String)>) -> String {
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = String::with_capacity(source.len());
    let mut at = 0usize;
    for (span, text) in edits {
        let (start, end) = (span.start as usize, span.end as usize);
        if start < at || end > source.len() {
            continue;
        }
        out.push_str(&source[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&source[at..]);
    out
}

/// A string literal that is always valid JavaScript (JSON strings are, since ES2019).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Record text edits against the original source (JavaScript).
    Splice,
    /// Change the AST in place before printing (TypeScript).
    Mutate,
}

/// Finds specifiers, asks `rewrite` for each, and applies the answer.
struct Rewriter<'a, F> {
    allocator: &'a Allocator,
    rewrite: F,
    mode: Mode,
    edits: Vec<(Span, String)>,
    error: Option<WorkerError>,
    /// Offset of the first `import()` whose path is computed (spans are the source's).
    computed_import: Option<u32>,
}

impl<'a, F> Rewriter<'a, F>
where
    F: FnMut(&str, u32) -> Result<Option<String>, WorkerError>,
{
    fn new(allocator: &'a Allocator, rewrite: F, mode: Mode) -> Self {
        Self {
            allocator,
            rewrite,
            mode,
            edits: Vec::new(),
            error: None,
            computed_import: None,
        }
    }

    /// The edits, or the first error: a rewrite error, else a computed `import()`.
    fn finish(self, file: &Path, source: &str) -> Result<Vec<(Span, String)>, WorkerError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(offset) = self.computed_import {
            return Err(WorkerError::DynamicImport {
                at: Location::at(file, source, offset),
            });
        }
        Ok(self.edits)
    }

    /// The replacement for `specifier` at `span`, or `None` (unchanged, or after an error).
    fn ask(&mut self, specifier: &str, span: Span) -> Option<String> {
        if self.error.is_some() {
            return None;
        }
        match (self.rewrite)(specifier, span.start) {
            Ok(Some(new)) if new != specifier => Some(new),
            Ok(_) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    fn string_literal(&mut self, literal: &mut StringLiteral<'a>) {
        let Some(new) = self.ask(literal.value.as_str(), literal.span) else {
            return;
        };
        match self.mode {
            Mode::Splice => self.edits.push((literal.span, quoted(&new))),
            Mode::Mutate => {
                literal.value = Str::from_in(new.as_str(), self.allocator);
                literal.raw = None;
            }
        }
    }

    fn dynamic(&mut self, import_start: u32, expression: &mut Expression<'a>) {
        match expression {
            Expression::StringLiteral(literal) => self.string_literal(literal),
            Expression::TemplateLiteral(template)
                if template.expressions.is_empty() && template.quasis.len() == 1 =>
            {
                let span = template.span;
                let Some(quasi) = template.quasis.first_mut() else {
                    return;
                };
                let Some(cooked) = quasi.value.cooked else {
                    return;
                };
                let Some(new) = self.ask(cooked.as_str(), span) else {
                    return;
                };
                match self.mode {
                    Mode::Splice => self.edits.push((span, quoted(&new))),
                    Mode::Mutate => {
                        let raw = new
                            .replace('\\', "\\\\")
                            .replace('`', "\\`")
                            .replace("${", "\\${");
                        quasi.value.raw = Str::from_in(raw.as_str(), self.allocator);
                        quasi.value.cooked = Some(Str::from_in(new.as_str(), self.allocator));
                    }
                }
            }
            _ => {
                self.computed_import.get_or_insert(import_start);
            }
        }
    }
}

impl<'a, F> VisitMut<'a> for Rewriter<'a, F>
where
    F: FnMut(&str, u32) -> Result<Option<String>, WorkerError>,
{
    fn visit_import_declaration(&mut self, it: &mut ImportDeclaration<'a>) {
        self.string_literal(&mut it.source);
        walk_mut::walk_import_declaration(self, it);
    }

    fn visit_export_from_declaration(&mut self, it: &mut ExportFromDeclaration<'a>) {
        self.string_literal(&mut it.source);
        walk_mut::walk_export_from_declaration(self, it);
    }

    fn visit_export_all_declaration(&mut self, it: &mut ExportAllDeclaration<'a>) {
        self.string_literal(&mut it.source);
        walk_mut::walk_export_all_declaration(self, it);
    }

    fn visit_import_expression(&mut self, it: &mut ImportExpression<'a>) {
        self.dynamic(it.span.start, &mut it.source);
        walk_mut::walk_import_expression(self, it);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, language: Language) -> Result<(String, Vec<String>), WorkerError> {
        let mut seen = Vec::new();
        let out = transpile(Path::new("t.ts"), source, language, |s, _| {
            seen.push(s.to_string());
            Ok(s.strip_suffix(".ts").map(|stem| format!("{stem}.js")))
        })?;
        Ok((out, seen))
    }

    #[test]
    fn strips_types_and_rewrites() {
        let (out, seen) = run(
            "import type { T } from './types.ts';\nimport { f } from './f.ts';\nexport const x: T = f<number>(1);\nexport * from './all.ts';\nexport { g } from './g.ts';\nconst m = import(`./dyn.ts`);\n",
            Language::TypeScript,
        )
        .unwrap();
        assert_eq!(seen, ["./f.ts", "./all.ts", "./g.ts", "./dyn.ts"]);
        assert!(out.contains("\"./f.js\""), "{out}");
        assert!(out.contains("`./dyn.js`"), "{out}");
        assert!(!out.contains("types"), "{out}");
        assert!(!out.contains(": T"), "{out}");
    }

    #[test]
    fn javascript_is_spliced_not_reprinted() {
        let src = "// keep me\nimport   {a}   from './a.ts' // trailing\nexport const b = () => import('./b.ts');\n";
        let (out, _) = run(src, Language::JavaScript).unwrap();
        assert_eq!(
            out,
            "// keep me\nimport   {a}   from \"./a.js\" // trailing\nexport const b = () => import(\"./b.js\");\n"
        );
    }

    #[test]
    fn computed_dynamic_imports_are_errors() {
        for (src, col) in [
            (
                "const n = 'a';\nexport const p = import(`./plugins/${n}.js`);\n",
                18,
            ),
            ("export const p = (n) => import('./plugins/' + n);\n", 25),
            ("export const p = (n) => import(n);\n", 25),
        ] {
            for language in [Language::JavaScript, Language::TypeScript] {
                let err = run(src, language).unwrap_err();
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!(":{col}: `import()` of a computed path"))
                        && msg.contains("write a literal path"),
                    "{src}: {msg}"
                );
            }
        }
    }

    #[test]
    fn rewrite_error_stops() {
        let err = transpile(
            Path::new("t.js"),
            "import './a';\nimport './b';\n",
            Language::JavaScript,
            |s, offset| {
                Err(WorkerError::Syntax {
                    at: Location::at(Path::new("t.js"), "", offset),
                    message: s.to_string(),
                })
            },
        )
        .unwrap_err();
        assert!(err.to_string().ends_with("./a"), "{err}");
    }
}
