// The module `import … from "lumier"` gets inside lumierd: it records what a config declares.
// Served in-process by src/lumier/engine.rs; nothing here reaches a clock, randomness, the
// environment, the network or the file system. `__evaluate` is lumierd's entry point.
//
// Every recorded call carries `at`, the engine's stack at the call, from which lumierd takes
// the first frame outside this module (the user's file, line and column).

const HANDLE = Symbol("lumier.handle");
const SECRET = Symbol("lumier.secret");
const CONFIG = Symbol("lumier.config");
let current = null;

function fail(message) {
  const e = new TypeError(message);
  e.lumierShape = true;
  throw e;
}

function plainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function checkName(call, name) {
  if (typeof name !== "string" || name === "") {
    fail(`${call} needs a name as its first argument: a non-empty string, like ${call.replace("(…)", "")}("cache")`);
  }
}

function onlyKeys(what, obj, allowed) {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      fail(`${what}: unknown option \`${k}\`; ${allowed.length ? "it takes: " + allowed.join(", ") : "it takes no options yet"}`);
    }
  }
}

function record(call, entry) {
  if (current === null) {
    fail(`${call} may only be called inside run(), while lumierd evaluates the config`);
  }
  entry.at = new Error().stack;
  current.resources.push(entry);
}

function handle(type, name) {
  return Object.freeze({ [HANDLE]: true, type, name });
}

/** A KV namespace managed by lumierd: `KV(name, options?)`. */
export function KV(name, options) {
  checkName("KV(…)", name);
  if (options !== undefined) {
    if (!plainObject(options)) fail(`KV("${name}", options): options must be an object`);
    onlyKeys(`KV("${name}", options)`, options, []);
  }
  record("KV(…)", { type: "kv", name });
  return handle("kv", name);
}

/** A KV namespace lumierd binds but does not manage: `KV.existing(name, { id })`. */
KV.existing = function existing(name, options) {
  checkName("KV.existing(…)", name);
  if (!plainObject(options) || typeof options.id !== "string") {
    fail(`KV.existing("${name}", { id }) needs the namespace id: a string of 32 hex characters`);
  }
  onlyKeys(`KV.existing("${name}", options)`, options, ["id"]);
  record("KV.existing(…)", { type: "kv", name, existing: { id: options.id } });
  return handle("kv", name);
};

/**
 * A secret binding, its value read by lumierd when it converges (never by the config):
 * `Secret.env("SHOP_API_KEY")` (lumierd's environment) or `Secret.file("db-password")` (a file
 * in --secrets-dir).
 */
export const Secret = Object.freeze({
  env(variable) {
    if (typeof variable !== "string" || variable === "") fail("Secret.env(…) needs the variable's name: a non-empty string");
    return Object.freeze({ [SECRET]: { env: variable } });
  },
  file(name) {
    if (typeof name !== "string" || name === "") fail("Secret.file(…) needs the file's name in --secrets-dir: a non-empty string");
    return Object.freeze({ [SECRET]: { file: name } });
  },
});

/** A Worker script: `Worker(name, { entry, bindings?, compatibility? })`. */
export function Worker(name, props) {
  checkName("Worker(…)", name);
  if (!plainObject(props) || props.entry === undefined) {
    fail(`Worker("${name}", …) needs \`entry\`: the worker's entry file, relative to the config, like { entry: "src/index.ts" }`);
  }
  if (typeof props.entry !== "string" || props.entry === "") {
    fail(`Worker("${name}", …): \`entry\` must be a non-empty string (a path relative to the config)`);
  }
  onlyKeys(`Worker("${name}", …)`, props, ["entry", "bindings", "compatibility"]);
  const bindings = {};
  if (props.bindings !== undefined) {
    if (!plainObject(props.bindings)) fail(`Worker("${name}", …): \`bindings\` must be an object of NAME → value`);
    for (const [k, v] of Object.entries(props.bindings)) {
      if (v !== null && typeof v === "object" && v[HANDLE] === true) {
        // A KV handle binds the namespace; a Worker handle is a service binding.
        bindings[k] = v.type === "worker" ? { service: v.name } : { [v.type]: v.name };
      } else if (v !== null && typeof v === "object" && v[SECRET] !== undefined) {
        bindings[k] = { secret: v[SECRET] };
      } else if (typeof v === "string") {
        bindings[k] = { text: v };
      } else if (v === undefined || typeof v === "function" || typeof v === "symbol" || typeof v === "bigint") {
        fail(`Worker("${name}", …): binding \`${k}\` is ${typeof v}; give a KV or Worker handle, a Secret, a string or a JSON value`);
      } else {
        bindings[k] = { json: JSON.parse(JSON.stringify(v)) };
      }
    }
  }
  let compatibility;
  if (props.compatibility !== undefined) {
    if (!plainObject(props.compatibility)) fail(`Worker("${name}", …): \`compatibility\` must be { date?, flags? }`);
    onlyKeys(`Worker("${name}", …) compatibility`, props.compatibility, ["date", "flags"]);
    compatibility = JSON.parse(JSON.stringify(props.compatibility));
  }
  record("Worker(…)", { type: "worker", name, entry: props.entry, bindings, compatibility });
  return handle("worker", name);
}

/** The config: `export default $config({ app(input) { return { name, protect? } }, run(ctx) {…} })`. */
export function $config(definition) {
  if (!plainObject(definition) || typeof definition.app !== "function" || typeof definition.run !== "function") {
    fail("$config({ app, run }) needs an object with the functions app() and run(ctx)");
  }
  return Object.freeze({ [CONFIG]: true, app: definition.app, run: definition.run, at: new Error().stack });
}

export async function __evaluate(config, stage) {
  if (!plainObject(config) || config[CONFIG] !== true) {
    fail("the config must `export default $config({ app, run })` (imported from \"lumier\")");
  }
  const app = await config.app({ stage });
  if (!plainObject(app) || typeof app.name !== "string") {
    fail("app() must return { name: \"my-app\", protect?: [stages] }");
  }
  onlyKeys("the object app() returns", app, ["name", "protect"]);
  if (app.protect !== undefined && (!Array.isArray(app.protect) || app.protect.some((s) => typeof s !== "string"))) {
    fail("app().protect must be a list of stage names (strings)");
  }
  current = { resources: [] };
  try {
    await config.run({ stage, app: { name: app.name, stage } });
    return { app: { name: app.name, protect: app.protect }, at: config.at, resources: current.resources };
  } finally {
    current = null;
  }
}
