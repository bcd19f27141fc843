"""``--executor auto`` (the command line's default): every core of a CPU, without asking.

For each sweep, once its batches are known (:meth:`AutoExecutor.plan`), it chooses where they run:

- **worker processes** (:class:`~trajlab.executors.processes.ProcessExecutor`, one per core,
  forked from a fork server that imported JAX and the engine once) when this process has one
  CPU device and two or more cores, the batches balanced over the workers make two or more
  batches, every plug-in can be imported by another process, and the largest batches' memory
  estimates, one per worker, fit together in the share of the free memory a batch may plan for;
- **this process** (:class:`~trajlab.executors.in_process.InProcessExecutor`) otherwise: a GPU
  (batches run there, one per device), host devices asked for with ``TRAJLAB_CPU_DEVICES`` (a
  batch's runs sharded over them), one core, a single batch, or a plug-in defined in
  ``__main__`` (a notebook or a script, which no other process can import).

Measured on the 2-core CPU of docs/benchmarks.md (quick ``dmf-completion``, ``trajlab bench
--cores``), worker processes were the fastest way to use both cores. They report each running
batch's recording points to the progress bar (through progress files, see
:mod:`trajlab.executors.processes`); a batch's error is one line at the end, where this process
raises it at once with its traceback. The choice is made per sweep (``trajlab reproduce`` runs
several with one executor; the worker processes then serve them all) and written to the manifest.
"""

from __future__ import annotations

from trajlab.executors.base import BatchTask, Executor, Progress
from trajlab.executors.in_process import InProcessExecutor
from trajlab.executors.processes import ProcessExecutor


def worker_lanes(batches: list[list]) -> tuple[int, str]:
    """How many worker processes to use for ``batches`` (1: run in this process) and why."""
    from trajlab import registry
    from trajlab._host import cores
    from trajlab.errors import PluginError

    count = cores()
    if count < 2:
        return 1, "one core"
    import jax

    if jax.default_backend() != "cpu":
        return 1, f"a {jax.default_backend()} backend"
    if jax.local_device_count() > 1:
        return 1, "several host devices (TRAJLAB_CPU_DEVICES): runs sharded in this process"
    kinds = {("family", c.model.kind) for b in batches for c in b} | {("problem", c.problem.kind) for b in batches for c in b}
    try:
        registry.check_remote(registry.origins_of(kinds))
    except PluginError:
        return 1, "a plug-in defined in __main__"
    from trajlab.sweep.grid import balance_batches, batch_cost

    lanes = min(count, len(balance_batches(batches, count, batch_cost)))
    if lanes < 2:
        return 1, "a single batch"
    return _fitting(batches, lanes), "every core"


def _fitting(batches: list[list], lanes: int) -> int:
    """The most lanes (at most ``lanes``) whose largest batches' estimates fit the memory share."""
    from trajlab.engine import memory

    if not memory.enabled():
        return lanes
    available = memory.available_memory()
    if available.host is None:
        return lanes
    sizes = sorted((memory.estimate(batch[0], len(batch)).total for batch in batches), reverse=True)
    budget = memory.BATCH_MEMORY_FRACTION * available.host
    while lanes > 1 and sum(sizes[:lanes]) > budget:
        lanes -= 1
    return lanes


def _of_chosen(name: str, default=False) -> property:
    """A read-only attribute of the executor chosen for the current sweep."""
    return property(lambda self: getattr(self._chosen, name, default))


class AutoExecutor(Executor):
    """Worker processes or this process, chosen per sweep (see the module docstring).

    ``workers``: the most worker processes (default: one per core)."""

    name = "auto"

    def __init__(self, workers: int | None = None):
        self._workers = workers
        self._in_process = InProcessExecutor()
        self._processes: ProcessExecutor | None = None
        self._chosen: Executor = self._in_process
        self.reason = ""

    # What the coordinator reads is the chosen executor's.
    remote = _of_chosen("remote")
    live_progress = _of_chosen("live_progress")
    progress_per_batch = _of_chosen("progress_per_batch")
    max_in_flight = _of_chosen("max_in_flight", None)
    compiles_ahead = _of_chosen("compiles_ahead")

    @property
    def devices(self):
        return self._in_process.devices

    @property
    def chosen(self) -> Executor:
        return self._chosen

    def plan(self, batches: list[list]) -> list[list]:
        lanes, self.reason = worker_lanes(batches)
        if self._workers is not None:
            lanes = min(lanes, self._workers)
        if lanes < 2:
            self._chosen = self._in_process
            return self._in_process.plan(batches)
        if self._processes is None or self._processes.workers != lanes:
            if self._processes is not None:
                self._processes.shutdown()
            self._processes = ProcessExecutor(workers=lanes)
        self._chosen = self._processes
        return self._processes.plan(batches)

    def start(self) -> None:
        self._chosen.start()

    def submit(self, task: BatchTask, progress: Progress | None = None):
        return self._chosen.submit(task, progress)

    def cancel_pending(self) -> None:
        self._chosen.cancel_pending()

    def shutdown(self) -> None:
        self._in_process.shutdown()
        if self._processes is not None:
            self._processes.shutdown()

    def describe(self) -> str:
        return f"auto: {self._chosen.describe()}"
