"""The official Python SDK (`cloudflare`, 4.x or 5.x) against `lumierd emulator`.

Env: CF_BASE (…/client/v4), CF_TOKEN, CF_ACCOUNT. Prints PASS/FAIL lines and a summary;
exits 1 if anything failed. Where an SDK version has a bug of its own, the check asserts what
the real API does with the request that version sends (noted at each such check).
"""
import json, os, sys, time, traceback

import cloudflare
from cloudflare import Cloudflare

BASE, TOKEN, ACC = os.environ["CF_BASE"], os.environ["CF_TOKEN"], os.environ["CF_ACCOUNT"]
MAJOR = int(cloudflare.__version__.split(".")[0])
c = Cloudflare(api_token=TOKEN, base_url=BASE, max_retries=0)
tag = f"py{MAJOR}-{int(time.time() * 1000) % 1000000}"
results = []
st = {}


def check(name, fn):
    try:
        fn()
        results.append(True)
        print(f"PASS {name}")
    except Exception as e:  # noqa: BLE001 - report and go on
        results.append(False)
        print(f"FAIL {name}: {e!r}")
        traceback.print_exc(limit=2, file=sys.stdout)


def eq(a, b, what=""):
    if a != b:
        raise AssertionError(f"{what}: {a!r} != {b!r}")


def put_value(key, value, metadata=None, **kw):
    if MAJOR >= 5:
        extra = {} if metadata is None else {"metadata": metadata}
        c.kv.namespaces.values.update(key, account_id=ACC, namespace_id=st["ns"], value=value, **extra, **kw)
    else:
        # 4.x sends a JSON body unless told multipart (cloudflare-python#2519); see py4_json_body.
        c.kv.namespaces.values.update(key, account_id=ACC, namespace_id=st["ns"], value=value.decode(),
                                      metadata=json.dumps(metadata or {}),
                                      extra_headers={"Content-Type": "multipart/form-data"}, **kw)


def get_value(key):
    return c.kv.namespaces.values.get(key, account_id=ACC, namespace_id=st["ns"]).read()


def ns_create():
    ns = c.kv.namespaces.create(account_id=ACC, title=f"{tag}-ns")
    eq(ns.title, f"{tag}-ns", "title")
    st["ns"] = ns.id
    try:
        c.kv.namespaces.create(account_id=ACC, title=f"{tag}-ns")
        raise AssertionError("duplicate title accepted")
    except cloudflare.BadRequestError as e:
        if "10014" not in str(e):
            raise AssertionError(f"expected code 10014: {e}")


def ns_list_autopage():
    for i in range(7):
        c.kv.namespaces.create(account_id=ACC, title=f"{tag}-page-{i:02d}")
    titles = [n.title for n in c.kv.namespaces.list(account_id=ACC, per_page=5)]
    eq(len([t for t in titles if t.startswith(f"{tag}-page-")]), 7, "auto-paged namespaces")
    eq(len(titles), len(set(titles)), "no duplicates")


def ns_update():
    c.kv.namespaces.update(st["ns"], account_id=ACC, title=f"{tag}-renamed")
    eq(c.kv.namespaces.get(st["ns"], account_id=ACC).title, f"{tag}-renamed", "renamed")


def val_plain():
    put_value("plain", b"hello")
    eq(get_value("plain"), b"hello", "value")


def val_meta_ttl():
    put_value("with/slash:meta", b"v2", metadata={"a": 1, "b": "x"}, expiration_ttl=3600)
    eq(get_value("with/slash:meta"), b"v2", "value with slash")
    eq(c.kv.namespaces.metadata.get("with/slash:meta", account_id=ACC, namespace_id=st["ns"]), {"a": 1, "b": "x"}, "metadata")


def py4_json_body():
    # 4.x's default request is a JSON body: the real API stores it verbatim as the value.
    c.kv.namespaces.values.update("py4-json", account_id=ACC, namespace_id=st["ns"], value="hello", metadata="{}")
    eq(get_value("py4-json"), b'{"metadata":"{}","value":"hello"}', "value stored as the real API does")


