#!/usr/bin/env bash
# Boundary reads under load (issue 36): is each trial's retained level read at its end, not
# after the next trial began? Runs fixtures/python/boundary_worker.py (markers; the end marker
# and the next start back to back, a transient that grows with `batch`, 4 MiB kept by batch=16
# trials) and fixtures/python/optuna_boundary_worker.py (the same as a real Optuna study, no
# markers) with 1, 3 and 6 workers on this machine, TRIALS trials each (default 90). Each worker
# writes its own RssAnon at each end (the truth); benches/boundary_figures.py prints per worker
# the share of retained readings more than 2 MiB off it, the first clear trial, and the
# parameter effect with its CI.
#
#   benches/boundary_reads.sh [TRIALS]     (MEMWARDEN_BIN to use a built binary; the Optuna runs
#                                           need MEMWARDEN_TEST_VENV, or scripts/test's venv)
set -euo pipefail
trials=${1:-90}
cd "$(dirname "$0")/.."
if [[ -z "${MEMWARDEN_BIN:-}" ]]; then
  cargo build --release --quiet
  MEMWARDEN_BIN=${CARGO_TARGET_DIR:-target}/release/memwarden
fi
venv=${MEMWARDEN_TEST_VENV:-$(ls -d "$HOME"/.cache/memwarden/venv-* 2>/dev/null | head -1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$(nproc) cores; memwarden's pumps: $([[ $(id -u) -eq 0 ]] && echo "SCHED_FIFO 1 (root)" || echo "default priority (not root)")"
run() { # NAME WORKERS PYTHON SCRIPT
  local name=$1 n=$2 python=$3 script=$4 started
  mkdir -p "$work/$name.truth"
  started=$(date +%s.%N)
  "$MEMWARDEN_BIN" run -q --no-report --out "$work/$name" --workers "$n" -- \
    sh -c "exec $python $script $trials $work/$name.truth/truth-\$MEMWARDEN_WORKER" >"$work/$name.out" 2>&1
  echo "== $name: $n worker(s), $trials trials each, $(python3 -c "import time; print(round(time.time() - $started))") s"
  python3 benches/boundary_figures.py "$MEMWARDEN_BIN" "$work/$name" "$work/$name.truth"
}
for n in 1 3 6; do
  run "markers-$n" "$n" python3 fixtures/python/boundary_worker.py
done
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import optuna" 2>/dev/null; then
  for n in 1 3 6; do
    run "optuna-$n" "$n" "$venv/bin/python" fixtures/python/optuna_boundary_worker.py
  done
else
  echo "skipped the Optuna runs: no venv with optuna (run scripts/test once, or set MEMWARDEN_TEST_VENV)"
fi
