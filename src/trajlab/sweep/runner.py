"""Run a list of configs into a sweep folder: skip finished runs, batch the rest, store each batch.

The process that calls :func:`run_sweep` coordinates: it writes the manifest, hands one task per
batch to an executor (:mod:`trajlab.executors`: this process by default, a Dask cluster, SLURM
jobs), consolidates the batch files the workers write, and computes the baselines.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from trajlab import registry
from trajlab.config import DATA_DIGEST_FIELD, RunConfig, data_files, run_id, static_key, to_flat
from trajlab.errors import PluginError, TrajlabError
from trajlab.executors import BatchTask, Executor, InProcessExecutor
from trajlab.executors.frames import batch_frames, flat_row  # noqa: F401 - re-exported
from trajlab.sweep.grid import group_batches
from trajlab.sweep.progress import SweepProgress
from trajlab.store import SweepData, SweepStore, load

# With remote workers, merge their batch files into the root files at most this often (and at the end).
CONSOLIDATE_EVERY_S = 10.0
PACKAGES = ("trajlab", "jax", "jaxlib", "optax", "diffrax", "numpy", "scipy", "cvxpy", "scs", "pandas", "pyarrow")


@dataclass(frozen=True)
class BaselineJob:
    """A non-trajectory reference to compute once per sweep folder: ``compute() -> {column: value}``."""

    baseline_id: str
    columns: dict[str, Any]  # identifying columns (problem fields, baseline name)
    compute: Callable[[], dict[str, Any]]


#: Compute a sweep's baselines in a thread while its runs execute (False: after the runs, in order;
#: environment: TRAJLAB_BASELINES_BESIDE=0).
BASELINES_BESIDE_RUNS = os.environ.get("TRAJLAB_BASELINES_BESIDE", "1") != "0"


class BackgroundJobs:
    """Baseline jobs computed one after another in a daemon thread (so an interrupted sweep does not
    wait for a solve to finish; a baseline not stored is computed again when the sweep resumes).
    :meth:`results` yields ``(job, get)`` in order, ``get()`` returning the job's columns or raising
    its error."""

    def __init__(self, jobs: list[BaselineJob]):
        import threading

        self._jobs = list(jobs)
        self._done = [threading.Event() for _ in self._jobs]
        self._outcome: list[tuple[bool, Any]] = [(False, None)] * len(self._jobs)
        self._stop = threading.Event()
        threading.Thread(target=self._work, name="trajlab-baselines", daemon=True).start()

    def _work(self) -> None:
        for index, job in enumerate(self._jobs):
            if self._stop.is_set():
                return
            try:
                self._outcome[index] = (True, job.compute())
            except BaseException as error:  # handed to the caller of results()
                self._outcome[index] = (False, error)
            self._done[index].set()

    def abandon(self) -> None:
        """No further job starts (the one running finishes in its daemon thread)."""
        self._stop.set()

    def results(self):
        for index, job in enumerate(self._jobs):
            def get(index=index):
                self._done[index].wait()
                ok, value = self._outcome[index]
                if not ok:
                    raise value
                return value

            yield job, get


def baseline_id(name: str, key: dict) -> str:
    """Stable id of a baseline: hash of its name and identifying fields (sorted JSON)."""
    text = f"{name}:{json.dumps(key, sort_keys=True, default=str)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


#: Compile the next batch's programs in a thread while a batch runs (environment: TRAJLAB_COMPILE_AHEAD=0 turns it off).
COMPILE_AHEAD = os.environ.get("TRAJLAB_COMPILE_AHEAD", "1") != "0"


class CompileAhead:
    """Compile the programs of the next batch in a thread while the current one runs, for an
    executor that runs batches one at a time in this process on one device (its
    ``compiles_ahead``): compilation is the largest serial part of a quick sweep after the runs'
    loops (docs/benchmarks.md). Its errors are ignored: the batch itself reports them when it runs."""

    def __init__(self, executor: Executor, extra_metrics: dict | None):
        self._on = COMPILE_AHEAD and bool(getattr(executor, "compiles_ahead", False))
        self._device = executor.devices[0] if self._on else None
        self._extra = extra_metrics
        self._thread = None

    def start(self, configs: list[RunConfig]) -> None:
        if not self._on:
            return
        import threading

        def work():
            import jax

            from trajlab.engine.task import compile_configs_ahead

            try:
                with jax.default_device(self._device):
                    compile_configs_ahead(configs, self._extra)
            except Exception:  # noqa: BLE001 - the batch reports its own errors when it runs
                pass

        self._thread = threading.Thread(target=work, name="trajlab-compile-ahead", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _run_batches(
    store: SweepStore,
    batches: list[list[RunConfig]],
    extra_metrics: dict | None,
    executor: Executor,
    progress: SweepProgress,
) -> None:
    """Submit one task per batch (at most ``executor.max_in_flight`` at a time) and collect them.

    Each finished batch is already on disk (its worker wrote it); here it is consolidated into
    the root files. In-process failures propagate at once. Remote failures (a dead worker, a
    killed job) are collected until the other batches end, then reported in one TrajlabError;
    the finished batches are stored, so rerunning resumes.
    """
    todo = deque(batches)
    in_flight: dict = {}
    ahead = CompileAhead(executor, extra_metrics)
    failures: list[tuple[list[RunConfig], BaseException]] = []
    last_consolidation = time.monotonic()
    try:
        while todo or in_flight:
            limit = executor.max_in_flight
            while todo and (limit is None or len(in_flight) < limit):
                batch = todo.popleft()
                # An absolute path: workers elsewhere do not share our working directory.
                task = BatchTask.of(str(store.folder.absolute()), batch, extra_metrics)
                if executor.remote:
                    registry.check_remote(task.plugins)
                if executor.live_progress:
                    progress.start_batch(len(batch))
                ahead.wait()  # this batch's programs, if compiled ahead, are ready
                if todo:
                    ahead.start(todo[0])
                if executor.live_progress:
                    report = progress.batch_update
                elif getattr(executor, "progress_per_batch", False):
                    report = progress.batch_updater(id(batch))
                else:
                    report = None
                future = executor.submit(task, report)
                in_flight[future] = batch
            if not executor.live_progress:
                running = sum(len(b) for b in in_flight.values())
                progress.message(f"{len(in_flight)} batches ({running} runs) on {executor.describe()}")
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                batch = in_flight.pop(future)
                error = future.exception()
                if error is not None:
                    if isinstance(error, TrajlabError) or not executor.remote:
                        raise error
                    failures.append((batch, error))
                    progress.end_batch(0, id(batch))
                    continue
                if not executor.remote or time.monotonic() - last_consolidation >= CONSOLIDATE_EVERY_S:
                    store.consolidate(remove_empty_folders=False)
                    last_consolidation = time.monotonic()
                progress.end_batch(len(batch), id(batch))
    except BaseException:
        executor.cancel_pending()
        raise
    store.consolidate()
    if failures:
        runs = sum(len(batch) for batch, _ in failures)
        raise TrajlabError(
            f"{len(failures)} of {len(batches)} batches ({runs} runs) failed on {executor.describe()}, first: "
            f"{_one_line(failures[0][1])}; the finished runs are stored, rerun the same command to resume"
        ) from failures[0][1]


#: Version of the run-id scheme written to the manifest. 2: one config section per problem / family
#: kind (trajlab 0.2); configs that 0.1 could express keep 0.1's ids (:func:`trajlab.config.id_fields`).
RUN_ID_SCHEME = 2


def _note_old_ids(store: SweepStore, manifest: dict, ids: set[str], done: set[str], pending: int) -> None:
    """One line on stderr when a folder written by trajlab 0.1 holds runs whose ids this version
    computes differently: those configs are re-run (the old runs stay in the folder)."""
    import sys

    if not manifest or manifest.get("run_id_scheme") or not pending:
        return
    stale = len(done - ids)
    if stale:
        print(
            f"note: {store.folder} was written by trajlab 0.1 and {stale} of its runs have ids that trajlab 0.2 "
            f"computes differently; {pending} runs of this sweep will be (re-)run beside them",
            file=sys.stderr,
        )


def batch_capacity(max_batch: "int | None", executor: "Executor | None" = None):
    """How :func:`run_sweep` sizes batches: None when ``max_batch`` is given (batches of at most
    ``max_batch``), otherwise a function of a config giving the most runs of it whose estimated
    memory fits half the free memory of this machine (at most 512;
    :func:`trajlab.engine.memory.batch_capacity`; the free memory is read once). For a remote
    executor, whose workers' memory is not known here, 512."""
    if max_batch is not None:
        return None
    from trajlab.engine import memory

    if (executor is not None and executor.remote) or not memory.enabled():
        return lambda config: memory.DEFAULT_MAX_BATCH
    available = memory.available_memory()
    return lambda config: memory.batch_capacity(config, available)


