//! A TypeScript worker from manifest to the provider: the real binary builds its modules
//! (types stripped in-process, relative imports followed) and uploads them; the test reads them
//! back through the local API's content download, as another client would.

use crate::support::{run_in, Api};
use lumierd::local_api::Faults;
use std::path::Path;
use std::time::Duration;

const INDEX: &str = r#"import { greet, Shape, area } from "./lib";
import data from "./data.json";

interface Env { STAGE: string }

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const s: Shape = Shape.Square;
    return new Response(`${greet<string>(env.STAGE)} ${area(s, 2)} ${data.greeting}`);
  },
};
"#;

const LIB: &str = r#"export enum Shape { Square, Circle }

export type Named = { name: string };

export function greet<T extends string>(who: T): string {
  return "hello " + who;
}

export function area(shape: Shape, size: number): number {
  return shape === Shape.Square ? size * size : 3.14 * size * size;
}
"#;

fn write_worker(root: &Path) {
    let m = root.join("m");
    std::fs::create_dir_all(m.join("src")).unwrap();
    std::fs::write(m.join("src/index.ts"), INDEX).unwrap();
    std::fs::write(m.join("src/lib.ts"), LIB).unwrap();
    std::fs::write(m.join("src/data.json"), r#"{"greeting": "hi"}"#).unwrap();
    std::fs::write(m.join("src/unrelated.ts"), "export const x: number = 1;\n").unwrap();
    std::fs::write(
        m.join("stage.yaml"),
        "app: { name: shop }\nstage: dev\nresources:\n  api:\n    type: worker\n    entry: src/index.ts\n    bindings: { STAGE: \"${stage}\" }\n",
    )
    .unwrap();
}

fn uploads(api: &Api) -> usize {
    api.log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/workers/scripts/shop-dev-api"))
        .count()
}

/// The modules of the uploaded script, read back with the real client: name → (type, text).
async fn download(api: &Api) -> (Option<String>, Vec<(String, String, String)>) {
    let client = api.client();
    let content = client.get_content("shop-dev-api").await.unwrap();
    let mut modules: Vec<(String, String, String)> = content
        .modules
        .into_iter()
        .map(|m| {
            (
                m.name,
                m.content_type,
                String::from_utf8(m.content).unwrap(),
            )
        })
        .collect();
    modules.sort();
    (content.main_module, modules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_worker_uploads_its_modules_and_only_real_changes_reupload() {
    let api = Api::start(Faults::default()).await;
    let base = api.base.clone();
    let dir = tempfile::tempdir().unwrap();
    write_worker(dir.path());
    let once = |dir: &Path| {
        let args = [
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            base.as_str(),
        ];
        tokio::task::block_in_place(|| run_in(dir, &args, Duration::from_secs(120)))
    };

    let out = once(dir.path());
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(uploads(&api), 1);
    let (main, modules) = download(&api).await;
    assert_eq!(main.as_deref(), Some("index.js"));
    let names: Vec<(&str, &str)> = modules
        .iter()
        .map(|(n, t, _)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("data.json", "application/json"),
            ("index.js", "application/javascript+module"),
            ("lib.js", "application/javascript+module"),
        ]
    );
    let index = &modules[1].2;
    assert!(
        index.contains("\"./lib.js\""),
        "specifier rewritten: {index}"
    );
    assert!(index.contains("\"./data.json\""), "{index}");
    assert!(!index.contains("interface Env"), "types stripped: {index}");
    assert!(!index.contains(": Promise<Response>"), "{index}");
    let lib = &modules[2].2;
    assert!(lib.contains("Shape"), "{lib}");
    assert!(!lib.contains("export type Named"), "{lib}");
    assert!(!lib.contains("<T extends string>"), "{lib}");
    assert_eq!(modules[0].2, r#"{"greeting": "hi"}"#);
    assert!(!modules.iter().any(|(n, _, _)| n.contains("unrelated")));

    // Touching a file the worker does not import uploads nothing.
    std::fs::write(
        dir.path().join("m/src/unrelated.ts"),
        "export const x: number = 2;\n",
    )
    .unwrap();
    let out = once(dir.path());
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(uploads(&api), 1, "an unrelated edit re-uploaded");

    // Editing only lib.ts re-uploads, with the new code.
    std::fs::write(
        dir.path().join("m/src/lib.ts"),
        LIB.replace("hello ", "hey "),
    )
    .unwrap();
    let out = once(dir.path());
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(uploads(&api), 2, "a lib.ts edit did not re-upload");
    let (_, modules) = download(&api).await;
    assert!(modules[2].2.contains("\"hey \""), "{}", modules[2].2);
    api.stop().await;
}

#[test]
fn plan_lists_the_modules_a_worker_would_upload() {
    let dir = tempfile::tempdir().unwrap();
    write_worker(dir.path());
    let out = run_in(
        dir.path(),
        &["plan", "--manifests", "m", "--state", "state"],
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 1, "changes pending: {out:?}");
    assert!(out.stdout.contains("create shop/dev/api"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("module index.js (application/javascript+module"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("module lib.js (application/javascript+module"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("module data.json (application/json"),
        "{}",
        out.stdout
    );
}
