//! Which modules a worker uploads, under which names: imports followed (type-only ones
//! dropped, cycles once), folders and entries anywhere in the root.

use super::*;

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
