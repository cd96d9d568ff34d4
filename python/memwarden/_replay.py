"""Zero-code replay of an Optuna study: `memwarden replay RUN --trial 17 -- python search.py`,
the command the run used, with no replay script.

memwarden sets MEMWARDEN_REPLAY_OPTUNA=1, MEMWARDEN_TRIAL_PARAMS (JSON) and
MEMWARDEN_TRIAL_REPEAT. When the worker imports `optuna`, the first `Study.optimize()` it calls
runs the user's objective on those parameters MEMWARDEN_TRIAL_REPEAT times instead, one after
another in this process (so a leak accumulates), and then the process exits 0: the rest of the
script (printing the best trial, saving the study) is not part of the experiment.

- The repeats run in a study of their own, in memory: `enqueue_trial` the parameters that many
  times, a seeded RandomSampler for any parameter the record does not fix (a conditional one),
  no pruner (a pruned repeat would not be the recorded trial), one job. The user's storage never
  sees a replayed trial: `create_study` is given no storage while replaying, so a script that
  creates its study in a database does not fail on the name it created in the recorded run.
- A script that enqueues the parameters itself (the script form of memwarden's README) is left
  alone: its study already holds waiting trials when it calls optimize().
- Standard library only; `optuna` is never imported by this module, only patched once the
  worker imports it. Nothing here may raise into the worker: a failure says so on stderr and
  leaves Optuna as it was.
"""

import importlib.abc
import importlib.util
import inspect
import json
import os
import sys

_state = {"patched": False, "done": False, "script_form": False}


def install():
    """Called by memwarden's `sitecustomize`; does nothing unless this is a replay."""
    if os.environ.get("MEMWARDEN_REPLAY_OPTUNA") != "1" or "MEMWARDEN_TRIAL_PARAMS" not in os.environ:
        return
    if "optuna" in sys.modules:
        _patch(sys.modules["optuna"])
    else:
        sys.meta_path.insert(0, _OptunaFinder())


class _OptunaFinder(importlib.abc.MetaPathFinder):
    """Finds `optuna` as the other finders would, and patches it once its `__init__` ran."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "optuna":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            _patch(module)

        # On this loader object only (it loads optuna alone): its other methods stay its own.
        loader.exec_module = exec_module
        return spec


def _say(text):
    sys.stderr.write("memwarden: %s\n" % text)
    sys.stderr.flush()


def _patch(optuna):
    if _state["patched"]:
        return
    try:
        study_class = optuna.study.Study
        optimize = study_class.optimize
        create_study = optuna.create_study
    except Exception as error:
        _say("cannot replay through Optuna (%s): the study runs as written" % error)
        return
    signature = inspect.signature(optimize)

    def replaying_create_study(*args, **kwargs):
        bound = inspect.signature(create_study).bind_partial(*args, **kwargs)
        bound.arguments.pop("storage", None)
        bound.arguments.pop("load_if_exists", None)
        return create_study(*bound.args, **bound.kwargs)

    def replaying_optimize(self, func, *args, **kwargs):
        if _state["done"] or _state["script_form"]:
            return optimize(self, func, *args, **kwargs)
        waiting = self.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if waiting:
            _state["script_form"] = True
            return optimize(self, func, *args, **kwargs)
        _state["done"] = True
        bound = signature.bind(self, func, *args, **kwargs)
        bound.apply_defaults()
        _replay(optuna, optimize, self, func, bound.arguments)
        raise SystemExit(0)

    study_class.optimize = replaying_optimize
    for module in (optuna, getattr(optuna, "study", None)):
        if module is not None and getattr(module, "create_study", None) is create_study:
            module.create_study = replaying_create_study
    _state["patched"] = True


def _replay(optuna, optimize, user_study, func, arguments):
    params = json.loads(os.environ["MEMWARDEN_TRIAL_PARAMS"])
    repeat = max(1, int(os.environ.get("MEMWARDEN_TRIAL_REPEAT", "1")))
    study = optuna.create_study(
        directions=user_study.directions,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
    )
    for _ in range(repeat):
        study.enqueue_trial(params, skip_if_exists=False)
    _say(
        "replaying %s %d time(s) through Optuna, in a study in memory (the script's own study "
        "and storage are not touched), then ending the process"
        % (json.dumps(params, sort_keys=True), repeat)
    )
    optimize(
        study,
        func,
        n_trials=repeat,
        catch=arguments.get("catch", ()),
        callbacks=arguments.get("callbacks"),
        gc_after_trial=arguments.get("gc_after_trial", False),
    )
