#!/usr/bin/env bash
# HTTP load benchmark of meetinity-auth-server against hyper-only baselines,
# in one command (see benches/README.md):
#
#   benches/load/run.sh
#
# Builds release, starts (a) the server on SQLite + moka, (b) the server on
# PostgreSQL + Redis (a fresh database and key prefix, removed at the end),
# (c) the two baselines of benches/src/bin (hyper alone: a static GET /health,
# an HS256 verify with jsonwebtoken), drives each with wrk (2 threads, 64
# connections, 10 s, loopback) and prints requests/s, p50, p99, errors and
# server RSS side by side with the ratios and the targets of issue 7.
#
# Knobs (environment): DURATION=10 THREADS=2 CONNS=64 ROUNDS=1 (medians over
# rounds) LOGIN_RATE=20 BASE_PORT=57100 SKIP_BUILD=1 SERVER_LOG=info
# TEST_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test: a database
# is created next to it) TEST_REDIS_URL (redis://127.0.0.1:6379/0).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-1}
LOGIN_RATE=${LOGIN_RATE:-20}
BASE_PORT=${BASE_PORT:-57100}
PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}

say() { printf '== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
apt_updated=""
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2"
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need curl curl
need jq jq
need python3 python3
need psql postgresql-client
need redis-cli redis-tools

# --- build -------------------------------------------------------------------
if [ -z "${SKIP_BUILD:-}" ]; then
  say "cargo build --release -p meetinity-auth-server -p meetinity-auth-benches --bins"
  cargo build --release -p meetinity-auth-server -p meetinity-auth-benches --bins
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
for b in meetinity-auth-server baseline_static baseline_verify login_pacer startup_probe; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: build first" >&2; exit 1; }
done

# --- workspace, cleanup ------------------------------------------------------
WORK=$(mktemp -d /tmp/meetinity-load.XXXXXX)
OUT_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/load-bench
mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$WORK/results.tsv
: >"$RESULTS"
TAG="meetinity_load_$$"
PG_DB_URL="${PG_URL%/*}/$TAG"
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $TAG" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$TAG:*" 2>/dev/null \
    | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

P_STATIC=$BASE_PORT
P_VERIFY=$((BASE_PORT + 1))
P_SQLITE=$((BASE_PORT + 2))
P_PG=$((BASE_PORT + 3))
P_STATIC_H=$((BASE_PORT + 4))
for p in $P_STATIC $P_VERIFY $P_SQLITE $P_PG $P_STATIC_H; do
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/"; then
    echo "port $p is in use: set BASE_PORT" >&2
    exit 1
  fi
done

SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 48)
ISSUER=http://127.0.0.1
AUDIENCE=meetinity
PASSWORD='bench-Passphrase-3141-load'
ACCOUNTS=5

# The same token settings for the servers and the verify baseline; limits
# raised so that the paced logins (all from 127.0.0.1) are not throttled.
SERVER_ENV=(
  APP_HOST=127.0.0.1
  JWT_ALGO=HS256 "JWT_SECRET=$SECRET" "JWT_ISSUER=$ISSUER" "JWT_AUDIENCE=$AUDIENCE"
  "RUST_LOG=${SERVER_LOG:-info}"
  LOGIN_IP_MAX_FAILURES=1000000 RATE_LIMIT_PER_MINUTE=1000000
)
SQLITE_ENV=("${SERVER_ENV[@]}" "APP_PORT=$P_SQLITE" "DATABASE_URL=sqlite://$WORK/bench.db")
PG_ENV=("${SERVER_ENV[@]}" "APP_PORT=$P_PG" "DATABASE_URL=$PG_DB_URL" "REDIS_URL=$REDIS_URL"
  "REDIS_PREFIX=$TAG")

# --- helpers -----------------------------------------------------------------
declare -A PID_OF

# start NAME PORT READY_PATH -- COMMAND...
start() {
  local name=$1 port=$2 path=$3
  shift 4
  "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  PID_OF[$name]=$pid
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port$path"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$name did not come up; its log:" >&2
  tail -n 30 "$WORK/$name.log" >&2
  exit 1
}

