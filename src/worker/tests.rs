//! Tests of the Worker sources step, on real files in temporary folders.

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

#[test]
fn typescript_entry_with_types_enum_generics_and_imports() {
    let dir = app();
    let bundle = build(dir.path(), &dir.path().join("api/src/index.ts")).unwrap();
    assert_eq!(bundle.main_module, "index.js");
    assert_eq!(names(&bundle), ["data.json", "index.js", "lib.js"]);
    assert_eq!(
        module(&bundle, "index.js").content_type,
        "application/javascript+module"
    );
    assert_eq!(
        module(&bundle, "lib.js").content_type,
        "application/javascript+module"
    );
    assert_eq!(
        module(&bundle, "data.json").content_type,
        "application/json"
    );
    assert_eq!(
        module(&bundle, "data.json").content,
        br#"{ "name": "lumierd" }"#
    );

    let index = text(&bundle, "index.js");
    assert_plain_js(index);
    assert_plain_js(text(&bundle, "lib.js"));
    assert!(index.contains(r#"from "./lib.js""#), "{index}");
    assert!(index.contains(r#"from "./data.json""#), "{index}");
    for gone in [
        "interface",
        "Env>",
        ": string",
        "<T>",
        "satisfies",
        "Greeting",
        "as string",
    ] {
        assert!(!index.contains(gone), "{gone:?} left in:\n{index}");
    }
    // The enum became JavaScript.
    assert!(
        index.contains("Color[\"Red\"]") || index.contains("Color.Red"),
        "{index}"
    );
    assert!(!index.contains("enum "), "{index}");
    assert_eq!(
        bundle.total_size,
        bundle
            .modules
            .iter()
            .map(|m| m.content.len() as u64)
            .sum::<u64>()
    );
}

#[test]
fn type_only_imports_are_not_uploaded() {
    let dir = tree(&[
        (
            "w/index.ts",
            "import type { A } from './types';\nimport { B } from './more-types';\nexport type { C } from './types';\nexport const x = (a: A, b: B) => 1;\n",
        ),
        ("w/types.ts", "export interface A {}\nexport interface C {}\n"),
        ("w/more-types.ts", "export type B = number;\n"),
    ]);
    let bundle = build(dir.path(), &dir.path().join("w/index.ts")).unwrap();
    assert_eq!(names(&bundle), ["index.js"]);
}

#[test]
fn cycles_are_followed_once() {
    let dir = tree(&[
        (
            "w/a.ts",
            "import { b } from './b';\nexport const a = () => b();\n",
        ),
        (
            "w/b.ts",
            "import { a } from './a.ts';\nexport const b = () => a;\n",
        ),
    ]);
    let bundle = build(dir.path(), &dir.path().join("w/a.ts")).unwrap();
    assert_eq!(names(&bundle), ["a.js", "b.js"]);
    assert!(text(&bundle, "b.js").contains(r#""./a.js""#));
    assert!(text(&bundle, "a.js").contains(r#""./b.js""#));
}

#[test]
fn reexports_and_dynamic_imports() {
    let dir = tree(&[
        (
            "w/index.ts",
            "export * from './all';\nexport { one } from './one';\nexport * as ns from './ns';\nexport async function later() { return (await import('./lazy')).lazy; }\nexport const tpl = () => import(`./tpl`);\n",
        ),
        ("w/all.ts", "export const all: number = 1;\n"),
        ("w/one.ts", "export const one = 1;\n"),
        ("w/ns.ts", "export const n = 1;\n"),
        ("w/lazy.ts", "export const lazy = 'z';\n"),
        ("w/tpl.ts", "export const t = 't';\n"),
    ]);
    let bundle = build(dir.path(), &dir.path().join("w/index.ts")).unwrap();
    assert_eq!(
        names(&bundle),
        ["all.js", "index.js", "lazy.js", "ns.js", "one.js", "tpl.js"]
    );
    let index = text(&bundle, "index.js");
    for spec in [
        "\"./all.js\"",
        "\"./one.js\"",
        "\"./ns.js\"",
        "\"./lazy.js\"",
        "`./tpl.js`",
    ] {
        assert!(index.contains(spec), "{spec} missing in:\n{index}");
    }
    assert_plain_js(index);
}

#[test]
fn nested_folders_and_directory_index() {
    let dir = tree(&[
        (
            "w/index.ts",
            "import { up } from './util/strings';\nimport { v } from './util';\nexport default up(v);\n",
        ),
        (
            "w/util/strings.ts",
            "import { base } from '../lib';\nexport const up = (s: string) => s.toUpperCase() + base;\n",
        ),
        ("w/util/index.ts", "export const v = 'v';\n"),
        ("w/lib.mts", "export const base = 'b';\n"),
    ]);
    let bundle = build(dir.path(), &dir.path().join("w/index.ts")).unwrap();
    assert_eq!(
        names(&bundle),
        ["index.js", "lib.mjs", "util/index.js", "util/strings.js"]
    );
    assert!(text(&bundle, "index.js").contains("\"./util/strings.js\""));
    assert!(text(&bundle, "index.js").contains("\"./util/index.js\""));
    assert!(text(&bundle, "util/strings.js").contains("\"../lib.mjs\""));
}

#[test]
fn javascript_entry_is_kept_except_specifiers() {
    let source = "// my worker\nimport { f } from './f.js'; // f.ts on disk\nimport { g } from './f';\nimport page from './page.html';\nimport notes from \"./notes.txt\";\nimport wasm from './add.wasm';\nimport { DurableObject } from 'cloudflare:workers';\nimport { Buffer } from 'node:buffer';\nexport default { fetch() { return new Response(f() + g + page + notes + wasm + DurableObject + Buffer); } };\n";
    let dir = tree(&[
        ("w/index.js", source),
        ("w/f.ts", "export const f = (): string => 'f';\n"),
        ("w/page.html", "<p>hi</p>\n"),
        ("w/notes.txt", "notes\n"),
    ]);
    write(dir.path(), "w/add.wasm", b"\0asm\x01\0\0\0");
    let bundle = build(dir.path(), &dir.path().join("w/index.js")).unwrap();
    assert_eq!(
        names(&bundle),
        ["add.wasm", "f.js", "index.js", "notes.txt", "page.html"]
    );
    assert_eq!(
        text(&bundle, "index.js"),
        source.replace("'./f'", "\"./f.js\"")
    );
    assert_eq!(module(&bundle, "page.html").content_type, "text/plain");
    assert_eq!(module(&bundle, "notes.txt").content_type, "text/plain");
    assert_eq!(module(&bundle, "add.wasm").content_type, "application/wasm");
    assert_eq!(module(&bundle, "add.wasm").content, b"\0asm\x01\0\0\0");
}

#[test]
fn modules_outside_the_entry_folder_are_named_from_the_common_ancestor() {
    let dir = tree(&[
        (
            "api/src/index.ts",
            "import { s } from '../../shared/s';\nexport default s;\n",
        ),
        ("shared/s.ts", "export const s: string = 's';\n"),
    ]);
    let bundle = build(dir.path(), &dir.path().join("api/src/index.ts")).unwrap();
    assert_eq!(bundle.main_module, "api/src/index.js");
    assert_eq!(names(&bundle), ["api/src/index.js", "shared/s.js"]);
    assert!(text(&bundle, "api/src/index.js").contains("\"../../shared/s.js\""));
}

#[test]
fn relative_entry_and_root_paths_work() {
    let dir = app();
    let cwd_relative = |p: &Path| -> PathBuf {
        // A path relative to the current directory, through the filesystem root.
        let cwd = std::env::current_dir().unwrap();
        let ups = cwd.components().count() - 1;
        let mut rel = PathBuf::new();
        for _ in 0..ups {
            rel.push("..");
        }
        rel.join(p.strip_prefix("/").unwrap())
    };
    let root = cwd_relative(dir.path());
    let bundle = build(&root, &root.join("api/src/index.ts")).unwrap();
    assert_eq!(bundle.main_module, "index.js");
}

#[test]
fn bare_specifier_says_to_bundle_first() {
    let dir = tree(&[(
        "w/index.ts",
        "// hi\nimport { Hono } from 'hono';\nexport default new Hono();\n",
    )]);
    let msg = err_at(dir.path(), "w/index.ts");
    assert!(
        msg.starts_with("ROOT/w/index.ts:2:22: cannot import \"hono\""),
        "{msg}"
    );
    assert!(msg.contains("bundle the worker first"), "{msg}");
    assert!(msg.contains("point `entry` at the bundle"), "{msg}");
}

#[test]
fn absolute_and_url_specifiers_are_errors() {
    let dir = tree(&[
        ("w/a.ts", "import '/etc/passwd';\n"),
        ("w/b.ts", "import 'https://example.com/x.js';\n"),
    ]);
    let msg = err_at(dir.path(), "w/a.ts");
    assert!(
        msg.starts_with("ROOT/w/a.ts:1:8: cannot import \"/etc/passwd\": absolute paths"),
        "{msg}"
    );
    let msg = err_at(dir.path(), "w/b.ts");
    assert!(
        msg.starts_with("ROOT/w/b.ts:1:8: cannot import \"https://example.com/x.js\""),
        "{msg}"
    );
}

#[test]
fn missing_file_names_importer_and_specifier() {
    let dir = tree(&[
        (
            "w/index.ts",
            "import { a } from './a';\nexport default a;\n",
        ),
        ("w/a.ts", "export { b as a } from './nope.js';\n"),
    ]);
    let msg = err_at(dir.path(), "w/index.ts");
    assert!(
        msg.starts_with("ROOT/w/a.ts:1:24: cannot import \"./nope.js\": no such file (tried ROOT/w/nope.js, ROOT/w/nope.ts)"),
        "{msg}"
    );
}

#[test]
fn escape_through_dotdot_is_an_error_even_if_the_file_exists() {
    let outer = tempfile::tempdir().unwrap();
    write(outer.path(), "secret.ts", b"export const s = 1;\n");
    write(
        outer.path(),
        "root/w/index.ts",
        b"import { s } from '../../secret';\nexport default s;\n",
    );
    let root = outer.path().join("root");
    let msg = err_at(&root, "w/index.ts");
    let outer_path = outer.path().display().to_string();
    assert!(
        msg.starts_with("ROOT/w/index.ts:1:19: cannot import \"../../secret\": it resolves to "),
        "{msg}"
    );
    assert!(msg.contains(&format!("{outer_path}/secret")), "{msg}");
    assert!(msg.contains("outside the manifests root ROOT"), "{msg}");
}

#[cfg(unix)]
#[test]
fn escape_through_symlink_is_an_error() {
    let outer = tempfile::tempdir().unwrap();
    write(outer.path(), "secret.ts", b"export const s = 1;\n");
    write(
        outer.path(),
        "root/w/index.ts",
        b"import { s } from './link';\nexport default s;\n",
    );
    std::os::unix::fs::symlink(
        outer.path().join("secret.ts"),
        outer.path().join("root/w/link.ts"),
    )
    .unwrap();
    let root = outer.path().join("root");
    let msg = err_at(&root, "w/index.ts");
    assert!(
        msg.starts_with("ROOT/w/index.ts:1:19: cannot import \"./link\": it resolves to "),
        "{msg}"
    );
    assert!(
        msg.contains("secret.ts, outside the manifests root"),
        "{msg}"
    );

    // A symlinked directory leading out is caught the same way.
    std::os::unix::fs::symlink(outer.path(), root.join("w/out")).unwrap();
    write(&root, "w/two.ts", b"import './out/secret';\n");
    let msg = err_at(&root, "w/two.ts");
    assert!(
        msg.contains("cannot import \"./out/secret\": it resolves to"),
        "{msg}"
    );

    // An entry that is a symlink to outside the root.
    std::os::unix::fs::symlink(outer.path().join("secret.ts"), root.join("w/entry.ts")).unwrap();
    let msg = err_at(&root, "w/entry.ts");
    assert!(msg.contains("outside the manifests root"), "{msg}");
}

#[cfg(unix)]
#[test]
fn symlink_inside_the_root_is_followed() {
    let dir = tree(&[
        (
            "w/index.ts",
            "import { s } from './link';\nexport default s;\n",
        ),
        ("lib/real.ts", "export const s = 1;\n"),
    ]);
    std::os::unix::fs::symlink(dir.path().join("lib/real.ts"), dir.path().join("w/link.ts"))
        .unwrap();
    let bundle = build(dir.path(), &dir.path().join("w/index.ts")).unwrap();
    // Named after the real file, from the common ancestor.
    assert_eq!(names(&bundle), ["lib/real.js", "w/index.js"]);
    assert!(text(&bundle, "w/index.js").contains("\"../lib/real.js\""));
}

#[test]
fn syntax_error_has_line_and_column() {
    let dir = tree(&[
        ("w/index.ts", "import './bad';\n"),
        ("w/bad.ts", "export const ok = 1;\nconst x: number = ;\n"),
    ]);
    let msg = err_at(dir.path(), "w/index.ts");
    assert!(msg.starts_with("ROOT/w/bad.ts:2:19: "), "{msg}");
}

#[test]
fn early_errors_are_reported() {
    let dir = tree(&[("w/index.js", "let a = 1;\nlet a = 2;\n")]);
    let msg = err_at(dir.path(), "w/index.js");
    assert!(
        msg.starts_with("ROOT/w/index.js:1:5: Identifier `a` has already been declared"),
        "{msg}"
    );
    assert!(
        msg.contains("It can not be redeclared here at 2:5"),
        "{msg}"
    );
}

#[test]
fn non_utf8_source_is_a_clear_error() {
    let dir = tree(&[("w/index.ts", "import './latin1';\n")]);
    write(
        dir.path(),
        "w/latin1.ts",
        b"// ok\nconst s = '\xe9t\xe9';\n",
    );
    let msg = err_at(dir.path(), "w/index.ts");
    assert!(
        msg.starts_with("ROOT/w/latin1.ts:2:12: the file is not valid UTF-8"),
        "{msg}"
    );
}

#[test]
fn data_modules_are_checked() {
    let dir = tree(&[
        (
            "w/json.ts",
            "import d from './d.json';\nexport default d;\n",
        ),
        ("w/d.json", "{\n  \"a\": 1,\n}\n"),
        (
            "w/wasm.ts",
            "import m from './m.wasm';\nexport default m;\n",
        ),
        ("w/m.wasm", "not wasm"),
        (
            "w/cut.ts",
            "import m from './cut.wasm';\nexport default m;\n",
        ),
        // A header and a section that claims more bytes than the file has.
        ("w/cut.wasm", "\0asm\u{1}\0\0\0\u{1}\u{7}\u{1}"),
        ("w/css.ts", "import './style.css';\n"),
        ("w/style.css", "p {}"),
    ]);
    let msg = err_at(dir.path(), "w/json.ts");
    assert!(msg.starts_with("ROOT/w/d.json:3:1: invalid JSON"), "{msg}");
    let msg = err_at(dir.path(), "w/wasm.ts");
    assert!(
        msg.starts_with(
            "ROOT/w/m.wasm: not a valid WebAssembly module: it does not start with the \\0asm magic number"
        ),
        "{msg}"
    );
    let msg = err_at(dir.path(), "w/cut.ts");
    assert!(
        msg.starts_with("ROOT/w/cut.wasm: not a valid WebAssembly module: section 1 at byte 8 claims 7 bytes but the file ends before"),
        "{msg}"
    );
    let msg = err_at(dir.path(), "w/css.ts");
    assert!(
        msg.starts_with("ROOT/w/css.ts:1:8: cannot import \"./style.css\": ROOT/w/style.css is not a supported module type"),
        "{msg}"
    );
}

#[test]
fn entry_errors() {
    let dir = tree(&[("w/data.json", "{}"), ("w/index.ts", "")]);
    let msg = err_at(dir.path(), "w/missing.ts");
    assert!(
        msg.starts_with("ROOT/w/missing.ts: cannot open the worker entry"),
        "{msg}"
    );
    let msg = err_at(dir.path(), "w/data.json");
    assert!(
        msg.contains("must be a .js, .mjs, .ts or .mts file"),
        "{msg}"
    );
    let other = tree(&[("index.ts", "")]);
    let msg = build(&dir.path().join("w"), &other.path().join("index.ts"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("outside the manifests root"), "{msg}");
    // An empty entry is a valid (if useless) module.
    let bundle = build(dir.path(), &dir.path().join("w/index.ts")).unwrap();
    assert_eq!(names(&bundle), ["index.js"]);
}

#[test]
fn two_files_with_one_uploaded_name_are_an_error() {
    let dir = tree(&[
        ("w/index.ts", "import './lib.js';\nimport './lib.ts';\n"),
        ("w/lib.js", "export const a = 1;\n"),
        ("w/lib.ts", "export const a = 2;\n"),
    ]);
    let msg = err_at(dir.path(), "w/index.ts");
    assert!(
        msg.contains("would both be uploaded as module \"lib.js\"; rename one of them"),
        "{msg}"
    );
}

#[test]
fn module_count_and_size_are_bounded() {
    let dir = tree(&[
        (
            "w/index.ts",
            "import './a';\nimport './b';\nimport './c';\n",
        ),
        ("w/a.ts", "export const a = 'aaaaaaaaaaaaaaaaaaaa';\n"),
        ("w/b.ts", ""),
        ("w/c.ts", ""),
    ]);
    let entry = dir.path().join("w/index.ts");
    let limits = graph::Limits {
        max_modules: 3,
        max_total: 1 << 20,
        max_read: 1 << 20,
    };
    let msg = build_with_limits(dir.path(), &entry, &limits)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("w/index.ts:3:8: the worker reaches more than 3 modules"),
        "{msg}"
    );

    let limits = graph::Limits {
        max_modules: 10,
        max_total: 60,
        max_read: 1 << 20,
    };
    let msg = build_with_limits(dir.path(), &entry, &limits)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("over the limit of 60 bytes"), "{msg}");
    // The message names the modules to look at, largest first.
    assert!(
        msg.contains("; largest: ") && msg.contains("w/index.ts") && msg.contains("w/a.ts ("),
        "{msg}"
    );

    let limits = graph::Limits {
        max_modules: 10,
        max_total: 1 << 20,
        max_read: 50,
    };
    let msg = build_with_limits(dir.path(), &entry, &limits)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("w/a.ts: reading the worker's sources went over 50 bytes"),
        "{msg}"
    );
}

#[test]
fn content_hash_is_stable_and_tracks_uploaded_bytes_only() {
    let dir = app();
    let entry = dir.path().join("api/src/index.ts");
    let first = build(dir.path(), &entry).unwrap();
    let second = build(dir.path(), &entry).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.content_hash.len(), 64);
    assert!(first.content_hash.bytes().all(|b| b.is_ascii_hexdigit()));

    // A file the entry does not reach, and a change of formatting the transpiler erases.
    write(dir.path(), "api/manifest.yaml", b"unrelated: false\n");
    write(dir.path(), "api/src/unused.ts", b"export const u = 1;\n");
    assert_eq!(
        build(dir.path(), &entry).unwrap().content_hash,
        first.content_hash
    );

    write(
        dir.path(),
        "api/src/lib.ts",
        LIB_TS.replace("hello", "hi").as_bytes(),
    );
    let changed = build(dir.path(), &entry).unwrap();
    assert_ne!(changed.content_hash, first.content_hash);

    write(dir.path(), "api/src/lib.ts", LIB_TS.as_bytes());
    assert_eq!(
        build(dir.path(), &entry).unwrap().content_hash,
        first.content_hash
    );

    // A data module's bytes count too.
    write(dir.path(), "api/src/data.json", br#"{ "name": "other" }"#);
    assert_ne!(
        build(dir.path(), &entry).unwrap().content_hash,
        first.content_hash
    );
}

#[test]
fn content_hash_does_not_depend_on_the_location_of_the_tree() {
    let a = app();
    let b = app();
    let ha = build(a.path(), &a.path().join("api/src/index.ts")).unwrap();
    let hb = build(b.path(), &b.path().join("api/src/index.ts")).unwrap();
    assert_eq!(ha.content_hash, hb.content_hash);
}

#[test]
fn describe_and_check_size() {
    let dir = app();
    let bundle = build(dir.path(), &dir.path().join("api/src/index.ts")).unwrap();
    let lines = describe(&bundle);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "data.json (application/json, 21 bytes)");
    assert!(lines[1].starts_with("index.js (application/javascript+module, "));
    assert!(lines[1].ends_with(" bytes)"));

    assert!(check_size(&bundle, MAX_SIZE_FREE).is_ok());
    assert!(check_size(&bundle, bundle.total_size).is_ok());
    let msg = check_size(&bundle, bundle.total_size - 1)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("total {} bytes", bundle.total_size)),
        "{msg}"
    );
    let biggest = bundle
        .modules
        .iter()
        .max_by_key(|m| m.content.len())
        .unwrap();
    assert!(
        msg.contains(&format!(
            "largest: {} ({} bytes)",
            biggest.name,
            biggest.content.len()
        )),
        "{msg}"
    );
}

#[test]
fn typescript_commonjs_forms_are_errors() {
    let dir = tree(&[
        (
            "w/a.ts",
            "import type T = require('./t');\nimport cfg = require('./cfg');\nexport const c = cfg;\n",
        ),
        ("w/b.ts", "const x = 1;\nexport = x;\n"),
    ]);
    let msg = err_at(dir.path(), "w/a.ts");
    assert!(
        msg.starts_with("ROOT/w/a.ts:2:1: `import … = require(…)` is CommonJS"),
        "{msg}"
    );
    let msg = err_at(dir.path(), "w/b.ts");
    assert!(
        msg.starts_with("ROOT/w/b.ts:2:1: `export = …` is CommonJS"),
        "{msg}"
    );
}

#[test]
fn typescript_only_constructs_become_javascript() {
    let dir = tree(&[
        (
            "w/index.ts",
            "/// <reference types=\"@cloudflare/workers-types\" />\nimport './side';\nexport { default } from './d';\nexport type * from './types';\nconst enum E { A = 1 }\nnamespace N { export const x = 1; }\ndeclare module 'foo' {}\ndeclare const G: number;\nabstract class Base<T> { abstract get(): T; }\nclass K extends Base<number> { constructor(private readonly a: number) { super(); } get(): number { return this.a!; } }\nexport const v = E.A + N.x + new K(1).get();\n",
        ),
        ("w/side.ts", "console.log('side');\n"),
        ("w/d.ts", "export default 1;\n"),
        ("w/types.ts", "export type X = 1;\n"),
    ]);
    let bundle = build(dir.path(), &dir.path().join("w/index.ts")).unwrap();
    assert_eq!(names(&bundle), ["d.js", "index.js", "side.js"]);
    let index = text(&bundle, "index.js");
    assert_plain_js(index);
    assert!(index.contains("import \"./side.js\""), "{index}");
    assert!(
        index.contains("export { default } from \"./d.js\""),
        "{index}"
    );
}
