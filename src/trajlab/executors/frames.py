"""One batch's results as the two tables a sweep folder stores (runs, trajectories)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trajlab.config import RunConfig, run_id, to_flat


def flat_row(config: RunConfig) -> dict[str, Any]:
    """Config fields by dotted name, list values joined by commas (parquet-friendly)."""
    return {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in to_flat(config).items()}


def batch_frames(batch: list[RunConfig], extra_metrics: dict | None = None, progress=None):
    """Run one batch (equal static structure) and return its (runs, trajectories) tables.

    ``progress``: None or a callable receiving the engine's per-recording-point dict.
    """
    from trajlab.engine import run_configs

    result = run_configs(batch, extra_metrics, progress=progress)
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
