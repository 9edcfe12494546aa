//! Runs a Lumier config in an embedded QuickJS (rquickjs) and returns what it recorded.
//!
//! | what the config does | result |
//! | --- | --- |
//! | `import … from "lumier"` | the in-process module `lumier.js` (`$config`, `KV`, `KV.existing`, `Worker`, `Secret`) |
//! | `import … from "./x"` / `"../x.ts"` inside the manifests root | the file, types stripped by oxc (`.ts`, `.mts`, `.js`, `.mjs`; `./x` tries `x.ts`, `x.js`, `x/index.ts`, `x/index.js`) |
//! | any other import (`fs`, `node:*`, a URL, a path outside the root) | [`FailureKind::Import`] at the specifier |
//! | `Date`, `performance`, `process`, `fetch`, `require`, timers, `crypto`, ... | [`FailureKind::Global`] at the use, found before running (no clock, randomness, environment, network or files) |
//! | `Math.random()` | a `ReferenceError` at the call |
//! | runs longer than [`CPU_LIMIT`] | [`FailureKind::Cpu`] at the running line |
//! | allocates more than [`MEMORY_LIMIT`] | [`FailureKind::Memory`] |
//! | crashes the engine (a SIGSEGV on an out-of-memory path) or outgrows the child's address space | [`FailureKind::Crash`], from [`super::sandbox`] (lumierd runs each evaluation in a child) |
//! | a syntax error | [`FailureKind::Syntax`] at the TypeScript position |
//! | a thrown exception | [`FailureKind::Exception`] at the TypeScript position of the throw |
//! | `KV()` without a name, `Worker` without `entry`, ... | [`FailureKind::Shape`] at the call |
//!
//! Every position is in the file the user wrote: engine positions (in the JavaScript oxc
//! printed) go back through the strip step's source map ([`super::hooks`] resolves and loads
//! the modules). The same files give the same result: nothing non-deterministic is reachable
//! from the config.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::{Context, Module, Object, Runtime, Value};
use serde::{Deserialize, Serialize};

use super::hooks::{Hooks, Shared, DRIVER};
use crate::yaml::Pos;

/// Longest an evaluation may run (wall time, checked by the engine's interrupt hook).
pub const CPU_LIMIT: Duration = Duration::from_secs(2);
/// Most memory the engine may allocate for one evaluation, in bytes.
pub const MEMORY_LIMIT: usize = 64 * 1024 * 1024;
/// Deepest native stack the engine may use, in bytes (deep recursion becomes a RangeError).
const MAX_STACK_BYTES: usize = 512 * 1024;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    Syntax,
    /// A use of a refused global (`process`, `Date`, `fetch`, ...), found before running.
    Global,
    Exception,
    Shape,
    Import,
    Cpu,
    Memory,
    /// The process evaluating the config died by a signal (an engine crash, e.g. on its
    /// out-of-memory paths, or the address-space limit): see [`super::sandbox`].
    Crash,
    Io,
}

/// A failed evaluation, at a place in a file the user wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{file}:{}:{}: {message}", pos.line, pos.col)]
pub struct Failure {
    pub kind: FailureKind,
    /// The file as shown to the user (the root as given, joined with the relative path).
    pub file: String,
    #[serde(with = "PosDef")]
    pub pos: Pos,
    pub message: String,
}

/// [`Pos`] on the wire between lumierd and its evaluating child.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Pos")]
struct PosDef {
    line: usize,
    col: usize,
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedApp {
    pub name: String,
    pub protect: Option<Vec<String>>,
}

/// One `KV`, `KV.existing` or `Worker` call, as `lumier.js` recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recorded {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub existing: Option<Existing>,
    pub entry: Option<String>,
    /// NAME → `{ kv: name }`, `{ service: name }`, `{ secret: { env | file } }`,
    /// `{ text: string }` or `{ json: value }`.
    #[serde(default)]
    pub bindings: serde_json::Map<String, serde_json::Value>,
    pub compatibility: Option<serde_json::Value>,
    /// The engine's stack at the call (mapped into `pos` by [`evaluate`], then emptied).
    #[serde(default)]
    at: String,
    /// Where the config file makes the call (the innermost frame in the config file);
    /// `lumier.js` does not record it (default), [`evaluate`] sets it.
    #[serde(default, with = "PosDef")]
    pub pos: Pos,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Existing {
    pub id: String,
}

/// What `__evaluate` in `lumier.js` returns (as JSON).
#[derive(Debug, Deserialize)]
struct Raw {
    app: RecordedApp,
    #[serde(default)]
    at: String,
    resources: Vec<Recorded>,
}

/// A successful evaluation of one stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub app: RecordedApp,
    /// Where the config calls `$config`.
    #[serde(with = "PosDef")]
    pub pos: Pos,
    pub resources: Vec<Recorded>,
    /// Canonical paths of every file the evaluation read (the config and its imports), sorted.
    pub files: Vec<PathBuf>,
}

/// An error the engine raised, with the JavaScript value it threw (read before the context
/// goes away).
type Raised = Box<(rquickjs::Error, Option<Caught>)>;