stop() {
  local pid=${PID_OF[$1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/${PID_OF[$1]}/status"; }

record() { printf '%s\n' "$*" >>"$RESULTS"; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# bench ROUND SCENARIO TARGET URL [WRK_* assignments...]
bench() {
  local round=$1 scenario=$2 target=$3 url=$4
  shift 4
  local line
  line=$(env "$@" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$HERE/wrk.lua" "$url" \
    | grep '^RESULT' || true)
  [ -n "$line" ] || { echo "wrk failed on $url" >&2; exit 1; }
  say "$scenario $target: ${line#RESULT }"
  record "wrk	$round	$scenario	$target	${line#RESULT }"
}

register() {
  local port=$1 email=$2
  curl -sf -X POST "http://127.0.0.1:$port/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$PASSWORD\"}" | jq -r .token
}

say "load before start: $(loadavg)"
record "meta	load_start	$(loadavg)"

# --- start everything, idle RSS ------------------------------------------------
psql "$PG_URL" -qc "CREATE DATABASE $TAG" >/dev/null
start static "$P_STATIC" /health -- "$BIN/baseline_static" "127.0.0.1:$P_STATIC"
# The same, also sending the server's response headers (request id, security
# headers): tells their cost on the wire and in wrk from the server's own work.
start static_h "$P_STATIC_H" /health -- env BASELINE_HEADERS=server "$BIN/baseline_static" \
  "127.0.0.1:$P_STATIC_H"
start verify "$P_VERIFY" /health -- env "JWT_SECRET=$SECRET" "JWT_ISSUER=$ISSUER" \
  "JWT_AUDIENCE=$AUDIENCE" "$BIN/baseline_verify" "127.0.0.1:$P_VERIFY"
start sqlite "$P_SQLITE" /ready -- env "${SQLITE_ENV[@]}" "$BIN/meetinity-auth-server"
start postgres "$P_PG" /ready -- env "${PG_ENV[@]}" "$BIN/meetinity-auth-server"
sleep 1
for s in static static_h verify sqlite postgres; do record "rss	idle	$s	$(rss_kb $s)"; done

# --- accounts and tokens -------------------------------------------------------
declare -A TOKEN
EMAILS=()
for i in $(seq 1 $ACCOUNTS); do EMAILS+=("bench$i-$TAG@example.test"); done
for s in sqlite postgres; do
  port=$P_SQLITE
  [ $s = postgres ] && port=$P_PG
  for e in "${EMAILS[@]}"; do
    t=$(register "$port" "$e")
    [ -n "${TOKEN[$s]:-}" ] || TOKEN[$s]=$t
  done
  [ -n "${TOKEN[$s]}" ] && [ "${TOKEN[$s]}" != null ] || { echo "registration failed on $s" >&2; exit 1; }
  # Warm the session-liveness and profile caches.
  curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/auth/verify" \
    -H 'content-type: application/json' -d "{\"token\":\"${TOKEN[$s]}\"}"
  curl -sf -o /dev/null "http://127.0.0.1:$port/auth/profile" -H "authorization: Bearer ${TOKEN[$s]}"
  record "rss	setup	$s	$(rss_kb $s)"
done
# The verify baseline checks a real token of the server (same secret).
curl -sf -o /dev/null -X POST "http://127.0.0.1:$P_VERIFY/verify" \
  -H 'content-type: application/json' -d "{\"token\":\"${TOKEN[sqlite]}\"}" \
  || { echo "the verify baseline rejects the server's token" >&2; exit 1; }

port_of() { case $1 in sqlite) echo "$P_SQLITE" ;; postgres) echo "$P_PG" ;; esac; }

# --- scenarios -----------------------------------------------------------------
for round in $(seq 1 "$ROUNDS"); do
  say "round $round/$ROUNDS (load $(loadavg))"
  # Baselines first in odd rounds, last in even ones: a drift of the
  # machine's speed within a round weighs on both sides alike.
  order=(base sqlite postgres)
  [ $((round % 2)) = 0 ] && order=(postgres sqlite base)
  for s in "${order[@]}"; do
    if [ "$s" = base ]; then
      bench "$round" health static "http://127.0.0.1:$P_STATIC/health"
      bench "$round" health static_h "http://127.0.0.1:$P_STATIC_H/health"
    else
      bench "$round" health $s "http://127.0.0.1:$(port_of $s)/health"
    fi
  done
  for s in "${order[@]}"; do
    if [ "$s" = base ]; then
      bench "$round" verify verify "http://127.0.0.1:$P_VERIFY/verify" \
        WRK_METHOD=POST "WRK_BODY={\"token\":\"${TOKEN[sqlite]}\"}"
    else
      bench "$round" verify $s "http://127.0.0.1:$(port_of $s)/auth/verify" \
        WRK_METHOD=POST "WRK_BODY={\"token\":\"${TOKEN[$s]}\"}"
    fi
  done
  for s in sqlite postgres; do
    bench "$round" profile $s "http://127.0.0.1:$(port_of $s)/auth/profile" "WRK_BEARER=${TOKEN[$s]}"
  done
  for s in sqlite postgres; do
    args=()
    for e in "${EMAILS[@]}"; do args+=(--email "$e"); done
    "$BIN/login_pacer" --url "http://127.0.0.1:$(port_of $s)" --rate "$LOGIN_RATE" \
      --secs "$((DURATION + 2))" --password "$PASSWORD" "${args[@]}" >"$WORK/pacer.out" 2>&1 &
    pacer=$!
    sleep 1
    bench "$round" mixed $s "http://127.0.0.1:$(port_of $s)/auth/verify" \
      WRK_METHOD=POST "WRK_BODY={\"token\":\"${TOKEN[$s]}\"}"
    wait "$pacer" || true
    line=$(grep '^PACER' "$WORK/pacer.out" || echo "PACER sent=0 ok=0 errors=1")
    say "logins $s: ${line#PACER }"
    record "pacer	$round	mixed	$s	${line#PACER }"
  done
done
for s in static static_h verify sqlite postgres; do record "rss	after	$s	$(rss_kb $s)"; done

# --- start-up to /ready on SQLite with migrations applied ----------------------
stop sqlite
say "start-up probe (SQLite, migrations applied)"
line=$(env "${SQLITE_ENV[@]}" "$BIN/startup_probe" --addr "127.0.0.1:$P_SQLITE" --runs 5 \
  -- "$BIN/meetinity-auth-server" | grep '^STARTUP')
say "${line}"
record "startup	sqlite	${line#STARTUP }"

record "meta	load_end	$(loadavg)"
say "load at the end: $(loadavg)"

# --- report --------------------------------------------------------------------
REPORT="$OUT_DIR/results-$STAMP.md"
python3 "$HERE/report.py" "$RESULTS" \
  "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo +dirty)" \
  "$DURATION" "$THREADS" "$CONNS" "$ROUNDS" "$LOGIN_RATE" | tee "$REPORT"
cp "$RESULTS" "$OUT_DIR/results-$STAMP.tsv"
say "report: $REPORT"
