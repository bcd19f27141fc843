"""Figure and table of ``edge-of-stability`` (Cohen, Kaur, Li, Kolter, Talwalkar, ICLR 2021,
"Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability").

Full-batch GD with step size eta is stable on a quadratic only while its curvature is below 2/eta.
Along GD on a network the sharpness (top Hessian eigenvalue of the train loss) first rises
("progressive sharpening") until it reaches 2/eta, then hovers there ("edge of stability") while
the loss keeps falling over long times but not monotonically.

Pure functions of the stored tables (``runs``; ``trajectories`` with ``step``, ``sharpness``,
``train_loss``), built with ``Figure()``, never pyplot.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

__all__ = ["ONSET", "edge_figure", "stability_table"]

#: The edge-of-stability phase of a run starts at the first record with sharpness >= ONSET x 2/eta.
ONSET = 0.9


def _settings(runs: pd.DataFrame) -> list[str]:
    """Config columns other than the step size that vary between runs (e.g. the seed)."""
    prefixes = ("problem.", "model.", "optimizer.", "train.", "flow.")
    return [
        c for c in runs.columns
        if (c.startswith(prefixes) or c == "seed") and c != "optimizer.lr" and runs[c].astype(str).nunique() > 1
    ]


def stability_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per run, indexed by the varying settings and ``eta``.

    Columns: ``2/eta``; ``initial`` = sharpness at step 0 over 2/eta; ``onset step``: first recorded
    step with sharpness >= 0.9 x 2/eta (NaN if never); over the records from the onset on, the
    ``median`` and ``max`` of sharpness / (2/eta) and its ``90%`` quantile (NaN without onset);
    ``peak``: its max over the whole run; ``late median``: its median over the last quarter of the
    records; ``loss increases``: how many consecutive records have a higher
    train loss than the previous one, from the onset on (over the whole run without onset);
    ``loss at onset`` (step 0 without onset), ``initial loss``, ``final loss``; ``status``.
    """
    require_columns(runs, ["run_id", "optimizer.lr", "status"], "runs")
    require_columns(trajectories, ["run_id", "step", "sharpness", "train_loss"], "trajectories")
    by_run = {rid: frame.sort_values("step") for rid, frame in trajectories.groupby("run_id", sort=False)}
    keys = _settings(runs)
    rows = []
    for _, run in runs.iterrows():
        trajectory = by_run.get(run["run_id"])
        if trajectory is None or len(trajectory) == 0:
            continue
        eta = float(run["optimizer.lr"])
        edge = 2.0 / eta
        ratio = trajectory["sharpness"].to_numpy(dtype=float) / edge
        loss = trajectory["train_loss"].to_numpy(dtype=float)
        steps = trajectory["step"].to_numpy()
        reached = np.flatnonzero(ratio >= ONSET)
        start = int(reached[0]) if reached.size else 0
        after = ratio[start:]
        rows.append({
            **{k: run[k] for k in keys},
            "eta": eta,
            "2/eta": edge,
            "initial": float(ratio[0]),
            "peak": float(np.nanmax(ratio)),
            "onset step": float(steps[start]) if reached.size else math.nan,
            "median": float(np.nanmedian(after)) if reached.size else math.nan,
            "90%": float(np.nanquantile(after, 0.9)) if reached.size else math.nan,
            "max": float(np.nanmax(after)) if reached.size else math.nan,
            "late median": float(np.nanmedian(ratio[(3 * len(ratio)) // 4 :])),
            "loss increases": int(np.sum(np.diff(loss[start:]) > 0)),
            "records": int(len(loss) - start - 1),
            "initial loss": float(loss[0]),
            "loss at onset": float(loss[start]),
            "final loss": float(loss[-1]),
            "status": run["status"],
        })
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    index = keys + ["eta"]
    return table.sort_values(index, ascending=[True] * len(keys) + [False]).set_index(index)


def edge_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Top: sharpness against step, a colour per step size, with its 2/eta as a dashed line of the
    same colour. Bottom: train loss against step (log scale). One column per setting (e.g. seed)."""
    require_columns(runs, ["run_id", "optimizer.lr"], "runs")
    require_columns(trajectories, ["run_id", "step", "sharpness", "train_loss"], "trajectories")
    from matplotlib import colormaps

    by_run = {rid: frame.sort_values("step") for rid, frame in trajectories.groupby("run_id", sort=False)}
    keys = _settings(runs)
    groups = list(runs.groupby(keys, sort=True)) if keys else [("", runs)]
    etas = sorted({float(v) for v in runs["optimizer.lr"]}, reverse=True)
    colors = {eta: colormaps["plasma"](0.85 * i / max(1, len(etas) - 1)) for i, eta in enumerate(etas)}
    fig = Figure(figsize=(5.5 * len(groups), 6.4), layout="constrained")
    axes = fig.subplots(2, len(groups), squeeze=False, sharex="col")
    for col, (key, block) in enumerate(groups):
        top, bottom = axes[0, col], axes[1, col]
        highest = 0.0
        for _, run in block.sort_values("optimizer.lr", ascending=False).iterrows():
            trajectory = by_run.get(run["run_id"])
            if trajectory is None:
                continue
            eta = float(run["optimizer.lr"])
            color = colors[eta]
            steps = trajectory["step"].to_numpy()
            sharpness = trajectory["sharpness"].to_numpy(dtype=float)
            top.plot(steps, sharpness, color=color, linewidth=1.2, label=f"eta = {eta:g}")
            top.axhline(2.0 / eta, color=color, linestyle="--", linewidth=1.0)
            highest = max(highest, float(np.nanmax(sharpness)), 2.0 / eta)
            bottom.plot(steps, trajectory["train_loss"].to_numpy(dtype=float), color=color, linewidth=1.0)
        top.set_ylim(0, 1.1 * highest if highest > 0 else 1)
        top.set_ylabel("sharpness (dashed: 2 / eta)")
        if keys:
            values = key if isinstance(key, tuple) else (key,)
            top.set_title(", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in zip(keys, values)), fontsize=10)
        bottom.set_yscale("log")
        bottom.set_ylabel("train loss")
        bottom.set_xlabel("step")
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
        top.legend(fontsize=8, loc="upper right")
    return fig
