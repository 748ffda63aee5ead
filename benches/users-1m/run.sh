#!/usr/bin/env bash
# Users routes on PostgreSQL with 1,000,000 generated users (issue 5,
# "Performance"), in one command:
#
#   benches/users-1m/run.sh
#
# 1. drops and creates the database meetinity_bench_1m next to
#    TEST_DATABASE_URL;
# 2. starts meetinity-auth-server on it (the release binary when
#    target/release has one, else a debug build), RATE_LIMIT_PER_MINUTE=0, so
#    the migrations apply;
# 3. bulk-inserts USERS generated users with SQL (seed.sql), then ANALYZE;
# 4. registers one user over HTTP for a Bearer token;
# 5. drives with wrk (users.lua): a filtered, sorted page of GET /users, three
#    GET /users/search?q= words (common, medium, rare), then GET /users/{id}
#    (warm cache) and POST /auth/verify alternately, ROUNDS times;
# and prints one table with the targets (p99 <= 50 ms; id/verify >= 0.6).
#
# Knobs (environment): USERS=1000000 DURATION=10 THREADS=2
# CONNS_DB=1 (list and search: latency of one client at a time) CONNS_RATE=32 (get and verify) ROUNDS=2
# PORT=57300 DB=meetinity_bench_1m REUSE_DB=1 (keep an already seeded database)
# KEEP_DB=1 (do not drop it at the end) SKIP_BUILD=1 BIN=path/to/server
# REDIS_URL (profile cache in Redis instead of in-process) SERVER_LOG=warn
# USERS_MAX_TOTAL (the server's cap on counted matches; its default when unset)
# TEST_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

USERS=${USERS:-1000000}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS_DB=${CONNS_DB:-1}
CONNS_RATE=${CONNS_RATE:-32}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-57300}
DB=${DB:-meetinity_bench_1m}
PG_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
DB_URL="${PG_URL%/*}/$DB"
BASE="http://127.0.0.1:$PORT"

say() { printf '== %s\n' "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
for tool in wrk curl jq psql; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

# --- server binary -----------------------------------------------------------
if [ -n "${BIN:-}" ]; then
  PROFILE="given ($BIN)"
elif [ -x "${CARGO_TARGET_DIR:-$ROOT/target}/release/meetinity-auth-server" ]; then
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/meetinity-auth-server
  [ -n "${SKIP_BUILD:-}" ] || cargo build --release -p meetinity-auth-server
  PROFILE=release
else
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/meetinity-auth-server
  [ -n "${SKIP_BUILD:-}" ] || cargo build -p meetinity-auth-server
  PROFILE=debug
fi
[ -x "$BIN" ] || { echo "missing $BIN" >&2; exit 1; }
if curl -s -o /dev/null --max-time 1 "$BASE/"; then
  echo "port $PORT is in use: set PORT" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/meetinity-users1m.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -z "${KEEP_DB:-}" ] && [ -z "${REUSE_DB:-}" ]; then
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "load at start: $(loadavg)"
LOAD_START=$(loadavg)

# --- database ------------------------------------------------------------------
seeded=0
if [ -n "${REUSE_DB:-}" ] && psql "$DB_URL" -Atqc "SELECT 1 FROM users LIMIT 1" >/dev/null 2>&1; then
  seeded=$(psql "$DB_URL" -Atqc "SELECT count(*) FROM users WHERE email LIKE '%@bench.example'")
  say "reusing $DB ($seeded generated users)"
else
  say "creating database $DB"
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
  psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
fi

# --- server ----------------------------------------------------------------------
SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 48)
SERVER_ENV=(
  APP_HOST=127.0.0.1 "APP_PORT=$PORT" "DATABASE_URL=$DB_URL"
  RATE_LIMIT_PER_MINUTE=0 LOGIN_IP_MAX_FAILURES=1000000
  JWT_ALGO=HS256 "JWT_SECRET=$SECRET" "RUST_LOG=${SERVER_LOG:-warn}"
)
[ -n "${REDIS_URL:-}" ] && SERVER_ENV+=("REDIS_URL=$REDIS_URL" "REDIS_PREFIX=${DB}_$$")
[ -n "${USERS_MAX_TOTAL:-}" ] && SERVER_ENV+=("USERS_MAX_TOTAL=$USERS_MAX_TOTAL")
say "starting $PROFILE server $BIN on $DB"
env "${SERVER_ENV[@]}" "$BIN" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "$BASE/ready" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "$BASE/ready" || { tail -n 30 "$WORK/server.log" >&2; exit 1; }

