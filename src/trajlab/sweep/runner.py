"""Run a list of configs into a sweep folder: skip finished runs, batch the rest, store each batch."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from trajlab.config import RunConfig, run_id, to_flat
from trajlab.sweep.grid import group_batches
from trajlab.sweep.progress import SweepProgress
from trajlab.store import SweepData, SweepStore, load

PACKAGES = ("trajlab", "jax", "jaxlib", "optax", "diffrax", "numpy", "scipy", "cvxpy", "scs", "pandas", "pyarrow")


@dataclass(frozen=True)
class BaselineJob:
    """A non-trajectory reference to compute once per sweep folder: ``compute() -> {column: value}``."""

    baseline_id: str
    columns: dict[str, Any]  # identifying columns (problem fields, baseline name)
    compute: Callable[[], dict[str, Any]]


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


def flat_row(config: RunConfig) -> dict[str, Any]:
    """Config fields by dotted name, list values joined by commas (parquet-friendly)."""
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in to_flat(config).items()}


def _run_one_batch(batch: list[RunConfig], extra_metrics, progress: SweepProgress):
    from trajlab.engine import run_configs

    result = run_configs(batch, extra_metrics, progress=progress.batch_update)
    ids = [run_id(c) for c in batch]
    runs = pd.DataFrame([flat_row(c) for c in batch])
    runs["run_id"] = ids
    runs["status"] = result.status
    runs["steps"] = result.steps
    runs["wall_s"] = result.wall_s
    runs["gradient_evaluations"] = result.gradient_evaluations
    for name, values in result.final.items():
        runs[f"final.{name}"] = values
    traj = result.trajectory
    index = traj.pop("run")
    lrs = np.array([c.optimizer.lr for c in batch])
    trajectories = pd.DataFrame({"run_id": np.asarray(ids)[index], "step": traj.pop("step").astype(np.int64)})
    trajectories["t"] = trajectories["step"].to_numpy() * lrs[index]
    for name, values in traj.items():
        trajectories[name] = values
    return runs, trajectories


def run_sweep(
    configs: list[RunConfig],
    folder: str | Path,
    *,
    preset: str | None = None,
    baselines: list[BaselineJob] = (),
    extra_metrics: dict | None = None,
    max_batch: int = 512,
    show_progress: bool = True,
) -> SweepData:
    """Run every config not yet finished in ``folder``; store after each batch; return :func:`load`.

    Resuming is by run id (the hash of the whole config): re-running the same command skips the
    runs already in ``runs.parquet``, and the baselines already in ``baselines.parquet``.
    """
    import jax

    store = SweepStore(folder)
    store.prepare()
    ids = {run_id(c): c for c in configs}
    # Check what is there before writing anything, so that an unreadable file stops the sweep untouched.
    store.check_readable()
    done = store.completed_run_ids()
    finished_baselines = store.completed_baseline_ids()
    store.update_manifest(
        {i: to_flat(c) for i, c in ids.items()},
        presets=[preset] if preset else [],
        versions=_versions(),
        git_commit=_git_commit(),
        device=str(jax.devices()[0].device_kind),
        platform=jax.default_backend(),
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    pending = [c for i, c in ids.items() if i not in done]
    batches = group_batches(pending, max_batch)
    with SweepProgress(total=len(ids), finished=len(ids) - len(pending), enabled=show_progress) as progress:
        for batch in batches:
            progress.start_batch(len(batch))
            runs, trajectories = _run_one_batch(batch, extra_metrics, progress)
            store.append_runs(runs, trajectories)
            progress.end_batch(len(batch))
        for job in baselines:
            if job.baseline_id in finished_baselines:
                continue
            progress.message(f"baseline {job.columns.get('baseline', '')} {job.baseline_id}")
            row = {**job.columns, "baseline_id": job.baseline_id, **job.compute()}
            store.append_baselines(pd.DataFrame([row]))
    return load(folder)
