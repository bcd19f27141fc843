"""Local worker processes: every CPU core busy with a sweep, without Dask.

On a CPU one run already saturates the core XLA gives it (batching does not add throughput there,
docs/benchmarks.md), and several host devices in one process must take turns (their threads
deadlock in ``jax.device_get`` otherwise; see :mod:`trajlab.executors.in_process`). So the way to
use every core is one *process* per core: ``ProcessExecutor(workers=N)`` runs batches in a pool of N
worker processes, each running :func:`trajlab.executors.base.execute_batch`, which writes its batch
files into the sweep folder itself, exactly as a Dask worker does. The persistent compilation
cache, set up in the parent's environment, is shared by the workers, so a program one worker
compiled is loaded by the others.

Workers are forked from a *fork server* (``multiprocessing`` "forkserver", where the platform has
it; "spawn" otherwise): a fresh Python process that imports trajlab's engine, store and JAX once
(:data:`WORKER_MODULES`, without starting any JAX backend), from which each worker is forked with
those modules loaded, so a worker starts in milliseconds instead of paying the ~2 s import again.
:func:`warm_workers` starts that server early (the command line does so before it loads the
presets, so the server's imports run on another core meanwhile). No JAX state is forked: the
server never initializes a backend. The environment a worker sees is the server's, updated with
this process's ``TRAJLAB_*``, ``XLA_FLAGS``, ``OPENBLAS_NUM_THREADS`` and ``OMP_NUM_THREADS`` at
submission; JAX's own ``JAX_*`` variables are read when the server imports JAX.

How a sweep's batches are shared out (:meth:`ProcessExecutor.plan`): by default
:func:`trajlab.sweep.grid.balance_batches` over the workers, costliest first (longest-processing-
time order, estimated as runs x parameters x max_steps), a batch whose cost is over one worker's
share split in two, so no group of runs is split without need (each split compiles the same
programs in another process). ``parts_per_group``: split each group of runs with equal structure
into at least this many batches instead (a batch is never smaller than one run). Results do not
depend on the split.

Progress: a batch submitted with a progress callback gets a file in a private temporary folder,
to which its worker writes the engine's latest per-recording-point report (JSON, atomically
replaced, at most every :data:`PROGRESS_EVERY_S` seconds); a watcher thread here hands each new
report to the batch's callback (the sweep's progress bar shows every running batch).

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


#: What the fork server imports once, so that a forked worker has it loaded (no JAX backend is started).
WORKER_MODULES = ("cloudpickle", "trajlab.executors.base", "trajlab.executors.frames", "trajlab.store",
                  "trajlab.engine", "trajlab.families", "trajlab.problems")
#: Environment variables handed to each worker with its task (the fork server's are from its start).
_PASSED_ENV_PREFIXES = ("TRAJLAB_",)
_PASSED_ENV = ("XLA_FLAGS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def worker_context():
    """The multiprocessing context of the workers: "forkserver" preloading :data:`WORKER_MODULES`
    where the platform has it, "spawn" otherwise (no JAX state is ever forked)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(WORKER_MODULES))
        return context
    return multiprocessing.get_context("spawn")


def warm_workers() -> bool:
    """Start the fork server now, in the background (it imports :data:`WORKER_MODULES` on another
    core while this process goes on); True if one was started or is running. Cheap, and harmless
    when no worker is made after all: the server exits with this process."""
    context = worker_context()
    if context.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    _init_worker()  # the server and its workers inherit the environment it starts with
    forkserver.ensure_running()
    return True


def _init_worker() -> None:
    # one BLAS thread per process: the cores are shared out by processes, not threads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _passed_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith(_PASSED_ENV_PREFIXES)}


#: Seconds between two progress reports of a worker, and between two reads of them
#: (environment: TRAJLAB_PROGRESS_EVERY_S).
PROGRESS_EVERY_S = 0.5


def _progress_every() -> float:
    try:
        return max(0.001, float(os.environ.get("TRAJLAB_PROGRESS_EVERY_S", PROGRESS_EVERY_S)))
    except ValueError:
        return PROGRESS_EVERY_S


class _ProgressFile:
    """A worker's progress callback: the engine's latest per-recording-point dict, written as JSON
    to ``path`` (atomically replaced) at most every :data:`PROGRESS_EVERY_S` seconds, and when
    every run of the batch has stopped."""

    def __init__(self, path: str):
        self.path, self._last = path, 0.0

    def __call__(self, info: dict) -> None:
        import json
        import time

        now = time.monotonic()
        if now - self._last < _progress_every() and info.get("finished") != info.get("runs"):
            return
        self._last = now
        try:
            with open(self.path + ".tmp", "w") as handle:
                json.dump(info, handle)
            os.replace(self.path + ".tmp", self.path)
        except OSError:  # progress is a display, never a failure of the batch
            pass


