#!/usr/bin/env python3
"""Reproducible soak of lumierd against a faulty `lumierd emulator` (issue #11; RELIABILITY.md, ## Soak).

Usage: scripts/soak.py [--bin target/debug/lumierd] [--seed N] [--rounds 40] [--seconds 90]
                       [--apps 3] [--stages 2] [--kv 2] [--workers 3] [--no-disk-full] [--keep]
                       [--latency-ms 20] [--error-rate 0.05] [--reset-rate 0.03]
                       [--applied-lost-rate 0.1] [--rate-limit 40/5s]

Python 3 standard library only; builds nothing (pass the binary). Everything runs on
127.0.0.1 in a private temp folder, and everything started is stopped and removed on exit
(also on Ctrl-C / SIGTERM / an error): processes, the tmpfs mount, the folder (unless --keep).

What it does, from one seed (same seed, same decisions; timings still vary):
  1. starts `lumierd emulator` on a free loopback port with `--data` (so it survives kills),
     a `--request-log`, and faults: latency, 500s, resets, "applied, answer lost", rate limit;
  2. writes APPS x STAGES stage manifests, each with KV namespaces and workers binding them;
  3. for at most ROUNDS rounds and SECONDS seconds: edits a random subset of workers (and now
     and then adds or removes a kv+worker pair), starts `lumierd run` (daemon) and kill -9s it
     after a random delay; in about a third of the rounds also kill -9s the emulator mid-run
     and restarts it on the same port after a random pause;
  4. once, midway, when run as root: the state folder is a 64 MiB tmpfs; it is filled up while
     the daemon runs and edits arrive, the daemon must report it (/healthz 503) and send no
     provider write while it lasts, then the filler is removed and it must recover by itself.
     Without root the phase is skipped with a note;
  5. restarts the emulator without faults and runs `lumierd run --once` (2 min at most);
  6. reads the account and the request log and prints the figures.

Exit status: 0 when the final run exits 0 and there are no duplicates, orphans, missing or
stale resources (and, when it ran, the disk-full phase held); 1 otherwise; 2 on a usage or
setup error.

Figures: kills (lumierd, emulator), duplicates (namespaces with the same title beyond one),
orphans (on the account, not declared), missing (declared, absent), stale (workers whose
binding V is not the manifest's), uploads per script (min/median/max, applied uploads from the
request log; most are edits: each round edits a third of the workers), requests, 429s, and the faults injected: 500s, resets (status 0: injected resets
and requests whose client was killed mid-request), answers lost after applying.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ACCOUNT = "1ae1d0c0ffee00000000000000000001"  # the emulator's default account
TOKEN = "lumierd-local-token"  # the emulator's default loopback token (public, local only)
WORKER = 'export default { fetch() { return new Response("hi") } }\n'


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="target/debug/lumierd", help="the lumierd binary")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--rounds", type=int, default=40, help="most kill rounds")
    p.add_argument("--seconds", type=float, default=90, help="most seconds of kill rounds")
    p.add_argument("--apps", type=int, default=3)
    p.add_argument("--stages", type=int, default=2)
    p.add_argument("--kv", type=int, default=2, help="namespaces per stage")
    p.add_argument("--workers", type=int, default=3, help="workers per stage")
    p.add_argument("--latency-ms", type=int, default=20)
    p.add_argument("--error-rate", type=float, default=0.05)
    p.add_argument("--reset-rate", type=float, default=0.03)
    p.add_argument("--applied-lost-rate", type=float, default=0.1)
    p.add_argument("--rate-limit", default="40/5s", help="N/DURATION, or 'off'")
    p.add_argument("--no-disk-full", action="store_true", help="skip the disk-full phase")
    p.add_argument("--keep", action="store_true",
                   help="keep the temp folder (printed; a tmpfs state is copied to state.kept)")
    return p.parse_args()


class Soak:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.tmp = tempfile.mkdtemp(prefix="lumierd-soak-")
        self.m = os.path.join(self.tmp, "m")
        self.state = os.path.join(self.tmp, "state")
        self.emu_data = os.path.join(self.tmp, "emulator")
        self.reqlog = os.path.join(self.tmp, "requests.jsonl")
        self.procs = []  # every Popen started, stopped on exit
        self.mounted = False
        self.emu = None
        self.port = None
        self.kills = 0
        self.emu_restarts = 0
        self.gen = {}  # worker provider name -> generation (its binding V)
        self.extras = set()  # (app, stage) with the extra kv+worker pair
        self.notes = []
        self.disk = None  # disk-full phase outcome, or None when skipped

    # -- processes -----------------------------------------------------------------------------

    def start(self, argv, log, env=None):
        out = open(log, "ab")
        p = subprocess.Popen(argv, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    @staticmethod
    def wait_line(log, pattern, proc, within):
        """The first match of `pattern` in file `log`, polled until `within` seconds pass."""
        deadline = time.monotonic() + within
        pause = 0.01
        while time.monotonic() < deadline:
            try:
                with open(log, encoding="utf-8", errors="replace") as f:
                    m = re.search(pattern, f.read())
                if m:
                    return m
            except FileNotFoundError:
                pass
            if proc.poll() is not None:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        return None

    def kill(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        if self.mounted:
            try:
                if self.args.keep:
                    shutil.copytree(self.state, os.path.join(self.tmp, "state.kept"),
                                    ignore=shutil.ignore_patterns("*.sock"), dirs_exist_ok=True)
            finally:
                subprocess.run(["umount", "-l", self.state], check=False)
                self.mounted = False
        if self.args.keep:
            print(f"kept: {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the emulator --------------------------------------------------------------------------

    def start_emulator(self, faults=True):
        a = self.args
        argv = [self.bin, "emulator", "--listen", f"127.0.0.1:{self.port or 0}",
                "--data", self.emu_data, "--request-log", self.reqlog]
        if faults:
            argv += ["--latency", f"{a.latency_ms}ms", "--error-rate", str(a.error_rate),
                     "--reset-rate", str(a.reset_rate),
                     "--applied-lost-rate", str(a.applied_lost_rate)]
            if a.rate_limit != "off":
                argv += ["--rate-limit", a.rate_limit]
        log = os.path.join(self.tmp, "emulator.log")
        # The port was free a moment ago; a restart may have to wait for it.
        for _ in range(50):
            mark = os.path.getsize(log) if os.path.exists(log) else 0
            proc = self.start(argv, log)
            m = None
            deadline = time.monotonic() + 30
            while m is None and time.monotonic() < deadline and proc.poll() is None:
                with open(log, encoding="utf-8", errors="replace") as f:
                    f.seek(mark)
                    m = re.search(r"base URL: http://127\.0\.0\.1:(\d+)/client/v4", f.read())
                time.sleep(0.02)
            if m:
                self.port = int(m.group(1))
                self.emu = proc
                return
            self.kill(proc)
            time.sleep(0.1)
        raise RuntimeError(f"the emulator did not start (see {log})")

    def base(self):
        return f"http://127.0.0.1:{self.port}/client/v4"

    def api(self, path):
        """GET an account path from the emulator (faults must be off): the JSON answer."""
        req = urllib.request.Request(f"{self.base()}/accounts/{ACCOUNT}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def api_all(self, path):
        items, page = [], 1
        while True:
            sep = "&" if "?" in path else "?"
            got = self.api(f"{path}{sep}page={page}&per_page=100")
            items += got["result"]
            info = got.get("result_info") or {}
            if not got["result"] or page >= info.get("total_pages", 1):
                return items
            page += 1

    # -- manifests -----------------------------------------------------------------------------

    def stages(self):
        for a in range(self.args.apps):
            for s in range(self.args.stages):
                yield f"soak{a}", f"s{s}"

    def write_manifests(self):
        os.makedirs(self.m, exist_ok=True)
        with open(os.path.join(self.m, "index.js"), "w") as f:
            f.write(WORKER)
        for app, stage in self.stages():
            kv = [f"kv{k}" for k in range(self.args.kv)]
            workers = [(f"w{w}", kv[w % len(kv)] if kv else None) for w in range(self.args.workers)]
            if (app, stage) in self.extras:
                kv.append("xkv")
                workers.append(("xw", "xkv"))
            lines = [f"app: {{ name: {app} }}", f"stage: {stage}", "resources:"]
            lines += [f"  {k}: {{ type: kv }}" for k in kv]
            for w, k in workers:
                name = f"{app}-{stage}-{w}"
                g = self.gen.setdefault(name, 1)
                lines += [f"  {w}:", "    type: worker", "    entry: index.js", "    bindings:",
                          f'      V: "{g}"']
                if k:
                    lines.append(f"      K: {{ kv: {k} }}")
            # Written aside and renamed in: a reader never sees half a file.
            path = os.path.join(self.m, f"{app}-{stage}.yaml")
            with open(path + ".new", "w") as f:
                f.write("\n".join(lines) + "\n")
            os.replace(path + ".new", path)

    def declared(self):
        """(namespace titles, {worker script: generation}) the manifests declare now."""
        titles, scripts = set(), {}
        for app, stage in self.stages():
            kv = [f"kv{k}" for k in range(self.args.kv)]
            ws = [f"w{w}" for w in range(self.args.workers)]
            if (app, stage) in self.extras:
                kv.append("xkv")
                ws.append("xw")
            titles |= {f"{app}-{stage}-{k}" for k in kv}
            for w in ws:
                name = f"{app}-{stage}-{w}"
                scripts[name] = self.gen[name]
        return titles, scripts

    def edit(self):
        """Bumps a random third of the workers; every few rounds toggles an extra pair."""
        for name in list(self.gen):
            if self.rng.random() < 0.33:
                self.gen[name] += 1
        if self.rng.random() < 0.3:
            pair = self.rng.choice(list(self.stages()))
            self.extras ^= {pair}
        self.write_manifests()

    # -- lumierd run ---------------------------------------------------------------------------

    def run_argv(self, once=False):
        argv = [self.bin, "run", "--manifests", self.m, "--state", self.state,
                "--api-url", self.base(), "--concurrency", "4", "--debounce", "50ms"]
        if once:
            return argv + ["--once"]
        return argv + ["--resync", "1h", "--admin-listen", "127.0.0.1:0", "--stuck-after", "1m"]

    def env(self):
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "NOTIFY_SOCKET")}
        env["RUST_LOG"] = "info"
        return env

    def round(self, n, log):
        self.edit()
        d = self.start(self.run_argv(), log, self.env())
        delay = self.rng.uniform(0.1, 3.0)
        emu_kill = self.rng.random() < 0.35
        emu_at = self.rng.uniform(0.0, delay)
        start = time.monotonic()
        if emu_kill:
            time.sleep(emu_at)
            self.kill(self.emu)
            time.sleep(self.rng.uniform(0.05, 1.0))
            self.start_emulator()
            self.emu_restarts += 1
        time.sleep(max(0.0, delay - (time.monotonic() - start)))
        self.kill(d)
        self.kills += 1
        if d.returncode != -signal.SIGKILL:
            self.notes.append(f"round {n}: lumierd had exited by itself ({d.returncode}), see {log}")

    # -- disk full -----------------------------------------------------------------------------

    def mount_state(self):
        os.makedirs(self.state, exist_ok=True)
        if self.args.no_disk_full:
            return
        if os.geteuid() != 0:
            print("note: not root: the state folder is no tmpfs and the disk-full phase is skipped")
            return
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs",
                            self.state], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"note: cannot mount a tmpfs ({r.stderr.strip()}): disk-full phase skipped")
            return
        self.mounted = True

    @staticmethod
    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def writes_between(self, t0, t1):
        """Provider writes logged (by completion time) between two epoch times."""
        n = 0
        for r in self.log_lines():
            if r["method"] != "GET" and t0 <= ts_epoch(r["ts"]) <= t1:
                n += 1
        return n

    def disk_full(self, log):
        """Fills the state tmpfs under a running daemon, then frees it; returns the outcome."""
        d = self.start(self.run_argv(), log, self.env())
        m = self.wait_line(log, r"admin API: (http://\S+)", d, 30)
        if not m:
            self.kill(d)
            return {"held": False, "why": "no admin API line"}
        admin = m.group(1)
        filler = os.path.join(self.state, "filler")
        with open(filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        # Edits until a pass fails on the full disk and the daemon says so (60 s at most).
        failed_at = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.get(f"{admin}/healthz") == 503:
                failed_at = time.time()
                break
            self.edit()
            time.sleep(0.5)
        out = {"held": False, "healthz_503": failed_at is not None}
        if failed_at is None:
            os.remove(filler)
            self.kill(d)
            out["why"] = "/healthz never answered 503 with the state disk full"
            return out
        # While it lasts: more edits, no provider write may be sent.
        for _ in range(3):
            self.edit()
            time.sleep(1.0)
        freed_at = time.time()
        os.remove(filler)
        # Writes logged up to 1 s after the failure could have been in flight already.
        out["writes_while_full"] = self.writes_between(failed_at + 1.0, freed_at)
        recovered = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.get(f"{admin}/healthz") == 200:
                recovered = time.time() - freed_at
                break
            time.sleep(0.2)
        out["recovered_after_s"] = recovered
        self.kill(d)
        self.kills += 1
        out["held"] = out["writes_while_full"] == 0 and recovered is not None
        return out

    # -- figures -------------------------------------------------------------------------------

    def log_lines(self):
        with open(self.reqlog, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def main(self):
        a = self.args
        print(f"soak: seed {self.seed}, {a.apps} apps x {a.stages} stages x ({a.kv} kv + "
              f"{a.workers} workers), at most {a.rounds} rounds / {a.seconds:.0f} s; in {self.tmp}")
        self.mount_state()
        self.write_manifests()
        self.start_emulator()
        began = time.monotonic()
        disk_round = a.rounds // 2 if self.mounted else None
        rounds = 0
        for n in range(a.rounds):
            if time.monotonic() - began > a.seconds:
                self.notes.append(f"stopped after {n} rounds: the {a.seconds:.0f} s cap")
                break
            log = os.path.join(self.tmp, f"run-{n:02}.log")
            if n == disk_round:
                self.disk = self.disk_full(log)
            else:
                self.round(n, log)
            rounds += 1
        # The final pass: no faults, no kill.
        self.kill(self.emu)
        self.start_emulator(faults=False)
        self.emu_restarts += 1
        log = os.path.join(self.tmp, "final.log")
        d = self.start(self.run_argv(once=True), log, self.env())
        try:
            final = d.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill(d)
            final = "timeout (120 s)"
        return self.report(rounds, final, log, time.monotonic() - began)

    def report(self, rounds, final, final_log, took):
        titles, scripts = self.declared()
        namespaces = [n["title"] for n in self.api_all("/storage/kv/namespaces")]
        on_account = [s["id"] for s in self.api_all("/workers/scripts")]
        dup_ns = sum(namespaces.count(t) - 1 for t in set(namespaces))
        dup_sc = sum(on_account.count(s) - 1 for s in set(on_account))
        orphans = sorted((set(namespaces) - titles) | (set(on_account) - set(scripts)))
        missing = sorted((titles - set(namespaces)) | (set(scripts) - set(on_account)))
        stale = []
        for name, g in sorted(scripts.items()):
            if name not in on_account:
                continue
            bindings = self.api(f"/workers/scripts/{name}/settings")["result"].get("bindings", [])
            v = next((b.get("text") for b in bindings if b.get("name") == "V"), None)
            if v != str(g):
                stale.append(f"{name} ({v} != {g})")
        lines = self.log_lines()
        uploads = {}
        for r in lines:
            path = r["path"].split("/workers/scripts/", 1)
            if (r["method"] == "PUT" and len(path) == 2 and "/" not in path[1]
                    and 200 <= r["status"] < 300):
                uploads[path[1]] = uploads.get(path[1], 0) + 1
        per = sorted(uploads.get(s, 0) for s in set(scripts) | set(uploads))
        statuses = [r["status"] for r in lines]
        lost = sum(1 for r in lines if r.get("answer_lost"))
        ok = (final == 0 and dup_ns + dup_sc == 0 and not orphans and not missing and not stale
              and (self.disk is None or self.disk["held"]))
        print(f"seed:              {self.seed}")
        print(f"rounds:            {rounds} in {took:.0f} s")
        print(f"kills:             {self.kills} lumierd (kill -9), {self.emu_restarts} emulator "
              f"restarts ({self.emu_restarts - 1} kill -9 mid-run, 1 to turn the faults off)")
        if self.disk is None:
            print("disk full:         skipped (--no-disk-full, not root, or no tmpfs)")
        else:
            print(f"disk full:         {json.dumps(self.disk)}")
        print(f"final run --once:  exit {final}")
        print(f"declared:          {len(titles)} namespaces, {len(scripts)} scripts")
        print(f"duplicates:        {dup_ns} namespaces, {dup_sc} scripts")
        print(f"orphans:           {len(orphans)} {orphans[:5]}")
        print(f"missing:           {len(missing)} {missing[:5]}")
        print(f"stale:             {len(stale)} {stale[:5]}")
        if per:
            print(f"uploads/script:    min {per[0]} / median {statistics.median(per):g} / "
                  f"max {per[-1]} ({sum(per)} applied uploads, {len(per)} scripts)")
        print(f"requests:          {len(lines)}")
        print(f"429s:              {statuses.count(429)}")
        print(f"injected:          {sum(1 for s in statuses if s >= 500)} 5xx, "
              f"{statuses.count(0)} resets (status 0, incl. clients killed mid-request), "
              f"{lost} applied-lost")
        for note in self.notes:
            print(f"note: {note}")
        if final != 0:
            print(f"final run log: {final_log} (use --keep to keep it)")
        print("result:            " + ("OK" if ok else "FAILED"))
        return 0 if ok else 1


def ts_epoch(ts):
    """Seconds since the epoch of the request log's RFC 3339 UTC time (…Z, microseconds)."""
    from datetime import datetime, timezone
    return datetime.strptime(ts.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()


def main():
    args = parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"no lumierd binary at {args.bin} (build it: cargo build)", file=sys.stderr)
        return 2
    soak = Soak(args)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return soak.main()
    except RuntimeError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 2
    finally:
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
