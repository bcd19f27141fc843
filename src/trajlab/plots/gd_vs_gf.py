"""Figures and the table of ``gd-vs-gf`` (Elkabetz & Cohen, NeurIPS 2021, "Continuous vs. Discrete
Optimization of Deep Neural Networks"): how far gradient descent with step size eta is from the
gradient flow of the same init, at equal time t = step x eta.

Pure functions of the stored tables (``runs``, ``trajectories``; columns ``t``, ``distance_to_flow``,
``distance_from_init``, ``sharpness``, ``train_loss``), built with ``Figure()``, never pyplot.
Runs are grouped into *settings* (everything that varies between runs except the step size and what
follows from it: ``optimizer.lr``, ``optimizer.name``, ``train.max_steps``, ``train.record_every``);
inside a setting, the gradient-flow run (``optimizer.name = gradient_flow``), when there is one,
gives the distance the flow travels from the init, ||theta_GF(t) - theta(0)||.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

__all__ = ["distance_figure", "distance_table", "scaling_figure", "settings", "step_size_slopes"]

#: ``max relative`` looks at t >= this fraction of T: over the first steps the ratio is about
#: eta x lambda / 2 whatever eta (one step's local error over one step's length), not small.
_EARLY = 0.1
#: Config columns that follow from the step size (excluded from the setting of a run).
STEP_COLUMNS = ("optimizer.lr", "optimizer.name", "train.max_steps", "train.record_every")
_CONFIG_PREFIXES = ("problem.", "model.", "optimizer.", "train.", "flow.")


def settings(runs: pd.DataFrame) -> list[str]:
    """The config columns (and ``seed``) that vary between runs, except :data:`STEP_COLUMNS`."""
    columns = [c for c in runs.columns if c.startswith(_CONFIG_PREFIXES) or c == "seed"]
    return [
        c for c in columns
        if c not in STEP_COLUMNS and runs[c].astype(str).nunique(dropna=False) > 1
    ]


def _label(values: dict) -> str:
    if not values:
        return "all runs"
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {v}" for k, v in values.items())


def _groups(runs: pd.DataFrame):
    """[(label, {column: value}, runs of the setting)] in a stable order."""
    keys = settings(runs)
    if not keys:
        return [(_label({}), {}, runs)]
    out = []
    for values, block in runs.groupby(keys, sort=True):
        values = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        out.append((_label(values), values, block))
    return out


def _by_run(trajectories: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {rid: frame.sort_values("t") for rid, frame in trajectories.groupby("run_id", sort=False)}


def _at(trajectory: pd.DataFrame, column: str, t: float) -> float:
    """The value recorded at the largest recorded t <= t (relative slack 1e-9; NaN if none)."""
    times = trajectory["t"].to_numpy(dtype=float)
    index = np.flatnonzero(times <= t * (1 + 1e-9) + 1e-12)
    return float(trajectory[column].to_numpy(dtype=float)[index[-1]]) if index.size else math.nan


def _is_flow(run: pd.Series) -> bool:
    return str(run.get("optimizer.name", "gd")) == "gradient_flow"


def distance_table(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per gradient-descent run, at the last time T that every run of its setting reached.

    Index: the setting columns and ``eta``. Columns: ``T``; ``distance to flow`` =
    ||theta_GD(T) - theta_GF(T)|| (metric ``distance_to_flow``); ``travelled`` = the flow's
    ||theta_GF(T) - theta(0)|| (its own ``distance_from_init``; the GD run's when the setting has no
    flow run); ``relative`` = their ratio; ``max eta x sharpness`` over the recorded t (a GD step is
    stable on a quadratic while this is < 2); ``max relative`` = max over recorded t in [T/10, T] of
    distance to flow / travelled at t; the final ``train loss``; the run's ``status``.
    """
    require_columns(runs, ["run_id", "optimizer.lr", "status"], "runs")
    require_columns(trajectories, ["run_id", "t", "distance_to_flow", "distance_from_init", "train_loss"], "trajectories")
    by_run = _by_run(trajectories)
    rows = []
    for _, values, block in _groups(runs):
        present = block[block["run_id"].isin(by_run)]
        if len(present) == 0:
            continue
        horizon = min(float(by_run[rid]["t"].max()) for rid in present["run_id"])
        flows = [by_run[run["run_id"]] for _, run in present.iterrows() if _is_flow(run)]
        flow = flows[0] if flows else None
        for _, run in present.iterrows():
            if _is_flow(run):
                continue
            trajectory = by_run[run["run_id"]]
            reference = flow if flow is not None else trajectory
            distance = _at(trajectory, "distance_to_flow", horizon)
            travelled = _at(reference, "distance_from_init", horizon)
            eta = float(run["optimizer.lr"])
            ratios = []
            for t, d in zip(trajectory["t"].to_numpy(dtype=float), trajectory["distance_to_flow"].to_numpy(dtype=float)):
                if _EARLY * horizon <= t <= horizon * (1 + 1e-9):
                    travelled_t = _at(reference, "distance_from_init", t)
                    ratios.append(d / travelled_t if travelled_t > 0 else math.nan)
            sharpness = trajectory["sharpness"].to_numpy(dtype=float) if "sharpness" in trajectory else np.array([np.nan])
            rows.append({
                **values,
                "eta": eta,
                "T": horizon,
                "distance to flow": distance,
                "travelled": travelled,
                "relative": distance / travelled if travelled > 0 else math.nan,
                "max relative": float(np.nanmax(ratios)) if ratios and not np.all(np.isnan(ratios)) else math.nan,
                "max eta x sharpness": float(eta * np.nanmax(sharpness)) if np.isfinite(sharpness).any() else math.nan,
                "train loss": _at(trajectory, "train_loss", horizon),
                "status": run["status"],
            })
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    index = [c for c in table.columns if c in settings(runs)] + ["eta"]
    return table.sort_values(index, ascending=[True] * (len(index) - 1) + [False]).set_index(index)


