#!/usr/bin/env bash
# wrangler against `lumierd emulator`: the KV commands, then the Workers workflow (`deploy`,
# `secret put/list/delete`, a second `deploy` through the versions and deployments API,
# `deployments list`, `secret bulk`, `versions list/view/upload/deploy`, `rollback`, a secret put refused
# after a rollback, a secret put that creates a draft Worker, `delete`).
# Env: CF_BASE (…/client/v4), CF_TOKEN, CF_ACCOUNT; WRANGLER (the wrangler command, default
# "npx --no-install wrangler"); REQUEST_LOG (optional: the emulator's request log, checked for
# the secret text). Prints PASS/FAIL lines and a summary; exits 1 if anything failed.
set -u
export CLOUDFLARE_API_BASE_URL="$CF_BASE" CLOUDFLARE_API_TOKEN="$CF_TOKEN" CLOUDFLARE_ACCOUNT_ID="$CF_ACCOUNT"
export WRANGLER_SEND_METRICS=false CI=true NO_COLOR=1 FORCE_COLOR=0
W=${WRANGLER:-npx --no-install wrangler}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=0; fail=0
tag="wr-$(date +%s%N | tail -c 7)"
# check NAME EXPECTED-REGEX CMD... : runs CMD, passes when it exits 0 and its output matches.
check() {
  local name=$1 want=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ] && grep -Eq -- "$want" <<<"$out"; then
    pass=$((pass+1)); echo "PASS $name"
  else
    fail=$((fail+1)); echo "FAIL $name (exit $rc)"; sed 's/^/    | /' <<<"$out" | tail -15
  fi
  LAST="$out"
}
# check_fails NAME EXPECTED-REGEX CMD... : passes when CMD exits non-zero and its output matches.
check_fails() {
  local name=$1 want=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ $rc -ne 0 ] && grep -Eq -- "$want" <<<"$out"; then
    pass=$((pass+1)); echo "PASS $name"
  else
    fail=$((fail+1)); echo "FAIL $name (exit $rc)"; sed 's/^/    | /' <<<"$out" | tail -15
  fi
}
ns_id() { # id of the namespace titled $1, from `kv namespace list` (JSON)
  $W kv namespace list 2>/dev/null | python3 -c '
import json,sys
t=sys.argv[1]; d=json.load(sys.stdin)
print(next((n["id"] for n in d if n["title"]==t), ""))' "$1"
}

check "kv namespace create" "$tag-a|id" $W kv namespace create "$tag-a"
check "kv namespace create (second)" "id" $W kv namespace create "$tag-b"
check "kv namespace list" "\"title\": \"$tag-a\"" $W kv namespace list
NS=$(ns_id "$tag-a"); NSB=$(ns_id "$tag-b")
[ -n "$NS" ] || { echo "FAIL could not find the namespace id"; exit 1; }
check "kv namespace rename (by name)" "$tag-renamed" $W kv namespace rename "$tag-b" --new-name "$tag-renamed"
check "kv namespace rename (by id)" "$tag-renamed2" $W kv namespace rename --namespace-id "$NSB" --new-name "$tag-renamed2"
check "kv key put" "Writing" $W kv key put greeting hello --namespace-id "$NS" --remote
check "kv key get" "^hello$" $W kv key get greeting --namespace-id "$NS" --remote --text
check "kv key put --metadata" "Writing" $W kv key put "dir/with meta" v2 --namespace-id "$NS" --remote --metadata '{"owner":"me","n":1}'
check "kv key get (encoded key)" "^v2$" $W kv key get "dir/with meta" --namespace-id "$NS" --remote --text
check "kv key put --ttl" "Writing" $W kv key put ttl-key v3 --namespace-id "$NS" --remote --ttl 3600
check "kv key put --expiration" "Writing" $W kv key put exp-key v4 --namespace-id "$NS" --remote --expiration $(( $(date +%s) + 7200 ))
printf 'file-value\n' > value.txt
check "kv key put --path" "Writing" $W kv key put from-file --path value.txt --namespace-id "$NS" --remote
check_fails "kv key put --ttl below 60 (rejected)" "Expiration TTL must be at least 60" $W kv key put short v --namespace-id "$NS" --remote --ttl 10
check "kv key list" '"name": "dir/with meta"' $W kv key list --namespace-id "$NS" --remote
grep -q '"owner": "me"' <<<"$LAST" && grep -q '"expiration"' <<<"$LAST" \
  && { pass=$((pass+1)); echo "PASS kv key list shows metadata and expiration"; } \
  || { fail=$((fail+1)); echo "FAIL kv key list shows metadata and expiration"; }
