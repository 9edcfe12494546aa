//! Runs a Lumier config in an embedded QuickJS (rquickjs) and returns what it recorded.
//!
//! | what the config does | result |
//! | --- | --- |
//! | `import … from "lumier"` | the in-process module `lumier.js` (`$config`, `KV`, `KV.existing`, `Worker`) |
//! | `import … from "./x"` / `"../x.ts"` inside the manifests root | the file, types stripped by oxc (`.ts`, `.mts`, `.js`, `.mjs`; `./x` tries `x.ts`, `x.js`, `x/index.ts`, `x/index.js`) |
//! | any other import (`fs`, `node:*`, a URL, a path outside the root) | [`FailureKind::Import`] at the specifier |
//! | `Date`, `performance`, `process`, `fetch`, `require`, timers, `crypto`, ... | [`FailureKind::Global`] at the use, found before running (no clock, randomness, environment, network or files) |
//! | `Math.random()` | a `ReferenceError` at the call |
//! | runs longer than [`CPU_LIMIT`] | [`FailureKind::Cpu`] at the running line |
//! | allocates more than [`MEMORY_LIMIT`] | [`FailureKind::Memory`] |
//! | a syntax error | [`FailureKind::Syntax`] at the TypeScript position |
//! | a thrown exception | [`FailureKind::Exception`] at the TypeScript position of the throw |
//! | `KV()` without a name, `Worker` without `entry`, ... | [`FailureKind::Shape`] at the call |
//!
//! Every position is in the file the user wrote: engine positions (in the JavaScript oxc
//! printed) go back through the strip step's source map. The same files give the same result:
//! nothing non-deterministic is reachable from the config.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::loader::{Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Context, Ctx, Module, Object, Runtime, Value};
use serde::Deserialize;

use super::strip::{strip, Stripped};
use crate::manifest::Pos;

/// Longest an evaluation may run (wall time, checked by the engine's interrupt hook).
pub const CPU_LIMIT: Duration = Duration::from_secs(2);
/// Most memory the engine may allocate for one evaluation, in bytes.
pub const MEMORY_LIMIT: usize = 64 * 1024 * 1024;
/// Largest config or imported file, in bytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Deepest native stack the engine may use, in bytes (deep recursion becomes a RangeError).
const MAX_STACK_BYTES: usize = 512 * 1024;

const LUMIER_MODULE: &str = "lumier";
const DRIVER: &str = "<lumierd>";
const LUMIER_JS: &str = include_str!("lumier.js");

/// Globals removed before the config runs: each reads as a ReferenceError that says why.
/// Run before the config: replaces each of `names` (the JSON list of
/// [`REFUSED_GLOBALS`](super::strip::REFUSED_GLOBALS)) by a stand-in that throws on use, and
/// `Math.random` by a function that throws. The static check finds plain uses first; this
/// catches the rest (`globalThis["process"]`).
const PRELUDE: &str = r#"((names, why) => {
  for (const name of names) {
    const refuse = () => {
      throw new ReferenceError("`" + name + "` is not available in a Lumier config: " + why);
    };
    const standIn = new Proxy(function () {}, {
      get: refuse, set: refuse, has: refuse, apply: refuse, construct: refuse,
      ownKeys: refuse, getPrototypeOf: refuse, defineProperty: refuse, deleteProperty: refuse,
    });
    try { delete globalThis[name]; } catch (_) {}
    try {
      Object.defineProperty(globalThis, name, { value: standIn, writable: false, configurable: false });
    } catch (_) {}
  }
  Math.random = function random() {
    throw new ReferenceError("`Math.random` is not available in a Lumier config: " + why);
  };
})"#;

/// What kind of failure an evaluation met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Syntax,
    /// A use of a refused global (`process`, `Date`, `fetch`, ...), found before running.
    Global,
    Exception,
    Shape,
    Import,
    Cpu,
    Memory,
    Io,
}

