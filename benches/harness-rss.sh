#!/usr/bin/env bash
# The harness's own RSS over a long run: 32 fixture workers sampled at 10 Hz, trials every few
# seconds (so trial-boundary smaps snapshots, events and segment compaction all run), for
# DURATION (default 20m). memwarden records its own RSS every tick (system table, harness_rss);
# this prints it per minute. A profiler that leaks shows a rising line.
#
# `soak` as the second argument runs `memwarden soak --workers 4` with a checkpoint every
# CHECKPOINT (default 1m) instead: each checkpoint's report runs in a child process, whose peak
# RSS (what the harness would otherwise keep) is printed at the end beside the harness's own.
#
#   benches/harness-rss.sh [DURATION] [run|soak]
set -euo pipefail
duration=${1:-20m}
mode=${2:-run}
cd "$(dirname "$0")/.."
cargo build --release --quiet
exe=${CARGO_TARGET_DIR:-target}/release/memwarden
out=$(mktemp -d)/run
if [ "$mode" = soak ]; then
  # A leaking worker fails the soak (exit 1); the figures are what matters here.
  "$exe" soak --workers 4 --duration "$duration" --checkpoint "${CHECKPOINT:-1m}" --out "$out" -- \
    "$exe" fixture-worker --trials 1000000 --trial-ms 500 --gap-ms 100 --leak-mib 0.05 >/dev/null || true
else
  "$exe" run --workers 32 --duration "$duration" --segment 2m --out "$out" -- \
    "$exe" fixture-worker --trials 1000000 --trial-ms 4000 --gap-ms 1000 --leak-mib 0.25 >/dev/null
fi
"$exe" export "$out" --table system | python3 -c '
import csv, sys
rows = list(csv.DictReader(sys.stdin))
per_minute = {}
for r in rows:
    per_minute.setdefault(int(float(r["t"]) // 60), []).append(int(r["harness_rss_bytes"]))
for minute, values in sorted(per_minute.items()):
    print(f"minute {minute:3d}: harness RSS mean {sum(values)/len(values)/2**20:7.2f} MiB, max {max(values)/2**20:7.2f} MiB")
first, last = per_minute[min(per_minute)], per_minute[max(per_minute)]
print(f"first minute mean {sum(first)/len(first)/2**20:.2f} MiB, last minute mean {sum(last)/len(last)/2**20:.2f} MiB, ticks {len(rows)}")
'
"$exe" export "$out" --table events | grep -c sampler_overrun | sed 's/^/overrun events: /' || true
du -sh "$out" | sed 's/^/run directory: /'
if [ "$mode" = soak ]; then
  /usr/bin/time -f "one checkpoint's report (the child process) peak RSS: %M KiB" \
    "$exe" report "$out" --out "$(mktemp -d)" >/dev/null
fi
