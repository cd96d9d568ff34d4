"""What each trial left alive, by allocation site: the tracer `memwarden run --trace-python` starts
in every Python process of the workers (through the `sitecustomize` it puts on PYTHONPATH).

At each trial's end it writes one JSON line to its own file in MEMWARDEN_TRACE_DIR, never to the
worker's output: the sites still holding memory that was allocated since the traces were last
cleared, largest first. Traces are cleared at the first boundary (so imports are not counted)
and again whenever a snapshot took longer than the budget, which starts a new epoch: within an
epoch a site's bytes are cumulative, and after a clear they hold only what was allocated since.

Boundaries come from Optuna's log records (a handler on the `optuna` logger) and from the
helper's `memwarden.trial()`. Anything that goes wrong in here is written once as an `error`
line and stops tracing; the worker itself never sees an exception from this module.
"""

import json
import os
import sys
import threading
import time

_state = None
_lock = threading.Lock()

FRAMES = 10
TOP_SITES = 40
# A snapshot slower than this clears the traces afterwards, so the next one is small again.
BUDGET_MS = 40.0


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
        self.libraries = _library_prefixes()
        self.here = os.path.dirname(os.path.realpath(__file__)) + os.sep
        self.optuna = None
        self.real = {}
        worker = os.environ.get("MEMWARDEN_WORKER", "")
        self.worker = int(worker) if worker.isdigit() else None

    def write(self, record):
        if self.file is None or self.pid != os.getpid():
            self.pid = os.getpid()
            path = os.path.join(self.directory, "%d.jsonl" % self.pid)
            self.file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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

    def report(self, kind, trial):
        tm = self.tracemalloc
        if not tm.is_tracing():
            return
        begun = time.perf_counter()
        if not self.started:
            # The first boundary: what was imported and built before it is not any trial's.
            tm.clear_traces()
            self.started = True
            self.write({"kind": "epoch", "trial": str(trial), "epoch": self.epoch})
            return
        if kind != "end":
            return
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
        groups = {}
        total = 0
        for frames, (size, blocks, largest) in by_traceback.items():
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
        ranked = sorted(groups.items(), key=lambda item: -item[1][0])[:TOP_SITES]
        where = lambda frame: "%s:%d" % (self.realpath(frame[0]), frame[1])
        sites = [
            {
                "file": self.realpath(filename),
                "line": lineno,
                "bytes": size,
                "blocks": blocks,
                "via": None if via is None else where(via),
                "study": bool(study),
                "traceback": [where(f) for f in reversed(frames[:5])],
            }
            for (filename, lineno), (size, blocks, via, _, study, frames) in ranked
        ]
        cost_ms = (time.perf_counter() - begun) * 1e3
        self.write(
            {
                "kind": "sites",
                "trial": str(trial),
                "epoch": self.epoch,
                "traced_bytes": total,
                "traced_blocks": len(raw),
                "cost_ms": round(cost_ms, 3),
                "sites": sites,
            }
        )
        del snapshot, raw, by_traceback
        if cost_ms > BUDGET_MS:
            tm.clear_traces()
            self.epoch += 1
            self.write({"kind": "epoch", "trial": str(trial), "epoch": self.epoch})


def _fail(error):
    """Tracing stops for good, said once; the worker goes on."""
    global _state
    state, _state = _state, None
    try:
        if state is not None:
            state.write({"kind": "error", "error": "%s: %s" % (type(error).__name__, error)})
            state.tracemalloc.stop()
    except Exception:
        pass


def boundary(kind, trial):
    """A trial starts or ends (`kind` "start" or "end"). Does nothing unless tracing."""
    state = _state
    if state is None:
        return
    try:
        with _lock:
            if kind == "end":
                if state.last_end == str(trial):
                    return
                state.last_end = str(trial)
            state.report(kind, trial)
    except Exception as error:
        _fail(error)


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
                        boundary("end", number)
            except Exception as error:
                _fail(error)

    return OptunaBoundaries()


def _after_fork():
    global _state
    state = _state
    if state is not None:
        # A forked child (a DataLoader worker) writes its own file, in an epoch of its own.
        state.file = None
        state.pid = os.getpid()
        state.started = False
        state.last_end = None


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
        state.write(
            {
                "kind": "hello",
                "python": sys.version.split()[0],
                "executable": sys.executable,
                "tracemalloc": True,
                "frames": frames,
            }
        )
        if not state.tracemalloc.is_tracing():
            state.tracemalloc.start(frames)
        import logging

        logging.getLogger("optuna").addHandler(_optuna_boundaries(logging))
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork)
    except Exception as error:
        _fail(error)
