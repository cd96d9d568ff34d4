#!/usr/bin/env bash
# The cheap tier's cost beside the usual Python tools, in one run: a 9-process Python tree (a
# parent and 8 forked children holding 24 MiB each, touching a little of it now and then) is
# watched at 100 Hz for DURATION seconds (default 30) by `memwarden attach`, by psrecord and by
# mprof (memory_profiler), one after the other on the same tree. memwarden runs twice: with its
# PSS reads (smaps_rollup, a separate tier with its own CPU budget) held to their minimum, which is
# the cheap tier alone and what the other tools do, and with its default 2% of a core for them. Each tool's own CPU (user +
# system, from wait4: the tree is not its child, so none of the tree's CPU is in it) is divided
# by the process-samples it took: memwarden's from its samples table, the others' from their
# log lines times the tree's 9 processes. A bare loop making the same reads at the same rate
# gives the floor. psrecord and memory_profiler come from PyPI into a virtual environment
# outside the clone.
#
#   benches/cheap-tier.sh [DURATION_SECONDS]
set -euo pipefail
duration=${1:-30}
cd "$(dirname "$0")/.."
cargo build --release --quiet
exe=${CARGO_TARGET_DIR:-target}/release/memwarden
venv=${MEMWARDEN_BENCH_VENV:-$HOME/.cache/memwarden/bench-venv}
if ! "$venv/bin/python" -c 'import psrecord, memory_profiler, psutil' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q psrecord memory_profiler psutil
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
MEMWARDEN_BENCH_BASELINE="${MEMWARDEN_BENCH_BASELINE:-}" MEMWARDEN="$exe" VENV="$venv" WORK="$work" DURATION="$duration" python3 - <<'EOF'
import os, signal, subprocess, sys, time

exe, venv, work, duration = (os.environ[k] for k in ("MEMWARDEN", "VENV", "WORK", "DURATION"))
duration = int(duration)
TREE = r"""
import os, signal, sys, time
children = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        block = bytearray(24 << 20)
        i = 0
        while True:
            block[(i * 4096) % len(block)] = 1
            i += 1
            time.sleep(0.05)
    children.append(pid)
def stop(*_):
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""
tree = subprocess.Popen([sys.executable, "-c", TREE])
time.sleep(2)  # the children have forked and touched their blocks

def cpu_of(argv):
    """Runs a tool to its end; its own CPU seconds (user + system)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed: {stderr}")
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started

def memwarden(name, exe, *extra):
    out = os.path.join(work, name)
    cpu, wall = cpu_of([exe, "attach", "--interval", "10ms", "--duration", f"{duration}s",
                        "--out", out, *extra, str(tree.pid)])
    rows = subprocess.run([exe, "export", out, "--table", "samples"], check=True,
                          capture_output=True, text=True).stdout.count("\n") - 1
    results.append((name, cpu, wall, rows))

results = []
try:
    # The cheap tier alone (PSS reads held to their 0.01% minimum), then with the default 2%
    # of a core for PSS reads on top; MEMWARDEN_BENCH_BASELINE=EXE adds an older build's.
    memwarden("memwarden", exe, "--rollup-cpu", "0.01")
    memwarden("memwarden+pss", exe)
    baseline = os.environ.get("MEMWARDEN_BENCH_BASELINE")
    if baseline:
        memwarden("baseline", baseline, "--rollup-cpu", "0.01")
        memwarden("baseline+pss", baseline)

    # The floor: the reads memwarden's cheap tier makes (statm and the main thread's children
    # per process and tick, status once a second, meminfo and PSI per tick), made by a bare
    # loop at the same 100 Hz, its own CPU per process-sample. On a VM each wake-up costs
    # tens of microseconds and caches are cold after 10 ms, so this is far above the same reads
    # in a tight loop.
    pids = [tree.pid] + [int(p) for p in open(f"/proc/{tree.pid}/task/{tree.pid}/children").read().split()]
    per_tick = [os.open(f"/proc/{p}/{f}", os.O_RDONLY) for p in pids
                for f in ("statm", f"task/{p}/children")]
    per_tick += [os.open(f, os.O_RDONLY) for f in ("/proc/meminfo", "/proc/pressure/memory")
                 if os.path.exists(f)]
    per_second = [os.open(f"/proc/{p}/status", os.O_RDONLY) for p in pids]
    cpu0, start, ticks = time.thread_time(), time.monotonic(), 0
    while time.monotonic() - start < duration:
        time.sleep(max(0.0, start + ticks * 0.01 - time.monotonic()))
        for fd in per_tick + (per_second if ticks % 100 == 0 else []):
            os.pread(fd, 4096, 0)
        ticks += 1
    results.append(("floor", time.thread_time() - cpu0, time.monotonic() - start, ticks * len(pids)))

    log = os.path.join(work, "psrecord.txt")
    cpu, wall = cpu_of([f"{venv}/bin/psrecord", str(tree.pid), "--interval", "0.01",
                        "--include-children", "--duration", str(duration), "--log", log])
    lines = sum(1 for line in open(log) if line.strip() and not line.startswith("#"))
    results.append(("psrecord", cpu, wall, lines * 9))

    dat = os.path.join(work, "mprof.dat")
    cpu, wall = cpu_of([f"{venv}/bin/mprof", "attach", "-C", "-T", "0.01", "-t", str(duration),
                        "-o", dat, str(tree.pid)])
    lines = sum(1 for line in open(dat) if line.startswith("MEM"))
    results.append(("mprof", cpu, wall, lines * 9))
finally:
    tree.send_signal(signal.SIGTERM)
    tree.wait()

ours = results[0][1] / max(results[0][3], 1)
for name, cpu, wall, samples in results:
    per = cpu / max(samples, 1)
    print(f"{name:14s} {cpu:6.2f} s CPU over {wall:5.1f} s, {samples:7d} process-samples, "
          f"{per * 1e6:6.1f} us each ({per / ours:4.2f}x memwarden's)")
EOF
