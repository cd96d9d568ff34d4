/* memwarden's native allocation sampler: preloaded (LD_PRELOAD) into a worker that runs under
 * `memwarden run --trace-python`, it samples the allocations CPython's allocator never sees
 * (PyTorch's CPU tensors, NumPy's buffers, anything malloc'd or mmap'd by a C library) and
 * records, for each sample, the Python stack that made it. memwarden's tracer reads the
 * surviving samples per stack at every trial's end (`memwarden_native_report`, through ctypes),
 * so a line that allocated memory that outlived its trial is named with its bytes.
 *
 * Sampling: each allocation of WINDOW bytes or more is sampled whole; smaller ones add their
 * size to a per-thread count, and the one that takes it past WINDOW is sampled, standing for
 * WINDOW bytes (the Poisson-free form of heapprofd's and Scalene's threshold sampling: the
 * surviving samples estimate the live bytes, unbiased for a line that allocates many small
 * blocks). A free of a sampled pointer untracks it.
 *
 * Never take the worker down: every allocation goes to glibc's own functions whatever happens
 * here; the shim's own state is fixed-size (no allocation of its own), a table that fills turns
 * sampling off and says why (`memwarden_native_status`), and the Python stack is read only
 * where Python runs on this thread with the GIL held, with any pending exception kept. A
 * thread-local guard makes the shim's own calls into Python (which allocate) pass straight
 * through. After a fork the child starts with the parent's samples (its memory is a copy) and
 * a fresh lock.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define TLS __thread __attribute__((tls_model("initial-exec")))
#define EXPORT __attribute__((visibility("default")))

/* Live samples (16,384 of 1 MiB: 16 GiB sampled at once), distinct stacks, frames a stack
 * keeps, bytes of file names, distinct file names. */
enum { SLOT_BITS = 14, SLOTS = 1 << SLOT_BITS, STACKS = 4096, FRAMES = 8, POOL = 1 << 18, NAMES = 1 << 12 };

struct slot {
    uintptr_t ptr; /* 0: empty */
    uint64_t weight;
    uint32_t stack;
    uint32_t epoch; /* the tracer's epoch when it was sampled */
};

struct stack {
    uint64_t hash;
    uint32_t frames;
    uint32_t file[FRAMES]; /* offsets into `pool` */
    int32_t line[FRAMES];
};

static struct slot slots[SLOTS];
static size_t tracked;
static struct stack stacks[STACKS];
/* Stack 0: no Python line (not Python, another thread, no GIL and no line traced); stack 1:
 * sampled without the GIL, its line read at the next trace event. */
static size_t nstacks = 2;
static char pool[POOL];
static size_t pool_used = 1;
/* The pool offset of each distinct file name, by hash (open addressing; 0: empty). */
static uint32_t names[NAMES];
static atomic_flag lock = ATOMIC_FLAG_INIT;
static atomic_int enabled = 1;
static char off_reason[200];
static size_t window = 1 << 20;
static uint64_t samples_taken;

static TLS int in_shim;
static TLS size_t since;

/* CPython's API, found at run time (the shim is in every process of the worker's tree, Python
 * or not). */
typedef void PyObject;
static struct {
    int tried, ok;
    int (*IsInitialized)(void);
    int (*GILState_Check)(void);
    void *(*UncheckedThreadState)(void);
    int (*IsFinalizing)(void);
    PyObject *(*GetFrame)(void);
    PyObject *(*FrameGetBack)(PyObject *);
    PyObject *(*FrameGetCode)(PyObject *);
    int (*FrameGetLineNumber)(PyObject *);
    PyObject *(*GetAttrString)(PyObject *, const char *);
    const char *(*AsUTF8)(PyObject *);
    void (*IncRef)(PyObject *);
    void (*DecRef)(PyObject *);
    void (*ErrFetch)(PyObject **, PyObject **, PyObject **);
    void (*ErrRestore)(PyObject *, PyObject *, PyObject *);
    int (*GCDisable)(void);
    int (*GCEnable)(void);
    void (*SetTrace)(int (*)(PyObject *, PyObject *, int, PyObject *), PyObject *);
    /* Where CPython's own code is loaded (libpython, or the executable it is linked into). */
    void *base;
} py;


static void take_lock(void) {
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
    }
}

static void drop_lock(void) { atomic_flag_clear_explicit(&lock, memory_order_release); }