def _run(payload: bytes, environment: dict | None = None, progress_path: str | None = None) -> BatchOutcome:
    import cloudpickle

    if environment is not None:  # as at the submission (a worker serves several tasks)
        for name in [k for k in os.environ if k.startswith(_PASSED_ENV_PREFIXES) and k not in environment]:
            del os.environ[name]
        os.environ.update(environment)
    return execute_batch(cloudpickle.loads(payload), _ProgressFile(progress_path) if progress_path else None)


class _ProgressWatcher:
    """Reads the workers' progress files (one per batch, in a private temporary folder) every
    :data:`PROGRESS_EVERY_S` seconds in a daemon thread and hands each new report to that batch's
    callback: per-step progress of batches running in other processes."""

    def __init__(self):
        import tempfile

        self.folder = tempfile.mkdtemp(prefix="trajlab-progress-")
        self._callbacks: dict[str, tuple[Progress, float]] = {}
        self._lock = threading.Lock()
        self._count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, callback: Progress) -> str:
        with self._lock:
            self._count += 1
            path = os.path.join(self.folder, f"batch-{self._count}.json")
            self._callbacks[path] = (callback, 0.0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="trajlab-progress", daemon=True)
                self._thread.start()
        return path

    def remove(self, path: str) -> None:
        with self._lock:
            self._callbacks.pop(path, None)
        for name in (path, path + ".tmp"):
            try:
                os.unlink(name)
            except OSError:
                pass

    def _watch(self) -> None:
        import json

        while not self._stop.wait(_progress_every()):
            with self._lock:
                entries = list(self._callbacks.items())
            for path, (callback, seen) in entries:
                try:
                    changed = os.stat(path).st_mtime_ns
                    if changed == seen:
                        continue
                    with open(path) as handle:
                        info = json.load(handle)
                except (OSError, ValueError):
                    continue
                with self._lock:
                    if path not in self._callbacks:
                        continue
                    self._callbacks[path] = (callback, changed)
                try:
                    callback(info)
                except Exception:  # noqa: BLE001 - a display callback never stops the sweep
                    pass

    def close(self) -> None:
        import shutil

        self._stop.set()
        shutil.rmtree(self.folder, ignore_errors=True)


class ProcessExecutor(Executor):
    """Run batches in ``workers`` local processes (default: one per core)."""

    name = "processes"
    remote = True  # other processes: failures are collected, the sweep resumes
    #: submit() forwards each batch's per-step progress (read from the workers' progress files).
    progress_per_batch = True

    def __init__(self, workers: int | None = None, parts_per_group: int | None = None, retries: int = 1):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")
        self.workers = workers if workers is not None else default_workers()
        self.parts_per_group = parts_per_group
        self.retries = retries
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._progress: _ProgressWatcher | None = None

    @property
    def max_in_flight(self) -> int | None:
        return None  # the pool queues them

    def plan(self, batches: list[list]) -> list[list]:
        """The batches in the order (and split) the workers take them: see the module docstring."""
        from trajlab.sweep.grid import balance_batches, batch_cost, split_groups

        if self.parts_per_group is not None:
            return split_groups(batches, self.parts_per_group)
        return balance_batches(batches, self.workers, batch_cost)

    def start(self) -> None:
        with self._lock:
            self._current_pool()

    def _current_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            _init_worker()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=worker_context(), initializer=_init_worker)
        return self._pool

    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        import cloudpickle

        outer: "Future[BatchOutcome]" = Future()
        outer.set_running_or_notify_cancel()
        path = None
        if progress is not None:
            with self._lock:
                if self._progress is None:
                    self._progress = _ProgressWatcher()
                watcher = self._progress
            path = watcher.add(progress)
            outer.add_done_callback(lambda _: watcher.remove(path))
        # cloudpickle: user metrics (``extra_metrics``) may be closures or notebook functions
        self._submit(cloudpickle.dumps(task), outer, 0, path)
        return outer

    def _submit(self, payload: bytes, outer: Future, attempt: int, path: str | None = None) -> None:
        with self._lock:
            pool = self._current_pool()
            try:
                inner = pool.submit(_run, payload, _passed_environment(), path)
            except BrokenProcessPool as error:  # broken between two submissions: a new pool
                self._discard(pool)
                if attempt >= self.retries:
                    outer.set_exception(error)
                    return
                pool = self._current_pool()
                inner = pool.submit(_run, payload, _passed_environment(), path)
        inner.add_done_callback(lambda done: self._finished(done, pool, payload, outer, attempt, path))

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    def _finished(self, inner: Future, pool, payload: bytes, outer: Future, attempt: int, path: str | None = None) -> None:
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
            self._submit(payload, outer, attempt + 1, path)
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
            watcher, self._progress = self._progress, None
        if pool is not None:
            pool.shutdown(wait=True)
        if watcher is not None:
            watcher.close()

    def describe(self) -> str:
        return f"{self.name} ({self.workers} local worker processes)"