/// A failed evaluation, at a place in a file the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: {message}", pos.line, pos.col)]
pub struct Failure {
    pub kind: FailureKind,
    /// The file as shown to the user (the root as given, joined with the relative path).
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

/// One evaluation's input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The canonical manifests root; imports must stay inside it.
    pub root: &'a Path,
    /// The root as the user gave it (for the files named in messages).
    pub root_display: &'a str,
    /// The canonical path of the config file.
    pub config: &'a Path,
    pub stage: &'a str,
}

/// What `app()` returned.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RecordedApp {
    pub name: String,
    pub protect: Option<Vec<String>>,
}

/// One `KV`, `KV.existing` or `Worker` call, as `lumier.js` recorded it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Recorded {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub existing: Option<Existing>,
    pub entry: Option<String>,
    /// NAME → `{ kv: name }`, `{ text: string }` or `{ json: value }`.
    #[serde(default)]
    pub bindings: serde_json::Map<String, serde_json::Value>,
    pub compatibility: Option<serde_json::Value>,
    /// The engine's stack at the call (mapped into `pos` by [`evaluate`]).
    #[serde(default)]
    at: String,
    /// Where the config file makes the call (the innermost frame in the config file).
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Existing {
    pub id: String,
}

#[derive(Debug, Deserialize)]
struct Raw {
    app: RecordedApp,
    #[serde(default)]
    at: String,
    resources: Vec<Recorded>,
}

/// A successful evaluation of one stage.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub app: RecordedApp,
    /// Where the config calls `$config`.
    pub pos: Pos,
    pub resources: Vec<Recorded>,
    /// Canonical paths of every file the evaluation read (the config and its imports), sorted.
    pub files: Vec<PathBuf>,
}

struct ModuleInfo {
    display: String,
    source: String,
    stripped: Stripped,
}

/// State shared by the resolver, the loader and the error mapping.
struct Shared {
    root: PathBuf,
    root_display: String,
    config: PathBuf,
    modules: HashMap<String, ModuleInfo>,
    /// The first failure the resolver or loader met (more precise than the engine's error).
    failure: Option<Failure>,
}

impl Shared {
    fn display(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        Path::new(&self.root_display)
            .join(rel)
            .display()
            .to_string()
    }

    fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            self.failure = Some(failure);
        }
    }

    /// The innermost user frame of a stack (`only`: in that module) as (file, position).
    fn locate(&self, stack: &str, only: Option<&str>) -> Option<(String, Pos)> {
        stack.lines().find_map(|line| {
            let (module, line, col) = frame(line)?;
            if only.is_some_and(|m| m != module) {
                return None;
            }
            let info = self.modules.get(module)?;
            let (line, col) = info.stripped.original(line, col)?;
            Some((info.display.clone(), Pos { line, col }))
        })
    }
}

/// `    at f (file:line:col)` or `    at file:line:col` → (file, line, col).
fn frame(line: &str) -> Option<(&str, usize, usize)> {
    let rest = line.trim().strip_prefix("at ")?;
    let place = match rest.strip_suffix(')') {
        Some(r) => &r[r.rfind('(')? + 1..],
        None => rest,
    };
    let (place, col) = place.rsplit_once(':')?;
    let (file, line) = place.rsplit_once(':')?;
    Some((file, line.parse().ok()?, col.parse().ok()?))
}

/// The 1-based line and column of byte `offset` of `text`.
fn pos_at(text: &str, offset: usize) -> Pos {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        col: before[start..].chars().count() + 1,
    }
}

struct Hooks(Arc<Mutex<Shared>>);

