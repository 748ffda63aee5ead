#!/usr/bin/env bash
# Soak: mixed load against one server for DURATION_SECS, 0 errors expected,
# RSS growth after warm-up under 10%.
#
#   scripts/soak/run.sh DURATION_SECS [--pg]
#
# Default: SQLite (a file in a temporary directory) and the in-process cache.
# --pg: a fresh database on TEST_DATABASE_URL's server and Redis at
# TEST_REDIS_URL (own key prefix). The caller builds the server
# (target/debug/meetinity-auth-server, or BIN=...). Load: scripts/soak/soak.py
# (verify, profile reads and writes, refresh, login + logout) at SOAK_RPS
# requests/s (default 150) over SOAK_WORKERS keep-alive connections (8).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

DURATION=${1:?usage: scripts/soak/run.sh DURATION_SECS [--pg]}
MODE=${2:-sqlite}
BIN=${BIN:-$ROOT/target/debug/meetinity-auth-server}
[ -x "$BIN" ] || { echo "soak: $BIN is missing: cargo build -p meetinity-auth-server" >&2; exit 2; }

WORK=$(mktemp -d /tmp/meetinity-soak.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
SERVER_PID=""
PG_DB=""
PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}

cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ $rc -ne 0 ]; then echo "soak: server log kept in $WORK/server.log"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

case "$MODE" in
  sqlite|--sqlite)
    DB_URL="sqlite://$WORK/soak.db"
    EXTRA=()
    ;;
  --pg)
    PG_DB="soak_$$_$(date +%s)"
    psql "$PG_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $PG_DB"
    DB_URL="${PG_URL%/*}/$PG_DB"
    EXTRA=(REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}" REDIS_PREFIX="soak-$PG_DB")
    ;;
  *) echo "soak: unknown option $MODE (want --pg)" >&2; exit 2 ;;
esac

env -i PATH="$PATH" HOME="${HOME:-/root}" \
  APP_HOST=127.0.0.1 APP_PORT="$PORT" DATABASE_URL="$DB_URL" "${EXTRA[@]}" \
  JWT_SECRET="soak-script-secret-soak-script-secret-0123" \
  RATE_LIMIT_PER_MINUTE=0 LOGIN_IP_MAX_FAILURES=1000000 RUST_LOG=warn \
  "$BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/ready" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "soak: the server died:"; tail -n 20 "$WORK/server.log"; exit 1; }
  sleep 0.2
done
echo "soak: $DURATION s against $BIN ($MODE, $DB_URL) on port $PORT, pid $SERVER_PID"
python3 "$ROOT/scripts/soak/soak.py" "http://127.0.0.1:$PORT" "$SERVER_PID" "$DURATION"
