"""Written by `memwarden run --trace-python` on the workers' PYTHONPATH: starts memwarden's
tracer (memwarden/_trace.py), then runs the `sitecustomize` the environment already had, as
`opentelemetry-instrument` and `ddtrace-run` do. Never raises into the worker."""


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
    path = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_chain()
del _chain