check "kv key list --prefix" '"name": "dir/with meta"' $W kv key list --namespace-id "$NS" --remote --prefix dir/
python3 - > bulk.json <<'PY'
import json
items=[{"key":f"bulk-{i:04d}","value":f"v{i}"} for i in range(1200)]
items.append({"key":"b64","value":"aGVsbG8=","base64":True,"metadata":{"x":1},"expiration_ttl":600})
print(json.dumps(items))
PY
check "kv bulk put (1201 keys)" "Success" $W kv bulk put bulk.json --namespace-id "$NS" --remote
check "kv key get (bulk base64)" "^hello$" $W kv key get b64 --namespace-id "$NS" --remote --text
python3 -c 'import json; print(json.dumps(["b64", "bulk-0001", "missing"]))' > get.json
# `kv bulk get` prints beta warnings around the JSON: look for the values.
check "kv bulk get" '"bulk-0001": "v1"' $W kv bulk get get.json --namespace-id "$NS" --remote
grep -q '"missing": null' <<<"$LAST" && grep -q '"b64": "hello"' <<<"$LAST" \
  && { pass=$((pass+1)); echo "PASS kv bulk get: missing keys are null"; } \
  || { fail=$((fail+1)); echo "FAIL kv bulk get: missing keys are null"; }
check "kv key list (>1000 keys, cursor)" "bulk-1199" $W kv key list --namespace-id "$NS" --remote --prefix bulk-
n=$(python3 -c 'import json,sys; print(len(json.loads(sys.stdin.read())))' <<<"$LAST" 2>/dev/null)
[ "$n" = 1200 ] && { pass=$((pass+1)); echo "PASS kv key list returns all 1200 keys"; } \
  || { fail=$((fail+1)); echo "FAIL kv key list returns all 1200 keys (got $n)"; }
python3 -c 'import json; print(json.dumps([f"bulk-{i:04d}" for i in range(1200)]))' > del.json
check "kv bulk delete" "Success" $W kv bulk delete del.json --namespace-id "$NS" --remote --force
check "kv key list after bulk delete" '^\[\]$' $W kv key list --namespace-id "$NS" --remote --prefix bulk-
check "kv key delete" "Deleting" $W kv key delete greeting --namespace-id "$NS" --remote
# wrangler reports a missing key as a failed fetch with the HTTP status, as against the real API.
check_fails "kv key get (deleted key: 404)" "404" $W kv key get greeting --namespace-id "$NS" --remote --text
check "kv namespace delete (by id)" "Deleting|Deleted" $W kv namespace delete --namespace-id "$NS" --skip-confirmation
check "kv namespace delete (by name)" "Deleting|Deleted" $W kv namespace delete "$tag-renamed2" --skip-confirmation
check "kv namespace list (after delete)" "^\[" $W kv namespace list
if grep -q "$tag" <<<"$LAST"; then
  fail=$((fail+1)); echo "FAIL deleted namespaces are gone from the list"
else
  pass=$((pass+1)); echo "PASS deleted namespaces are gone from the list"
fi

# --- The Workers workflow -------------------------------------------------------------------
check "kv namespace create (for the worker)" "id" $W kv namespace create "$tag-worker"
NSW=$(ns_id "$tag-worker")
worker="$tag-worker"
secret_text="canary-$tag-$(date +%s%N)"
mkdir -p app/src && cd app || exit 1
cat > src/index.js <<'JS'
export default {
  async fetch(request, env) {
    return new Response(`${env.STAGE}:${(await env.CACHE.get("k")) ?? "none"}`);
  },
};
JS
cat > wrangler.json <<JSON
{"name": "$worker", "main": "src/index.js", "compatibility_date": "2025-01-01",
 "kv_namespaces": [{"binding": "CACHE", "id": "$NSW"}], "vars": {"STAGE": "dev"}}