def check_before_writing(configs: list[RunConfig], max_batch: "int | None" = None, executor: Executor | None = None,
                         capacity=None) -> None:
    """The checks :func:`run_sweep` makes before it touches the sweep folder, each a one-line
    ConfigError: the memory of every batch against the free memory of this machine
    (:func:`trajlab.engine.memory.check_memory`; skipped for remote executors, whose workers'
    memory is not known here), then every data file (each distinct problem section that reads
    files, ``Problem.data_files``, is loaded once through its ``data``: a missing, undecodable or
    non-numeric file, or a NaN / inf cell, is refused before anything is written)."""
    from trajlab.engine.memory import check_memory

    if executor is None or not executor.remote:
        if max_batch is None and capacity is None:
            capacity = batch_capacity(None, executor)
        check_memory([(batch[0], len(batch)) for batch in group_batches(configs, max_batch, capacity)])
    check_data_files(configs)


def check_data_files(configs: list[RunConfig]) -> None:
    """Load the data of every distinct problem section with data files (see :func:`check_before_writing`)."""
    from trajlab.problems.registry import make_data

    sections: dict[str, Any] = {}
    for config in configs:
        if data_files(config.problem):
            sections.setdefault(json.dumps(to_flat(config.problem), sort_keys=True, default=str), config.problem)
    for section in sections.values():
        try:
            make_data(section)
        except TrajlabError:
            raise
        except Exception as error:  # noqa: BLE001 - a plug-in's loader: one line naming it
            raise PluginError(f"problem {section.kind!r}: data(config) failed: {_one_line(error)}") from None


