#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind: the same number
# whatever else the machine is doing (benches/README.md, "Instructions per
# request"). Builds the `profiling` profile (release without LTO), then runs
# each server under `valgrind --tool=callgrind` and sends N requests on one
# keep-alive connection after 200 of warm-up:
#
#   benches/callgrind/run.sh            # N=1000; about 10 minutes
#
# Prints a table: baseline static vs GET /health, baseline verify vs
# POST /auth/verify, and GET /auth/profile (warm), on SQLite + moka.
# Knobs: N, SKIP_BUILD=1, BASE_PORT=58200, KEEP=1 (keep the dumps for
# callgrind_annotate). Needs valgrind, curl, jq, python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-1000}
BASE_PORT=${BASE_PORT:-58200}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/profiling
for tool in valgrind callgrind_control curl jq python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --profile profiling \
  -p meetinity-auth-server -p meetinity-auth-benches --bins)

WORK=$(mktemp -d /tmp/meetinity-callgrind.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "callgrind dumps kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 48)
TOKENS=(JWT_SECRET="$SECRET" JWT_ISSUER=http://127.0.0.1 JWT_AUDIENCE=meetinity)
SERVER=(APP_HOST=127.0.0.1 "${TOKENS[@]}" RUST_LOG=info
  "DATABASE_URL=sqlite://$WORK/bench.db")

wait_up() { # port path
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$1$2" && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  exit 1
}

# A real token (and its account) from the server, without valgrind.
P=$BASE_PORT
env "${SERVER[@]}" APP_PORT=$P "$BIN/meetinity-auth-server" >"$WORK/setup.log" 2>&1 &
SETUP=$!
PIDS+=("$SETUP")
wait_up $P /ready
curl -sf -XPOST "http://127.0.0.1:$P/auth/register" -H 'content-type: application/json' \
  -d '{"email":"callgrind@example.com","password":"bench-Passphrase-3141-load","name":"C"}' |
  jq -r .token >"$WORK/token"
kill "$SETUP"
wait "$SETUP" 2>/dev/null || true

# measure PORT SCENARIO... -- ENV... COMMAND...
measure() {
  local port=$1
  shift
  local scenarios=()
  while [ "$1" != "--" ]; do scenarios+=("$1"); shift; done
  shift
  (cd "$WORK" && exec env "$@" valgrind --tool=callgrind --dump-instr=no \
    --collect-systime=no "${CMD[@]}" >"$WORK/vg-$port.log" 2>&1) &
  local pid=$!
  PIDS+=("$pid")
  wait_up "$port" /health
  # `exec` made the subshell valgrind itself.
  for s in "${scenarios[@]}"; do
    python3 "$HERE/client.py" "$port" "$pid" "$s" "$N" "$WORK" "$WORK/token" >>"$WORK/results.tsv"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

CMD=("$BIN/baseline_static" "127.0.0.1:$((P + 1))")
measure $((P + 1)) static -- PATH="$PATH"
CMD=("$BIN/baseline_static" "127.0.0.1:$((P + 3))")
measure $((P + 3)) static-headers -- PATH="$PATH" BASELINE_HEADERS=server
CMD=("$BIN/baseline_verify" "127.0.0.1:$((P + 2))")
measure $((P + 2)) baseline-verify -- PATH="$PATH" "${TOKENS[@]}"
CMD=("$BIN/meetinity-auth-server")
measure $P health verify profile -- PATH="$PATH" "${SERVER[@]}" APP_PORT=$P

python3 - "$WORK/results.tsv" "$N" <<'PY'
import sys
r = dict(line.split("\t") for line in open(sys.argv[1]).read().split("\n") if line)
r = {k: int(v) for k, v in r.items()}
print(f"Instructions per request (user space, callgrind, {sys.argv[2]} requests, profile `profiling`)\n")
print("| | baseline | server (SQLite + moka) | ratio |")
print("|---|---:|---:|---:|")
print(f"| `GET /health` | {r['static']:,} (static) | {r['health']:,} | {r['health']/r['static']:.2f}× |")
print(f"| `GET /health` | {r['static-headers']:,} (static + the server's headers) | {r['health']:,} | {r['health']/r['static-headers']:.2f}× |")
print(f"| `POST /auth/verify` | {r['baseline-verify']:,} (verify) | {r['verify']:,} | {r['verify']/r['baseline-verify']:.2f}× |")
print(f"| `GET /auth/profile` (warm) | — | {r['profile']:,} | {r['profile']/r['baseline-verify']:.2f}× of the verify baseline |")
PY
