//! Tests of the Worker sources step, on real files in temporary folders: the shared helpers
//! here, the cases by subject in the files beside.

mod hashing;
mod imports;
mod refusals;
mod transpile;

use std::fs;
use std::path::{Path, PathBuf};

use oxc::allocator::Allocator;
use oxc::parser::Parser;
use oxc::span::SourceType;

use super::*;

/// Writes `files` (path relative to the root → contents) under a new temporary root.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        write(dir.path(), path, content.as_bytes());
    }
    dir
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn names(bundle: &WorkerBundle) -> Vec<&str> {
    bundle.modules.iter().map(|m| m.name.as_str()).collect()
}

fn module<'b>(bundle: &'b WorkerBundle, name: &str) -> &'b Module {
    bundle
        .modules
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no module {name} in {:?}", names(bundle)))
}

fn text<'b>(bundle: &'b WorkerBundle, name: &str) -> &'b str {
    std::str::from_utf8(&module(bundle, name).content).unwrap()
}

/// Panics unless `code` parses as plain JavaScript (an ES module): proof that no TypeScript
/// syntax is left.
fn assert_plain_js(code: &str) {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, code, SourceType::mjs()).parse();
    assert!(
        parsed.diagnostics.is_empty() && !parsed.panicked,
        "not plain JavaScript: {:?}\n{code}",
        parsed.diagnostics
    );
}

fn build_err(root: &Path, entry: &str) -> String {
    build(root, &root.join(entry)).unwrap_err().to_string()
}

/// The error message with the (temporary) root path replaced by `ROOT`.
fn err_at(root: &Path, entry: &str) -> String {
    build_err(root, entry).replace(&root.display().to_string(), "ROOT")
}

const INDEX_TS: &str = r#"import { greet, type Greeting } from "./lib";
import data from "./data.json";

interface Env {
  GREETING: string;
}

enum Color {
  Red,
  Green = "green",
}

function first<T>(items: T[]): T | undefined {
  return items[0];
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const g: Greeting = greet(env.GREETING as string);
    return new Response(`${g} ${first<number>([1])} ${Color.Green} ${data.name}`);
  },
} satisfies ExportedHandler<Env>;
"#;

const LIB_TS: &str = r#"export type Greeting = string;
export function greet(name: string): Greeting {
  return `hello ${name}`;
}
"#;

fn app() -> tempfile::TempDir {
    tree(&[
        ("api/src/index.ts", INDEX_TS),
        ("api/src/lib.ts", LIB_TS),
        ("api/src/data.json", r#"{ "name": "lumierd" }"#),
        ("api/manifest.yaml", "unrelated: true\n"),
    ])
}
