#!/usr/bin/env python3
"""RSS of `lumierd emulator` before and after N requests (RELIABILITY.md, ## Local API).

Usage: scripts/local-api-rss.py [LUMIERD_BINARY] [N]   (defaults: target/debug/lumierd, 20000)

Half the requests use the served account and token, half a random account id and a random
token (answered 403); all carry ~300 bytes of path or query. The rate-limit model is on, so
its state is exercised too. Prints VmRSS every 10,000 requests and the growth.
"""
import http.client
import random
import re
import subprocess
import sys
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/lumierd"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
account = "1ae1d0c0ffee00000000000000000001"
token = "lumierd-local-token"

proc = subprocess.Popen(
    [binary, "emulator", "--listen", "127.0.0.1:0", "--rate-limit", "100000000/5m"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = None
deadline = time.time() + 30
while port is None and time.time() < deadline:
    match = re.search(r"127\.0\.0\.1:(\d+)", proc.stdout.readline())
    if match:
        port = int(match.group(1))
if port is None:
    proc.kill()
    sys.exit("the emulator printed no address")


def rss_kb():
    with open(f"/proc/{proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def get(path, bearer):
    global conn
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + bearer})
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)


try:
    for _ in range(200):  # warm up
        get(f"/client/v4/accounts/{account}/storage/kv/namespaces", token)
    before = rss_kb()
    for i in range(n):
        if i % 2 == 0:
            get(f"/client/v4/accounts/{account}/storage/kv/namespaces?page={i}&x={'a' * 300}", token)
        else:
            other = "%032x" % random.getrandbits(128)
            get(f"/client/v4/accounts/{other}/storage/kv/namespaces/{'b' * 300}",
                "t%032x" % random.getrandbits(128))
        if (i + 1) % 10000 == 0:
            print(f"  after {i + 1}: {rss_kb()} kB", flush=True)
    after = rss_kb()
    print(f"requests={n} rss_before_kb={before} rss_after_kb={after} "
          f"growth_mb={(after - before) / 1024:.1f}")
finally:
    proc.terminate()
    proc.wait(10)
