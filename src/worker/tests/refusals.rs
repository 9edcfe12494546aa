//! What the sources step refuses, and how it says so: specifiers it cannot follow, paths
//! that leave the root, files that do not parse, bad entries, too many or too large modules.

use super::*;

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
