// An Alchemy-style Worker deploy against `lumierd emulator`: the requests Alchemy's
// `cloudflare::Worker` resource makes (alchemy/src/cloudflare/worker.ts, worker-metadata.ts,
// worker/api.ts), replayed with Node's own fetch and FormData, so no package is installed.
// Create: GET script (404) → GET settings (404) → PUT script (module part first, then a
// `metadata` Blob: plain_text, json-as-string, secret_text bindings, observability, tags,
// an empty migrations object) → POST subdomain {enabled, previews_enabled} → GET account
// subdomain → GET versions/{deployment_id} (bindings, no secret text). Update: the same PUT
// again. Delete: stub upload, DELETE ?force=true, POST subdomain {enabled:false} (404).
// Env: CF_BASE (…/client/v4), CF_TOKEN, CF_ACCOUNT. Prints PASS/FAIL lines; exits 1 on failure.
const base = process.env.CF_BASE;
const account = process.env.CF_ACCOUNT;
const headers = { Authorization: `Bearer ${process.env.CF_TOKEN}` };
const name = `alchemy-${Date.now() % 1000000}`;
const canary = `alchemy-secret-${Date.now()}`;
let pass = 0;
let fail = 0;

function check(what, ok, detail) {
  if (ok) {
    pass++;
    console.log(`PASS ${what}`);
  } else {
    fail++;
    console.log(`FAIL ${what}${detail === undefined ? "" : `: ${JSON.stringify(detail).slice(0, 400)}`}`);
  }
}

async function api(method, path, body, extra = {}) {
  const res = await fetch(`${base}/accounts/${account}${path}`, {
    method,
    headers: { ...headers, ...extra },
    body,
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

function metadata(bindings) {
  return {
    compatibility_date: "2025-04-20",
    compatibility_flags: [],
    bindings,
    observability: { enabled: true },
    tags: [],
    migrations: {
      new_classes: [],
      deleted_classes: [],
      renamed_classes: [],
      transferred_classes: [],
      new_sqlite_classes: [],
    },
    main_module: "worker.js",
  };
}

async function putWorker(script, meta) {
  const form = new FormData();
  form.append("worker.js", new Blob([script], { type: "application/javascript+module" }), "worker.js");
  form.append("metadata", new Blob([JSON.stringify(meta)], { type: "application/json" }));
  return api("PUT", `/workers/scripts/${name}`, form);
}

const bindings = [
  { type: "plain_text", name: "ALCHEMY_STAGE", text: "dev" },
  { type: "json", name: "__ALCHEMY_SERIALIZED_SCOPE__", json: JSON.stringify({ a: 1 }) },
  { type: "secret_text", name: "ALCHEMY_PASSWORD", text: canary },
];
const code = "export default { fetch(request) { return new Response('hello from alchemy'); } }";

// Create.
let r = await api("GET", `/workers/scripts/${name}`);
check("create: the script does not exist yet (404)", r.status === 404, r.text);
r = await api("GET", `/workers/scripts/${name}/settings`);
check("create: settings of a missing script (404)", r.status === 404, r.text);
r = await putWorker(code, metadata(bindings));
check("create: PUT script (module part first, metadata Blob)", r.status === 200 && r.json?.success, r.json);
const versionId = r.json?.result?.deployment_id;
check("create: the upload answers deployment_id (a version id)", typeof versionId === "string" && versionId.length === 36, r.json?.result);
r = await api("POST", `/workers/scripts/${name}/subdomain`, JSON.stringify({ enabled: true, previews_enabled: true }), {
  "Content-Type": "application/json",
});
check("create: POST subdomain {enabled, previews_enabled}", r.status === 200 && r.json?.result?.enabled === true, r.json);
r = await api("GET", "/workers/subdomain");
const sub = r.json?.result?.subdomain;
check("create: GET account subdomain", r.status === 200 && typeof sub === "string" && sub.length > 0, r.json);
console.log(`     url: https://${name}.${sub}.workers.dev`);
r = await api("GET", `/workers/scripts/${name}/versions/${versionId}`);
const got = r.json?.result?.resources?.bindings ?? [];
check(
  "create: GET versions/{deployment_id} lists the bindings",
  r.status === 200 && ["ALCHEMY_STAGE", "__ALCHEMY_SERIALIZED_SCOPE__", "ALCHEMY_PASSWORD"].every((n) => got.some((b) => b.name === n)),
  r.json,
);
check("create: no secret text in the version", !r.text.includes(canary));
r = await api("GET", `/workers/scripts/${name}/settings`);
check("create: settings carry the secret without its text", r.status === 200 && !r.text.includes(canary) && r.text.includes("ALCHEMY_PASSWORD"), r.json);

// Update (adopt path: the script exists; the services view carries tags).
r = await api("GET", `/workers/scripts/${name}`);
check("update: the script exists (200)", r.status === 200, r.status);
r = await api("GET", `/workers/services/${name}`);
check("update: GET services/{name} has default_environment.script.tags", Array.isArray(r.json?.result?.default_environment?.script?.tags), r.json);
r = await putWorker(code.replace("hello", "hello again"), metadata(bindings));
check("update: PUT script again", r.status === 200 && r.json?.result?.deployment_id !== versionId, r.json);
r = await api("GET", `/workers/scripts/${name}/deployments`);
check("update: the new version serves 100%", r.json?.result?.deployments?.[0]?.versions?.[0]?.percentage === 100, r.json);

// Delete.
r = await putWorker("export default { fetch(request) { return new Response('hello world'); } }", metadata([]));
check("delete: stub upload without bindings", r.status === 200, r.json);
r = await api("DELETE", `/workers/scripts/${name}?force=true`);
check("delete: DELETE ?force=true", r.status === 200, r.json);
r = await api("POST", `/workers/scripts/${name}/subdomain`, JSON.stringify({ enabled: false }), {
  "Content-Type": "application/json",
});
check("delete: subdomain of a deleted script is 404/10007", r.status === 404 && r.json?.errors?.[0]?.code === 10007, r.json);

console.log(`alchemy-style: ${pass} passed, ${fail} failed`);
process.exit(fail === 0 ? 0 : 1);
