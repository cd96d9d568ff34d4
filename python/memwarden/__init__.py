"""memwarden's helpers for Python workers, harmless without memwarden.

    import memwarden

    with memwarden.trial(7, lr=0.01, batch_size=64):   # trial markers (and, under
        train()                                        # --trace-python, a report of what the
                                                       # trial left alive, by line)
    while memwarden.gate():                            # the trial gate: go, wait or abort
        study.optimize(objective, n_trials=1)

    study.optimize(objective, callbacks=[memwarden.OptunaCallback()])

Outside memwarden the markers are plain lines on stdout, and the gate always says go.
`pytest -p memwarden` (or `memwarden run -- pytest`) makes each test a trial: memwarden/_pytest.py.
Standard library only.
"""

import contextlib
import os
import socket
import sys
import time

from . import _trace

__all__ = ["trial", "gate", "OptunaCallback", "marker", "own_memory"]


def _word(value):
    """A marker value without whitespace: memwarden splits marker lines on it."""
    return "_".join(str(value).split()) or "''"


def _line(verb, trial_id, fields):
    """`MEMWARDEN trial_start 7 lr=0.01`: one marker line, without its newline."""
    words = ["MEMWARDEN", verb, _word(trial_id)]
    words += ["%s=%s" % (_word(k), _word(v)) for k, v in fields.items()]
    return " ".join(words)


def marker(verb, trial_id, **fields):
    """Prints `MEMWARDEN trial_start 7 lr=0.01` (or trial_end) on stdout, flushed at once."""
    sys.stdout.write(_line(verb, trial_id, fields) + "\n")
    sys.stdout.flush()


def own_memory():
    """This process's resident memory now, in bytes, as the end marker's fields
    (`memwarden_anon`, `memwarden_file`, `memwarden_shmem`, from /proc/self/status): read in the
    worker at the trial's end, so memwarden's retained figure cannot include the next trial's
    memory. Empty where /proc is not there."""
    wanted = {"RssAnon:": "memwarden_anon", "RssFile:": "memwarden_file", "RssShmem:": "memwarden_shmem"}
    fields = {}
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                words = line.split()
                name = words[0].decode() if words else ""
                if name in wanted and len(words) >= 2:
                    fields[wanted[name]] = int(words[1]) * 1024
    except (OSError, ValueError):
        return {}
    return fields if len(fields) == len(wanted) else {}


@contextlib.contextmanager
def trial(trial_id, **params):
    """Marks one trial. Its end says `status=fail` when the body raised, `complete` otherwise,
    and carries the process's memory read at that moment (`own_memory`)."""
    marker("trial_start", trial_id, **params)
    _trace.boundary("start", trial_id)
    status = "fail"
    try:
        yield
        status = "complete"
    finally:
        marker("trial_end", trial_id, status=status, **own_memory())
        _trace.boundary("end", trial_id)


def gate(trial_id=None):
    """Asks memwarden's trial gate before a trial: True to go on, False when the worker is
    about to be restarted (end the loop). Waits while memwarden says memory is short. Without
    memwarden, or when the gate cannot be reached, it says go: it never stalls training."""
    path = os.environ.get("MEMWARDEN_GATE")
    while path:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(15)
                s.connect(path)
                question = "trial" if trial_id is None else "trial %s" % _word(trial_id)
                s.sendall((question + "\n").encode())
                answer = s.makefile().readline().split()
        except OSError:
            return True
        if not answer or answer[0] == "go":
            return True
        if answer[0] == "abort":
            return False
        try:
            time.sleep(float(answer[1]))
        except (IndexError, ValueError):
            return True
    return True


class OptunaCallback:
    """An Optuna callback that marks each finished trial's end for the tracer. memwarden reads
    Optuna's own log lines for boundaries already; this adds nothing to stdout, and only
    matters when Optuna's logging is silenced."""

    def __call__(self, study, frozen_trial):
        _trace.boundary("end", frozen_trial.number)


# pytest's hooks, found here when pytest loads this package as a plugin (`-p memwarden`,
# PYTEST_PLUGINS=memwarden under `memwarden run`, or the `pytest11` entry point): one name, so
# pytest never registers the plugin twice. Last, because the plugin uses what is above.
from ._pytest import (  # noqa: E402,F401
    pytest_addoption,
    pytest_configure,
    pytest_runtest_protocol,
    pytest_unconfigure,
)
