#!/usr/bin/env python3
"""Logging reverse proxy for capturing what real clients send.

Usage: record.py LISTEN_PORT UPSTREAM_HOST:PORT LOGFILE (run.sh starts it with RECORD=FILE).
Forwards every request to the upstream and appends one JSON line per exchange to LOGFILE:
method, path, request headers (Authorization redacted), body head, status, answer headers and
answer head."""
import json, sys, http.client, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

port, upstream, logfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
host, uport = upstream.split(":")
lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline(); break
                chunks.append(self.rfile.read(size)); self.rfile.readline()
            body = b"".join(chunks)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "host", "connection")}
        c = http.client.HTTPConnection(host, int(uport), timeout=30)
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse(); rb = r.read()
        entry = {"method": self.command, "path": self.path,
                 "headers": {k: (v if k.lower() != "authorization" else "<redacted>") for k, v in self.headers.items()},
                 "body": body[:4000].decode("utf-8", "replace"), "status": r.status,
                 "resp_headers": dict(r.getheaders()), "resp": rb[:2000].decode("utf-8", "replace")}
        with lock:
            with open(logfile, "a") as f: f.write(json.dumps(entry) + "\n")
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"): self.send_header(k, v)
        self.send_header("Content-Length", str(len(rb)))
        self.end_headers(); self.wfile.write(rb)
    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _any
    def log_message(self, *a): pass

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