def _note_changed_data(store: SweepStore, manifest: dict, ids: dict[str, RunConfig], done: set[str]) -> None:
    """One line on stderr when a data file changed since runs of the same configs were stored:
    their run ids include the file's content hash, so they are re-run (the old runs stay)."""
    import sys

    key = f"problem.{DATA_DIGEST_FIELD}"
    recorded = manifest.get("configs") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or not recorded:
        return

    def without_digest(flat: dict) -> str:
        return json.dumps({k: v for k, v in flat.items() if k != key}, sort_keys=True, default=str)

    stored: dict[str, int] = {}
    for old_id, flat in recorded.items():
        if isinstance(flat, dict) and old_id in done and old_id not in ids:
            stored[without_digest(flat)] = stored.get(without_digest(flat), 0) + 1
    changed, files = 0, []
    for new_id, config in ids.items():
        flat = to_flat(config)
        if key not in flat or new_id in done:
            continue
        if without_digest(json.loads(json.dumps(flat, default=str))) in stored:
            changed += 1
            files.extend(f for f in data_files(config.problem) if f not in files)
    if changed:
        names = ", ".join(repr(f) for f in files)
        print(
            f"note: the data file {names} changed since runs of this sweep were stored in {store.folder} "
            f"(its content hash is part of the run id): {changed} runs are re-run with the new data; the old runs stay",
            file=sys.stderr,
        )


