#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60).
#
#   scripts/fuzz/run.sh [SECONDS] [TARGET...]
#
# Stable Rust: cargo-fuzz needs nightly flags, so RUSTC_BOOTSTRAP=1 lets the
# stable compiler accept them. Installs cargo-fuzz from crates.io if missing.
# No sanitizer by default (the crates forbid `unsafe`; FUZZ_SANITIZER=address
# to add ASan). Corpora persist in fuzz/corpus/<target>; a crash leaves its
# input in fuzz/artifacts/<target>/ and makes the script fail: turn each one
# into a regression test in the normal suite.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(token_verify http_bodies config_vars)
export RUSTC_BOOTSTRAP=1
SANITIZER=${FUZZ_SANITIZER:-none}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
started=$(date +%s)
cargo fuzz build -s "$SANITIZER"
echo "fuzz: built in $(( $(date +%s) - started ))s"
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${SECS}s"
  log=$(mktemp)
  if cargo fuzz run -s "$SANITIZER" "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    echo "$t: no crash"
  else
    echo "$t: CRASH (input in fuzz/artifacts/$t/)"
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -n 10 || true
    failed=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb" "$log" || true
  grep -E "^#[0-9]+.*(DONE|pulse)" "$log" | tail -n 1 || true
  echo "corpus: $(ls "corpus/$t" | wc -l) inputs"
  rm -f "$log"
done
exit $failed