JSON
uuid='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
check "deploy (new worker, KV binding, var)" "Current Version ID: $uuid" $W deploy
grep -q "https://$worker\.[a-z0-9-]*\.workers\.dev" <<<"$LAST" \
  && { pass=$((pass+1)); echo "PASS deploy prints the workers.dev URL"; } \
  || { fail=$((fail+1)); echo "FAIL deploy prints the workers.dev URL"; }
first=$(grep -Eo "Current Version ID: $uuid" <<<"$LAST" | awk '{print $4}')
secret_put() { printf '%s' "$secret_text" | $W secret put API_KEY; }
check "secret put" "Success! Uploaded secret API_KEY" secret_put
check "secret list" '"name": "API_KEY"' $W secret list
grep -q '"type": "secret_text"' <<<"$LAST" && ! grep -q "$secret_text" <<<"$LAST" \
  && { pass=$((pass+1)); echo "PASS secret list shows the type, never the text"; } \
  || { fail=$((fail+1)); echo "FAIL secret list shows the type, never the text"; }
sed -i 's/"dev"/"dev2"/' wrangler.json
check "deploy again (versions + deployments)" "Current Version ID: $uuid" $W deploy
second=$(grep -Eo "Current Version ID: $uuid" <<<"$LAST" | awk '{print $4}')
[ -n "$second" ] && [ "$second" != "$first" ] \
  && { pass=$((pass+1)); echo "PASS the second deploy made a new version"; } \
  || { fail=$((fail+1)); echo "FAIL the second deploy made a new version ($first, $second)"; }
check "secret survives the second deploy" '"name": "API_KEY"' $W secret list
check "deployments list" "\(100%\) $second" $W deployments list
check "versions list" "$first" $W versions list
check "versions view" "STAGE" $W versions view "$second"
check "secret delete" "Success! Deleted secret API_KEY" $W secret delete API_KEY
check "secret list (after delete)" '^\[\]$' $W secret list
printf '{"BULK_A": "%s", "BULK_B": "b"}' "$secret_text" > ../bulk-secrets.json
check "secret bulk (PATCH …/secrets-bulk)" "2 secrets successfully created" $W secret bulk ../bulk-secrets.json
check "secret list (after bulk)" '"name": "BULK_B"' $W secret list
check "versions upload (not deployed)" "Worker Version ID: $uuid" $W versions upload --message "staged"
staged=$(grep -Eo "Worker Version ID: $uuid" <<<"$LAST" | awk '{print $4}')
check "versions deploy VERSION@100%" "Deployed $worker version $staged at 100%" $W versions deploy "$staged@100%" --yes
check "rollback" "has been deployed to 100% of traffic" $W rollback --message "back" -y
# After a rollback the newest version is not the deployed one: the API refuses secret edits (10215).
rb_put() { printf 'x' | $W secret put AFTER_ROLLBACK; }
check_fails "secret put after a rollback (10215)" "versions secret put" rb_put
draft_put() { printf 'v' | $W secret put DRAFT --name "$tag-draft"; }
check "secret put on a missing worker (draft worker)" "Success! Uploaded secret DRAFT" draft_put
check "delete" "Successfully deleted" $W delete --force
check_fails "secret list (deleted worker)" "10007|not found|does not exist" $W secret list
cd .. || exit 1
if [ -n "${REQUEST_LOG:-}" ]; then
  if [ -s "$REQUEST_LOG" ] && ! grep -q "$secret_text" "$REQUEST_LOG"; then
    pass=$((pass+1)); echo "PASS the secret text is not in the request log"
  else
    fail=$((fail+1)); echo "FAIL the secret text is not in the request log"
  fi
fi
check "kv namespace delete (the worker's)" "Deleting|Deleted" $W kv namespace delete --namespace-id "$NSW" --skip-confirmation

echo "wrangler: $pass passed, $fail failed"
[ $fail -eq 0 ]
