"""workerd runs a Worker uploaded through `lumierd emulator`, its KV binding served from the
emulator's KV API.

1. Uploads a module Worker (plain_text + kv_namespace bindings) with the Python SDK and seeds
   a KV value.
2. Downloads it back through the API (`content/v2` multipart + `cf-entrypoint`, and the
   settings' bindings), the way a deploy-from-API tool would, and writes a workerd config.
3. Serves workerd's KV-binding protocol (`GET|PUT|DELETE /<key>?urlencoded=true`,
   `CF-KV-Metadata`, `CF-Expiration`, `GET /?prefix&key_count_limit&cursor`, `POST /bulk/get`)
   from a small bridge that calls the emulator's REST API.
4. Calls the Worker: it reads, lists and bulk-reads KV, and writes a key that is then read
   back through the REST API.

Env: CF_BASE, CF_TOKEN, CF_ACCOUNT, WORKERD (path of the workerd binary).
"""
import email.parser, email.policy, json, os, shutil, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.parse, urllib.request
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

import cloudflare
from cloudflare import Cloudflare

BASE, TOKEN, ACC, WORKERD = (os.environ[k] for k in ("CF_BASE", "CF_TOKEN", "CF_ACCOUNT", "WORKERD"))
c = Cloudflare(api_token=TOKEN, base_url=BASE, max_retries=0)
tag = f"wd-{os.getpid()}"
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))


