"""Watches a running memwarden soak from outside (benches/soak-long.sh): once a second the
harness's RSS, open file descriptors and threads, and the peak RSS of its checkpoint children
(`memwarden report`); once a minute a row of figures. At the end, the RSS slope from minute 10 on
(Theil-Sen, MiB/hour, 95% interval from the Kendall statistic, as Sen 1968) and PASS/FAIL lines
against the goals. Standard library only.

    python3 benches/soak_monitor.py HARNESS_PID RUN_DIR CSV MINUTES [KILL_AT_MINUTE]
"""

import csv
import math
import os
import random
import signal
import sys
import time

MIB = 1 << 20
ASKED_HZ = 100.0


def status_fields(pid):
    fields = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.split()
    except OSError:
        return None
    return fields


def children(pid):
    found = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def is_report(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"\0report\0" in f.read()
    except OSError:
        return False


def dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def theil_sen(xs, ys):
    slopes = sorted(
        (ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]
    )
    if not slopes:
        return None
    n = len(xs)
    mid = slopes[len(slopes) // 2]
    # Sen's interval: the ranks of the pairwise slopes that bound the Kendall statistic's 95% band.
    var_s = n * (n - 1) * (2 * n + 5) / 18.0
    c = 1.96 * math.sqrt(var_s)
    m = len(slopes)
    low = int(max(0, math.floor((m - c) / 2)))
    high = int(min(m - 1, math.ceil((m + c) / 2)))
    return mid, slopes[low], slopes[high]


def main():
    harness, run, path, minutes = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    kill_at = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None
    started = time.monotonic()
    per_minute = {}
    child_peak = {}
    seen_children = set()
    rows = []
    writer_file = open(path, "w", newline="")
    writer = csv.writer(writer_file)
    writer.writerow(["minute", "rss_mib_max", "rss_mib_mean", "fds", "threads", "run_dir_mib", "checkpoint_children", "checkpoint_child_peak_mib", "anon_mib_mean"])
    last_minute = -1
    while True:
        fields = status_fields(harness)
        if fields is None or fields.get("State", ["Z"])[0] == "Z":
            break
        elapsed = time.monotonic() - started
        minute = int(elapsed // 60)
        if kill_at is not None and elapsed >= kill_at * 60:
            os.kill(harness, signal.SIGKILL)
            print("SIGKILL to the harness at %.1f min" % (elapsed / 60))
            break
        try:
            fds = len(os.listdir("/proc/%d/fd" % harness))
        except OSError:
            fds = None
        entry = per_minute.setdefault(minute, {"rss": [], "anon": [], "fds": set(), "threads": set(), "children": 0, "peak": 0})
        entry["rss"].append(int(fields["VmRSS"][0]) * 1024)
        # RSS counts the binary's own pages as they are first run: anonymous memory is what a
        # leak of the supervisor's would grow.
        entry["anon"].append(int(fields.get("RssAnon", ["0"])[0]) * 1024)
        entry["fds"].add(fds)
        entry["threads"].add(int(fields["Threads"][0]))
        for child in children(harness):
            if child not in seen_children and is_report(child):
                seen_children.add(child)
                entry["children"] += 1
            if child in seen_children:
                f = status_fields(child)
                if f and "VmHWM" in f:
                    peak = int(f["VmHWM"][0]) * 1024
                    child_peak[child] = max(child_peak.get(child, 0), peak)
                    entry["peak"] = max(entry["peak"], peak)
        if minute != last_minute and last_minute >= 0:
            e = per_minute[last_minute]
            row = [
                last_minute,
                round(max(e["rss"]) / MIB, 2),
                round(sum(e["rss"]) / len(e["rss"]) / MIB, 2),
                "/".join(str(x) for x in sorted(x for x in e["fds"] if x is not None)),
                "/".join(str(x) for x in sorted(e["threads"])),
                round(dir_bytes(run) / MIB, 1),
                e["children"],
                round(e["peak"] / MIB, 1),
                round(sum(e["anon"]) / len(e["anon"]) / MIB, 2),
            ]
            rows.append(row)
            writer.writerow(row)
            writer_file.flush()
            print("minute %3d: RSS max %6.2f MiB mean %6.2f  fds %s  threads %s  run dir %7.1f MiB  checkpoints %d (child peak %.1f MiB)  anon %.2f MiB" % tuple(row), flush=True)
        last_minute = minute
        time.sleep(1.0)
    writer_file.close()
    if kill_at is not None:
        return 0
    return judge(rows, minutes)


def judge(rows, minutes):
    ok = True
    full = [r for r in rows if r[0] >= 1]
    if not full:
        print("FAIL  no whole minute observed")
        return 1
    peak = max(r[1] for r in rows)
    good = peak < 30.0
    ok &= good
    print("%s  harness RSS under 30 MiB throughout: max %.2f MiB" % ("PASS" if good else "FAIL", peak))
    late = [r for r in rows if r[0] >= min(10, max(1, int(minutes) // 3))]
    fit = theil_sen([r[0] / 60.0 for r in late], [r[2] for r in late]) if len(late) >= 3 else None
    if fit:
        slope, low, high = fit
        good = low <= 0.0 <= high or abs(slope) < 0.05
        ok &= good
        print("%s  RSS slope from minute %d: %+.3f MiB/hour (95%% CI %+.3f..%+.3f)" % ("PASS" if good else "FAIL", late[0][0], slope, low, high))
        anon = theil_sen([r[0] / 60.0 for r in late], [r[8] for r in late])
        if anon:
            print("      anonymous memory's slope from minute %d: %+.3f MiB/hour (95%% CI %+.3f..%+.3f)" % ((late[0][0],) + anon))
    # A checkpoint's child adds a pipe and the report's files for a moment: what must stay
    # constant is the floor of each minute (the harness's own), and the top must stay near it.
    steady = full[1:] if len(full) > 1 else full
    for name, column, slack in (("file descriptors", 3, 8), ("threads", 4, 4)):
        values = [[int(v) for v in str(r[column]).split("/") if v] for r in steady]
        floors = sorted({min(v) for v in values if v})
        top = max((max(v) for v in values if v), default=0)
        good = len(floors) == 1 and top - floors[0] <= slack
        ok &= good
        print("%s  %s constant: each minute's floor %s, highest %d" % ("PASS" if good else "FAIL", name, "/".join(map(str, floors)), top))
    peaks = [r[7] for r in rows if r[6]]
    if peaks:
        print("checkpoint children: %d, peak RSS %.1f..%.1f MiB" % (sum(r[6] for r in rows), min(peaks), max(peaks)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