/// A runtime bounded by [`MEMORY_LIMIT`], [`MAX_STACK_BYTES`] and [`CPU_LIMIT`] (which sets
/// `interrupted`), loading modules through `shared`.
fn runtime(
    shared: &Arc<Mutex<Shared>>,
    interrupted: &Arc<AtomicBool>,
) -> rquickjs::Result<Runtime> {
    let runtime = Runtime::new()?;
    runtime.set_memory_limit(MEMORY_LIMIT);
    runtime.set_max_stack_size(MAX_STACK_BYTES);
    let deadline = Instant::now() + CPU_LIMIT;
    let flag = Arc::clone(interrupted);
    runtime.set_interrupt_handler(Some(Box::new(move || {
        let over = Instant::now() >= deadline;
        if over {
            flag.store(true, Ordering::SeqCst);
        }
        over
    })));
    runtime.set_loader(Hooks(Arc::clone(shared)), Hooks(Arc::clone(shared)));
    Ok(runtime)
}

/// Runs the prelude, then a driver module that imports the config and calls `__evaluate`;
/// its JSON result.
fn drive(context: &Context, input: &Input<'_>) -> Result<String, Raised> {
    let driver = format!(
        "import * as config from {};\nimport {{ __evaluate }} from \"lumier\";\nexport const result = JSON.stringify(await __evaluate(config.default, {}));\n",
        serde_json::Value::from(input.config.to_string_lossy().as_ref()),
        serde_json::Value::from(input.stage),
    );
    context.with(|ctx| {
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
    })
}

/// Evaluates the config's `app()` and `run({ stage })` for one stage in this process; see
/// the module doc. lumierd itself calls [`super::evaluate`], which runs this in a child.
pub fn evaluate(input: &Input<'_>) -> Result<Evaluation, Failure> {
    let shared = Arc::new(Mutex::new(Shared::new(
        input.root,
        input.root_display,
        input.config,
    )));
    let config_display = Hooks(Arc::clone(&shared)).shared().display(input.config);
    let at_config = |kind, message: String| Failure {
        kind,
        file: config_display.clone(),
        pos: Pos { line: 1, col: 1 },
        message,
    };
    let engine_error = |e: rquickjs::Error| {
        at_config(
            FailureKind::Io,
            format!("the JavaScript engine failed: {e}"),
        )
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let runtime = runtime(&shared, &interrupted).map_err(engine_error)?;
    let context = Context::full(&runtime).map_err(engine_error)?;
    let outcome = drive(&context, input);
    let hooks = Hooks(shared);
    let mut shared = hooks.shared();
    let text = match outcome {
        Ok(text) => text,
        Err(raised) => {
            let (error, caught) = *raised;
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
                None => at_config(kind, message),
            };
            let interrupted = interrupted.load(Ordering::SeqCst);
            return Err(match classify(&error, &caught, interrupted) {
                Some((kind, message, true)) => at(kind, message),
                Some((kind, message, false)) => at_config(kind, message),
                None => engine_error(error),
            });
        }
    };
    let raw: Raw = serde_json::from_str(&text).map_err(|e| {
        at_config(
            FailureKind::Io,
            format!("lumierd could not read what the config recorded: {e}"),
        )
    })?;
    Ok(finish(raw, &shared, input.config))
}

/// The evaluation's result with every recorded call placed in the config file.
fn finish(raw: Raw, shared: &Shared, config: &Path) -> Evaluation {
    let config_module = config.to_string_lossy();
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
    Evaluation {
        app: raw.app,
        pos,
        resources,
        files: shared.files(),
    }
}

/// What an engine error means: (kind, message, whether it is placed where the engine
/// stopped (else at the config's start)), or `None` for an engine failure of its own.
fn classify(
    error: &rquickjs::Error,
    caught: &Caught,
    interrupted: bool,
) -> Option<(FailureKind, String, bool)> {
    if interrupted {
        let message = format!(
            "the config ran longer than {} s (a runaway loop?); evaluation was stopped",
            CPU_LIMIT.as_secs()
        );
        return Some((FailureKind::Cpu, message, true));
    }
    // QuickJS throws `null` when it cannot even allocate the error object.
    if matches!(error, rquickjs::Error::Allocation)
        || caught.message.contains("out of memory")
        || caught.null
    {
        let message = format!("the config ran out of its {} MB of memory (a runaway allocation?; a `throw null` reads the same); evaluation was stopped", MEMORY_LIMIT / (1024 * 1024));
        return Some((FailureKind::Memory, message, true));
    }
    if matches!(error, rquickjs::Error::WouldBlock) {
        let message = "run() or app() awaited something that never finishes".to_owned();
        return Some((FailureKind::Exception, message, false));
    }
    if caught.shape {
        return Some((FailureKind::Shape, caught.message.clone(), true));
    }
    if caught.name == "SyntaxError" {
        let message = format!("syntax error: {}", caught.message);
        return Some((FailureKind::Syntax, message, true));
    }
    if caught.message.is_empty() && !error.is_exception() {
        return None;
    }
    let message = format!("uncaught {}: {}", caught.name, caught.message);
    Some((FailureKind::Exception, message, true))
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
