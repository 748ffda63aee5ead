#!/usr/bin/env bash
# Fault script: the server under steady load while its dependencies fail.
#
#   scripts/fault/run.sh            (the caller builds target/debug/meetinity-auth-server)
#
# Starts a private PostgreSQL (initdb into a temporary directory, its own
# port, run as the `postgres` OS user) and a private Redis (its own port), so
# that stopping them disturbs nothing else on the machine; SMTP_URL points at
# a closed port (the relay is down for the whole run). Then, under steady
# load (scripts/fault/fault.py: registrations, logins, verifies, profile
# reads, refreshes, and /ready polled every 250 ms):
#   1. PostgreSQL killed (immediate shutdown) for PG_DOWN_SECS: database calls
#      answer 503 fast, /ready names the database; back: recovery on its own
#      within 5 s;
#   2. Redis stopped for REDIS_DOWN_SECS: requests keep succeeding from the
#      database, /ready names Redis; back: /ready is 200 again;
#   3. all along: registration succeeds with the relay down, and the failure
#      is in the log and in /metrics (a line naming mail and failures; with
#      FAULT_MAIL_METRIC=optional its absence only warns);
#   4. afterwards every registration and session acknowledged with 2xx is
#      found in PostgreSQL.
# Always cleans up. Prints a summary; exits non-zero on any violation.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

BIN=${BIN:-$ROOT/target/debug/meetinity-auth-server}
PG_DOWN_SECS=${PG_DOWN_SECS:-10}
REDIS_DOWN_SECS=${REDIS_DOWN_SECS:-8}
STEADY_SECS=${STEADY_SECS:-6}
export REQUEST_TIMEOUT_SECS=${REQUEST_TIMEOUT_SECS:-5}

