"""The native allocation sampler's Python side: memwarden preloads `libmemwarden_native.so` into
the workers under `--trace-python` (LD_PRELOAD), and the tracer reads it here through ctypes.

The sampler sees the allocations CPython's allocator never does (PyTorch's CPU tensors, NumPy's
buffers, any C library's malloc): every allocation of a window's bytes or more (1 MiB by default,
MEMWARDEN_NATIVE_WINDOW), and one in every window's worth of smaller ones. Where the allocation
was made with the GIL held it reads the Python stack at once; PyTorch releases the GIL around its
operators, so while the tracer traces (its stretches) a C trace function keeps the line running,
and such a sample gets that line at the next trace event. Each stretch is an epoch, as for
tracemalloc: a report holds the epoch's samples still alive, per stack.
"""

class Native:
    def __init__(self, lib):
        import ctypes

        self.ctypes = ctypes
        self.report_fn = lib.memwarden_native_report
        self.report_fn.restype = ctypes.c_size_t
        self.report_fn.argtypes = [ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t]
        self.status_fn = lib.memwarden_native_status
        self.status_fn.restype = ctypes.c_size_t
        self.status_fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.trace_fn = lib.memwarden_native_trace
        self.trace_fn.restype = ctypes.c_int
        self.trace_fn.argtypes = [ctypes.c_int, ctypes.c_uint]
        self.buffer = ctypes.create_string_buffer(1 << 16)
        # Lines traced by this module's trace function (not someone else's, a debugger's).
        self.tracing = False

    @classmethod
    def find(cls):
        """The sampler preloaded into this process, or None (not preloaded, or not loadable:
        a static binary, musl, a seccomp filter)."""
        try:
            import ctypes

            # PyDLL: the calls keep the GIL, which setting a trace function needs.
            lib = ctypes.PyDLL(None)
            lib.memwarden_native_report
        except (ImportError, OSError, AttributeError):
            return None
        return cls(lib)

    def status(self):
        n = self.status_fn(self.buffer, len(self.buffer))
        return self.buffer.raw[: min(n, len(self.buffer))].decode("utf-8", "replace")

    def trace(self, on, epoch):
        """Samples from now on belong to `epoch`; lines are traced on this thread (`on`) unless
        another trace function is set (a debugger, coverage), which is left alone: the shim's
        own shows as None to `sys.gettrace()`, someone else's does not."""
        import sys

        theirs = sys.gettrace() is not None
        if on and not theirs:
            self.tracing = self.trace_fn(1, epoch) == 0
        elif self.tracing and not theirs:
            self.trace_fn(0, epoch)
            self.tracing = False
        else:
            self.trace_fn(-1, epoch)
            self.tracing = False

    def stacks(self, epoch):
        """`(frames, bytes, samples, bytes)` per stack still holding samples of `epoch`, frames
        innermost first as `(filename, line)`, as the tracer's `grouped` takes them."""
        need = self.report_fn(epoch, self.buffer, len(self.buffer))
        if need > len(self.buffer):
            self.buffer = self.ctypes.create_string_buffer(need * 2)
            need = self.report_fn(epoch, self.buffer, len(self.buffer))
        text = self.buffer.raw[: min(need, len(self.buffer))].decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) != 3:
                continue
            frames = []
            for frame in parts[2].split("|") if parts[2] else ():
                name, _, number = frame.rpartition(":")
                frames.append((name, int(number) if number.isdigit() else 0))
            size, samples = int(parts[0]), int(parts[1])
            out.append((tuple(frames), size, samples, size // max(samples, 1)))
        return out
