"""Written by `memwarden run --trace-python` and `memwarden replay` on the workers' PYTHONPATH:
starts memwarden's tracer (memwarden/_trace.py, where MEMWARDEN_TRACE_DIR says so) and the
zero-code Optuna replay (memwarden/_replay.py, where MEMWARDEN_REPLAY_OPTUNA says so), then runs
the `sitecustomize` the environment already had, as `opentelemetry-instrument` and `ddtrace-run`
do. Never raises into the worker."""


def _chain():
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.realpath(__file__))
    try:
        from memwarden import _trace

        _trace.start()
    except Exception as error:  # the tracer must never break the worker
        sys.stderr.write("memwarden: the Python tracer did not start: %s\n" % error)
    try:
        from memwarden import _replay

        _replay.install()
    except Exception as error:  # nor may the replay hook
        sys.stderr.write("memwarden: the Optuna replay hook did not start: %s\n" % error)
    path = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_chain()
del _chain