# --- bulk load -----------------------------------------------------------------------
if [ "$seeded" -lt "$USERS" ]; then
  [ "$seeded" -eq 0 ] || { echo "$DB holds $seeded users, not $USERS: drop it" >&2; exit 1; }
  say "inserting $USERS users (SQL), recreating indexes, ANALYZE"
  t0=$(date +%s)
  psql "$DB_URL" -q -v n="$USERS" -f "$HERE/seed.sql" >/dev/null
  say "seeded in $(($(date +%s) - t0)) s"
fi
psql "$DB_URL" -Atqc "VACUUM (ANALYZE) users" >/dev/null
say "users: $(psql "$DB_URL" -Atqc "SELECT count(*) FROM users"), table+indexes: $(psql "$DB_URL" -Atqc "SELECT pg_size_pretty(pg_total_relation_size('users'))")"

# --- token -------------------------------------------------------------------------
EMAIL="bench-$$-$(date +%s)@caller.example"
TOKEN=$(curl -sf -X POST "$BASE/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"$EMAIL\",\"password\":\"bench-Passphrase-2718-users\",\"name\":\"Bench Caller\"}" \
  | jq -r .token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || { echo "registration failed" >&2; exit 1; }

# A generated user with default privacy settings (g = 12 in seed.sql).
TARGET=$(psql "$DB_URL" -Atqc "SELECT md5('bench-user-12')::uuid::text")

# The scenarios: label|paths (wrk rotates through them).
LIST_PATHS="/users?industry=Technology&location=Paris&sort=name&per_page=20&page=3"
LIST_PATHS+="|/users?industry=Finance&location=Berlin&sort=name&per_page=20&page=3"
LIST_PATHS+="|/users?industry=Healthcare&location=Remote&sort=name&per_page=20&page=3"
LIST_PATHS+="|/users?industry=Media&location=Lyon&sort=name&per_page=20&page=3"

# Sanity: every path answers 200 and matches something.
check() {
  local path=$1 out
  out=$(curl -sf "$BASE$path" -H "authorization: Bearer $TOKEN") \
    || { echo "GET $path failed: $(curl -s "$BASE$path" -H "authorization: Bearer $TOKEN")" >&2; exit 1; }
  jq -e '(.items | length) > 0 or has("user")' >/dev/null <<<"$out" \
    || { echo "GET $path returned nothing: $out" >&2; exit 1; }
  # "1000+": more matches than the server counts (USERS_MAX_TOTAL).
  printf '%s' "$(jq -r 'if .total_exact == false then "\(.total)+" else (.total // "-" | tostring) end' <<<"$out")"
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# bench LABEL CONNS URL [VAR=value...]
bench() {
  local label=$1 conns=$2 url=$3 line
  shift 3
  local threads=$((THREADS < conns ? THREADS : conns))
  line=$(env "$@" WRK_BEARER="$TOKEN" wrk -t"$threads" -c"$conns" -d"${DURATION}s" \
    --timeout 5s -s "$HERE/users.lua" "$url" | grep '^RESULT' || true)
  [ -n "$line" ] || { echo "wrk failed on $url" >&2; exit 1; }
  say "$label (c=$conns, load $(loadavg)): ${line#RESULT }"
  printf '%s\t%s\t%s\n' "$label" "$conns" "${line#RESULT }" >>"$RESULTS"
}

declare -A TOTAL
TOTAL[list]=$(check "${LIST_PATHS%%|*}")
TOTAL[search_common]=$(check "/users/search?q=rust&per_page=20")
TOTAL[search_medium]=$(check "/users/search?q=globex&per_page=20")
TOTAL[search_rare]=$(check "/users/search?q=kenji%20rossi&per_page=20")
check "/users/$TARGET" >/dev/null # warms the profile cache
curl -sf -o /dev/null -X POST "$BASE/auth/verify" -H 'content-type: application/json' \
  -d "{\"token\":\"$TOKEN\"}" || { echo "verify failed" >&2; exit 1; }

for round in $(seq 1 "$ROUNDS"); do
  say "round $round/$ROUNDS"
  bench list "$CONNS_DB" "$BASE/" "WRK_PATHS=$LIST_PATHS"
  bench search_common "$CONNS_DB" "$BASE/users/search?q=rust&per_page=20"
  bench search_medium "$CONNS_DB" "$BASE/users/search?q=globex&per_page=20"
  bench search_rare "$CONNS_DB" "$BASE/users/search?q=kenji%20rossi&per_page=20"
  bench verify "$CONNS_RATE" "$BASE/auth/verify" WRK_METHOD=POST "WRK_BODY={\"token\":\"$TOKEN\"}"
  bench get_user "$CONNS_RATE" "$BASE/users/$TARGET"
done
LOAD_END=$(loadavg)

# --- report ----------------------------------------------------------------------------
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) printf "%.1f\n", a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
field() { grep "^$1	" "$RESULTS" | tr ' \t' '\n\n' | sed -n "s/^$2=//p" | median; }

printf '\nUsers routes, PostgreSQL, %s users (%s build, %s rounds of %ss, wrk -t%s)\n' \
  "$(psql "$DB_URL" -Atqc "SELECT count(*) FROM users")" "$PROFILE" "$ROUNDS" "$DURATION" "$THREADS"
printf 'load average: start %s, end %s; %s CPUs; %s\n\n' "$LOAD_START" "$LOAD_END" "$(nproc)" \
  "$(psql "$DB_URL" -Atqc 'SHOW server_version' | cut -d' ' -f1 | sed 's/^/PostgreSQL /')"
printf '| %-14s | %5s | %8s | %9s | %9s | %9s | %6s | %-26s |\n' \
  scenario conns total "req/s" "p50 ms" "p99 ms" errors target
printf '|%s|\n' "----------------|-------|----------|-----------|-----------|-----------|--------|----------------------------"
verdict_p99() { awk -v p="$1" 'BEGIN { print (p <= 50000 ? "p99 <= 50 ms: PASS" : "p99 <= 50 ms: MISS") }'; }
for label in list search_common search_medium search_rare verify get_user; do
  conns=$(grep "^$label	" "$RESULTS" | head -1 | cut -f2)
  rps=$(field "$label" rps)
  p50=$(field "$label" p50_us)
  p99=$(field "$label" p99_us)
  errs=$(grep "^$label	" "$RESULTS" | tr ' \t' '\n\n' | sed -n 's/^errors=//p' | paste -sd+ | bc)
  case $label in
    list | search_*) target=$(verdict_p99 "$p99") ;;
    verify) target="(reference rate)" ;;
    get_user) target=$(awk -v g="$rps" -v v="$(field verify rps)" \
      'BEGIN { r = g / v; printf "%.2fx verify: %s", r, (r >= 0.6 ? "PASS" : "MISS") }') ;;
  esac
  printf '| %-14s | %5s | %8s | %9.0f | %9.2f | %9.2f | %6s | %-26s |\n' "$label" "$conns" \
    "${TOTAL[$label]:--}" "$rps" "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)" "$errs" "$target"
done
printf '\nlist = GET /users?industry=X&location=Y&sort=name&per_page=20&page=3 (4 X/Y pairs in turn)\n'
printf 'search_common = q=rust (skill), search_medium = q=globex (company), search_rare = q=kenji rossi\n'
printf 'total N+ = more than N matches: counting stops at USERS_MAX_TOTAL (%s)\n' "${USERS_MAX_TOTAL:-server default}"
printf 'get_user = GET /users/{id} of another user, warm cache (%s)\n' \
  "$([ -n "${REDIS_URL:-}" ] && echo Redis || echo in-process moka)"
printf 'medians over rounds; raw lines:\n'
sed 's/^/  /' "$RESULTS"
