// The official TypeScript SDK (npm `cloudflare`) against `lumierd emulator`.
// Env: CF_BASE (…/client/v4), CF_TOKEN, CF_ACCOUNT. Prints PASS/FAIL lines and a summary;
// exits 1 if anything failed. Where the SDK has a bug of its own, the check asserts what the
// real API does with the request the SDK sends (noted at each such check).
import Cloudflare, { toFile } from 'cloudflare';

const { CF_BASE, CF_TOKEN, CF_ACCOUNT: account_id } = process.env;
const client = new Cloudflare({ apiToken: CF_TOKEN, baseURL: CF_BASE, maxRetries: 0 });
const tag = `ts-${Date.now() % 1000000}`;
const results = [];
const st = {};
const eq = (a, b, what) => {
  const [x, y] = [JSON.stringify(a), JSON.stringify(b)];
  if (x !== y) throw new Error(`${what}: ${x} != ${y}`);
};
async function check(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`PASS ${name}`);
  } catch (e) {
    results.push(false);
    console.log(`FAIL ${name}: ${e?.status ?? ''} ${e?.message ?? e}`);
  }
}
async function expectStatus(status, fn) {
  try {
    await fn();
  } catch (e) {
    if (e?.status === status) return e;
    throw e;
  }
  throw new Error(`expected HTTP ${status}`);
}
const kv = client.kv.namespaces;
const ns = () => st.ns;

await check('kv.namespaces.create (+ duplicate → 400/10014)', async () => {
  const n = await kv.create({ account_id, title: `${tag}-ns` });
  eq(n.title, `${tag}-ns`, 'title');
  st.ns = n.id;
  const e = await expectStatus(400, () => kv.create({ account_id, title: `${tag}-ns` }));
  eq(e.errors?.[0]?.code, 10014, 'code');
});
await check('kv.namespaces.list auto-pagination (per_page=5)', async () => {
  for (let i = 0; i < 7; i++) await kv.create({ account_id, title: `${tag}-page-${i}` });
  const titles = [];
  for await (const n of kv.list({ account_id, per_page: 5 })) titles.push(n.title);
  eq(titles.filter((t) => t.startsWith(`${tag}-page-`)).length, 7, 'paged');
  eq(new Set(titles).size, titles.length, 'no duplicates');
});
await check('kv.namespaces.update + get', async () => {
  await kv.update(ns(), { account_id, title: `${tag}-renamed` });
  eq((await kv.get(ns(), { account_id })).title, `${tag}-renamed`, 'renamed');
});
await check('values.update + get', async () => {
  await kv.values.update('plain', { account_id, namespace_id: ns(), value: 'hello' });
  eq(await (await kv.values.get('plain', { account_id, namespace_id: ns() })).text(), 'hello', 'value');
});
await check('values.update metadata (JSON string) + expiration_ttl, key with / and :', async () => {
  await kv.values.update('with/slash:meta', {
    account_id, namespace_id: ns(), value: 'v2', metadata: JSON.stringify({ a: 1, b: 'x' }), expiration_ttl: 3600,
  });
  eq(await (await kv.values.get('with/slash:meta', { account_id, namespace_id: ns() })).text(), 'v2', 'value');
  eq(await kv.metadata.get('with/slash:meta', { account_id, namespace_id: ns() }), { a: 1, b: 'x' }, 'metadata');
});
await check('values.update metadata object: bracket-encoded, ignored as by the real API (cloudflare-typescript#2664)', async () => {
  await kv.values.update('obj-meta', { account_id, namespace_id: ns(), value: 'v', metadata: { a: 1 } });
  eq(await kv.metadata.get('obj-meta', { account_id, namespace_id: ns() }), null, 'metadata');
});
await check('values.update expiration_ttl < 60 rejected (400)', async () => {
  await expectStatus(400, () => kv.values.update('short', { account_id, namespace_id: ns(), value: 'x', expiration_ttl: 10 }));
});
await check('namespaces.bulkUpdate', async () => {
  const body = Array.from({ length: 25 }, (_, i) => ({ key: `bulk-${String(i).padStart(3, '0')}`, value: `v${i}` }));
  body.push({ key: 'b64', value: 'aGVsbG8=', base64: true, metadata: { m: true }, expiration_ttl: 600 });
  const r = await kv.bulkUpdate(ns(), { account_id, body });
  if (r && 'successful_key_count' in r) eq(r.successful_key_count, 26, 'count');
});
await check('namespaces.bulkGet', async () => {
  eq(await kv.bulkGet(ns(), { account_id, keys: ['b64', 'missing'] }), { values: { b64: 'hello', missing: null } }, 'values');
  const r = await kv.bulkGet(ns(), { account_id, keys: ['b64'], withMetadata: true });
  eq([r.values.b64.value, r.values.b64.metadata], ['hello', { m: true }], 'with metadata');
});
await check('keys.list auto-pagination (limit=10)', async () => {
  const names = [];
  for await (const k of kv.keys.list(ns(), { account_id, limit: 10 })) names.push(k.name);
  eq(names.filter((n) => n.startsWith('bulk-')).length, 25, 'bulk keys');
  eq(new Set(names).size, names.length, 'no duplicates');
  const p = [];
  for await (const k of kv.keys.list(ns(), { account_id, prefix: 'with/' })) p.push(k);
  eq(p.length, 1, 'prefix');
  eq(p[0].metadata, { a: 1, b: 'x' }, 'list metadata');
  if (!p[0].expiration) throw new Error('expiration missing');
});
await check('namespaces.bulkDelete', async () => {
  await kv.bulkDelete(ns(), { account_id, body: Array.from({ length: 25 }, (_, i) => `bulk-${String(i).padStart(3, '0')}`) });
  const left = [];
  for await (const k of kv.keys.list(ns(), { account_id, prefix: 'bulk-' })) left.push(k.name);
  eq(left, [], 'left');
});
await check('values.delete (then get → NotFoundError)', async () => {
  await kv.values.delete('plain', { account_id, namespace_id: ns() });
  try {
    await kv.values.get('plain', { account_id, namespace_id: ns() });
    throw new Error('still there');
  } catch (e) {
    if (!(e instanceof Cloudflare.NotFoundError)) throw e;
  }
});
await check('kv.namespaces.delete', async () => {
  await kv.delete(ns(), { account_id });
  for await (const n of kv.list({ account_id, per_page: 100 })) if (n.title.startsWith(tag)) await kv.delete(n.id, { account_id });
  await expectStatus(404, () => kv.get(ns(), { account_id }));
});

