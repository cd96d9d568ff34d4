"""What each trial left alive, by allocation site: the tracer `memwarden run --trace-python` starts
in every Python process of the workers (through the `sitecustomize` it puts on PYTHONPATH).

Tracing is not free (tracemalloc slows every allocation, the more the more frames it keeps),
so it may run in stretches: tracing starts at a trial boundary, the next STRETCH trials are
traced, and at each of their ends the tracer writes one JSON line to its own file in
MEMWARDEN_TRACE_DIR, never to the worker's output: the sites still holding memory allocated
since tracing started, largest first. Then tracing stops for as many trials as keep the whole
run's slowdown near MEMWARDEN_TRACE_BUDGET percent (default 20), judged from how much longer
traced trials took than untraced ones; a worker whose trials barely allocate in Python is traced
all the time. Each stretch is an epoch: within one a site's bytes are cumulative, so the
difference between two reports is what one trial kept. A snapshot slower than BUDGET_MS also
ends its epoch.

In a process that imported torch, tracing waits for a diagnosis (MEMWARDEN_DIAGNOSE, default
`suspected`): there PyTorch's tensors are what leaks, and naming their lines and holders costs
most (a trace function on every line, a census of live tensors), so at each trial's end the
tracer only reads the process's anonymous memory, and once it grew over its last trials
(`_diagnose.suspected`) the next DIAGNOSE_TRIALS trials are diagnosed: the heap traced, the native
sampler's lines traced, the tensors censused. Then it waits again, as many trials as keep the
run within its budget, for memory to grow anew. `MEMWARDEN_DIAGNOSE=always` traces such a process
as any other (stretches from the first trial, every stretch censused).

Boundaries come from Optuna's log records (a handler on the `optuna` logger) and from the
helper's `memwarden.trial()`. Anything that goes wrong in here is written once as an `error`
line and stops tracing; the worker itself never sees an exception from this module.
"""

import json
import mmap
import os
import struct
import sys
import threading
import time

from . import _diagnose

_state = None
_lock = threading.Lock()

FRAMES = 10
TOP_SITES = 40
# A snapshot slower than this clears the traces afterwards, so the next one is small again.
BUDGET_MS = 40.0
# Trials traced in a row before the cost is weighed: the first report of a stretch is its
# baseline, each later one gives one trial's growth.
STRETCH = 2
MAX_GAP = 200


def _library_prefixes():
    import sysconfig

    paths = sysconfig.get_paths()
    prefixes = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(sorted(os.path.realpath(p) + os.sep for p in prefixes if p))


