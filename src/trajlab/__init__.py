"""trajlab: a laboratory for the trajectories of gradient descent.

The public API (everything here is documented in the API reference):

- configs: :class:`RunConfig` with a problem and a model section (:func:`ProblemConfig`,
  :func:`ModelConfig` make the section of a registered kind), :class:`OptimizerConfig`,
  :class:`TrainConfig`, :class:`FlowConfig`; :func:`replace_dotted`, :func:`to_flat`, :func:`run_id`.
- plug-ins: :func:`family` / :func:`register_family` (a model family: config section, init, loss,
  metrics), :func:`problem` / :func:`register_problem` (a problem: config section and data),
  :class:`FamilyParts`, :class:`MetricContext` (what a metric receives), :data:`GENERIC_METRICS`,
  :class:`Preset` / :class:`Claim` / :func:`register_preset`, :func:`load_plugins` (a user's file),
  :func:`check_family` (trace a family's contract without running it).
- running: :func:`grid` (the configs of a sweep), :func:`run` (run them into a folder),
  :func:`load` (a sweep folder as DataFrames, :class:`SweepData`), :func:`init_params` (a run's
  initial parameters), :func:`check_claims` / :func:`not_measured` (a preset's claims on a sweep).
"""

import os as _os

# The metrics' SVDs go through scipy's OpenBLAS; its threads fight XLA's on small matrices and
# made 100 x 100 SVDs 200x slower on a busy 2-core machine (docs/benchmarks.md). Set before
# anything loads OpenBLAS; a value the user set wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# TRAJLAB_CPU_DEVICES=N (or auto: one per core) splits the CPU into host devices before JAX is
# imported, so that a batch's runs are sharded over them (trajlab.engine.devices); unset: one.
from trajlab._host import configure_host_devices as _configure_host_devices  # noqa: E402

_configure_host_devices()

__version__ = "0.2.0"

from trajlab.config import (  # noqa: E402
    FlowConfig,
    ModelConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    TrainConfig,
    from_flat,
    replace_dotted,
    require,
    run_id,
    to_flat,
)
from trajlab.errors import ConfigError, PluginError, TrajlabError  # noqa: E402
from trajlab.registry import (  # noqa: E402
    GENERIC_METRICS,
    Family,
    FamilyParts,
    Problem,
    family,
    problem,
    register_family,
    register_problem,
)

# Loaded on first use (they import JAX or every preset).
_LAZY = {
    "load": ("trajlab.store", "load"),
    "SweepData": ("trajlab.store", "SweepData"),
    "run": ("trajlab.api", "run"),
    "grid": ("trajlab.api", "grid"),
    "init_params": ("trajlab.api", "init_params"),
    "check_claims": ("trajlab.presets.claims", "check_claims"),
    "not_measured": ("trajlab.presets.claims", "not_measured"),
    "MetricContext": ("trajlab.metrics.generic", "MetricContext"),
    "CarriedMetric": ("trajlab.metrics.carried", "CarriedMetric"),
    "check_family": ("trajlab.engine.task", "check_family"),
    "Preset": ("trajlab.presets.preset", "Preset"),
    "Claim": ("trajlab.presets.preset", "Claim"),
    "register_preset": ("trajlab.presets", "register_preset"),
    "registered_presets": ("trajlab.presets", "presets"),
    "get_preset": ("trajlab.presets", "get_preset"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trajlab' has no attribute {name!r}")


def registered_families():
    """The registered model families by name (``model.kind``): the built-ins, then the user's."""
    from trajlab.registry import families

    return families()


def registered_problems():
    """The registered problems by name (``problem.kind``): the built-ins, then the user's."""
    from trajlab.registry import problems

    return problems()


def load_plugins(path):
    """Import a Python file (or an importable module name) that registers families, problems or
    presets; returns the presets it defines. Its registrations are then usable by name
    (``model.kind=...``), and remote workers import the same file by its path."""
    import importlib

    from trajlab.presets import load_presets_file, presets_of

    if str(path).endswith(".py"):
        return load_presets_file(path)
    return presets_of(importlib.import_module(str(path)))


__all__ = [
    "GENERIC_METRICS",
    "CarriedMetric",
    "Claim",
    "ConfigError",
    "Family",
    "FamilyParts",
    "FlowConfig",
    "MetricContext",
    "ModelConfig",
    "OptimizerConfig",
    "PluginError",
    "Preset",
    "Problem",
    "ProblemConfig",
    "RunConfig",
    "SweepData",
    "TrainConfig",
    "TrajlabError",
    "check_family",
    "family",
    "from_flat",
    "get_preset",
    "check_claims",
    "grid",
    "init_params",
    "load",
    "not_measured",
    "load_plugins",
    "problem",
    "register_family",
    "register_preset",
    "register_problem",
    "registered_families",
    "registered_presets",
    "registered_problems",
    "replace_dotted",
    "require",
    "run",
    "run_id",
    "to_flat",
]