def step_size_slopes(table: pd.DataFrame) -> pd.Series:
    """Per setting, the least-squares slope of log(distance to flow at T) against log(eta): 1 when the
    distance is proportional to eta (GD's global error is first order), NaN with fewer than two step
    sizes or a non-positive distance."""
    if len(table) == 0:
        return pd.Series(dtype=float)
    levels = [n for n in table.index.names if n != "eta"]
    frame = table.reset_index()
    groups = frame.groupby(levels, sort=True) if levels else [("all runs", frame)]
    slopes = {}
    for key, block in groups:
        eta = block["eta"].to_numpy(dtype=float)
        distance = block["distance to flow"].to_numpy(dtype=float)
        keep = (eta > 0) & (distance > 0) & np.isfinite(distance)
        slopes[key] = float(np.polyfit(np.log(eta[keep]), np.log(distance[keep]), 1)[0]) if keep.sum() >= 2 else math.nan
    return pd.Series(slopes, name="slope")


def _colors(etas):
    from matplotlib import colormaps

    ordered = sorted(set(etas), reverse=True)
    cmap = colormaps["viridis"]
    return {eta: cmap(0.9 * i / max(1, len(ordered) - 1)) for i, eta in enumerate(ordered)}


def distance_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """A column per setting (e.g. linear and ReLU); rows: the distance ||theta_GD(t) - theta_GF(t)||
    per step size (log scale) beside the distance the flow travels from the init (black, dashed; grey:
    the smallest step's GD run when the setting has no flow run);
    the sharpness (top Hessian eigenvalue) along GD and along the flow (black); the train loss."""
    require_columns(runs, ["run_id", "optimizer.lr"], "runs")
    require_columns(trajectories, ["run_id", "t", "distance_to_flow", "distance_from_init", "train_loss"], "trajectories")
    by_run = _by_run(trajectories)
    groups = [g for g in _groups(runs) if g[2]["run_id"].isin(by_run).any()]
    colors = _colors([float(v) for v in runs["optimizer.lr"]])
    has_sharpness = "sharpness" in trajectories.columns
    rows = 3 if has_sharpness else 2
    fig = Figure(figsize=(4.2 * max(1, len(groups)), 2.8 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, max(1, len(groups)), squeeze=False, sharex="col")
    for col, (label, _, block) in enumerate(groups):
        ax_distance, ax_loss = axes[0, col], axes[-1, col]
        ax_sharpness = axes[1, col] if has_sharpness else None
        for _, run in block.sort_values("optimizer.lr", ascending=False).iterrows():
            trajectory = by_run.get(run["run_id"])
            if trajectory is None:
                continue
            t = trajectory["t"].to_numpy(dtype=float)
            if _is_flow(run):
                style = dict(color="black", linewidth=1.6, zorder=3)
                travelled = trajectory["distance_from_init"].to_numpy(dtype=float)
                ax_distance.plot(t[t > 0], travelled[t > 0], linestyle="--", label="flow: distance from init", **style)
                name = "gradient flow"
            else:
                eta = float(run["optimizer.lr"])
                style = dict(color=colors[eta], linewidth=1.3)
                distance = trajectory["distance_to_flow"].to_numpy(dtype=float)
                ax_distance.plot(t[t > 0], distance[t > 0], label=f"GD eta = {eta:g}", **style)
                name = f"GD eta = {eta:g}"
            if ax_sharpness is not None:
                ax_sharpness.plot(t, trajectory["sharpness"].to_numpy(dtype=float), label=name, **style)
            ax_loss.plot(t, trajectory["train_loss"].to_numpy(dtype=float), label=name, **style)
        if not any(_is_flow(run) for _, run in block.iterrows()):
            # No flow run: the smallest step's GD run stands in for the distance the flow travels.
            smallest = block.loc[block["optimizer.lr"].astype(float).idxmin()]
            trajectory = by_run.get(smallest["run_id"])
            if trajectory is not None:
                t = trajectory["t"].to_numpy(dtype=float)
                travelled = trajectory["distance_from_init"].to_numpy(dtype=float)
                ax_distance.plot(t[t > 0], travelled[t > 0], color="grey", linestyle="--", linewidth=1.4,
                                 label="GD, smallest eta: distance from init")
        ax_distance.set_yscale("log")
        ax_distance.set_title(label, fontsize=10)
        ax_distance.set_ylabel("||theta_GD(t) - theta_GF(t)||")
        if ax_sharpness is not None:
            ax_sharpness.set_ylabel("sharpness (top Hessian eigenvalue)")
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("train loss")
        ax_loss.set_xlabel("t = step x eta")
        for ax in axes[:, col]:
            ax.grid(True, alpha=0.3)
    handles, labels = [], []
    for ax in axes.ravel():
        for handle, text in zip(*ax.get_legend_handles_labels()):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
    if handles:
        columns = min(len(labels), 2 * max(1, len(groups)))
        fig.legend(handles, labels, loc="outside lower center", ncols=columns, frameon=False, fontsize=8)
    return fig


def scaling_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Distance to the flow at the common final time T against eta (log-log), a line per setting,
    with a slope-1 guide through the smallest step size (first-order convergence of GD to GF)."""
    table = distance_table(runs, trajectories)
    fig = Figure(figsize=(5.0, 3.8), layout="constrained")
    ax = fig.subplots()
    if len(table) == 0:
        ax.set_title("no gradient-descent runs")
        return fig
    slopes = step_size_slopes(table)
    levels = [n for n in table.index.names if n != "eta"]
    frame = table.reset_index()
    groups = frame.groupby(levels, sort=True) if levels else [("all runs", frame)]
    for key, block in groups:
        block = block.sort_values("eta")
        name = key if isinstance(key, str) else _label(dict(zip(levels, key if isinstance(key, tuple) else (key,))))
        slope = slopes.get(key, math.nan)
        line, = ax.plot(block["eta"], block["distance to flow"], marker="o", label=f"{name} (slope {slope:.2f})")
        eta, distance = block["eta"].to_numpy(dtype=float), block["distance to flow"].to_numpy(dtype=float)
        if len(eta) >= 2 and distance[0] > 0:
            ax.plot(eta, distance[0] * eta / eta[0], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size eta")
    ax.set_ylabel(f"||theta_GD(T) - theta_GF(T)||, T = {table['T'].max():g}")
    ax.set_title("distance to gradient flow vs step size (dotted: proportional to eta)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
