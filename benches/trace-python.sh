#!/usr/bin/env bash
# What --trace-python costs a real Optuna study: its optimize() time alone, under memwarden with
# the tracer (`traced`; `heaponly`: without its native allocation sampler, MEMWARDEN_NATIVE=0),
# under memwarden without it, and under `memray run` for comparison, in PAIRS
# alternating rounds (default 3), with the tracer's milliseconds per trial boundary. Two
# workloads (fixtures/python/optuna_study.py): `numpy` (array work, few Python objects),
# `objects` (20,000 small dicts per pass: the worst case for an allocation tracer) and `torch`
# (a small PyTorch training loop on the CPU, keeping 8 MiB in the trials with
# cache_features=True: a process that imported torch is traced, its tensors censused, only in
# the diagnoses its growth begins; `always`, for this workload only, is the tracer with
# MEMWARDEN_DIAGNOSE=always: every trial as without torch). Name them to choose:
# `benches/trace-python.sh 5 20 torch`. BENCH_VARIANTS picks the runs beside plain (default
# `traced heaponly always untraced memray`): `BENCH_VARIANTS="untraced traced"` for long runs.
#
#   benches/trace-python.sh [PAIRS] [TRIALS] [WORKLOAD...]
set -euo pipefail
pairs=${1:-3}
trials=${2:-20}
shift $(( $# < 2 ? $# : 2 ))
workloads=${*:-numpy objects}
variants=${BENCH_VARIANTS:-traced heaponly always untraced memray}
cd "$(dirname "$0")/.."
venv=${MEMWARDEN_TEST_VENV:-$HOME/.cache/memwarden/venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import optuna, numpy, memray' 2>/dev/null \
  || "$venv/bin/pip" install -q optuna numpy memray
case " $workloads " in
*" torch "*) "$venv/bin/python" -c 'import torch' 2>/dev/null || "$venv/bin/pip" install -q torch ;;
esac
cargo build --release --quiet
exe=${CARGO_TARGET_DIR:-$PWD/target}/release/memwarden
py=$venv/bin/python
study=$PWD/fixtures/python/optuna_study.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Trials of about half a second (on the development machine), as short as real ones get: with
# trials of a few milliseconds the sampler's reads at every boundary would be what is measured.
export STUDY_REPEAT=${STUDY_REPEAT:-6}
seconds() { grep -ho 'STUDY_SECONDS [0-9.]*' "$@" | awk '{print $2}'; }
for work in $workloads; do
export STUDY_WORK=$work
rm -rf "${tmp:?}"/*
for i in $(seq "$pairs"); do
  "$py" "$study" "$trials" 2>/dev/null | seconds - >> "$tmp/plain"
  for variant in $variants; do
    case $variant in
    traced) env=() args=(--trace-python) ;;
    heaponly) env=(MEMWARDEN_NATIVE=0) args=(--trace-python) ;;
    always) [ "$work" = torch ] || continue; env=(MEMWARDEN_DIAGNOSE=always) args=(--trace-python) ;;
    untraced) env=() args=() ;;
    memray)
      "$py" -m memray run -q -o "$tmp/memray-$i.bin" "$study" "$trials" 2>/dev/null | seconds - >> "$tmp/memray"
      continue ;;
    *) echo "benches/trace-python.sh: unknown variant $variant" >&2; exit 2 ;;
    esac
    env "${env[@]}" "$exe" run "${args[@]}" --out "$tmp/$variant-$i" -- "$py" "$study" "$trials" >/dev/null 2>&1
    seconds "$tmp/$variant-$i"/logs/worker-0.log >> "$tmp/$variant"
  done
done
if [ -d "$tmp/traced-1" ]; then
  "$exe" export "$tmp/traced-1" --table sites > "$tmp/sites.csv"
  for i in $(seq 2 "$pairs"); do
    "$exe" export "$tmp/traced-$i" --table sites | tail -n +2 >> "$tmp/sites.csv"
  done
fi
echo "== STUDY_WORK=$work, $trials trials"
python3 - "$tmp" <<'PY'
import csv, statistics, sys
tmp = sys.argv[1]
read = lambda name: [float(x) for x in open(f"{tmp}/{name}").read().split()]
plain = read("plain")
print(f"plain optimize(): median {statistics.median(plain):.3f} s over {len(plain)} runs ({min(plain):.3f}..{max(plain):.3f})")
import os
for name in ("untraced", "heaponly", "traced", "always", "memray"):
    if not os.path.exists(f"{tmp}/{name}"):
        continue
    runs = read(name)
    ratios = [r / p for r, p in zip(runs, plain)]
    print(f"{name:9s}: median {statistics.median(runs):.3f} s, median ratio to plain {statistics.median(ratios):.2f}x (pairs {min(ratios):.2f}..{max(ratios):.2f})")
if os.path.exists(f"{tmp}/untraced") and os.path.exists(f"{tmp}/traced"):
    ratios = [t / u for t, u in zip(read("traced"), read("untraced"))]
    print(f"traced over untraced (the tracer's own cost): median {statistics.median(ratios):.2f}x (pairs {min(ratios):.2f}..{max(ratios):.2f})")
if not os.path.exists(f"{tmp}/sites.csv"):
    sys.exit(0)
costs = {}
for row in csv.DictReader(open(f"{tmp}/sites.csv")):
    costs[(row["pid"], row["trial"])] = float(row["cost_ms"])
values = sorted(costs.values())
print(f"tracer per boundary: median {statistics.median(values):.1f} ms, p90 {values[int(0.9 * (len(values) - 1))]:.1f} ms, max {values[-1]:.1f} ms over {len(values)} traced boundaries")
import glob, json
diagnoses = [r for f in glob.glob(f"{tmp}/traced-*/python-trace/*.jsonl") for r in map(json.loads, open(f)) if r.get("kind") == "diagnose"]
if diagnoses:
    print(f"diagnoses: {len(diagnoses)} in the traced runs, after trials {', '.join(r['trial'] for r in diagnoses)}")
PY
done
