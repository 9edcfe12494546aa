//! TypeScript forms: what becomes plain JavaScript and what is refused.

use super::*;

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
