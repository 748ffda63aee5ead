#!/usr/bin/env bash
# The API fuzzer: schemathesis (from PyPI, in a venv) against the debug
# server on loopback, driven by the server's own GET /openapi.json, with a
# valid Bearer token. Fails on any 5xx, any response that does not match the
# document (status, content type, headers, body schema), any panic or error
# in the server's log, or a /metrics page that Prometheus' own Python parser
# refuses. Bounded in examples per operation and in time.
#
# Usage: scripts/schemathesis/run.sh
# Knobs (environment): SCHEMATHESIS_MAX_EXAMPLES (default 30 per operation),
# SCHEMATHESIS_MAX_TIME (seconds, default 180, plus 60 for the last pass), SCHEMATHESIS_SEED (default
# random; printed so a failure can be replayed), SCHEMATHESIS_VENV (default
# target/schemathesis-venv), SERVER_BIN (default: built here, debug),
# SCHEMATHESIS_KEEP=1 (keep the server's log, database and the fuzzer's log).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION="4.32.5"
PROMETHEUS_CLIENT_VERSION="0.26.0"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
max_time="${SCHEMATHESIS_MAX_TIME:-180}"
seed="${SCHEMATHESIS_SEED:-$(python3 -c 'import random; print(random.randrange(1 << 31))')}"
venv="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"

echo "== schemathesis $SCHEMATHESIS_VERSION (venv $venv)"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" \
  || ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "prometheus-client==$PROMETHEUS_CLIENT_VERSION"
fi
# A CPython 3.11 bug can abort a phase from inside Hypothesis: see the module.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp scripts/schemathesis/ast_parse_workaround.py "$site/"
echo "import ast_parse_workaround" >"$site/ast_parse_workaround.pth"

if [ -z "${SERVER_BIN:-}" ]; then
  echo "== building the server (debug)"
  # The binary `cargo test --workspace --all-features` builds for its tests
  # (same features): already there after the tests, nothing compiles twice.
  cargo test --workspace --all-features --no-run
  SERVER_BIN=target/debug/meetinity-auth-server
fi
SERVER_BIN="$(cd "$(dirname "$SERVER_BIN")" && pwd)/$(basename "$SERVER_BIN")"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "${SCHEMATHESIS_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
server_env=(env -i PATH="$PATH" APP_HOST=127.0.0.1 APP_PORT="$port"
  DATABASE_URL="sqlite://$work/fuzz.db"
  JWT_SECRET="schemathesis-secret-schemathesis-secret-0123"
  RATE_LIMIT_PER_MINUTE=0 LOGIN_MAX_FAILURES=10000 LOGIN_IP_MAX_FAILURES=1000000
  RUST_LOG=warn)
# The fuzzing user is an admin (so /admin/audit and other users' data are
# reached too), made with the CLI.
email="fuzz@example.com"
password="a long fuzzing passphrase 42"
echo "== an admin user for the fuzzer (users create-admin)"
printf '%s' "$password" | (cd "$work" && "${server_env[@]}" "$SERVER_BIN" users create-admin --email "$email" --password-stdin)

echo "== server on $base (SQLite $work/fuzz.db)"
# Rate limits and login throttling off: the fuzzer sends thousands of
# requests from one address (429 is documented and would only hide paths).
(cd "$work" && exec "${server_env[@]}" "$SERVER_BIN" serve) >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "the server exited"; exit 1; }
  sleep 0.1
done
curl -fsS "$base/health" >/dev/null

echo "== its Bearer token"
token="$(curl -fsS "$base/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
# The fuzzer finds the user's own id and session (through the responses) and
# may revoke the session (logout, DELETE .../sessions/{id}): it then signs in
# again with POST /auth/login on any 401.
cat >"$work/dynamic-auth.toml" <<TOML
[auth.dynamic.openapi.bearer]
path = "/auth/login"
payload = { email = "$email", password = "$password" }
extract_selector = "/token"
TOML
curl -fsS "$base/auth/profile" -H "Authorization: Bearer $token" >/dev/null

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
venv="$(cd "$venv" && pwd)"
run_fuzzer() {
  # From the scratch directory: schemathesis keeps a `.schemathesis/` cache in its working directory.
  (cd "$work" && "$venv/bin/schemathesis" --no-color "$@") 2>&1 | tee -a "$work/schemathesis.log"
}
# The operations that can deactivate or erase the account itself (PATCH and
# PUT /users/{id} take `is_active`, DELETE deactivates): after them no
# sign-in works, so they run last.
enders=(-path /users/{id} -path /users/{id}/erase)
status=0
echo "== schemathesis: $max_examples examples per operation, at most ${max_time}s, seed $seed"
run_fuzzer --config-file "$work/dynamic-auth.toml" run "$base/openapi.json" \
  --checks "$checks" --seed "$seed" --workers 2 --request-timeout 30 \
  --max-examples "$max_examples" --max-time "$max_time" \
  "${enders[@]/#-path/--exclude-path}" || status=$?

echo "== schemathesis: the operations that can end the account (a fixed token; 401 once it ends)"
token="$(curl -fsS "$base/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
run_fuzzer run "$base/openapi.json" --header "Authorization: Bearer $token" \
  --checks "$checks" --seed "$seed" --workers 2 --request-timeout 30 \
  --max-examples "$max_examples" --max-time 60 \
  "${enders[@]/#-path/--include-path}" || status=$?

echo "== /metrics through prometheus_client's parser"
curl -fsS "$base/metrics" | "$venv/bin/python" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
names = {f.name for f in families}
for needed in ("meetinity_http_requests", "meetinity_http_request_duration_seconds", "meetinity_logins"):
    assert needed in names, (needed, sorted(names))
print(f"{len(families)} metric families, {sum(len(f.samples) for f in families)} samples: parsed")
' || status=1

echo "== server log"
if grep -E "panicked|ERROR" "$work/server.log"; then
  echo "the server logged errors or panics (above)"
  status=1
else
  echo "no error, no panic"
fi
cases="$(grep -Eo '[0-9]+ generated' "$work/schemathesis.log" | awk '{ n += $1 } END { print n + 0 }' || true)"
echo "== schemathesis: ${cases:-?} test cases, seed $seed, exit $status"
exit "$status"
