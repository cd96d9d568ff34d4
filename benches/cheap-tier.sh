#!/usr/bin/env bash
# The cheap tier's cost beside the usual Python tools, in one run: a 9-process Python tree (a
# parent and 8 forked children holding 24 MiB each, touching a little of it now and then) is
# watched at 100 Hz for DURATION seconds (default 30) by `memwarden attach`, by psrecord and by
# mprof (memory_profiler), one after the other on the same tree. memwarden runs twice: with its
# PSS reads (smaps_rollup, a separate tier with its own CPU budget) held to their minimum, which is
# the cheap tier alone and what the other tools do, and with its default 2% of a core for them. Each tool's own CPU (user +
# system, from wait4: the tree is not its child, so none of the tree's CPU is in it) is divided
# by the process-samples it took (memwarden's until its recording is closed, before the verdict's
# analysis at its end, polled from /proc/PID/stat): memwarden's from its samples table, the others' from their
# log lines times the tree's 9 processes. A bare loop making the same reads at the same rate
# gives the floor. psrecord and memory_profiler come from PyPI into a virtual environment
# outside the clone.
#
#   benches/cheap-tier.sh [DURATION_SECONDS]
#   benches/cheap-tier.sh cgroups [DURATION_SECONDS]
#
# The second form (root, or a delegated cgroup v2 subtree) compares instead what one worker of
# 1, 30 and 300 processes costs with a memory cgroup of its own against the per-process path:
# benches/cheap_tier_cgroups.py says how.
set -euo pipefail
mode=cheap
if [ "${1:-}" = cgroups ]; then
    mode=cgroups
    shift
fi
duration=${1:-30}
cd "$(dirname "$0")/.."
cargo build --release --quiet
exe=${CARGO_TARGET_DIR:-target}/release/memwarden
if [ "$mode" = cgroups ]; then
    MEMWARDEN="$exe" DURATION="${1:-20}" exec python3 benches/cheap_tier_cgroups.py
fi
venv=${MEMWARDEN_BENCH_VENV:-$HOME/.cache/memwarden/bench-venv}
if ! "$venv/bin/python" -c 'import psrecord, memory_profiler, psutil' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q psrecord memory_profiler psutil
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
MEMWARDEN_BENCH_BASELINE="${MEMWARDEN_BENCH_BASELINE:-}" MEMWARDEN="$exe" VENV="$venv" WORK="$work" DURATION="$duration" python3 - <<'EOF'
import fcntl, json, os, signal, struct, subprocess, sys, termios, threading, time

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

def cpu_s(stat_path):
    """utime + stime of a process or thread, in seconds."""
    fields = open(stat_path).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def drain(fd):
    """Reads a terminal's output until no process holds it (EIO)."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass

def recording_cpu_of(argv, out, terminal):
    """Runs memwarden to its end; its own CPU seconds until its recording is closed (the
    manifest says finished), leaving out the verdict's analysis that follows, which a build
    without one would not pay; and its sampler's and writer's threads' then. With `terminal`,
    its stderr is a pseudo-terminal of 120 columns, so it draws its live view."""
    started = time.monotonic()
    if terminal:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave,
                                env=dict(os.environ, TERM="xterm"))
        os.close(slave)
        threading.Thread(target=drain, args=(master,), daemon=True).start()
    else:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cpu, wall, threads = 0.0, 0.0, {}
    manifest = os.path.join(out, "manifest.json")
    while proc.poll() is None:
        try:
            now = cpu_s(f"/proc/{proc.pid}/stat")
            tasks = {}
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                name = open(f"/proc/{proc.pid}/task/{tid}/comm").read().strip()
                tasks[name] = tasks.get(name, 0.0) + cpu_s(f"/proc/{proc.pid}/task/{tid}/stat")
        except (OSError, IndexError):
            break
        try:
            finished = json.load(open(manifest)).get("status") == "finished"
        except (OSError, ValueError):
            finished = False
        if finished:
            break
        cpu, wall = now, time.monotonic() - started
        # A thread's last reading before it ended (the sampler and the writer end before the
        # manifest says finished).
        for name, seconds in tasks.items():
            threads[name] = max(threads.get(name, 0.0), seconds)
        time.sleep(0.02)
    proc.wait()
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed with {proc.returncode}")
    return cpu, wall, threads

def memwarden(name, exe, *extra, terminal=False):
    out = os.path.join(work, name)
    cpu, wall, threads = recording_cpu_of([exe, "attach", "--interval", "10ms", "--duration",
                                           f"{duration}s", "--out", out, *extra, str(tree.pid)],
                                          out, terminal)
    per_thread[name] = threads
    rows = subprocess.run([exe, "export", out, "--table", "samples"], check=True,
                          capture_output=True, text=True).stdout.count("\n") - 1
    results.append((name, cpu, wall, rows))

results = []
per_thread = {}
try:
    # The cheap tier alone (PSS reads held to their 0.01% minimum), then with the default 2%
    # of a core for PSS reads on top; MEMWARDEN_BENCH_BASELINE=EXE adds an older build's.
    memwarden("memwarden", exe, "--rollup-cpu", "0.01")
    memwarden("memwarden+pss", exe)
    # The live view drawn on a terminal: what it adds to the sampler (nothing: it is folded on
    # the writer's thread and drawn on its own), and to the whole.
    memwarden("memwarden+view", exe, "--rollup-cpu", "0.01", terminal=True)
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
samples = {name: n for name, _, _, n in results}
for name, threads in per_thread.items():
    shown = ", ".join(f"{thread} {cpu / max(samples[name], 1) * 1e6:.1f}"
                      for thread, cpu in sorted(threads.items(), key=lambda t: -t[1])
                      if cpu > 0)
    print(f"{name:14s} threads, us per process-sample: {shown}")
for name, cpu, wall, samples in results:
    per = cpu / max(samples, 1)
    print(f"{name:14s} {cpu:6.2f} s CPU over {wall:5.1f} s, {samples:7d} process-samples, "
          f"{per * 1e6:6.1f} us each ({per / ours:4.2f}x memwarden's)")
EOF
