"""memwarden's pytest plugin: each test is a trial, repeated in one process so that what it
retains per repeat can be fitted, and `memwarden check` names the tests that leak.

    memwarden run -- pytest --memwarden-repeat 5     # memwarden loads it (PYTEST_PLUGINS)
    memwarden check RUN --max-growth 1MiB/trial
    pytest -p memwarden ...                          # by hand; pip's install also loads it

    @pytest.mark.memwarden_budget("2MiB")            # this test's budget per repeat
    def test_cache(): ...

Each repeat runs the test's whole protocol (setup, call, teardown): function-scoped fixtures
are made and finalised every time, module-, class- and session-scoped ones are kept, as in an
ordinary run. After the teardown the cyclic garbage collector runs, then the process reads its
own memory and prints it on the trial's end marker, so the level is the one the test retained.
What was alive before the first test (imported modules, collected items) is moved out of the
collector's way once (gc.freeze, undone at the session's end): a full collection with PyTorch
imported took 56 ms, 0.2 ms after the freeze. Objects frozen then are never collected as
cyclic garbage during the run, and gc.get_objects() does not list them.

The markers go to the stderr pytest had before it captured anything (pytest's capture is
suspended for the write), so neither pytest's progress line nor a test's captured output
carries them. Outside memwarden (no MEMWARDEN_WORKER) nothing is printed; --memwarden-repeat
still repeats. One process per memwarden worker: under pytest-xdist each of its processes
would print into the same stream, so run the check without -n.

Pytest's own modules are only used as pytest hands them over: the package stays standard
library only, and `import memwarden` outside pytest never imports pytest.
"""

import gc
import os
import sys

from . import _line, _trace, _word, own_memory

# Checks fit per-repeat growth after this many warm-up repeats, on at least three more
# (src/analysis/repeats.rs): fewer repeats are run, but the check will say it cannot judge.
_ENOUGH = 5
_BUDGET_MARKER = "memwarden_budget"
_frozen = False


def pytest_addoption(parser):
    group = parser.getgroup("memwarden", "memwarden: leak checks per test")
    group.addoption(
        "--memwarden-repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each test N times in this process, each repeat a memwarden trial; "
        "`memwarden check` fits per-repeat growth after 2 warm-up repeats, so give 5 or more",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "%s(size): the most memory this test may retain per repeat under "
        "`memwarden check`, e.g. \"2MiB\" (default: check's --max-growth)" % _BUDGET_MARKER,
    )
    repeat = config.getoption("memwarden_repeat")
    if repeat < 1:
        import pytest

        raise pytest.UsageError("--memwarden-repeat %d: give 1 or more" % repeat)
    if 1 < repeat < _ENOUGH and _under_memwarden():
        _say(
            config,
            "memwarden: --memwarden-repeat %d: `memwarden check` needs %d or more repeats "
            "to fit a test's growth (2 warm-up, 3 fitted)" % (repeat, _ENOUGH),
        )


def _under_memwarden():
    return os.environ.get("MEMWARDEN_WORKER") is not None


def _say(config, text):
    """One line on the real stderr, pytest's capture suspended around it."""
    capture = config.pluginmanager.getplugin("capturemanager")
    stream = sys.stderr
    if capture is None:
        stream.write(text + "\n")
        stream.flush()
        return
    with capture.global_and_fixture_disabled():
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _params(item):
    """The test's parametrization, each value as a short word, and its budget."""
    fields = {}
    callspec = getattr(item, "callspec", None)
    for name, value in sorted(getattr(callspec, "params", {}).items()):
        text = _word(value)
        fields[name] = text if len(text) <= 80 else text[:77] + "..."
    budget = item.get_closest_marker(_BUDGET_MARKER)
    if budget is not None and budget.args:
        fields[_BUDGET_MARKER] = _word(budget.args[0])
    return fields


def _status(reports):
    """The trial's end state. A failing test is still repeated, as pytest-repeat does: the
    loop never tears down what pytest's runner owns."""
    if any(r.failed for r in reports):
        return "fail"
    if any(r.skipped for r in reports) and not any(r.when == "call" for r in reports):
        return "skipped"
    return "complete"


def pytest_runtest_protocol(item, nextitem):
    """Replaces pytest's own protocol (it is registered after pytest's runner, so it is asked
    first) when there is something to do: repeats, or markers for memwarden."""
    config = item.config
    repeat = config.getoption("memwarden_repeat")
    marking = _under_memwarden()
    if repeat == 1 and not marking:
        return None
    from _pytest.runner import runtestprotocol

    global _frozen
    if marking and not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
    nodeid = item.nodeid
    params = _params(item) if marking else {}
    item.ihook.pytest_runtest_logstart(nodeid=nodeid, location=item.location)
    for number in range(1, repeat + 1):
        last = number == repeat
        if marking:
            fields = dict(params, memwarden_repeat=number)
            _say(config, _line("trial_start", nodeid, fields))
            _trace.boundary("start", nodeid)
        # Between repeats the next item is the test's parent: the test itself is torn down
        # (function-scoped fixtures finalised), its module's and session's fixtures are kept.
        reports = runtestprotocol(item, log=True, nextitem=nextitem if last else item.parent)
        status = _status(reports)
        if marking:
            gc.collect()
            fields = dict(status=status, **own_memory())
            _say(config, _line("trial_end", nodeid, fields))
            _trace.boundary("end", nodeid)
    item.ihook.pytest_runtest_logfinish(nodeid=nodeid, location=item.location)
    return True


def pytest_unconfigure(config):
    global _frozen
    if _frozen:
        gc.unfreeze()
        _frozen = False