def api(method, path, body=None, headers=None):
    req = urllib.request.Request(f"{BASE}/accounts/{ACC}{path}", data=body, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Bridge(BaseHTTPRequestHandler):
    """workerd's KV binding protocol → the Cloudflare REST API of the emulator."""
    protocol_version = "HTTP/1.1"
    ns = ""

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def key(self):
        u = urllib.parse.urlsplit(self.path)
        raw = u.path[1:]
        q = urllib.parse.parse_qs(u.query)
        key = urllib.parse.unquote(raw) if q.get("urlencoded", [""])[0] == "true" else raw
        return urllib.parse.quote(key, safe=""), q

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        ns = f"/storage/kv/namespaces/{self.ns}"
        if u.path == "/":
            q = urllib.parse.parse_qs(u.query)
            params = {"prefix": q.get("prefix", [""])[0], "limit": max(10, int(q.get("key_count_limit", ["1000"])[0]))}
            if q.get("cursor", [""])[0]:
                params["cursor"] = q["cursor"][0]
            st, _, b = api("GET", f"{ns}/keys?{urllib.parse.urlencode(params)}")
            env = json.loads(b)
            keys = [{k: (json.dumps(v) if k == "metadata" else v) for k, v in key.items()} for key in env["result"]]
            cursor = env["result_info"].get("cursor") or ""
            out = {"keys": keys, "list_complete": cursor == ""}
            if cursor:
                out["cursor"] = cursor
            return self.reply(st, json.dumps(out).encode(), {"Content-Type": "application/json"})
        key, _ = self.key()
        st, h, b = api("GET", f"{ns}/values/{key}")
        if st != 200:
            return self.reply(404)
        headers = {}
        if h.get("expiration"):
            headers["CF-Expiration"] = h["expiration"]
        _, _, mb = api("GET", f"{ns}/metadata/{key}")
        meta = json.loads(mb).get("result")
        if meta is not None:
            headers["CF-KV-Metadata"] = json.dumps(meta)
        self.reply(200, b, headers)

    def do_PUT(self):
        key, q = self.key()
        value = self.body()
        query = {k: v[0] for k, v in q.items() if k in ("expiration", "expiration_ttl")}
        path = f"/storage/kv/namespaces/{self.ns}/values/{key}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        meta = self.headers.get("CF-KV-Metadata")
        if meta is None:
            st, _, b = api("PUT", path, value, {"Content-Type": "application/octet-stream"})
        else:
            boundary = "lumierdbridge"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"value\"\r\n\r\n").encode() + value + \
                   (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n--{boundary}--\r\n").encode()
            st, _, b = api("PUT", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.reply(200 if st == 200 else 400, b"" if st == 200 else b)

    def do_DELETE(self):
        key, _ = self.key()
        api("DELETE", f"/storage/kv/namespaces/{self.ns}/values/{key}")
        self.reply(200)

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/bulk/get":
            return self.reply(404)
        st, _, b = api("POST", f"/storage/kv/namespaces/{self.ns}/bulk/get", self.body(), {"Content-Type": "application/json"})
        if st != 200:
            return self.reply(400, b)
        self.reply(200, json.dumps(json.loads(b)["result"]["values"]).encode(), {"Content-Type": "application/json"})

    def log_message(self, *a):
        pass


WORKER = b"""export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    if (url.pathname === "/put") {
      await env.MY_KV.put("from worker/1", "w", { metadata: { by: "worker" }, expirationTtl: 3600 });
      return new Response("ok");
    }
    const seed = await env.MY_KV.getWithMetadata("seed");
    const list = await env.MY_KV.list();
    const many = await env.MY_KV.get(["seed", "missing"]);
    return Response.json({ greeting: env.GREETING, seed: seed.value, meta: seed.metadata,
                           keys: list.keys.map((k) => k.name), bulk: Object.fromEntries(many) });
  },
};
"""


def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def main():
    ns = c.kv.namespaces.create(account_id=ACC, title=f"{tag}-ns").id
    Bridge.ns = ns
    c.kv.namespaces.values.update("seed", account_id=ACC, namespace_id=ns, value=b"from the API", metadata={"v": 1})
    c.workers.scripts.update(f"{tag}-w", account_id=ACC, files=[("index.js", WORKER, "application/javascript+module")],
                             metadata={"main_module": "index.js", "compatibility_date": "2024-09-23",
                                       "bindings": [{"type": "plain_text", "name": "GREETING", "text": "hello"},
                                                    {"type": "kv_namespace", "name": "MY_KV", "namespace_id": ns}]})
    # Download what was uploaded, as an API client would.
    st, h, body = api("GET", f"/workers/scripts/{tag}-w/content/v2")
    entry = h.get("cf-entrypoint") or h.get("CF-Entrypoint")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {h.get('content-type') or h.get('Content-Type')}\r\n\r\n".encode() + body)
    modules = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True) for p in msg.iter_parts()}
    check("content/v2 gives the modules and cf-entrypoint", st == 200 and entry == "index.js" and modules.get("index.js") == WORKER,
          f"{st} {entry} {list(modules)}")
    settings = c.workers.scripts.script_and_version_settings.get(f"{tag}-w", account_id=ACC)
    bindings = []
    for b in settings.bindings or []:
        if b.type == "plain_text":
            bindings.append(f'(name = "{b.name}", text = {json.dumps(b.text)})')
        elif b.type == "kv_namespace":
            bindings.append(f'(name = "{b.name}", kvNamespace = "kv")')
    bridge = ThreadingHTTPServer(("127.0.0.1", free_port()), Bridge)
    threading.Thread(target=bridge.serve_forever, daemon=True).start()
    port = free_port()
    work = tempfile.mkdtemp(prefix="lumierd-workerd-")
    for name, content in modules.items():
        with open(os.path.join(work, name), "wb") as f:
            f.write(content)
    mods = ", ".join(f'(name = "{n}", esModule = embed "{n}")' for n in modules)
    with open(os.path.join(work, "config.capnp"), "w") as f:
        f.write(f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "kv", external = (address = "127.0.0.1:{bridge.server_address[1]}", http = ())),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [{mods}],
  compatibilityDate = "{settings.compatibility_date}",
  bindings = [{", ".join(bindings)}],
);
""")
    proc = subprocess.Popen([WORKERD, "serve", os.path.join(work, "config.capnp")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    out = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        check("workerd serves the downloaded Worker", out is not None, (proc.stdout.read().decode() if proc.poll() is not None else "no answer"))
        if out is not None:
            check("plain_text binding", out["greeting"] == "hello", out)
            check("KV get + metadata through the emulator", out["seed"] == "from the API" and out["meta"] == {"v": 1}, out)
            check("KV list through the emulator", out["keys"] == ["seed"], out)
            check("KV bulk get through the emulator", out["bulk"] == {"seed": "from the API", "missing": None}, out)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/put", timeout=10) as r:
                r.read()
            v = c.kv.namespaces.values.get("from worker/1", account_id=ACC, namespace_id=ns).read()
            m = c.kv.namespaces.metadata.get("from worker/1", account_id=ACC, namespace_id=ns)
            check("KV put from the Worker is visible through the API", v == b"w" and m == {"by": "worker"}, (v, m))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        bridge.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        c.workers.scripts.delete(f"{tag}-w", account_id=ACC)
        c.kv.namespaces.delete(ns, account_id=ACC)
    failed = results.count(False)
    print(f"workerd: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