impl Hooks {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `a/./b/../c` → `a/c` without touching the file system (symlinks are checked afterwards).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

const EXTENSIONS: [&str; 4] = ["ts", "mts", "js", "mjs"];

impl Resolver for Hooks {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
    ) -> rquickjs::Result<String> {
        let mut shared = self.shared();
        if name == LUMIER_MODULE {
            return Ok(name.to_owned());
        }
        if base == DRIVER && Path::new(name) == shared.config {
            return Ok(name.to_owned());
        }
        let refuse = |shared: &mut Shared, why: String| {
            let (file, pos) = match shared.modules.get(base) {
                Some(info) => {
                    let offset = [format!("\"{name}\""), format!("'{name}'")]
                        .iter()
                        .filter_map(|q| info.source.find(q.as_str()).map(|i| i + 1))
                        .min()
                        .unwrap_or(0);
                    (info.display.clone(), pos_at(&info.source, offset))
                }
                None => (base.to_owned(), Pos { line: 1, col: 1 }),
            };
            shared.fail(Failure {
                kind: FailureKind::Import,
                file,
                pos,
                message: why,
            });
            rquickjs::Error::new_resolving(base, name)
        };
        if !(name.starts_with("./") || name.starts_with("../")) {
            return Err(refuse(
                &mut shared,
                format!("import `{name}` is refused: a Lumier config may import only \"lumier\" and relative .ts/.js files inside the manifests root (no Node, npm or network modules)"),
            ));
        }
        let dir = Path::new(base).parent().unwrap_or(Path::new("/"));
        let joined = normalize(&dir.join(name));
        let has_ext = joined
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        let mut candidates = vec![];
        if has_ext {
            candidates.push(joined.clone());
        } else {
            for ext in ["ts", "js"] {
                let mut with = joined.clone().into_os_string();
                with.push(format!(".{ext}"));
                candidates.push(PathBuf::from(with));
            }
            for ext in ["ts", "js"] {
                candidates.push(joined.join(format!("index.{ext}")));
            }
        }
        let found = candidates
            .iter()
            .find_map(|c| std::fs::canonicalize(c).ok().filter(|p| p.is_file()));
        match found {
            Some(path) if path.starts_with(&shared.root) => {
                let ok = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e));
                if ok {
                    Ok(path.to_string_lossy().into_owned())
                } else {
                    Err(refuse(
                        &mut shared,
                        format!("import `{name}` is refused: only .ts, .mts, .js and .mjs files can be imported"),
                    ))
                }
            }
            Some(_) => Err(refuse(
                &mut shared,
                format!("import `{name}` is refused: it leaves the manifests root"),
            )),
            None => Err(refuse(
                &mut shared,
                format!("import `{name}`: no such file (tried .ts and .js and index files)"),
            )),
        }
    }
}

impl Loader for Hooks {
    fn load<'js>(&mut self, ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Module<'js, Declared>> {
        if name == LUMIER_MODULE {
            return Module::declare(ctx.clone(), LUMIER_MODULE, LUMIER_JS);
        }
        let path = PathBuf::from(name);
        let mut shared = self.shared();
        let display = shared.display(&path);
        let io_fail = |shared: &mut Shared, message: String| {
            shared.fail(Failure {
                kind: FailureKind::Io,
                file: display.clone(),
                pos: Pos { line: 1, col: 1 },
                message,
            });
            rquickjs::Error::new_loading(name)
        };
        let too_big = std::fs::metadata(&path).map(|m| m.len() > MAX_FILE_BYTES);
        let source = match too_big {
            Ok(true) => {
                return Err(io_fail(
                    &mut shared,
                    format!("larger than {MAX_FILE_BYTES} bytes; a config file must be smaller"),
                ))
            }
            Ok(false) => match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => return Err(io_fail(&mut shared, format!("cannot read it: {e}"))),
            },
            Err(e) => return Err(io_fail(&mut shared, format!("cannot read it: {e}"))),
        };
        let typescript = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("ts" | "mts")
        );
        // A panic must not cross QuickJS's C frames (that aborts the process): a parser bug
        // on some input becomes this file's error instead.
        let stripped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            strip(&path, &source, typescript)
        }))
        .unwrap_or_else(|_| {
            Err(super::strip::StripError {
                offset: 0,
                message: "the TypeScript step failed on this file (an internal error)".to_owned(),
                refused: false,
            })
        });
        match stripped {
            Ok(stripped) => {
                let code = stripped.code.clone();
                shared.modules.insert(
                    name.to_owned(),
                    ModuleInfo {
                        display,
                        source,
                        stripped,
                    },
                );
                drop(shared);
                Module::declare(ctx.clone(), name, code)
            }
            Err(e) => {
                let pos = pos_at(&source, e.offset as usize);
                let (kind, message) = if e.refused {
                    (FailureKind::Global, e.message)
                } else {
                    (FailureKind::Syntax, format!("syntax error: {}", e.message))
                };
                shared.fail(Failure {
                    kind,
                    file: display,
                    pos,
                    message,
                });
                Err(rquickjs::Error::new_loading(name))
            }
        }
    }
}

