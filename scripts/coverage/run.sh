#!/usr/bin/env bash
# Line coverage of meetinity-auth and meetinity-auth-server (their unit and
# integration tests, PostgreSQL and Redis included), failing below
# COVERAGE_MIN percent (default 85).
#
#   scripts/coverage/run.sh            (TEST_DATABASE_URL / TEST_REDIS_URL as for the tests)
#
# Uses cargo-llvm-cov (installed from crates.io if missing) with the
# toolchain's llvm-tools component; where that component cannot be added,
# Debian's LLVM of the same major version as rustc's. Test code, examples,
# benches and the fuzz crate are left out of the figure. Writes an lcov file
# to target/coverage/lcov.info.
set -euo pipefail
cd "$(dirname "$0")/../.."
MIN=${COVERAGE_MIN:-85}
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
started=$(date +%s)

if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
  if ! rustup component add llvm-tools 2>/dev/null; then
    major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    echo "coverage: no llvm-tools component; using Debian's llvm-$major"
    command -v "llvm-cov-$major" >/dev/null || { apt-get update -qq && apt-get install -y -qq "llvm-$major" >/dev/null; }
    export LLVM_COV="/usr/bin/llvm-cov-$major" LLVM_PROFDATA="/usr/bin/llvm-profdata-$major"
  fi
fi
command -v cargo-llvm-cov >/dev/null || cargo install --locked cargo-llvm-cov

mkdir -p target/coverage
cargo llvm-cov \
  --package meetinity-auth --package meetinity-auth-server --all-features \
  --ignore-filename-regex '(/tests/|/examples/|/benches/|/fuzz/|/\.cargo/|/rustc/)' \
  --lcov --output-path target/coverage/lcov.info
cargo llvm-cov report \
  --ignore-filename-regex '(/tests/|/examples/|/benches/|/fuzz/|/\.cargo/|/rustc/)' \
  --summary-only --fail-under-lines "$MIN"
echo "coverage: took $(( $(date +%s) - started ))s (minimum $MIN% of lines)"