static void turn_off(const char *why) {
    if (atomic_exchange(&enabled, 0)) {
        snprintf(off_reason, sizeof off_reason, "%s", why);
    }
}

static void resolve_python(void) {
    py.tried = 1;
#define FIND(field, name) *(void **)(&py.field) = dlsym(RTLD_DEFAULT, name)
    FIND(IsInitialized, "Py_IsInitialized");
    FIND(GILState_Check, "PyGILState_Check");
    FIND(UncheckedThreadState, "_PyThreadState_UncheckedGet");
    FIND(IsFinalizing, "_Py_IsFinalizing");
    FIND(GetFrame, "PyEval_GetFrame");
    FIND(FrameGetBack, "PyFrame_GetBack");
    FIND(FrameGetCode, "PyFrame_GetCode");
    FIND(FrameGetLineNumber, "PyFrame_GetLineNumber");
    FIND(GetAttrString, "PyObject_GetAttrString");
    FIND(AsUTF8, "PyUnicode_AsUTF8");
    FIND(IncRef, "Py_IncRef");
    FIND(DecRef, "Py_DecRef");
    FIND(ErrFetch, "PyErr_Fetch");
    FIND(ErrRestore, "PyErr_Restore");
    FIND(GCDisable, "PyGC_Disable");
    FIND(GCEnable, "PyGC_Enable");
    FIND(SetTrace, "PyEval_SetTrace");
#undef FIND
    py.ok = py.IsInitialized && py.GILState_Check && py.UncheckedThreadState && py.GetFrame &&
            py.FrameGetBack && py.FrameGetCode && py.FrameGetLineNumber && py.GetAttrString &&
            py.AsUTF8 && py.IncRef && py.DecRef && py.ErrFetch && py.ErrRestore && py.GCDisable &&
            py.GCEnable;
    Dl_info info;
    if (py.ok && dladdr(*(void **)(&py.GetFrame), &info)) {
        py.base = info.dli_fbase;
    }
    py.ok = py.ok && py.base;
}

/* An allocation CPython itself makes (its object allocator growing, a large object, the
 * tracer's own) may come in the middle of changing its allocator's state: reading the stack
 * then would allocate inside it. Those are the Python heap's, which tracemalloc sees; only the
 * allocations of other code (extensions, libraries) get a Python stack. */
static int from_cpython(void *caller) {
    Dl_info info;
    return !dladdr(caller, &info) || info.dli_fbase == py.base;
}

/* A frame's file and line, the file copied into `names` (at most `room` bytes). */
struct frame {
    char name[160];
    int line;
};

/* Under the GIL: the stack from `frame` outwards, innermost first, the innermost frame's line
 * given as `line` where it is not 0 (the line that was running when a sample was taken without
 * the GIL). Keeps a pending exception, and no collection runs while it reads (making frame
 * objects may start one in CPython 3.11, whose finalizers would run inside the allocation).
 * Called with in_shim set: what CPython allocates here passes through. */
static int stack_from(PyObject *frame, int line, struct frame *out, int max) {
    PyObject *type, *value, *traceback;
    py.ErrFetch(&type, &value, &traceback);
    int collecting = py.GCDisable();
    int n = 0;
    if (frame) {
        py.IncRef(frame);
    }
    while (frame && n < max) {
        PyObject *code = py.FrameGetCode(frame);
        const char *name = NULL;
        PyObject *file = code ? py.GetAttrString(code, "co_filename") : NULL;
        if (file) {
            name = py.AsUTF8(file);
        }
        snprintf(out[n].name, sizeof out[n].name, "%s", name ? name : "?");
        out[n].line = (n == 0 && line) ? line : py.FrameGetLineNumber(frame);
        n++;
        if (file) {
            py.DecRef(file);
        }
        if (code) {
            py.DecRef(code);
        }
        PyObject *back = py.FrameGetBack(frame);
        py.DecRef(frame);
        frame = back;
    }
    if (frame) {
        py.DecRef(frame);
    }
    if (collecting) {
        py.GCEnable();
    }
    py.ErrRestore(type, value, traceback);
    return n;
}