/// Evaluates the config's `app()` and `run({ stage })` for one stage; see the module doc.
pub fn evaluate(input: &Input<'_>) -> Result<Evaluation, Failure> {
    let shared = Arc::new(Mutex::new(Shared {
        root: input.root.to_path_buf(),
        root_display: input.root_display.to_owned(),
        config: input.config.to_path_buf(),
        modules: HashMap::new(),
        failure: None,
    }));
    let config_display = Hooks(Arc::clone(&shared)).shared().display(input.config);
    let fail = |kind, message: String| Failure {
        kind,
        file: config_display.clone(),
        pos: Pos { line: 1, col: 1 },
        message,
    };
    let engine_error = |e: rquickjs::Error| {
        fail(
            FailureKind::Io,
            format!("the JavaScript engine failed: {e}"),
        )
    };
    let runtime = Runtime::new().map_err(engine_error)?;
    runtime.set_memory_limit(MEMORY_LIMIT);
    runtime.set_max_stack_size(MAX_STACK_BYTES);
    let interrupted = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + CPU_LIMIT;
    let flag = Arc::clone(&interrupted);
    runtime.set_interrupt_handler(Some(Box::new(move || {
        let over = Instant::now() >= deadline;
        if over {
            flag.store(true, Ordering::SeqCst);
        }
        over
    })));
    runtime.set_loader(Hooks(Arc::clone(&shared)), Hooks(Arc::clone(&shared)));
    let context = Context::full(&runtime).map_err(engine_error)?;
    let config_name = input.config.to_string_lossy();
    let driver = format!(
        "import * as config from {};\nimport {{ __evaluate }} from \"lumier\";\nexport const result = JSON.stringify(await __evaluate(config.default, {}));\n",
        serde_json::Value::from(config_name.as_ref()),
        serde_json::Value::from(input.stage),
    );
    let outcome: Result<String, Box<(rquickjs::Error, Option<Caught>)>> = context.with(|ctx| {
        let run = || -> rquickjs::Result<String> {
            let prelude = format!(
                "{PRELUDE}({}, {});",
                serde_json::Value::from(super::strip::REFUSED_GLOBALS.to_vec()),
                serde_json::Value::from(super::strip::REFUSED_WHY)
            );
            ctx.eval::<(), _>(prelude)?;
            let module = Module::declare(ctx.clone(), DRIVER, driver.as_str())?;
            let (module, promise) = module.eval()?;
            promise.finish::<()>()?;
            module.namespace()?.get::<_, String>("result")
        };
        run().map_err(|e| {
            // Also after `WouldBlock`: an uncatchable error (the interrupt) that ended a job
            // leaves its exception pending without settling the promise.
            let value = ctx.catch();
            let caught = (!value.is_undefined()).then(|| Caught::from(value));
            Box::new((e, caught))
        })
    });
    let mut shared = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = match outcome {
        Ok(text) => text,
        Err(boxed) => {
            let (error, caught) = *boxed;
            if let Some(failure) = shared.failure.take() {
                return Err(failure);
            }
            let caught = caught.unwrap_or_default();
            let place = shared.locate(&caught.stack, None);
            let at = |kind, message: String| match &place {
                Some((file, pos)) => Failure {
                    kind,
                    file: file.clone(),
                    pos: *pos,
                    message,
                },
                None => fail(kind, message),
            };
            if interrupted.load(Ordering::SeqCst) {
                return Err(at(
                    FailureKind::Cpu,
                    format!(
                        "the config ran longer than {} s (a runaway loop?); evaluation was stopped",
                        CPU_LIMIT.as_secs()
                    ),
                ));
            }
            // QuickJS throws `null` when it cannot even allocate the error object.
            if matches!(error, rquickjs::Error::Allocation)
                || caught.message.contains("out of memory")
                || caught.null
            {
                return Err(at(
                    FailureKind::Memory,
                    format!("the config ran out of its {} MB of memory (a runaway allocation?; a `throw null` reads the same); evaluation was stopped", MEMORY_LIMIT / (1024 * 1024)),
                ));
            }
            if matches!(error, rquickjs::Error::WouldBlock) {
                return Err(fail(
                    FailureKind::Exception,
                    "run() or app() awaited something that never finishes".to_owned(),
                ));
            }
            if caught.shape {
                return Err(at(FailureKind::Shape, caught.message));
            }
            if caught.name == "SyntaxError" {
                return Err(at(
                    FailureKind::Syntax,
                    format!("syntax error: {}", caught.message),
                ));
            }
            if caught.message.is_empty() && !error.is_exception() {
                return Err(engine_error(error));
            }
            return Err(at(
                FailureKind::Exception,
                format!("uncaught {}: {}", caught.name, caught.message),
            ));
        }
    };
    let raw: Raw = serde_json::from_str(&text).map_err(|e| {
        fail(
            FailureKind::Io,
            format!("lumierd could not read what the config recorded: {e}"),
        )
    })?;
    let config_module = config_name.into_owned();
    let here = |stack: &str| {
        shared
            .locate(stack, Some(&config_module))
            .map_or(Pos { line: 1, col: 1 }, |(_, p)| p)
    };
    let pos = here(&raw.at);
    let mut resources = raw.resources;
    for r in &mut resources {
        r.pos = here(&r.at);
        r.at = String::new();
    }
    let mut files: Vec<PathBuf> = shared.modules.keys().map(PathBuf::from).collect();
    files.sort();
    Ok(Evaluation {
        app: raw.app,
        pos,
        resources,
        files,
    })
}

