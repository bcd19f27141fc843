"""The default executor: batches run in this process, one at a time per local device.

With one device (a CPU, or one GPU) each batch runs synchronously inside :meth:`submit`, as a
plain loop would: per-step progress, Ctrl-C and tracebacks behave as without executors. On a CPU
split into host devices (``TRAJLAB_CPU_DEVICES``, :mod:`trajlab.engine.devices`) batches also run
one at a time, each with its runs sharded over every CPU device. With several local GPUs (or
devices given explicitly) a thread pool with one thread per device runs successive batches on
different devices at once, each under ``jax.default_device(device)`` (a thread-local setting), and
each batch on a device no other batch is using.
"""

from __future__ import annotations

import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

from trajlab.executors.base import BatchOutcome, BatchTask, Executor, Progress, execute_batch


class InProcessExecutor(Executor):
    """Run batches in this process; ``devices`` defaults to ``jax.local_devices()``."""

    name = "inprocess"
    remote = False

    def __init__(self, devices: Sequence[Any] | None = None):
        if devices is not None and len(devices) == 0:
            raise ValueError("InProcessExecutor: devices is empty")
        self._devices = list(devices) if devices is not None else None
        self._cpu_devices = 0
        self._pool: ThreadPoolExecutor | None = None
        self._free: "queue.Queue[Any]" = queue.Queue()

    @property
    def devices(self) -> list[Any]:
        if self._devices is None:
            import jax

            local = list(jax.local_devices())
            if len(local) > 1 and local[0].platform == "cpu":
                # CPU devices (one per core): each batch runs whole, its runs sharded over all of
                # them (trajlab.engine.devices), rather than one batch per device thread.
                self._cpu_devices = len(local)
                local = [None]
            self._devices = local
        return self._devices

    @property
    def max_in_flight(self) -> int:
        return len(self.devices)

    @property
    def compiles_ahead(self) -> bool:
        """Batches run one at a time on one device (not sharded): the sweep may compile the next
        batch's programs in a thread while one runs (:func:`trajlab.engine.task.compile_configs_ahead`)."""
        return len(self.devices) == 1 and self.devices[0] is not None

    @property
    def live_progress(self) -> bool:  # one progress line cannot follow batches on several devices
        return len(self.devices) == 1

    def start(self) -> None:
        if len(self.devices) > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.devices), thread_name_prefix="trajlab-device")
            for device in self.devices:
                self._free.put(device)

    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        self.start()
        if self._pool is not None:
            return self._pool.submit(self._on_a_free_device, task)
        future: "Future[BatchOutcome]" = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(execute_batch(task, progress, self.devices[0]))
        except Exception as error:  # KeyboardInterrupt and SystemExit propagate
            future.set_exception(error)
        return future

    def _on_a_free_device(self, task: BatchTask) -> BatchOutcome:
        device = self._free.get()
        try:
            return execute_batch(task, None, device)
        finally:
            self._free.put(device)

    def cancel_pending(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._free = queue.Queue()

    def describe(self) -> str:
        devices = self.devices
        if self._cpu_devices:
            return f"{self.name} (runs of a batch sharded over {self._cpu_devices} CPU devices)"
        return self.name if len(devices) == 1 else f"{self.name} ({len(devices)} devices: {', '.join(map(str, devices))})"
