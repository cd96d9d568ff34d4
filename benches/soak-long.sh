#!/usr/bin/env bash
# A time-compressed soak: what memwarden's supervisor costs, and whether anything in it grows,
# over a 12-hour soak's worth of samples. 8 fixture workers sampled at 100 Hz (ten times the
# default, so each hour carries ten hours of default-rate ticks), trial boundaries every 0.5 to
# 1.9 s (worker K's trials last 400 + 200*K ms, then 100 ms apart), worker 0 leaking 0.05 MiB per
# trial and the others clean, a report checkpoint every 2 minutes (in a child process).
#
#   benches/soak-long.sh [--minutes N] [--checkpoint D] [--kill-at-minute M] [--out DIR]
#
# Each minute it logs the harness's RSS, open file descriptors and threads, the run directory's
# size, the sample rate achieved over that minute, and the largest checkpoint child's peak RSS;
# at the end, the harness's RSS slope from minute 10 on (Theil-Sen, MiB/hour, with its 95%
# interval), the soak's verdict, and PASS/FAIL against the goals (RSS under 30 MiB, slope
# indistinguishable from zero, fds and threads constant, rate at least 99% of asked, the verdict
# naming worker 0 alone). `--kill-at-minute M` SIGKILLs the harness at minute M instead, then
# checks that the recording still reads (`memwarden analyze`). Default: 75 minutes, 2m.
# The figures go to stdout and OUT/soak-minutes.csv; exit 1 when a goal is missed.
set -euo pipefail
minutes=75
checkpoint=2m
kill_at=
out=
while [ $# -gt 0 ]; do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --checkpoint) checkpoint=$2; shift 2 ;;
        --kill-at-minute) kill_at=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: benches/soak-long.sh [--minutes N] [--checkpoint D] [--kill-at-minute M] [--out DIR]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
if [ -z "${MEMWARDEN_BIN:-}" ]; then
    cargo build --release --quiet
    exe=${CARGO_TARGET_DIR:-target}/release/memwarden
else
    exe=$MEMWARDEN_BIN
fi
out=${out:-$(mktemp -d)}
mkdir -p "$out"
run=$out/run
rm -rf "$run"
# Each worker's trial length from its index, through a shell as users start workers.
"$exe" soak -q --workers 8 --interval 10ms --duration "${minutes}m" --checkpoint "$checkpoint" \
    --grace 2s --out "$run" -- sh -c \
    'exec "$0" fixture-worker --trials 100000000 --trial-ms $((400 + 200 * MEMWARDEN_WORKER)) --gap-ms 100 --leak-mib 0.05 --only-worker 0' \
    "$exe" >"$out/soak.stdout" 2>"$out/soak.stderr" &
harness=$!
status=0
python3 benches/soak_monitor.py "$harness" "$run" "$out/soak-minutes.csv" "$minutes" "${kill_at:-}" \
    || status=$?
wait "$harness" || true
if [ -n "$kill_at" ]; then
    if "$exe" analyze "$run" >"$out/analyze.txt" 2>&1; then
        echo "after SIGKILL at minute $kill_at: the recording reads; $(grep -c . "$out/analyze.txt") lines of analysis"
        head -3 "$out/analyze.txt"
    else
        code=$?
        # 1 is a finding (worker 0 leaks), which is what it should say.
        if [ "$code" = 1 ]; then
            echo "after SIGKILL at minute $kill_at: the recording reads (analyze exit 1: a finding)"
            head -3 "$out/analyze.txt"
        else
            echo "FAIL: after SIGKILL at minute $kill_at the recording does not read (analyze exit $code)"
            cat "$out/analyze.txt"
            status=1
        fi
    fi
    exit $status
fi
# The sample rate achieved, per whole minute: the asked ticks less those the sampler missed
# (its `sampler_overrun` events). Trial boundaries add ticks of their own, so counting rows
# would overstate it.
"$exe" export "$run" --table events >"$out/events.csv"
python3 - "$out/events.csv" "$minutes" <<'EOF' || status=1
import csv, json, sys
minutes = int(float(sys.argv[2]))
missed = [0] * minutes
for r in csv.DictReader(open(sys.argv[1])):
    if r["kind"] == "sampler_overrun":
        minute = min(minutes - 1, int(float(r["t"]) // 60))
        missed[minute] += json.loads(r["detail"]).get("missed_ticks", 0)
rates = [100.0 * (6000 - m) / 6000 for m in missed]
ok = min(rates) >= 99.0
print("%s  achieved sample rate: %.3f%% of 100 Hz over the run, lowest minute %.3f%% (%d ticks missed in all)" % (
    "PASS" if ok else "FAIL", sum(rates) / len(rates), min(rates), sum(missed)))
sys.exit(0 if ok else 1)
EOF
python3 - "$run" <<'EOF' || status=1
import json, os, sys
verdict = json.load(open(os.path.join(sys.argv[1], "verdict.json")))
print("soak verdict: %s; leaking workers %s; %d trials; reasons: %s" % (
    verdict["verdict"], verdict["leaking_workers"], verdict["trials"], "; ".join(verdict["reasons"])))
ok = verdict["leaking_workers"] == [0]
print("%s  the verdict names worker 0 and no other" % ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
EOF
exit $status