/// A thrown JavaScript value, read before the context goes away.
#[derive(Debug, Default)]
struct Caught {
    name: String,
    message: String,
    stack: String,
    /// Thrown by `lumier.js` for a call of the wrong shape.
    shape: bool,
    /// The thrown value was `null`: QuickJS's out-of-memory signal (or `throw null`).
    null: bool,
}

impl From<Value<'_>> for Caught {
    fn from(value: Value<'_>) -> Caught {
        if let Some(object) = value.as_object() {
            let text = |o: &Object<'_>, k: &str| o.get::<_, Option<String>>(k).ok().flatten();
            Caught {
                name: text(object, "name").unwrap_or_else(|| "exception".to_owned()),
                message: text(object, "message").unwrap_or_default(),
                stack: text(object, "stack").unwrap_or_default(),
                shape: object.get::<_, bool>("lumierShape").unwrap_or(false),
                null: false,
            }
        } else {
            let message = value
                .as_string()
                .and_then(|s| s.to_string().ok())
                .or_else(|| value.as_number().map(|n| n.to_string()))
                .unwrap_or_else(|| format!("a thrown {}", value.type_name()));
            Caught {
                name: "exception".to_owned(),
                message,
                null: value.is_null(),
                ..Caught::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse() {
        assert_eq!(frame("    at run (/a/b.ts:3:7)"), Some(("/a/b.ts", 3, 7)));
        assert_eq!(frame("    at /a/b.ts:3:7"), Some(("/a/b.ts", 3, 7)));
        assert_eq!(frame("    at <anonymous>"), None);
    }
}