def val_ttl_too_short():
    try:
        put_value("short", b"x", expiration_ttl=10)
        raise AssertionError("expiration_ttl=10 accepted")
    except cloudflare.BadRequestError:
        pass


def bulk_update():
    body = [{"key": f"bulk-{i:03d}", "value": f"v{i}"} for i in range(25)]
    body.append({"key": "b64", "value": "aGVsbG8=", "base64": True, "metadata": {"m": True}, "expiration_ttl": 600})
    r = c.kv.namespaces.bulk_update(st["ns"], account_id=ACC, body=body)
    if r is not None and getattr(r, "successful_key_count", None) is not None:
        eq(r.successful_key_count, 26, "successful_key_count")
    eq(get_value("b64"), b"hello", "base64 value")


def bulk_get():
    r = c.kv.namespaces.bulk_get(st["ns"], account_id=ACC, keys=["bulk-000", "missing"])
    eq(r.values, {"bulk-000": "v0", "missing": None}, "values")
    r = c.kv.namespaces.bulk_get(st["ns"], account_id=ACC, keys=["b64"], with_metadata=True)
    eq((r.values["b64"].value, r.values["b64"].metadata), ("hello", {"m": True}), "with metadata")


def keys_list_autopage():
    names = [k.name for k in c.kv.namespaces.keys.list(st["ns"], account_id=ACC, limit=10)]
    eq(len([n for n in names if n.startswith("bulk-")]), 25, "bulk keys across pages")
    eq(len(names), len(set(names)), "no duplicates")
    k = list(c.kv.namespaces.keys.list(st["ns"], account_id=ACC, prefix="with/"))
    eq(len(k), 1, "prefix")
    eq(k[0].metadata, {"a": 1, "b": "x"}, "list metadata")
    if not k[0].expiration:
        raise AssertionError("expiration missing in list")


def bulk_delete():
    c.kv.namespaces.bulk_delete(st["ns"], account_id=ACC, body=[f"bulk-{i:03d}" for i in range(25)])
    eq([k.name for k in c.kv.namespaces.keys.list(st["ns"], account_id=ACC, prefix="bulk-")], [], "after bulk delete")


def val_delete():
    c.kv.namespaces.values.delete("plain", account_id=ACC, namespace_id=st["ns"])
    try:
        get_value("plain")
        raise AssertionError("deleted key still readable")
    except cloudflare.NotFoundError:
        pass


def ns_delete():
    c.kv.namespaces.delete(st["ns"], account_id=ACC)
    for n in list(c.kv.namespaces.list(account_id=ACC, per_page=100)):
        if n.title.startswith(tag):
            c.kv.namespaces.delete(n.id, account_id=ACC)
    try:
        c.kv.namespaces.get(st["ns"], account_id=ACC)
        raise AssertionError("namespace still there")
    except cloudflare.NotFoundError:
        pass


MOD = b"export default { async fetch(req, env) { return new Response('hi ' + env.GREETING); } };\n"
MOD2 = b"export default { async fetch() { return new Response('v2'); } };\n"


def script_update():
    meta = {"main_module": "index.js", "compatibility_date": "2024-09-23",
            "bindings": [{"type": "plain_text", "name": "GREETING", "text": "hello"}]}
    if MAJOR >= 5:
        files = [("index.js", MOD, "application/javascript+module")]
    else:
        files = {"index.js": ("index.js", MOD, "application/javascript+module")}
    r = c.workers.scripts.update(f"{tag}-w", account_id=ACC, metadata=meta, files=files)
    eq(r.id, f"{tag}-w", "id")
    st["etag"] = r.etag


def script_list():
    ids = [s.id for s in c.workers.scripts.list(account_id=ACC)]
    if f"{tag}-w" not in ids:
        raise AssertionError(f"not listed: {ids}")