class _State:
    def __init__(self, directory):
        import tracemalloc

        self.tracemalloc = tracemalloc
        self.directory = directory
        self.pid = os.getpid()
        self.file = None
        self.epoch = 0
        self.started = False
        self.last_end = None
        self.frames = FRAMES
        self.budget = float(os.environ.get("MEMWARDEN_TRACE_BUDGET", "20")) / 100.0
        # The schedule: reports in this stretch, untraced trials left before the next one.
        self.in_stretch = 0
        self.gap_left = 0
        self.gap = 0
        self.last_boundary = None
        self.traced_s = []
        self.untraced_s = []
        self.untraced_s_since = 0
        self.shared = mmap.mmap(-1, _SHARED_SIZE)
        self.seen_seq = 0
        self.libraries = _library_prefixes()
        self.here = os.path.dirname(os.path.realpath(__file__)) + os.sep
        self.optuna = None
        self.real = {}
        # None: not tried yet; False: PyTorch refused to record stacks.
        self.gpu_recording = None
        self.gpu_warmup_ms = 0.0
        self.identity = None
        self.lost_fd = 0
        from . import _native

        # memwarden's native allocation sampler, where it is preloaded (`_native`).
        self.native = _native.Native.find()
        # None: not started; False: off (MEMWARDEN_TENSOR_CENSUS=0, or it failed).
        self.census = False if os.environ.get("MEMWARDEN_TENSOR_CENSUS") == "0" else None
        worker = os.environ.get("MEMWARDEN_WORKER", "")
        self.worker = int(worker) if worker.isdigit() else None
        # `suspected`: a torch process is traced in diagnoses only; `always`: as any other.
        self.diagnose = os.environ.get("MEMWARDEN_DIAGNOSE", "suspected")
        trials = os.environ.get("MEMWARDEN_DIAGNOSE_TRIALS", "")
        self.window = int(trials) if trials.isdigit() and int(trials) > 0 else _diagnose.DIAGNOSE_TRIALS
        # Memory at trial ends since the last diagnosis; trials left in this one; trials
        # before the next may start.
        self.levels = []
        self.diagnosing = 0
        self.cooldown = 0

    def write(self, record):
        if self.file is not None and self.pid == os.getpid() and not self.still_ours():
            # The worker closed our descriptor (os.closerange, a daemonising library) and may
            # have opened a file of its own under the same number: never write there, never
            # close it; open ours again and say so.
            self.file = None
            self.lost_fd += 1
        if self.file is None or self.pid != os.getpid():
            self.pid = os.getpid()
            path = os.path.join(self.directory, "%d.jsonl" % self.pid)
            self.file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            st = os.fstat(self.file)
            self.identity = (st.st_dev, st.st_ino)
            if self.lost_fd:
                self.emit({"kind": "note", "note": "the worker closed the tracer's report file %d time(s) (os.closerange or a daemonising library); it was opened again, and reports in between may be missing" % self.lost_fd})
        self.emit(record)

    def still_ours(self):
        try:
            st = os.fstat(self.file)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def emit(self, record):
        record["pid"] = self.pid
        record["worker"] = self.worker
        record["t_mono_ns"] = time.monotonic_ns()
        os.write(self.file, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def realpath(self, filename):
        path = self.real.get(filename)
        if path is None:
            path = os.path.realpath(filename) if filename[:1] not in ("<", "") else filename
            self.real[filename] = path
        return path

    def is_library(self, filename):
        path = self.realpath(filename)
        return path.startswith(self.libraries) or path.startswith("<")


    def is_optuna(self, filename):
        if self.optuna is None:
            module = sys.modules.get("optuna")
            where = getattr(module, "__file__", None)
            if not where:
                return False
            self.optuna = os.path.dirname(os.path.realpath(where)) + os.sep
        return self.realpath(filename).startswith(self.optuna)

    def site_of(self, frames):
        """For a raw traceback (`(filename, lineno)` pairs, most recent first): the innermost
        frame outside the standard library and installed packages (the worker's own line), the
        innermost frame of all when it differs (what allocated), and whether what follows the
        worker's line is the search framework's own code. `None` for the tracer's own."""
        if any(self.realpath(f).startswith(self.here) for f, _ in frames):
            return None
        if not frames:
            return None
        innermost = frames[0]
        for index, frame in enumerate(frames):
            if not self.is_library(frame[0]):
                inner = frames[index - 1] if index > 0 else None
                study = inner is not None and self.is_optuna(inner[0])
                return frame, (innermost if index > 0 else None), study
        return innermost, None, self.is_optuna(innermost[0])

    def grouped(self, traces):
        """Sums `(frames, bytes, blocks, largest block)` by the site `site_of` names: the groups
        `ranked` takes (site -> [bytes, blocks, via, largest block, study, its frames]), and
        the bytes grouped."""
        groups = {}
        total = 0
        for frames, size, blocks, largest in traces:
            found = self.site_of(frames)
            if found is None:
                continue
            total += size
            site, via, study = found
            group = groups.get(site)
            if group is None:
                group = groups[site] = [0, 0, via, 0, study, frames]
            group[0] += size
            group[1] += blocks
            if largest > group[3]:
                group[2], group[3], group[5] = via, largest, frames
            group[4] = group[4] and study
        return groups, total

    def ranked(self, groups):
        """The largest TOP_SITES of `groups` (site -> [bytes, blocks, via, largest block,
        study, frames of the largest]) as the report's `sites`."""
        ranked = sorted(groups.items(), key=lambda item: -item[1][0])[:TOP_SITES]
        where = lambda frame: "%s:%d" % (self.realpath(frame[0]), frame[1])
        return [
            {
                "file": self.realpath(filename),
                "line": lineno,
                "bytes": size,
                "blocks": blocks,
                "largest_block": largest,
                "via": None if via is None else where(via),
                "study": bool(study),
                "traceback": [where(f) for f in reversed(frames[:5])],
            }
            for (filename, lineno), (size, blocks, via, largest, study, frames) in ranked
        ]

    def slowdown(self):
        """How much longer a traced trial takes than an untraced one (median of the recent)."""
        if not self.traced_s or not self.untraced_s:
            return None
        median = lambda values: sorted(values)[len(values) // 2]
        return median(self.traced_s[-9:]) / max(median(self.untraced_s[-9:]), 1e-6)

    def next_gap(self, stretch=STRETCH):
        """Untraced trials after a stretch, so that tracing `stretch` of every stretch + gap
        trials costs the run about `budget` of extra time."""
        ratio = self.slowdown()
        if ratio is None:
            return 1 if not self.untraced_s else 0  # measure an untraced trial first
        if ratio <= 1.0 + self.budget:
            return 0
        share = self.budget / (ratio - 1.0)
        return min(MAX_GAP, max(0, int(stretch / share - stretch + 0.999)))

    def report(self, kind, trial):
        tm = self.tracemalloc
        now = time.perf_counter()
        if not self.started:
            # The first boundary: tracing starts here, so imports and set-up are no trial's.
            self.started = True
            self.last_boundary = now
            if not self.gated():
                self.begin_stretch(trial)
            return
        if kind != "end":
            self.gpu_history(trial)
            return
        took = now - self.last_boundary
        self.torch_report(trial)
        if self.gated():
            self.diagnosis(trial, took)
            self.last_boundary = time.perf_counter()
            return
        self.tensor_report(trial, took)
        # The census's time is the tracer's, not the next trial's.
        self.last_boundary = time.perf_counter()
        if not tm.is_tracing():
            self.untraced_s.append(took)
            self.untraced_s_since += 1
            self.gap_left -= 1
            # Weighed again with each untraced trial measured: the first gap is a guess.
            self.gap = self.next_gap()
            if self.gap_left <= 0 and len(self.untraced_s) >= 1 and self.idle_run() >= self.gap:
                self.begin_stretch(trial)
            return
        self.traced_s.append(took)
        cost_ms = self.sites_report(trial)
        self.in_stretch += 1
        if cost_ms > BUDGET_MS:
            # Too many live blocks to walk at every boundary: start again from none.
            self.stop_tracing()
            self.epoch += 1
            self.begin_stretch(trial)
        elif self.in_stretch >= STRETCH:
            self.gap = self.gap_left = self.next_gap()
            if self.gap_left > 0:
                self.stop_tracing()
                self.epoch += 1
            # Cheap enough to trace every trial: the epoch goes on, every trial a difference.
        # The snapshot's own time is the tracer's, not the next trial's.
        self.last_boundary = time.perf_counter()

    def gated(self):
        """Whether this process is traced in diagnoses only (it imported torch)."""
        return self.diagnose != "always" and "torch" in sys.modules

    def diagnosis(self, trial, took):
        """A trial's end in a process traced in diagnoses only: a diagnosed trial's reports, or
        its memory read, and a diagnosis begun when it looks like a leak."""
        if self.diagnosing:
            # The census's time is the diagnosis's cost, as the snapshot's is (`sites_report`).
            begun = time.perf_counter()
            self.tensor_report(trial, took, every=True)
            self.traced_s.append(took + time.perf_counter() - begun)
            self.sites_report(trial)
            self.diagnosing -= 1
            if self.diagnosing == 0:
                self.stop_tracing()
                self.epoch += 1
                self.levels = []
                self.cooldown = self.next_gap(self.window)
            return
        if self.tracemalloc.is_tracing():
            # torch was imported during a stretch begun before it (an objective importing it):
            # the stretch ends, and this trial is neither traced nor untraced.
            self.stop_tracing()
            self.epoch += 1
        else:
            self.untraced_s.append(took)
        level = _diagnose.anon_bytes()
        if level is not None:
            self.levels.append(level)
            del self.levels[:-_diagnose.SUSPECT_TRIALS]
        self.cooldown -= 1
        why = _diagnose.suspected(self.levels) if self.cooldown <= 0 else None
        if why is None:
            return
        self.write({"kind": "diagnose", "trial": str(trial), "trials": self.window, "why": why})
        self.diagnosing = self.window
        # The census at this end is the holders' baseline: what the diagnosed trials add is
        # theirs.
        self.tensor_report(trial, took, every=True)
        self.begin_stretch(trial)

    def sites_report(self, trial):
        """The heap's sites still holding memory traced since the stretch began, and the native
        sampler's, at this trial's end; its cost, in ms, is added to the trial's time."""
        tm = self.tracemalloc
        begun = time.perf_counter()
        # The most traced memory alive at once during the trial: what it churned through.
        peak = tm.get_traced_memory()[1]
        if hasattr(tm, "reset_peak"):
            tm.reset_peak()
        snapshot = tm.take_snapshot()
        # The raw traces, `(domain, size, frames, total_nframe)` with frames most recent first,
        # grouped by traceback before any per-frame work: a process holds many blocks but few
        # distinct tracebacks. (`_traces` is what `Snapshot.statistics` itself walks.)
        raw = getattr(snapshot.traces, "_traces", None)
        if raw is None:
            raw = [
                (t.domain, t.size, tuple((f.filename, f.lineno) for f in reversed(list(t.traceback))))
                for t in snapshot.traces
            ]
        by_traceback = {}
        for trace in raw:
            entry = by_traceback.get(trace[2])
            if entry is None:
                by_traceback[trace[2]] = [trace[1], 1, trace[1]]
            else:
                entry[0] += trace[1]
                entry[1] += 1
                if trace[1] > entry[2]:
                    entry[2] = trace[1]
        groups, total = self.grouped(
            (frames, size, blocks, largest) for frames, (size, blocks, largest) in by_traceback.items()
        )
        sites = self.ranked(groups)
        cost_ms = (time.perf_counter() - begun) * 1e3
        self.traced_s[-1] += cost_ms / 1e3
        self.write(
            {
                "kind": "sites",
                "trial": str(trial),
                "epoch": self.epoch,
                "traced_bytes": total,
                "traced_blocks": len(raw),
                "peak_bytes": peak,
                "cost_ms": round(cost_ms, 3),
                "slowdown": self.slowdown(),
                "gap": self.next_gap(self.window) if self.diagnosing else self.next_gap(),
                "stretch": self.window if self.diagnosing else STRETCH,
                "sites": sites,
            }
        )
        del snapshot, raw, by_traceback
        self.native_report(trial)
        return cost_ms

    def torch_report(self, trial):
        """What PyTorch's CUDA caching allocator holds at this trial's end, on every boundary
        (traced or not: it is a few counters). Only where the worker itself imported torch and
        initialised CUDA: initialising it here would break DataLoader workers forked later."""
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        if cuda is None or not cuda.is_initialized():
            return
        for device in range(cuda.device_count()):
            stats = cuda.memory_stats(device)
            if not stats:
                continue
            self.write(
                {
                    "kind": "torch",
                    "trial": str(trial),
                    "device": device,
                    "allocated_bytes": stats.get("allocated_bytes.all.current", 0),
                    "reserved_bytes": stats.get("reserved_bytes.all.current", 0),
                    "peak_allocated_bytes": stats.get("allocated_bytes.all.peak", 0),
                    "inactive_split_bytes": stats.get("inactive_split_bytes.all.current", 0),
                    "alloc_retries": stats.get("num_alloc_retries", 0),
                    "ooms": stats.get("num_ooms", 0),
                }
            )
            cuda.reset_peak_memory_stats(device)
        self.gpu_sites(trial, cuda)

    def tensor_report(self, trial, took, every=False):
        """Who holds the PyTorch tensors still alive (`_tensors.Census`), where the worker
        imported torch itself; `every`: in a diagnosis, whatever the census's own schedule. A
        census that fails is said once and stops; line tracing goes on."""
        if self.census is False or "torch" not in sys.modules:
            return
        try:
            if self.census is None:
                from . import _tensors

                self.census = _tensors.Census(self.here, self.budget)
            record = self.census.take(trial, took, every)
        except Exception as error:
            self.census = False
            self.write({"kind": "note", "note": "the tensor census stopped: %s: %s" % (type(error).__name__, error)})
            return
        if record is not None:
            self.write(record)

    def gpu_history(self, trial):
        """Has PyTorch's caching allocator keep the Python stack of each live CUDA block, from
        the first boundary after the worker initialised CUDA: tracemalloc never sees GPU memory,
        so this is how a GPU leak gets its line. Only the state of live blocks is kept (no event
        history), which costs a stack capture per CUDA allocation."""
        if self.gpu_recording is not None:
            return
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        if cuda is None or not cuda.is_initialized():
            return
        tm = self.tracemalloc
        tracing = tm.is_tracing()
        try:
            cuda.memory._record_memory_history(enabled="state", context="state", stacks="python")
            # PyTorch's first snapshot that holds a stack imports some 900 modules to name its
            # frames (torch._dynamo and more): 5 s on an H200 machine, 76 s under tracemalloc.
            # Taken here, once, with tracing stopped, over one block of 4 bytes allocated for it
            # (a snapshot without a stack in it imports nothing); tracing starts again in a new
            # epoch, whose first report is only a baseline.
            if tracing:
                self.stop_tracing()
            begun = time.perf_counter()
            probe = torch.empty(1, device="cuda")
            cuda.memory._snapshot()
            del probe
            self.gpu_warmup_ms = (time.perf_counter() - begun) * 1e3
            self.gpu_recording = True
        except Exception as error:
            self.gpu_recording = False
            self.write({"kind": "error", "error": "no GPU lines: %s: %s" % (type(error).__name__, error)})
        finally:
            if tracing:
                self.epoch += 1
                self.begin_stretch(trial)

    def gpu_sites(self, trial, cuda):
        """The live CUDA blocks by the worker's line that allocated them, like `report`'s sites:
        cumulative over the run (one epoch), so a trial's growth is the difference."""
        self.gpu_history(trial)
        if not self.gpu_recording:
            return
        begun = time.perf_counter()
        live = [
            block
            for segment in cuda.memory._snapshot().get("segments", [])
            for block in segment.get("blocks", [])
            if block.get("state") == "active_allocated"
        ]
        # PyTorch lists frames innermost first, as tracemalloc's raw traces are.
        groups, total = self.grouped(
            (
                tuple((f.get("filename", "?"), int(f.get("line", 0))) for f in block.get("frames", [])),
                int(block.get("size", 0)),
                1,
                int(block.get("size", 0)),
            )
            for block in live
        )
        # The one-time warm-up is this report's cost: the worker paid it at this boundary.
        cost_ms = (time.perf_counter() - begun) * 1e3 + self.gpu_warmup_ms
        self.gpu_warmup_ms = 0.0
        self.write(
            {
                "kind": "sites",
                "memory": "gpu",
                "trial": str(trial),
                "epoch": 0,
                "traced_bytes": total,
                "traced_blocks": len(live),
                "cost_ms": round(cost_ms, 3),
                "sites": self.ranked(groups),
            }
        )

    def idle_run(self):
        """Untraced trials since the last stretch ended."""
        return self.untraced_s_since

    def begin_stretch(self, trial):
        self.untraced_s_since = 0
        self.in_stretch = 0
        if self.tracemalloc.is_tracing():
            # A forked child inherits its parent's traces: they are not its own.
            self.tracemalloc.clear_traces()
        else:
            self.tracemalloc.start(self.frames)
        if self.native is not None:
            # The line is traced for the operators that release the GIL (PyTorch's); where
            # the worker has not imported torch, allocations come with the GIL held and get
            # their stack at once, and tracing every line would only cost.
            self.native.trace("torch" in sys.modules, self.epoch)
        self.write({"kind": "epoch", "trial": str(trial), "epoch": self.epoch})

    def stop_tracing(self):
        """Ends the stretch: tracemalloc and the native sampler's line tracing both stop."""
        self.tracemalloc.stop()
        if self.native is not None:
            self.native.trace(False, self.epoch)

    def native_report(self, trial):
        """The native sampler's surviving samples of this epoch by the worker's line, like the
        heap's `sites` (`_native`)."""
        if self.native is None:
            return
        begun = time.perf_counter()
        stacks = self.native.stacks(self.epoch)
        groups, total = self.grouped(stacks)
        cost_ms = (time.perf_counter() - begun) * 1e3
        self.write(
            {
                "kind": "sites",
                "memory": "native",
                "trial": str(trial),
                "epoch": self.epoch,
                "traced_bytes": total,
                "traced_blocks": sum(s[2] for s in stacks),
                "cost_ms": round(cost_ms, 3),
                "sites": self.ranked(groups),
            }
        )


def _fail(error):
    """Tracing stops for good, said once; the worker goes on."""
    global _state
    state, _state = _state, None
    try:
        if state is not None:
            state.write({"kind": "error", "error": "%s: %s" % (type(error).__name__, error)})
            state.stop_tracing()
    except Exception:
        pass


# Forked children (DataLoader workers) never see the trial boundaries: the process that does
# publishes each one in a page shared with every process forked from it, and a thread in each
# child reports at the boundaries it reads there. The page: a sequence number, the kind (b"s" or
# b"e"), the trial id's length, and the id.
_SHARED_SIZE = 256
_LAYOUT = struct.Struct("<Qc B")


def _publish(shared, kind, trial):
    word = str(trial).encode()[: _SHARED_SIZE - _LAYOUT.size]
    seq = _LAYOUT.unpack_from(shared, 0)[0] + 1
    shared[_LAYOUT.size : _LAYOUT.size + len(word)] = word
    _LAYOUT.pack_into(shared, 0, seq, b"s" if kind == "start" else b"e", len(word))


def _read_shared(shared):
    seq, kind, length = _LAYOUT.unpack_from(shared, 0)
    trial = bytes(shared[_LAYOUT.size : _LAYOUT.size + length]).decode(errors="replace")
    return seq, ("start" if kind == b"s" else "end"), trial


def boundary(kind, trial, publish=True):
    """A trial starts or ends (`kind` "start" or "end"). Does nothing unless tracing."""
    state = _state
    if state is None:
        return
    try:
        with _lock:
            if kind == "end":
                # One end told twice (the helper's and Optuna's callback) is reported once; a
                # start in between makes it another trial (a test's next repeat, same id).
                if state.last_end == str(trial):
                    return
                state.last_end = str(trial)
            else:
                state.last_end = None
            if publish and state.shared is not None:
                _publish(state.shared, kind, trial)
                state.seen_seq = _read_shared(state.shared)[0]
            state.report(kind, trial)
    except Exception as error:
        _fail(error)


def _follow_boundaries():
    """A forked child's thread: report at each boundary another process published."""
    while True:
        time.sleep(0.1)
        state = _state
        if state is None or state.shared is None:
            return
        seq, kind, trial = _read_shared(state.shared)
        if seq != state.seen_seq:
            state.seen_seq = seq
            boundary(kind, trial, publish=False)


def _say_memory(trial):
    """The process's memory at the trial's end, on stderr just before Optuna's own line (this
    handler runs first): `MEMWARDEN trial_memory N memwarden_anon=…`. memwarden takes it as the
    level the trial retained, read before the next trial could take more."""
    from . import own_memory

    fields = own_memory()
    if fields:
        words = " ".join("%s=%d" % item for item in sorted(fields.items()))
        sys.stderr.write("MEMWARDEN trial_memory %s %s\n" % (trial, words))
        sys.stderr.flush()


def _optuna_boundaries(logging):
    """A handler for Optuna's log records: `Trial N finished ...` (or pruned, failed) is logged
    after the objective returned, which is the trial's end."""

    class OptunaBoundaries(logging.Handler):
        def emit(self, record):
            try:
                message = record.getMessage()
                if message.startswith("Trial ") and (
                    " finished" in message or " pruned" in message or " failed" in message
                ):
                    number = message.split()[1]
                    if number.isdigit():
                        _say_memory(number)
                        boundary("end", number)
            except Exception as error:
                _fail(error)

    return OptunaBoundaries()


def _after_fork():
    global _state, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    state = _state
    if state is not None:
        # A forked child (a DataLoader worker) writes its own file, in an epoch of its own, at
        # the boundaries it reads from the shared page.
        state.file = None
        state.pid = os.getpid()
        state.started = False
        state.last_end = None
        state.traced_s, state.untraced_s = [], []
        state.levels, state.diagnosing, state.cooldown = [], 0, 0
        if state.shared is not None:
            state.seen_seq = _read_shared(state.shared)[0]
            threading.Thread(target=_follow_boundaries, name="memwarden-trace", daemon=True).start()


def start():
    """Called by the `sitecustomize` memwarden writes; safe to call twice."""
    global _state
    directory = os.environ.get("MEMWARDEN_TRACE_DIR")
    if not directory or _state is not None:
        return
    try:
        state = _State(directory)
    except ImportError:
        # A Python built without tracemalloc: say so, trace nothing.
        path = os.path.join(directory, "%d.jsonl" % os.getpid())
        with open(path, "a") as file:
            file.write(json.dumps({"kind": "hello", "pid": os.getpid(), "tracemalloc": False}) + "\n")
        return
    _state = state
    try:
        frames = int(os.environ.get("MEMWARDEN_TRACE_FRAMES", FRAMES))
        state.frames = frames
        state.write(
            {
                "kind": "hello",
                "python": sys.version.split()[0],
                "executable": sys.executable,
                "tracemalloc": True,
                "frames": frames,
                "native": state.native.status() if state.native is not None else "not preloaded",
            }
        )
        import logging

        # First among the handlers: its memory line comes before Optuna's "Trial N finished".
        optuna_logger = logging.getLogger("optuna")
        optuna_logger.addHandler(_optuna_boundaries(logging))
        optuna_logger.handlers.insert(0, optuna_logger.handlers.pop())
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)
    except Exception as error:
        _fail(error)
