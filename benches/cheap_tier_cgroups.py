"""What a worker costs memwarden with a memory cgroup of its own, against the per-process path
(`[containment] worker_cgroups = false`), for worker trees of 1, 30 and 300 processes. Run by
`benches/cheap-tier.sh cgroups [DURATION_SECONDS]` (root, or a delegated cgroup v2 subtree).

Each run: `memwarden run` at its default 100 ms interval on one worker (a Python parent and its
forked children, each touching 1 MiB every half second; one trial that lasts the run, so no
boundary forces extra reads). memwarden's own CPU (user + system of its threads, from
/proc/PID/stat: not its children's) over the run less its first 2 s and last 0.5 s, divided by
the ticks in that window: CPU per worker-sample. Its sampler thread's share beside it. The two
paths alternate, each tree size in turn.
"""

import os
import subprocess
import sys
import tempfile
import time

EXE = os.environ["MEMWARDEN"]
DURATION = int(os.environ.get("DURATION", "20"))
# Share of a core for PSS reads (`--rollup-cpu`): 0.01 holds them to their minimum, the cheap
# tier alone; 2 is memwarden's default.
ROLLUP = os.environ.get("ROLLUP", "0.01")
TREE = r"""
import os, sys, time
for _ in range(int(sys.argv[1]) - 1):
    if os.fork() == 0:
        block = bytearray(1 << 20)
        i = 0
        while True:
            block[(i * 4096) % len(block)] = 1
            i += 1
            time.sleep(0.5)
print("MEMWARDEN trial_start 0", flush=True)
time.sleep(10 ** 6)
"""


def cpu_s(path):
    fields = open(path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_s(pid):
    """CPU seconds of memwarden's sampler thread and of its main thread (the harness loop:
    output, exits, the escapee scan)."""
    sampler = main = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        if open(f"/proc/{pid}/task/{tid}/comm").read().startswith("memwarden-sampl"):
            sampler = cpu_s(f"/proc/{pid}/task/{tid}/stat")
        elif tid == str(pid):
            main = cpu_s(f"/proc/{pid}/task/{tid}/stat")
    return sampler, main


def measure(work, tree, processes, policy, name):
    out = os.path.join(work, f"{name}-{processes}")
    argv = [EXE, "run", "-q", "--no-report", "--out", out, "--duration", f"{DURATION}s",
            "--rollup-cpu", ROLLUP, "--policy", policy, "--", sys.executable, tree, str(processes)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    time.sleep(2.0)
    t1, c1, (s1, m1) = time.monotonic(), cpu_s(f"/proc/{proc.pid}/stat"), threads_s(proc.pid)
    time.sleep(max(0.0, started + DURATION - 0.5 - time.monotonic()))
    t2, c2, (s2, m2) = time.monotonic(), cpu_s(f"/proc/{proc.pid}/stat"), threads_s(proc.pid)
    _, stderr = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"memwarden failed: {stderr}")
    said = next((l for l in stderr.splitlines() if "memory cgroup of its own" in l or "no per-worker cgroups" in l), "")
    ticks = (t2 - t1) / 0.1
    return ((c2 - c1) / ticks, (s2 - s1) / ticks, (m2 - m1) / ticks), said


def main():
    with tempfile.TemporaryDirectory() as work:
        tree = os.path.join(work, "tree.py")
        open(tree, "w").write(TREE)
        off = os.path.join(work, "off.toml")
        open(off, "w").write("[containment]\nworker_cgroups = false\n")
        on = os.path.join(work, "on.toml")
        open(on, "w").write("")
        print(f"one worker, {DURATION} s a run, 100 ms interval, --rollup-cpu {ROLLUP}; memwarden's "
              "CPU per worker-sample in us: whole process (sampler thread, main thread)")
        us = lambda c: f"{c[0] * 1e6:7.1f} ({c[1] * 1e6:6.1f}, {c[2] * 1e6:6.1f})"
        for processes in (1, 30, 300):
            with_cg, said = measure(work, tree, processes, on, "on")
            if "memory cgroup of its own" not in said:
                sys.exit(f"no per-worker cgroup was made: {said}")
            without, _ = measure(work, tree, processes, off, "off")
            print(f"{processes:4d} processes: per-worker cgroup {us(with_cg)}; per-process /proc "
                  f"{us(without)}; {without[0] / max(with_cg[0], 1e-9):4.1f}x")


main()
