#!/usr/bin/env bash
# Interoperability check: a full Meetinity Auth login through an independent,
# certified OpenID provider (the npm package `oidc-provider`), on loopback.
#
#   cargo build -p meetinity-auth-server     # the caller builds the binary
#   bash scripts/oidc-interop/run.sh
#
# It installs the pinned oidc-provider (npm ci, from package-lock.json),
# starts it on 127.0.0.1 with one client (client_secret_basic, PKCE
# required, redirect to Meetinity's callback), starts
# target/debug/meetinity-auth-server (or $MEETINITY_BIN) with
# OIDC_PROVIDERS=interop and INTEROP_* pointing at it, then drive.js signs in
# like a browser (login and consent interactions included) and checks the
# tokens with POST /auth/verify and GET /auth/profile. Prints PASS or FAIL,
# exits non-zero on failure, and always stops what it started. Every wait is
# bounded.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${MEETINITY_BIN:-$root/target/debug/meetinity-auth-server}"
work="$(mktemp -d "${TMPDIR:-/tmp}/meetinity-interop.XXXXXX")"
provider_pid=""
server_pid=""

cleanup() {
  local status=$?
  for pid in "$server_pid" "$provider_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "interop: $*" >&2
  for log in provider server; do
    if [[ -s "$work/$log.log" ]]; then
      echo "---- last lines of the $log log" >&2
      tail -n 40 "$work/$log.log" >&2
    fi
  done
  echo "FAIL: OpenID Connect interoperability (oidc-provider)"
  exit 1
}

command -v node >/dev/null || fail "node is required (Node.js >= 20.19)"
[[ -x "$bin" ]] || fail "$bin not found: build it first with \`cargo build -p meetinity-auth-server\`"

echo "interop: installing oidc-provider (npm ci)"
(cd "$here" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$work/npm.log" 2>&1 \
  || { cat "$work/npm.log" >&2; fail "npm ci failed"; }

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close();})"
}

# Waits (bounded) until $1 answers HTTP 200 and $2 (a pid) is still alive.
wait_http() {
  local url=$1 pid=$2 what=$3
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || fail "$what exited during start-up"
    if node -e "fetch(process.argv[1],{signal:AbortSignal.timeout(1000)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))" "$url"; then
      return 0
    fi
    sleep 0.2
  done
  fail "$what did not answer at $url within 30 s"
}

provider_port="$(free_port)"
app_port="$(free_port)"
issuer="http://127.0.0.1:$provider_port"
app="http://127.0.0.1:$app_port"
client_secret="$(node -e "console.log(require('crypto').randomBytes(24).toString('base64url'))")"
jwt_secret="$(node -e "console.log(require('crypto').randomBytes(48).toString('base64url'))")"
redirect="$app/auth/interop/callback"

echo "interop: starting oidc-provider at $issuer"
INTEROP_PROVIDER_PORT="$provider_port" INTEROP_CLIENT_ID="meetinity-interop" \
  INTEROP_CLIENT_SECRET="$client_secret" INTEROP_REDIRECT_URI="$redirect" \
  node "$here/provider.js" >"$work/provider.log" 2>&1 &
provider_pid=$!
wait_http "$issuer/.well-known/openid-configuration" "$provider_pid" "oidc-provider"

echo "interop: starting $bin at $app"
# A clean environment (no REDIS_URL, no real provider credentials) and a
# working directory without a .env file.
(cd "$work" && exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  APP_HOST=127.0.0.1 APP_PORT="$app_port" \
  DATABASE_URL="sqlite://$work/interop.db" \
  JWT_SECRET="$jwt_secret" PUBLIC_BASE_URL="$app" \
  HTTP_TIMEOUT_SECS=10 RUST_LOG=info \
  OIDC_PROVIDERS=interop \
  INTEROP_CLIENT_ID="meetinity-interop" INTEROP_CLIENT_SECRET="$client_secret" \
  INTEROP_REDIRECT_URI="$redirect" INTEROP_ISSUER_URL="$issuer" \
  "$bin" serve) >"$work/server.log" 2>&1 &
server_pid=$!
wait_http "$app/health" "$server_pid" "meetinity-auth-server"

echo "interop: signing in through oidc-provider"
if MEETINITY_URL="$app" PROVIDER_NAME=interop INTEROP_ISSUER="$issuer" INTEROP_LOGIN=ada \
  timeout 120 node "$here/drive.js"; then
  echo "PASS: OpenID Connect interoperability (oidc-provider $(node -p "require('$here/node_modules/oidc-provider/package.json').version"))"
else
  fail "the login through oidc-provider failed"
fi
