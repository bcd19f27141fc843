"""The executor interface: a task is ONE vmapped batch, run and stored by whoever runs it.

A :class:`BatchTask` is what travels to a worker (pickled): the sweep folder and the configs of
one batch (equal static structure, as grouped by :func:`trajlab.sweep.grid.group_batches`).
The worker runs :func:`execute_batch`, which computes the batch and writes its own pair of batch
files into the shared sweep folder (:meth:`trajlab.store.SweepStore.write_batch`), then returns
a small :class:`BatchOutcome`. So results never travel back through the scheduler, and a batch
whose worker dies is simply not in the folder: resuming runs it again.

Every executor returns :class:`concurrent.futures.Future` objects, whatever its backend, so the
coordinator (:func:`trajlab.sweep.run_sweep`) waits on them in one way.
"""

from __future__ import annotations

import abc
import importlib
import os
import socket
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from trajlab.config import RunConfig, run_id
from trajlab.errors import ConfigError

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class BatchTask:
    """One batch to run and store: configs with equal static structure, and where to write them.

    Configs travel as flat dicts (:func:`trajlab.config.to_flat`) with the ``plugins`` their
    families and problems come from (:func:`trajlab.registry.origins_of`: an importable module, or
    the file it was loaded from), so a worker in another process imports the plug-ins first and
    then rebuilds the configs (:meth:`run_configs`); built-ins need none.
    """

    folder: str
    flat_configs: tuple[dict, ...]
    extra_metrics: dict | None = None
    plugins: tuple[str, ...] = ()

    @classmethod
    def of(cls, folder: str, configs, extra_metrics: dict | None = None) -> "BatchTask":
        """The task of ``configs`` (RunConfig objects), with the plug-in origins they need."""
        from trajlab import registry
        from trajlab.config import to_flat

        kinds = {("family", c.model.kind) for c in configs} | {("problem", c.problem.kind) for c in configs}
        return cls(folder, tuple(to_flat(c) for c in configs), extra_metrics, registry.origins_of(kinds))

    def run_configs(self) -> list[RunConfig]:
        """The configs, rebuilt here after importing the plug-ins they need."""
        from trajlab import registry
        from trajlab.config import from_flat

        for origin in self.plugins:
            registry.import_origin(origin)
        return [from_flat(flat) for flat in self.flat_configs]

    @property
    def run_ids(self) -> list[str]:
        return [run_id(flat) for flat in self.flat_configs]


@dataclass(frozen=True)
class BatchOutcome:
    """What a worker reports back: which runs it stored (under which batch key), where and how fast."""

    key: str
    run_ids: tuple[str, ...]
    statuses: tuple[str, ...]
    worker: str  # host:pid of the process that ran the batch
    device: str
    wall_s: float


def execute_batch(task: BatchTask, progress: Progress | None = None, device: Any = None) -> BatchOutcome:
    """Run one batch and write its files into the sweep folder: the body of every worker task.

    ``device``: run under ``jax.default_device(device)`` (one of several local GPUs); None uses
    the process's default device.
    """
    import contextlib

    import jax

    from trajlab.store import SweepStore
    from trajlab.executors.frames import batch_frames

    start = time.perf_counter()
    context = jax.default_device(device) if device is not None else contextlib.nullcontext()
    with context:
        runs, trajectories = batch_frames(task.run_configs(), task.extra_metrics, progress)
    key = SweepStore(task.folder).write_batch(runs, trajectories)
    return BatchOutcome(
        key=key,
        run_ids=tuple(runs["run_id"]),
        statuses=tuple(runs["status"]),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        device=str(device if device is not None else jax.devices()[0]),
        wall_s=time.perf_counter() - start,
    )


def require(module: str, option: str) -> None:
    """Import an optional dependency or raise a one-line ConfigError saying how to install it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{option} needs the optional package {module!r}; install it with: pip install 'trajlab[distributed]'"
        ) from None


class Executor(abc.ABC):
    """Runs :class:`BatchTask` objects through :func:`execute_batch`; a context manager.

    Attributes read by the coordinator:

    - ``remote``: batches run in other processes. A failed batch (a worker died, a job was
      killed) is then reported after the other batches finished, and the sweep can be resumed;
      in-process failures propagate at once, traceback included.
    - ``max_in_flight``: how many tasks to submit before waiting for one (None: all at once).
    - ``live_progress``: whether :meth:`submit` forwards per-step progress of the batch (one
      batch at a time).
    - ``progress_per_batch``: whether :meth:`submit` forwards per-step progress of each of several
      batches running at once (the coordinator then gives each its own callback).
    """

    name = "executor"
    remote = False
    live_progress = False
    progress_per_batch = False

    @property
    def max_in_flight(self) -> int | None:
        return None

    def plan(self, batches: list[list]) -> list[list]:
        """The batches as this executor will run them (order, splits), given a sweep's batches of
        configs with equal structure; the runs are the same. Default: as given."""
        return batches

    def start(self) -> None:
        """Acquire resources (a cluster, a thread pool); idempotent. :meth:`submit` calls it."""

    @abc.abstractmethod
    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        """Start running ``task``; the future holds its :class:`BatchOutcome` or its exception."""

    def cancel_pending(self) -> None:
        """Stop the tasks still queued or running (after an error or an interrupt)."""

    def shutdown(self) -> None:
        """Release what :meth:`start` acquired (not a cluster given by address)."""

    def describe(self) -> str:
        """One line for the manifest: backend and its settings."""
        return self.name

    def __enter__(self) -> "Executor":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.cancel_pending()
        self.shutdown()
