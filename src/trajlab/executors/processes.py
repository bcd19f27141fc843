"""Local worker processes: every CPU core busy with a sweep, without Dask.

On a CPU one run already saturates the core XLA gives it (batching does not add throughput there,
docs/benchmarks.md), and several host devices in one process must take turns (their threads
deadlock in ``jax.device_get`` otherwise; see :mod:`trajlab.executors.in_process`). So the way to
use every core is one *process* per core: ``ProcessExecutor(workers=N)`` runs batches in a pool of N
freshly spawned Python processes (``multiprocessing`` "spawn": no JAX state is forked), each
running :func:`trajlab.executors.base.execute_batch`, which writes its batch files into the sweep
folder itself, exactly as a Dask worker does. The persistent compilation cache, set up in the
parent's environment, is shared by the workers, so a program one worker compiled is loaded by the
others.

``parts_per_group``: how many batches each group of runs with equal structure is split into at
least (2 x workers by default, so that a slow batch does not leave a core idle at the end; a
batch is never smaller than one run). Results do not depend on the split.

A worker that dies (killed, out of memory) breaks the pool: the batches in flight in it are run once
more in a fresh pool (``retries``); a batch that kills its worker again fails, the others go on, the
sweep ends with a one-line error, and the same command resumes it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from trajlab.errors import ConfigError
from trajlab.executors.base import BatchOutcome, BatchTask, Executor, Progress, execute_batch


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    # one BLAS thread per process: the cores are shared out by processes, not threads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run(payload: bytes) -> BatchOutcome:
    import cloudpickle

    return execute_batch(cloudpickle.loads(payload))


class ProcessExecutor(Executor):
    """Run batches in ``workers`` local processes (default: one per core)."""

    name = "processes"
    remote = True  # other processes: failures are collected, the sweep resumes

    def __init__(self, workers: int | None = None, parts_per_group: int | None = None, retries: int = 1):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
        self.workers = workers if workers is not None else default_workers()
        self.parts_per_group = parts_per_group if parts_per_group is not None else 2 * self.workers
        self.retries = retries
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def max_in_flight(self) -> int | None:
        return None  # the pool queues them

    def start(self) -> None:
        with self._lock:
            self._current_pool()

    def _current_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
            )
        return self._pool

    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        import cloudpickle

        outer: "Future[BatchOutcome]" = Future()
        outer.set_running_or_notify_cancel()
        # cloudpickle: user metrics (``extra_metrics``) may be closures or notebook functions
        self._submit(cloudpickle.dumps(task), outer, 0)
        return outer

    def _submit(self, payload: bytes, outer: Future, attempt: int) -> None:
        with self._lock:
            pool = self._current_pool()
            try:
                inner = pool.submit(_run, payload)
            except BrokenProcessPool as error:  # broken between two submissions: a new pool
                self._discard(pool)
                if attempt >= self.retries:
                    outer.set_exception(error)
                    return
                pool = self._current_pool()
                inner = pool.submit(_run, payload)
        inner.add_done_callback(lambda done: self._finished(done, pool, payload, outer, attempt))

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    def _finished(self, inner: Future, pool, payload: bytes, outer: Future, attempt: int) -> None:
        if inner.cancelled():
            outer.set_exception(CancelledError())
            return
        error = inner.exception()
        if error is None:
            outer.set_result(inner.result())
        elif isinstance(error, BrokenProcessPool) and attempt < self.retries:
            # A worker died (killed, out of memory): every batch in flight in that pool fails with
            # BrokenProcessPool. Each is run once more in a fresh pool; a batch that kills its
            # worker again fails for good.
            with self._lock:
                self._discard(pool)
            self._submit(payload, outer, attempt + 1)
        else:
            outer.set_exception(error)

    def cancel_pending(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def describe(self) -> str:
        return f"{self.name} ({self.workers} local worker processes)"
