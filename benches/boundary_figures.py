"""Figures of one boundary-reads run (benches/boundary_reads.sh): per worker, the share of
trials whose retained anonymous memory (analyze --json, trials[].tree.anon.retained) is more than
2 MiB off the truth the worker wrote itself at each end, the unknown ones, the first clear
trial, and the parameter effects with their CI.

    python3 benches/boundary_figures.py MEMWARDEN RUN_DIR TRUTH_DIR
"""

import json
import os
import subprocess
import sys

MIB = 1 << 20


def main():
    exe, run, truth_dir = sys.argv[1:4]
    out = subprocess.run([exe, "analyze", run, "--json"], check=True, capture_output=True, text=True)
    findings = json.loads(out.stdout)
    truth = {}
    for name in os.listdir(truth_dir):
        if name.startswith("truth-"):
            worker = int(name.split("-")[1])
            with open(os.path.join(truth_dir, name)) as file:
                for line in file:
                    trial, anon = line.split()
                    truth[(worker, trial)] = int(anon)
    workers = {}
    for t in findings["trials"]:
        key = (t["worker"], t["trial"])
        if key not in truth or t.get("end_ns") is None:
            continue
        w = workers.setdefault(t["worker"], {"n": 0, "off": 0, "unknown": 0, "worst": 0.0})
        w["n"] += 1
        retained = t.get("tree", {}).get("anon", {}).get("retained")
        if retained is None:
            w["unknown"] += 1
            continue
        error = abs(retained - truth[key]) / MIB
        w["worst"] = max(w["worst"], error)
        if error > 2.0:
            w["off"] += 1
    clear = {}
    for w in findings["workers"]:
        for k in w.get("kinds", []):
            if k["kind"] == "anon":
                clear[w["worker"]] = k.get("first_clear_trial")
    for worker, w in sorted(workers.items()):
        print(
            f"worker {worker}: {w['off']} of {w['n']} retained readings more than 2 MiB off the truth "
            f"({100.0 * w['off'] / max(w['n'], 1):.1f}%), {w['unknown']} unknown, worst {w['worst']:.2f} MiB off; "
            f"anon first clear trial: {clear.get(worker)}"
        )
    for p in findings.get("parameters", []):
        low, high = p.get("effect_low_bytes"), p.get("effect_high_bytes")
        ci = f" (95% CI {low / MIB:+.2f}..{high / MIB:+.2f})" if low is not None and high is not None else ""
        print(f"parameter {p['name']}={p.get('value')}: {p['effect_bytes'] / MIB:+.2f} MiB/trial{ci}")
    for reads in findings.get("boundary_reads", []):
        print(
            f"worker {reads['worker']}: boundary reads: {reads['by_worker']} by the worker, {reads['by_harness']} by memwarden "
            f"(delay median {reads.get('median_delay_ms') or 0:.2f} ms, worst {reads.get('worst_delay_ms') or 0:.2f} ms), "
            f"{reads['late']} late, {reads['settled']} settled, {reads['unknown']} unknown"
        )


if __name__ == "__main__":
    main()
