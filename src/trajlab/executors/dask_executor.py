"""Dask distributed: batches run in the worker processes of a Dask cluster.

``DaskExecutor(scheduler="tcp://host:8786")`` connects to a running cluster (started with
``dask scheduler`` and ``dask worker`` on the machines that share the sweep folder); without an
address it starts a :class:`distributed.LocalCluster` of ``n_workers`` worker *processes* (one
thread each: a batch already uses every core through XLA) and closes it at :meth:`shutdown`.

Workers must import the same trajlab, and see the sweep folder at the same path (a shared file
system): each writes its batches itself. When a worker dies mid-batch the scheduler reruns the
batch elsewhere (up to its ``distributed.scheduler.allowed-failures``), then reports
``KilledWorker``; the sweep ends with a one-line error and the same command resumes it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import Future

from trajlab.errors import ConfigError, TrajlabError
from trajlab.executors.base import BatchOutcome, BatchTask, Executor, Progress, execute_batch, require


def default_workers() -> int:
    """Local worker processes when none are asked for: one per core, 2 to 4."""
    return max(2, min(4, os.cpu_count() or 2))


class DaskExecutor(Executor):
    """Run batches on a Dask cluster: the one at ``scheduler``, or a LocalCluster of processes."""

    name = "dask"
    remote = True

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None, connect_timeout_s: float = 30):
        require("distributed", "--executor dask")
        if scheduler is not None and not scheduler.strip():
            raise ConfigError("--scheduler: empty address; give e.g. tcp://host:8786, or leave it out for a local cluster")
        if scheduler is not None and n_workers is not None:
            raise ConfigError("--workers: sizes a local cluster and cannot be combined with --scheduler")
        if n_workers is not None and n_workers < 1:
            raise ConfigError(f"--workers must be an integer >= 1, got {n_workers}")
        self.scheduler = scheduler
        self.n_workers = n_workers if n_workers is not None else (None if scheduler else default_workers())
        self.connect_timeout_s = connect_timeout_s
        self.client = None
        self.cluster = None
        self._futures: dict[str, object] = {}  # dask keeps a task only while its future is referenced
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.client is not None:
            return
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.connect_timeout_s)
            except (OSError, TimeoutError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise TrajlabError(f"--scheduler: cannot connect to {self.scheduler!r} ({reason})") from None
            return
        self.cluster = LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never clash with a running cluster
            silence_logs=logging.ERROR,
            # Several worker processes may share one GPU: do not let each grab most of its memory.
            env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
        )
        self.client = Client(self.cluster)

    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        self.start()
        key = f"trajlab-batch-{uuid.uuid4().hex}"
        remote = self.client.submit(execute_batch, task, key=key, pure=False)
        future: "Future[BatchOutcome]" = Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            self._futures[key] = remote

        def relay(done) -> None:  # runs in a thread of the dask client
            try:
                if done.status == "cancelled":
                    future.set_exception(TrajlabError("dask: the batch was cancelled"))
                else:
                    future.set_result(done.result())
            except BaseException as error:
                future.set_exception(error)
            finally:
                with self._lock:
                    self._futures.pop(key, None)

        remote.add_done_callback(relay)
        return future

    def cancel_pending(self) -> None:
        with self._lock:
            pending = list(self._futures.values())
            self._futures.clear()
        if pending and self.client is not None:
            try:
                self.client.cancel(pending)
            except Exception:  # the scheduler may be gone already: nothing left to cancel
                pass

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def describe(self) -> str:
        if self.scheduler:
            return f"dask {self.scheduler}"
        return f"dask LocalCluster ({self.n_workers} worker processes)"
