"""Figures of one containment run (benches/containment.sh): restarts, completed trials per 20 s
window after the first brake, the longest stretch without a completed trial.

    python3 benches/containment_figures.py MEMWARDEN RUN_DIR POLICY_FILE
"""

import csv
import io
import json
import subprocess
import sys


def table(exe, run, name):
    out = subprocess.run(
        [exe, "export", run, "--table", name], check=True, capture_output=True, text=True
    ).stdout
    return list(csv.DictReader(io.StringIO(out)))


def main():
    exe, run, _policy = sys.argv[1:4]
    events = table(exe, run, "events")
    ends = sorted(float(t["end"]) for t in table(exe, run, "trials") if t["end"])
    system = table(exe, run, "system")
    run_end = float(system[-1]["t"]) if system else (ends[-1] if ends else 0.0)
    policy = [(float(e["t"]), e["worker"], json.loads(e["detail"])) for e in events if e["kind"] == "policy"]
    actions = {}
    for _, _, detail in policy:
        actions[detail["action"]] = actions.get(detail["action"], 0) + 1
    brakes = [t for t, _, d in policy if d["action"] == "brake_on"]
    print(f"policy actions: {dict(sorted(actions.items()))}")
    print(f"restarts: {actions.get('restart', 0)}")
    print(f"completed trials: {len(ends)}")
    # escalation.after and restart.grace as the run's policy.toml has them, defaults else.
    after, grace = 30.0, 10.0
    bound = after + grace + 2.0
    if brakes:
        first = brakes[0]
        windows = []
        start = first
        while start < run_end:
            stop = min(start + 20.0, run_end)
            windows.append(sum(1 for t in ends if start <= t < stop))
            start += 20.0
        print(f"first brake at {first:.1f} s; completed trials per 20 s window after it: {windows}")
        empty = sum(1 for w in windows if w == 0)
        print(f"windows with no completed trial: {empty} of {len(windows)}")
    else:
        print("the brake never engaged")
    marks = [0.0] + ends + [run_end]
    longest = max(b - a for a, b in zip(marks, marks[1:]))
    verdict = "ok" if longest < bound else "STALLED"
    print(f"longest stretch without a completed trial: {longest:.1f} s (bound {bound:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
