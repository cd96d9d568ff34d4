#!/usr/bin/env bash
# Fuzzes memwarden's readers of outside input (tests/integration/fuzz.rs): the metrics
# endpoint's request reader, the tracer's record reader, the marker/Optuna line parser, the
# policy parser and the manifest reader, with CASES generated inputs each (default 1,000,000),
# in release mode. Prints each target's result and time; any failure is shrunk and printed.
#
#   benches/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-1000000}"
export MEMWARDEN_FUZZ_CASES="$cases"
cargo test --release --test integration --no-run 2>&1 | tail -1
start=$(date +%s)
cargo test --release --test integration fuzz:: -- --test-threads 1 --nocapture 2>&1 \
  | grep -E '^test |test result'
echo "fuzz: $cases inputs per target, 5 targets, $(( $(date +%s) - start )) s"