/* Python runs on this thread and holds the GIL (so the shim may call into it). */
static int holds_gil(void) {
    if (!py.tried) {
        resolve_python();
    }
    return py.ok && py.IsInitialized() && !(py.IsFinalizing && py.IsFinalizing()) &&
           py.UncheckedThreadState() && py.GILState_Check();
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_text(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

/* Under the lock: `name`'s offset in the pool, each distinct name kept once; 0 (the empty
 * name) when the pool or its index is full. */
static uint32_t intern(const char *name) {
    size_t at = (size_t)(hash_text(name) & (NAMES - 1));
    for (size_t probe = 0; probe < NAMES; probe++, at = (at + 1) & (NAMES - 1)) {
        if (names[at] == 0) {
            break;
        }
        if (strcmp(pool + names[at], name) == 0) {
            return names[at];
        }
    }
    size_t len = strlen(name) + 1;
    if (names[at] != 0 || pool_used + len > POOL) {
        return 0;
    }
    memcpy(pool + pool_used, name, len);
    names[at] = (uint32_t)pool_used;
    pool_used += len;
    return names[at];
}

/* Under the lock: the stack's index, added if new; 0 for no stack or a full table. */
static uint32_t stack_of(const struct frame *frames, int n) {
    if (n == 0) {
        return 0;
    }
    uint64_t h = 7;
    for (int i = 0; i < n; i++) {
        h = mix(mix(h, hash_text(frames[i].name)), (uint64_t)frames[i].line);
    }
    for (size_t i = 1; i < nstacks; i++) {
        if (stacks[i].hash == h && stacks[i].frames == (uint32_t)n) {
            return (uint32_t)i;
        }
    }
    if (nstacks == STACKS) {
        turn_off("the native sampler's table of stacks is full (4096 distinct stacks)");
        return 0;
    }
    struct stack *s = &stacks[nstacks];
    s->hash = h;
    s->frames = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        s->file[i] = intern(frames[i].name);
        s->line[i] = frames[i].line;
    }
    return (uint32_t)nstacks++;
}

/* Fibonacci hashing of the block's address (blocks are 16-byte aligned). */
static size_t slot_of(uintptr_t ptr) {
    return (size_t)((ptr >> 4) * 0x9e3779b97f4a7c15ULL >> (64 - SLOT_BITS));
}

static uint32_t epoch;

/* Under the lock. */
static void track(uintptr_t ptr, uint64_t weight, uint32_t stack) {
    if (tracked >= SLOTS * 3 / 4) {
        turn_off("the native sampler's table of live samples is full");
        return;
    }
    size_t i = slot_of(ptr);
    while (slots[i].ptr != 0 && slots[i].ptr != ptr) {
        i = (i + 1) & (SLOTS - 1);
    }
    if (slots[i].ptr == 0) {
        tracked++;
    }
    slots[i] = (struct slot){ptr, weight, stack, epoch};
}

/* Under the lock: forgets `ptr` if it was sampled (linear probing, backward-shift delete). */
static void untrack(uintptr_t ptr) {
    size_t i = slot_of(ptr);
    while (slots[i].ptr != ptr) {
        if (slots[i].ptr == 0) {
            return;
        }
        i = (i + 1) & (SLOTS - 1);
    }
    tracked--;
    size_t hole = i;
    for (size_t j = (i + 1) & (SLOTS - 1); slots[j].ptr != 0; j = (j + 1) & (SLOTS - 1)) {
        size_t home = slot_of(slots[j].ptr);
        /* Moves back only an entry whose home is not between the hole and it. */
        if (((j - home) & (SLOTS - 1)) >= ((j - hole) & (SLOTS - 1))) {
            slots[hole] = slots[j];
            hole = j;
        }
    }
    slots[hole].ptr = 0;
}

/* While the worker's line is traced (`memwarden_native_trace`): this thread's frame and line
 * as of the last line event, and the samples taken since without the GIL (PyTorch releases it
 * around its operators), whose stack is read at the next trace event, when the GIL is back. */
enum { PENDING = 1, PENDING_MAX = 32 };
static atomic_int tracing_lines;
static TLS PyObject *line_frame;
static TLS int line_number;
static TLS uintptr_t pending[PENDING_MAX];
static TLS int npending;

static void sample(void *ptr, uint64_t weight, void *caller) {
    struct frame frames[FRAMES];
    int n = 0;
    int later = 0;
    int gil = holds_gil();
    if (gil && !from_cpython(caller)) {
        n = stack_from(py.GetFrame(), 0, frames, FRAMES);
    } else if (!gil && line_frame && npending < PENDING_MAX && atomic_load(&tracing_lines)) {
        /* This thread runs Python with the GIL released (an operator of PyTorch's). */
        later = 1;
    }
    take_lock();
    if (atomic_load(&enabled)) {
        uint32_t stack = later ? PENDING : stack_of(frames, n);
        if (atomic_load(&enabled)) {
            track((uintptr_t)ptr, weight, stack);
            samples_taken++;
            if (later) {
                pending[npending++] = (uintptr_t)ptr;
            }
        }
    }
    drop_lock();
}

/* Under the GIL, at a trace event: the stack of the line that ran when this thread's pending
 * samples were taken (its frame is alive: a frame's end is itself a trace event). */
static void resolve_pending(void) {
    struct frame frames[FRAMES];
    int n = stack_from(line_frame, line_number, frames, FRAMES);
    take_lock();
    uint32_t stack = stack_of(frames, n);
    for (int i = 0; i < npending; i++) {
        size_t at = slot_of(pending[i]);
        while (slots[at].ptr != 0 && slots[at].ptr != pending[i]) {
            at = (at + 1) & (SLOTS - 1);
        }
        if (slots[at].ptr == pending[i] && slots[at].stack == PENDING) {
            slots[at].stack = stack;
        }
    }
    drop_lock();
    npending = 0;
}

/* CPython's trace function (PyEval_SetTrace): keeps the frame and line now running. */
static int on_trace(PyObject *self, PyObject *frame, int what, PyObject *arg) {
    (void)self;
    (void)arg;
    in_shim++;
    if (npending) {
        resolve_pending();
    }
    if (what == 3 /* PyTrace_RETURN */) {
        /* The frame ends after this event: what runs next is its caller's, alive. */
        PyObject *caller = py.FrameGetBack(frame);
        if (caller) {
            py.DecRef(caller);
        }
        line_frame = caller;
        /* Read now: by the next event the caller may be on its next line. */
        line_number = caller ? py.FrameGetLineNumber(caller) : 0;
    } else {
        line_frame = frame;
        line_number = py.FrameGetLineNumber(frame);
    }
    in_shim--;
    return 0;
}

/* After every allocation of `size` bytes at `ptr`, made by the code at `caller`. */
static void allocated(void *ptr, size_t size, void *caller) {
    if (!ptr || in_shim || !atomic_load_explicit(&enabled, memory_order_relaxed)) {
        return;
    }
    uint64_t weight;
    if (size >= window) {
        weight = size;
    } else {
        since += size;
        if (since < window) {
            return;
        }
        since -= window;
        weight = window;
    }
    in_shim = 1;
    sample(ptr, weight, caller);
    in_shim = 0;
}

/* Before every free. Also while the shim reads a stack (in_shim): a sampled block CPython
 * frees then is untracked too (the lock is never held across a call into Python). */
static void freeing(void *ptr) {
    if (!ptr || tracked == 0) {
        return;
    }
    take_lock();
    untrack((uintptr_t)ptr);
    drop_lock();
}

EXPORT void *malloc(size_t size) {
    void *ptr = __libc_malloc(size);
    allocated(ptr, size, __builtin_return_address(0));
    return ptr;
}

EXPORT void *calloc(size_t n, size_t size) {
    void *ptr = __libc_calloc(n, size);
    allocated(ptr, n * size, __builtin_return_address(0));
    return ptr;
}

EXPORT void *realloc(void *old, size_t size) {
    freeing(old);
    void *ptr = __libc_realloc(old, size);
    allocated(ptr, size, __builtin_return_address(0));
    return ptr;
}

EXPORT void free(void *ptr) {
    freeing(ptr);
    __libc_free(ptr);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    void *ptr = __libc_memalign(alignment, size);
    if (!ptr) {
        return ENOMEM;
    }
    *out = ptr;
    allocated(ptr, size, __builtin_return_address(0));
    return 0;
}

EXPORT void *aligned_alloc(size_t alignment, size_t size) {
    void *ptr = __libc_memalign(alignment, size);
    allocated(ptr, size, __builtin_return_address(0));
    return ptr;
}

EXPORT void *memalign(size_t alignment, size_t size) {
    void *ptr = __libc_memalign(alignment, size);
    allocated(ptr, size, __builtin_return_address(0));
    return ptr;
}

static void child_after_fork(void) { atomic_flag_clear(&lock); }

/* Every page of the fixed tables made resident at the start: as they fill over a run they
 * must not grow the worker's memory, which would read as its leak. */
static void touch(volatile char *table, size_t bytes) {
    for (size_t at = 0; at < bytes; at += 4096) {
        table[at] = 0;
    }
}

__attribute__((constructor)) static void start(void) {
    in_shim = 1;
    touch((volatile char *)slots, sizeof slots);
    touch((volatile char *)stacks, sizeof stacks);
    touch((volatile char *)pool, sizeof pool);
    touch((volatile char *)names, sizeof names);
    const char *text = getenv("MEMWARDEN_NATIVE_WINDOW");
    if (text && *text) {
        char *end;
        unsigned long long w = strtoull(text, &end, 10);
        if (*end == '\0' && w >= 4096) {
            window = (size_t)w;
        }
    }
    if (pthread_atfork(NULL, NULL, child_after_fork) != 0) {
        turn_off("pthread_atfork failed");
    }
    in_shim = 0;
}

/* The surviving samples of `epoch` per stack, one line each: `bytes TAB samples TAB
 * file:line|...` with the innermost frame first (no frames: no Python line). Returns the bytes
 * the whole report needs; writes only what fits in `cap` (a caller whose buffer was short asks
 * again with a larger one). */
EXPORT size_t memwarden_native_report(unsigned int of_epoch, char *out, size_t cap) {
    static uint64_t bytes[STACKS], samples[STACKS];
    size_t need = 0;
    in_shim++;
    take_lock();
    memset(bytes, 0, sizeof bytes);
    memset(samples, 0, sizeof samples);
    for (size_t i = 0; i < SLOTS; i++) {
        if (slots[i].ptr != 0 && slots[i].epoch == of_epoch) {
            bytes[slots[i].stack] += slots[i].weight;
            samples[slots[i].stack] += 1;
        }
    }
    for (size_t i = 0; i < nstacks; i++) {
        const struct stack *s = &stacks[i];
        if (samples[i] == 0) {
            continue;
        }
        char line[FRAMES * 180 + 64];
        int at = snprintf(line, sizeof line, "%llu\t%llu\t", (unsigned long long)bytes[i],
                          (unsigned long long)samples[i]);
        for (uint32_t f = 0; f < s->frames && at < (int)sizeof line; f++) {
            at += snprintf(line + at, sizeof line - at, "%s%s:%d", f ? "|" : "", pool + s->file[f],
                           s->line[f]);
        }
        if (at >= (int)sizeof line) {
            at = (int)sizeof line - 1;
        }
        line[at++] = '\n';
        if (need + at <= cap) {
            memcpy(out + need, line, at);
        }
        need += at;
    }
    drop_lock();
    in_shim--;
    return need;
}

/* Under the GIL (ctypes.PyDLL): samples from now on belong to `new_epoch`; `on` 1 traces this
 * thread's lines with the shim's trace function, 0 removes it, -1 leaves the trace function as
 * it is (someone else's: a debugger, coverage). Returns 0, or -1 where CPython's trace hook
 * is missing. */
EXPORT int memwarden_native_trace(int on, unsigned int new_epoch) {
    in_shim++;
    if (!py.tried) {
        resolve_python();
    }
    take_lock();
    epoch = new_epoch;
    drop_lock();
    int result = 0;
    if (!py.SetTrace || !py.ok) {
        result = -1;
    } else if (on == 1) {
        py.SetTrace(on_trace, NULL);
        atomic_store(&tracing_lines, 1);
    } else if (on == 0) {
        atomic_store(&tracing_lines, 0);
        py.SetTrace(NULL, NULL);
        if (npending) {
            resolve_pending();
        }
        line_frame = NULL;
    }
    in_shim--;
    return result;
}

/* `on`, or `off: why`; and the sampling window and samples taken so far. */
EXPORT size_t memwarden_native_status(char *out, size_t cap) {
    in_shim++;
    int n = snprintf(out, cap, "%s%s\twindow=%zu\tsamples=%llu\tstacks=%zu\tnames=%zu",
                     atomic_load(&enabled) ? "on" : "off: ", atomic_load(&enabled) ? "" : off_reason,
                     window, (unsigned long long)samples_taken, nstacks, pool_used);
    in_shim--;
    return n < 0 ? 0 : (size_t)n;
}
