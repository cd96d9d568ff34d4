"""When a process traced in diagnoses only (one that imported torch) looks like it leaks.

At each trial's end the tracer reads the process's anonymous memory (`anon_bytes`); once it
grew by SUSPECT_BYTES or more over the last SUSPECT_TRIALS trial ends, still growing at the
last, the next DIAGNOSE_TRIALS trials are diagnosed (`_trace`). Pure but for the one read of
/proc, so a test can feed it levels.
"""

# Eight: a holder that grows in some trials only (one parameter value's) needs about that many
# consecutive censuses before its trend is sure; four named none of such a holder's growth.
DIAGNOSE_TRIALS = 8
SUSPECT_TRIALS = 5
SUSPECT_BYTES = 1 << 20
MIB = float(1 << 20)


def suspected(levels, trials=SUSPECT_TRIALS, least=SUSPECT_BYTES):
    """Why memory read at the last `trials` trial ends looks like a leak, or None: it grew by
    `least` bytes or more over them and the last is within `least` of the highest (still
    growing, not a peak that was given back; what an allocator hands back between trials is
    noise)."""
    recent = levels[-trials:]
    if len(recent) < trials:
        return None
    grown = recent[-1] - recent[0]
    if grown < least or recent[-1] < max(recent) - least:
        return None
    return "anonymous memory grew %.1f MiB over %d trials" % (grown / MIB, trials - 1)


def anon_bytes():
    """This process's anonymous resident memory (RssAnon), or None where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