[ -x "$BIN" ] || { echo "fault: $BIN is missing: cargo build -p meetinity-auth-server" >&2; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || { echo "fault: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "fault: redis-server is missing" >&2; exit 2; }
command -v python3 >/dev/null || { echo "fault: python3 is missing" >&2; exit 2; }

as_postgres() {
  if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
}

# A free TCP port on 127.0.0.1 (nothing listens there right now).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

WORK=$(mktemp -d /tmp/meetinity-fault.XXXXXX)
chmod 755 "$WORK"
PGDATA=$WORK/pg
PGSOCK=$WORK/pgrun # socket and log, writable by postgres
mkdir -p "$PGDATA" "$PGSOCK"
chown postgres "$PGDATA" "$PGSOCK"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
APP_PORT=$(free_port)
SMTP_PORT=$(free_port) # nothing will listen there: the relay is down
SERVER_PID=""
LOAD_PID=""
started_at=$(date +%s)

mark() { printf '{"mark": "%s", "t": %s}\n' "$1" "$(date +%s.%N)" >>"$WORK/marks.jsonl"; echo "fault: +$(( $(date +%s) - started_at ))s $1"; }

pg_start() {
  as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGSOCK/pg.log" -w -t 30 \
    -o "-p $PG_PORT -k $PGSOCK -c listen_addresses=127.0.0.1" start >/dev/null
}
pg_kill() { as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null; }
redis_start() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --dir "$WORK" --logfile "$WORK/redis.log"
  for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "fault: redis did not start" >&2; return 1
}
redis_stop() { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }

cleanup() {
  local rc=$?
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && wait "$SERVER_PID" 2>/dev/null || true
  redis_stop
  if [ -f "$PGDATA/postmaster.pid" ]; then pg_kill 2>/dev/null || true; fi
  if [ "${KEEP_FAULT_DIR:-0}" = 1 ] || [ $rc -ne 0 ]; then
    echo "fault: logs kept in $WORK (server.log, pgrun/pg.log, redis.log, requests.jsonl)"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT INT TERM

echo "fault: PostgreSQL $PGBIN on $PG_PORT, Redis on $REDIS_PORT, server on $APP_PORT, SMTP (closed) on $SMTP_PORT; work dir $WORK"
as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync -E UTF8 >"$WORK/initdb.log"
pg_start
redis_start

PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
env -i PATH="$PATH" HOME="${HOME:-/root}" \
  APP_HOST=127.0.0.1 APP_PORT="$APP_PORT" \
  DATABASE_URL="$PG_URL" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
  SMTP_URL="smtp://127.0.0.1:$SMTP_PORT" SMTP_TIMEOUT_SECS=2 \
  JWT_SECRET="fault-script-secret-fault-script-secret-0123" \
  DB_ACQUIRE_TIMEOUT_MS=1000 DB_STATEMENT_TIMEOUT_MS=2000 REDIS_TIMEOUT_MS=300 \
  REQUEST_TIMEOUT_SECS="$REQUEST_TIMEOUT_SECS" LOGIN_IP_MAX_FAILURES=100000 RATE_LIMIT_PER_MINUTE=0 \
  RUST_LOG=info \
  "$BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$APP_PORT"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$BASE/ready" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "fault: the server died:"; tail -n 20 "$WORK/server.log"; exit 1; }
  sleep 0.2
done
curl -fsS -o /dev/null "$BASE/ready"

mark start
FAULT_MAX_SECS=$(( STEADY_SECS * 4 + PG_DOWN_SECS + REDIS_DOWN_SECS + 60 )) \
  python3 "$ROOT/scripts/fault/fault.py" load "$BASE" "$WORK" &
LOAD_PID=$!
sleep "$STEADY_SECS"

mark pg_killing
pg_kill
mark pg_down
sleep "$PG_DOWN_SECS"
mark pg_starting
pg_start
mark pg_up
sleep "$STEADY_SECS"

mark redis_stopping
redis_stop
mark redis_down
sleep "$REDIS_DOWN_SECS"
mark redis_starting
redis_start
mark redis_up
sleep "$STEADY_SECS"
mark end
touch "$WORK/stop"
wait "$LOAD_PID" || true
LOAD_PID=""

violations=0
echo "== fault summary"
python3 "$ROOT/scripts/fault/fault.py" check "$WORK" || violations=1

# Every acknowledged write is there.
psql_q() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAq -v ON_ERROR_STOP=1 "$@"; }
python3 - "$WORK" <<'PY' >"$WORK/check.sql"
import sys
w = sys.argv[1]
def values(path):
    items = [l.strip() for l in open(path) if l.strip()]
    return ",".join("('" + i.replace("'", "''") + "')" for i in items) or "(NULL)"
print(f"SELECT count(*) FROM (VALUES {values(w + '/acked_emails.txt')}) AS a(e) "
      "WHERE a.e IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE lower(u.email) = lower(a.e));")
print(f"SELECT count(*) FROM (VALUES {values(w + '/acked_sessions.txt')}) AS a(s) "
      "WHERE a.s IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id::text = a.s);")
PY
mapfile -t missing < <(psql_q -f "$WORK/check.sql")
acked_users=$(grep -c . "$WORK/acked_emails.txt" || true)
acked_sessions=$(grep -c . "$WORK/acked_sessions.txt" || true)
echo "acknowledged registrations missing from PostgreSQL: ${missing[0]} of $acked_users"
echo "acknowledged sessions missing from PostgreSQL: ${missing[1]} of $acked_sessions"
if [ "${missing[0]}" != 0 ] || [ "${missing[1]}" != 0 ] || [ "$acked_users" -eq 0 ]; then
  echo "VIOLATION: acknowledged writes were lost (or none was acknowledged)"
  violations=1
fi

# SMTP down: registrations succeeded (checked above), the failure is visible.
mail_failures=$(grep -c "mail not sent" "$WORK/server.log" || true)
echo "mail failures in the log: $mail_failures"
if [ "$mail_failures" -eq 0 ]; then
  echo "VIOLATION: the SMTP failure is not in the log"
  violations=1
fi
metrics=$(curl -sS "$BASE/metrics" 2>/dev/null || true)
if printf '%s' "$metrics" | grep -qi '^# \(TYPE\|HELP\)'; then
  mail_metric=$(printf '%s\n' "$metrics" | grep -i 'mail' | grep -v '^#' | grep -iE 'fail|error' || true)
  if [ -n "$mail_metric" ]; then
    echo "mail failures in /metrics:"; printf '  %s\n' "$mail_metric"
  elif [ "${FAULT_MAIL_METRIC:-required}" = optional ]; then
    echo "WARNING: /metrics shows no mail failure (FAULT_MAIL_METRIC=optional)"
  else
    echo "VIOLATION: /metrics exists but shows no mail failure (FAULT_MAIL_METRIC=optional to only warn)"
    violations=1
  fi
else
  echo "(no /metrics endpoint: mail failures checked in the log only)"
fi

# The server survived it all.
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "VIOLATION: the server process died"; violations=1
fi
panics=$(grep -c "panicked" "$WORK/server.log" || true)
if [ "$panics" -ne 0 ]; then echo "VIOLATION: $panics panics in the server log"; violations=1; fi

echo "fault: took $(( $(date +%s) - started_at ))s"
if [ $violations -ne 0 ]; then
  echo "fault: FAILED"
  exit 1
fi
echo "fault: all expectations held"
