"""Executors: where the batches of a sweep run (this process, local worker processes, a Dask cluster, SLURM jobs).

A task is one vmapped batch; the worker that runs it writes its results into the sweep folder
itself (:func:`execute_batch`). Dask and submitit are optional (``pip install
'trajlab[distributed]'``): they are imported when a DaskExecutor or SlurmExecutor is made, and a
missing one is a one-line ConfigError.
"""

from __future__ import annotations

from trajlab.errors import ConfigError
from trajlab.executors.base import BatchOutcome, BatchTask, Executor, execute_batch
from trajlab.executors.dask_executor import DaskExecutor
from trajlab.executors.in_process import InProcessExecutor
from trajlab.executors.processes import ProcessExecutor, warm_workers
from trajlab.executors.auto import AutoExecutor
from trajlab.executors.slurm import SlurmExecutor

EXECUTORS = ("auto", "inprocess", "processes", "dask", "slurm")
#: The environment variable that sets the command line's default executor (default: auto).
EXECUTOR_ENV = "TRAJLAB_EXECUTOR"


def default_executor_name() -> str:
    """``$TRAJLAB_EXECUTOR`` or ``auto``."""
    import os

    return os.environ.get(EXECUTOR_ENV, "").strip() or "auto"


def auto_executor(runs: int | None = None) -> Executor:
    """What ``--executor auto`` gives: an :class:`~trajlab.executors.auto.AutoExecutor`, which
    chooses per sweep between worker processes (every core of a CPU) and this process (a GPU, one
    core, a single batch, a plug-in only this process can import); docs/benchmarks.md measures the
    ways side by side. ``runs`` (the sweep's size) is accepted for future use."""
    return AutoExecutor()


def warm_up(name: str) -> None:
    """Start what executor ``name`` will need in the background, before the caller loads presets:
    the fork server of worker processes (:func:`~trajlab.executors.processes.warm_workers`) for
    ``processes``, and for ``auto`` on a machine with two or more cores."""
    from trajlab._host import cores

    if name == "processes" or (name == "auto" and cores() >= 2):
        warm_workers()


def make_executor(
    name: str = "inprocess",
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    slurm_partition: str | None = None,
    slurm_time: int | None = None,
    slurm_gpus: int | None = None,
    runs: int | None = None,
) -> Executor:
    """The executor the command line asks for; options of another backend are a ConfigError.

    ``auto`` (the command line's default): :func:`auto_executor` for a sweep of ``runs`` runs
    (with ``workers``: that many worker processes).

    Nothing is started here (no cluster, no job): only checked, so that bad options stop a
    sweep before anything is written.
    """
    if name not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name != "dask" and scheduler is not None:
        raise ConfigError("--scheduler applies to --executor dask only")
    if name not in ("dask", "processes", "auto") and workers is not None:
        raise ConfigError("--workers applies to --executor processes or dask only")
    if name != "slurm":
        for option, value in (("--slurm-partition", slurm_partition), ("--slurm-time", slurm_time),
                              ("--slurm-gpus", slurm_gpus)):
            if value is not None:
                raise ConfigError(f"{option} applies to --executor slurm only")
    if name == "dask":
        return DaskExecutor(scheduler=scheduler, n_workers=workers)
    if name == "processes":
        return ProcessExecutor(workers=workers)
    if name == "auto":
        if workers is not None:
            return ProcessExecutor(workers=workers)
        return auto_executor(runs)
    if name == "slurm":
        return SlurmExecutor(
            partition=slurm_partition,
            time_min=60 if slurm_time is None else slurm_time,
            gpus=0 if slurm_gpus is None else slurm_gpus,
        )
    return InProcessExecutor()


__all__ = [
    "EXECUTORS",
    "AutoExecutor",
    "BatchOutcome",
    "BatchTask",
    "DaskExecutor",
    "Executor",
    "EXECUTOR_ENV",
    "InProcessExecutor",
    "ProcessExecutor",
    "auto_executor",
    "default_executor_name",
    "SlurmExecutor",
    "execute_batch",
    "make_executor",
    "warm_up",
]