def script_get():
    if MOD.decode() not in c.workers.scripts.get(f"{tag}-w", account_id=ACC):
        raise AssertionError("module not in the download")


def settings_get_edit():
    c.workers.scripts.settings.get(f"{tag}-w", account_id=ACC)
    s = c.workers.scripts.settings.edit(f"{tag}-w", account_id=ACC, logpush=True)
    eq(s.logpush, True, "logpush")


def versioned_settings():
    s = c.workers.scripts.script_and_version_settings.get(f"{tag}-w", account_id=ACC)
    eq([b.name for b in (s.bindings or [])], ["GREETING"], "bindings")
    settings = {"compatibility_date": "2025-01-01",
                "bindings": [{"type": "plain_text", "name": "GREETING", "text": "bye"}]}
    if MAJOR >= 5:
        s = c.workers.scripts.script_and_version_settings.edit(f"{tag}-w", account_id=ACC, settings=settings)
        eq(s.compatibility_date, "2025-01-01", "compat date")
    else:
        # 4.x bracket-encodes the settings (`settings.bindings[].type` parts) instead of one
        # JSON `settings` part: the API finds no settings part and answers 400.
        try:
            c.workers.scripts.script_and_version_settings.edit(f"{tag}-w", account_id=ACC, settings=settings)
            raise AssertionError("bracket-encoded settings accepted")
        except cloudflare.BadRequestError:
            pass


def content_get():
    if MOD not in c.workers.scripts.content.get(f"{tag}-w", account_id=ACC).read():
        raise AssertionError("module not in content")


def content_update():
    r = c.workers.scripts.content.update(f"{tag}-w", account_id=ACC, metadata={"main_module": "main.js"},
                                         files=[("main.js", MOD2, "application/javascript+module")])
    if r.etag == st["etag"]:
        raise AssertionError("etag unchanged")
    if MOD2 not in c.workers.scripts.content.get(f"{tag}-w", account_id=ACC).read():
        raise AssertionError("new content not served")
    s = c.workers.scripts.script_and_version_settings.get(f"{tag}-w", account_id=ACC)
    eq([b.name for b in (s.bindings or [])], ["GREETING"], "bindings kept")


def script_delete():
    c.workers.scripts.delete(f"{tag}-w", account_id=ACC)
    try:
        c.workers.scripts.settings.get(f"{tag}-w", account_id=ACC)
        raise AssertionError("still there")
    except cloudflare.NotFoundError:
        pass


checks = [("kv.namespaces.create (+ duplicate → 10014)", ns_create),
          ("kv.namespaces.list auto-paging (per_page=5, 3 pages)", ns_list_autopage),
          ("kv.namespaces.update + get", ns_update),
          ("values.update + get", val_plain),
          ("values.update metadata + expiration_ttl, key with / and :", val_meta_ttl),
          ("values.update expiration_ttl < 60 rejected", val_ttl_too_short),
          ("namespaces.bulk_update", bulk_update)]
if MAJOR >= 5:
    checks.append(("namespaces.bulk_get", bulk_get))
else:
    checks.append(("values.update default JSON body stored as the real API does", py4_json_body))
checks += [("keys.list auto-paging (limit=10) + metadata.get", keys_list_autopage),
           ("namespaces.bulk_delete", bulk_delete),
           ("values.delete", val_delete),
           ("kv.namespaces.delete", ns_delete),
           ("workers.scripts.update", script_update),
           ("workers.scripts.list", script_list),
           ("workers.scripts.get", script_get),
           ("scripts.settings.get/edit (script-settings)", settings_get_edit),
           ("scripts.script_and_version_settings.get/edit", versioned_settings),
           ("scripts.content.get", content_get)]
if MAJOR >= 5:
    checks.append(("scripts.content.update", content_update))
checks.append(("scripts.delete", script_delete))
for name, fn in checks:
    check(name, fn)
failed = results.count(False)
print(f"python-sdk {cloudflare.__version__}: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