def run_sweep(
    configs: list[RunConfig],
    folder: str | Path,
    *,
    preset: str | None = None,
    baselines: list[BaselineJob] = (),
    extra_metrics: dict | None = None,
    max_batch: int | None = None,
    show_progress: bool = True,
    executor: Executor | None = None,
    check_plugins: bool = True,
    preset_source: str | None = None,
) -> SweepData:
    """Run every config not yet finished in ``folder``; store after each batch; return :func:`load`.

    Resuming is by run id (the hash of the whole config): re-running the same command skips the
    runs already stored, and the baselines already in ``baselines.parquet``.

    ``executor``: where the batches run (:mod:`trajlab.executors`); default
    :class:`~trajlab.executors.InProcessExecutor` (made, and shut down, here). An executor
    given by the caller is started if needed but left running, so it can serve several sweeps.
    The batches are the same whatever the executor, so are the results.

    ``preset_source``: ``file.py:NAME`` of a preset defined in a user's file, recorded in the
    manifest so that report and plot find the preset again.

    ``check_plugins``: before any run starts, trace (not run) one config of every batch through its
    family (:func:`trajlab.engine.check_family`), so a plug-in that breaks its contract is a
    one-line PluginError, not a traceback from a worker.

    ``max_batch``: the most runs in one vmapped batch; None (default): chosen per group of runs
    with equal structure from the memory estimate, so a batch that would not fit is split
    (:func:`batch_capacity`; at most 512). The results do not depend on how runs are batched.

    Before the folder is touched (:func:`check_before_writing`): the memory of every batch is
    estimated and compared with the free memory, and every data file is loaded and checked; a
    failure is a one-line ConfigError and nothing is written. A data file's content hash is part
    of the run id, so runs of a file that changed are re-run (with a note), never returned stale.
    """
    import jax

    configs = list(configs)
    capacity = batch_capacity(max_batch, executor)
    check_before_writing(configs, max_batch, executor, capacity)
    store = SweepStore(folder)
    store.prepare()
    ids = {run_id(c): c for c in configs}
    # Check what is there before writing anything, so that an unreadable file stops the sweep untouched.
    store.check_readable()
    previous_manifest = store.read_manifest()
    recorded = previous_manifest.get("presets") or []
    if preset and recorded and preset not in recorded:
        raise TrajlabError(
            f"--out: {str(store.folder)!r} holds the sweep of preset {recorded[-1]!r}; run {preset!r} into "
            "another folder (one folder, one preset: its figures and claims read every run in it)"
        )
    done = store.completed_run_ids()
    finished_baselines = store.completed_baseline_ids()
    owned = executor is None
    executor = InProcessExecutor() if owned else executor
    pending = [c for i, c in ids.items() if i not in done]
    # The executor orders and may split the batches for its workers (``--executor auto`` also
    # chooses here where they run: this process or worker processes).
    batches = executor.plan(group_batches(pending, max_batch, capacity))
    store.update_manifest(
        {i: to_flat(c) for i, c in ids.items()},
        presets=[preset] if preset else [],
        versions=_versions(),
        git_commit=_git_commit(),
        device=str(jax.devices()[0].device_kind),
        platform=jax.default_backend(),
        executor=executor.describe(),
        run_id_scheme=RUN_ID_SCHEME,
        **({"preset_sources": {**previous_manifest.get("preset_sources", {}), preset: preset_source}}
           if preset and preset_source else {}),
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    _note_old_ids(store, previous_manifest, set(ids), done, len(pending))
    _note_changed_data(store, previous_manifest, ids, done)
    if check_plugins:
        from trajlab.engine import check_family

        # one trace per structure: the family's own metrics; extra_metrics are traced by the workers only
        for config in {static_key(batch[0]): batch[0] for batch in batches}.values():
            check_family(config)
    jobs = [job for job in baselines if job.baseline_id not in finished_baselines]
    try:
        with SweepProgress(total=len(ids), finished=len(ids) - len(pending), enabled=show_progress) as progress:
            # The baselines (cvxpy solves, on the host) are computed in a thread beside the runs,
            # so a second core is busy while the runs' compiled loops hold the first.
            # Not with several local devices: XLA:CPU ran one device's computations at a time there.
            beside = (BackgroundJobs(jobs) if jobs and batches and BASELINES_BESIDE_RUNS
                      and jax.local_device_count() == 1 else None)
            if batches:
                executor.start()
                try:
                    _run_batches(store, batches, extra_metrics, executor, progress)
                except BaseException:
                    if beside is not None:
                        beside.abandon()
                    raise
            else:
                store.consolidate()  # batch files left by an interrupted coordinator
            for job, result in (beside.results() if beside is not None else ((job, None) for job in jobs)):
                progress.message(f"baseline {job.columns.get('baseline', '')} {job.baseline_id}")
                row = {**job.columns, "baseline_id": job.baseline_id, **(result() if result else job.compute())}
                store.append_baselines(pd.DataFrame([row]))
    finally:
        if owned:
            executor.shutdown()
    return load(folder)