const MOD = "export default { async fetch(req, env) { return new Response('hi ' + env.GREETING); } };\n";
const script = `${tag}-w`;
const meta = { main_module: 'index.js', compatibility_date: '2024-09-23', bindings: [{ type: 'plain_text', name: 'GREETING', text: 'hello' }] };
await check('workers.scripts.update: rejected 400/10021 like the real API (cloudflare-typescript#2799)', async () => {
  try {
    await client.workers.scripts.update(script, {
      account_id, metadata: meta,
      files: [await toFile(Buffer.from(MOD), 'index.js', { type: 'application/javascript+module' })],
    });
    st.uploaded = true; // a later SDK version that sends real multipart
  } catch (e) {
    if (e?.status === 400 && e?.errors?.[0]?.code === 10021) return;
    throw e;
  }
});
if (!st.uploaded) {
  // Upload the way wrangler does (fetch + FormData), to exercise the SDK's other script calls.
  const form = new FormData();
  form.set('metadata', JSON.stringify(meta));
  form.set('index.js', new File([MOD], 'index.js', { type: 'application/javascript+module' }));
  const r = await fetch(`${CF_BASE}/accounts/${account_id}/workers/scripts/${script}`, {
    method: 'PUT', body: form, headers: { Authorization: `Bearer ${CF_TOKEN}` },
  });
  if (!r.ok) console.log(`upload through fetch failed: ${r.status} ${await r.text()}`);
}
await check('workers.scripts.list', async () => {
  const ids = [];
  for await (const s of client.workers.scripts.list({ account_id })) ids.push(s.id);
  if (!ids.includes(script)) throw new Error(`not listed: ${ids}`);
});
await check('workers.scripts.get + content.get', async () => {
  if (!(await client.workers.scripts.get(script, { account_id })).includes(MOD)) throw new Error('download');
  const r = await client.workers.scripts.content.get(script, { account_id });
  eq(r.headers.get('cf-entrypoint'), 'index.js', 'cf-entrypoint');
  if (!(await r.text()).includes(MOD)) throw new Error('content');
});
await check('scripts.settings.get/edit (script-settings)', async () => {
  await client.workers.scripts.settings.get(script, { account_id });
  eq((await client.workers.scripts.settings.edit(script, { account_id, logpush: true })).logpush, true, 'logpush');
});
await check('scripts.scriptAndVersionSettings.get', async () => {
  const s = await client.workers.scripts.scriptAndVersionSettings.get(script, { account_id });
  eq(s.bindings.map((b) => b.name), ['GREETING'], 'bindings');
});
await check('scripts.scriptAndVersionSettings.edit: bracket-encoded `settings[…]` parts rejected (400)', async () => {
  await expectStatus(400, () => client.workers.scripts.scriptAndVersionSettings.edit(script, {
    account_id, settings: { compatibility_date: '2025-01-01' },
  }));
});
await check('workers.scripts.delete (then 404)', async () => {
  await client.workers.scripts.delete(script, { account_id });
  const e = await expectStatus(404, () => client.workers.scripts.delete(script, { account_id }));
  eq(e.errors?.[0]?.code, 10007, 'code');
});
const failed = results.filter((r) => !r).length;
console.log(`typescript-sdk: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
