"""Judges what `scripts/gpu-check` recorded: one PASS/FAIL line per claim, with the figures
behind it, on stdout; exit 1 when any claim fails. Standard library only.

    python3 scripts/gpu_check_judge.py OUT_DIR WORKER_SCRIPT
"""

import csv
import glob
import json
import os
import sys

MIB = 1 << 20
KEEP_MIB = 64.0


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        return {"error": str(error)}


def rows(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def report_text(run_dir):
    found = glob.glob(os.path.join(run_dir, "**", "report.md"), recursive=True)
    if not found:
        return ""
    with open(found[0], errors="replace") as f:
        return f.read()


def worker_finding(analysis, worker):
    for w in analysis.get("workers", []):
        if w.get("worker") == worker:
            return w
    return {}


def attribution(out):
    """nvidia-smi's per-process figure against memwarden's samples of that pid taken between two
    consecutive nvidia-smi readings that agree (memory steady over that stretch). Each reading
    was taken between the two times apps.csv gives it, so the stretch runs from the first's
    later time to the second's earlier one; memwarden's GPU thread may hand a tick a reading up
    to one interval old, so the stretch starts one interval (100 ms) later still."""
    smi = {}
    try:
        with open(os.path.join(out, "apps.csv")) as f:
            for line in f:
                parts = [p.strip() for p in line.split(",")]
                if len(parts) < 4 or not parts[2].isdigit():
                    continue
                try:
                    reading = (int(parts[0]), int(parts[1]), float(parts[3]))
                except ValueError:
                    continue
                smi.setdefault(int(parts[2]), []).append(reading)
    except OSError:
        pass
    manifest = load_json(os.path.join(out, "runs", "a-leak", "manifest.json"))
    start = manifest.get("start_wall_ns") or 0
    ours = {}
    for r in rows(os.path.join(out, "runs", "a-leak-samples.csv")):
        if r.get("gpu") in (None, ""):
            continue
        ours.setdefault(int(r["pid"]), []).append((start + int(r["t_ns"]), float(r["gpu"]) / MIB))
    compared, worst = 0, 0.0
    for pid, readings in smi.items():
        for (_, after, v1), (before, _, v2) in zip(readings, readings[1:]):
            if v1 != v2 or v1 <= 0 or before - after > 1_000_000_000:
                continue
            for t, value in ours.get(pid, []):
                if after + 100_000_000 <= t <= before:
                    compared += 1
                    worst = max(worst, abs(value - v1) / v1)
    ok = compared >= 5 and worst <= 0.05
    return ok, "%d memwarden samples of %d process(es) inside steady nvidia-smi stretches, largest difference %.2f%%" % (
        compared,
        len(smi),
        100 * worst,
    )


def keep_line(worker_script):
    with open(worker_script) as f:
        for number, text in enumerate(f, 1):
            if text.rstrip().endswith("# KEEP"):
                return number
    return None


def leak(out, worker_script):
    analysis = load_json(os.path.join(out, "runs", "a-leak.json"))
    w = worker_finding(analysis, 0)
    gpu = next((k for k in w.get("kinds", []) if k.get("kind") == "gpu"), {})
    rate = ((gpu.get("per_trial") or {}).get("bytes") or 0.0) / MIB
    sites = w.get("sites") or []
    top = sites[0] if sites else {}
    line = keep_line(worker_script)
    named = os.path.basename(top.get("file", "")) == os.path.basename(worker_script) and top.get("line") == line
    ok = (
        w.get("kind") == "gpu"
        and w.get("verdict") == "leak"
        and abs(rate - KEEP_MIB) <= 0.15 * KEEP_MIB
        and named
    )
    return ok, "worker 0: %s in %s, %.2f MiB/trial (want %.0f +-15%%), line %s:%s (want line %s)" % (
        w.get("verdict"),
        w.get("kind"),
        rate,
        KEEP_MIB,
        os.path.basename(top.get("file", "none")),
        top.get("line"),
        line,
    )


def cache(out):
    analysis = load_json(os.path.join(out, "runs", "b-cache.json"))
    w = worker_finding(analysis, 0)
    mechanisms = [d.get("mechanism") for d in w.get("diagnoses", [])]
    text = report_text(os.path.join(out, "runs", "b-cache"))
    ok = "gpu_allocator_cache" in mechanisms and "gpu_tensors" not in mechanisms
    worded = "allocator caching, not a tensor leak" in text
    return ok and worded, "diagnoses %s; report %s the caching words; worker 0 verdict %s in %s" % (
        mechanisms,
        "has" if worded else "lacks",
        w.get("verdict"),
        w.get("kind"),
    )


def restart(out):
    events = rows(os.path.join(out, "runs", "c-restart-events.csv"))
    stops = [e for e in events if e.get("kind") == "policy" and '"stop"' in e.get("detail", "")]
    stopped = sorted({e.get("worker") for e in stops})
    first = min((int(e["t_ns"]) for e in stops), default=None)
    ends_after = sum(
        1
        for e in events
        if e.get("kind") == "trial_end" and e.get("worker") == "1" and first is not None and int(e["t_ns"]) > first
    )
    ends_leaker_after = sum(
        1
        for e in events
        if e.get("kind") == "trial_end" and e.get("worker") == "0" and first is not None and int(e["t_ns"]) > first
    )
    ok = stopped == ["0"] and ends_after >= 3
    return ok, "policy stops of worker(s) %s (%d in all); after the first, worker 1 ended %d trials and worker 0 (restarted) %d" % (
        stopped or "none",
        len(stops),
        ends_after,
        ends_leaker_after,
    )


def refusals(out):
    said = []
    ok = True
    for refusal in ("no-library", "driver-not-loaded", "no-permission", "no-device", "mig"):
        events = rows(os.path.join(out, "runs", "refuse-%s-events.csv" % refusal))
        notes = [e.get("detail", "") for e in events if "GPU data unavailable" in e.get("detail", "")]
        ended = [e for e in events if e.get("kind") == "trial_end"]
        text = report_text(os.path.join(out, "runs", "refuse-" + refusal))
        in_report = "GPU memory | not recorded:" in text
        good = len(notes) == 1 and len(ended) == 3 and in_report
        ok = ok and good
        why = notes[0].split("GPU data unavailable: ", 1)[-1].split('"')[0] if notes else "no note"
        said.append("%s: %s" % (refusal, why) if good else "%s: FAILED (%d note(s), %d trial(s), report %s)" % (refusal, len(notes), len(ended), in_report))
    return ok, "; ".join(said)


def main():
    out, worker_script = sys.argv[1], sys.argv[2]
    claims = [
        ("attribution", attribution(out)),
        ("leak", leak(out, worker_script)),
        ("cache", cache(out)),
        ("restart", restart(out)),
        ("refusals", refusals(out)),
    ]
    for name, (ok, detail) in claims:
        print("%s  %-11s %s" % ("PASS" if ok else "FAIL", name, detail))
    return 0 if all(ok for _, (ok, _) in claims) else 1


if __name__ == "__main__":
    sys.exit(main())
