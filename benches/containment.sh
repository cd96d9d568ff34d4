#!/usr/bin/env bash
# Containment keeps the search going (issue 29). Four workers of fixtures/python/containment_worker.py
# (a trial's end and the next trial's start printed back to back, as Optuna logs them) keep MIB MiB
# per trial, under an empty policy (the defaults), for DURATION seconds (default 180), at 8 and at
# 64 MiB per trial:
#   - inside a 1.5 GiB memory cgroup of the bench's own (v2 where delegated, else v1; root needed,
#     else those two runs are skipped with the reason printed), and
#   - on the host with `budget = "1.5GiB"` in the policy instead (each worker keeps at most
#     1 GiB, so a run whose containment failed still cannot press the host).
# For each run it prints the kernel's OOM kills (the cgroup's counter, or /proc/vmstat's for the
# host), the restarts, the completed trials in each 20 s window after the first brake, and the
# longest stretch without a completed trial, against escalation.after + restart.grace + 2 s.
#
#   benches/containment.sh [DURATION_SECONDS]      (MEMWARDEN_BIN to use a built binary)
set -euo pipefail
duration=${1:-180}
cd "$(dirname "$0")/.."
if [[ -z "${MEMWARDEN_BIN:-}" ]]; then
  cargo build --release --quiet
  MEMWARDEN_BIN=${CARGO_TARGET_DIR:-target}/release/memwarden
fi
work=$(mktemp -d)
cgroup=""
cleanup() {
  if [[ -n "$cgroup" && -d "$cgroup" ]]; then rmdir "$cgroup" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
: >"$work/empty.toml"
echo 'budget = "1.5GiB"' >"$work/budget.toml"
limit=$((1536 << 20))

# A memory cgroup under our own: v2 where the memory controller is delegated to us, else v1.
# Sets `cgroup` and `where` (not in a subshell: the trap must see the directory to remove it).
make_cgroup() {
  local own v2parent v1path
  own=$(cat /proc/self/cgroup)
  v2parent=/sys/fs/cgroup$(sed -n 's/^0:://p' <<<"$own")
  if [[ -n "$(sed -n 's/^0:://p' <<<"$own")" ]] && grep -qw memory "$v2parent/cgroup.subtree_control" 2>/dev/null; then
    cgroup=$v2parent/memwarden-containment-$$
    mkdir "$cgroup" && echo "$limit" >"$cgroup/memory.max" && where="$cgroup (v2)"
    return
  fi
  v1path=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' <<<"$own")
  if [[ -n "$v1path" && -w /sys/fs/cgroup/memory$v1path ]]; then
    cgroup=/sys/fs/cgroup/memory$v1path/memwarden-containment-$$
    mkdir "$cgroup" && echo "$limit" >"$cgroup/memory.limit_in_bytes" && where="$cgroup (v1)"
    return
  fi
  return 1
}

oom_kills() {
  if [[ -n "$cgroup" ]]; then
    { cat "$cgroup/memory.events" "$cgroup/memory.oom_control" 2>/dev/null || true; } | awk '$1=="oom_kill"{print $2}'
  else
    awk '$1=="oom_kill"{print $2}' /proc/vmstat
  fi
}

run_one() { # NAME MIB POLICY
  local name=$1 mib=$2 policy=$3 before after
  if [[ "$policy" == "$work/empty.toml" && -z "$cgroup" ]]; then
    echo "bug: a run with no budget must be inside the cgroup" >&2
    exit 2
  fi
  before=$(oom_kills)
  local cmd=("$MEMWARDEN_BIN" run -q --no-report --out "$work/$name" --workers 4 --policy "$policy"
    --duration "${duration}s" -- python3 fixtures/python/containment_worker.py "$mib" 0.1 1024)
  if [[ -n "$cgroup" ]]; then
    sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cgroup" "${cmd[@]}" >"$work/$name.out" 2>&1 || true
  else
    "${cmd[@]}" >"$work/$name.out" 2>&1 || true
  fi
  after=$(oom_kills)
  echo "== $name: 4 workers, $mib MiB/trial, ${duration}s"
  echo "kernel OOM kills: $((after - before))"
  python3 benches/containment_figures.py "$MEMWARDEN_BIN" "$work/$name" "$policy"
}

if [[ $(id -u) -ne 0 ]]; then
  echo "skipped the cgroup runs: making a memory cgroup needs root"
elif make_cgroup; then
  echo "memory cgroup: $where, limit 1.5 GiB"
  run_one cgroup-8mib 8 "$work/empty.toml"
  run_one cgroup-64mib 64 "$work/empty.toml"
  rmdir "$cgroup" 2>/dev/null || true
  cgroup=""
else
  echo "skipped the cgroup runs: no writable memory cgroup (v2 delegated or v1) here"
fi
run_one budget-8mib 8 "$work/budget.toml"
run_one budget-64mib 64 "$work/budget.toml"
