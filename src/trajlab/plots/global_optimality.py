"""Figures of "Global Optimality in Neural Network Training" (Haeffele & Vidal, CVPR 2017): the
meta-algorithm's progress (objective and polar value per outer iteration, i.e. per unit added),
against the convex bound in the matrix case, and the unregularized runs of the sweep for contrast.

The meta-algorithm rows (``meta_algorithm_matrix`` / ``meta_algorithm_relu``) store their history
as JSON (one dict per outer iteration: units, objective, zero_units, polar_ratio, sweeps).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

_CASES = (("meta_algorithm_matrix", "matrix completion (rank-one units)", "#1f77b4"),
          ("meta_algorithm_relu", "one-hidden-layer ReLU net", "#d62728"))


def _rows(baselines: pd.DataFrame | None, name: str) -> pd.DataFrame:
    if baselines is None or len(baselines) == 0 or "baseline" not in baselines.columns:
        return pd.DataFrame()
    return baselines[baselines["baseline"] == name]


def meta_algorithm_figure(baselines: pd.DataFrame) -> Figure:
    """Left: objective minus the reference value per outer iteration (log scale): for the matrix case the
    convex optimum (``nuclear_norm_regularized``; the certified dual bound dotted), for the ReLU net
    the final objective. Right: polar value / lambda per outer iteration (the point is optimal when
    <= 1; a unit is added while it is above). Marker labels: the number of units."""
    require_columns(baselines, ["baseline"], "baselines")
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    gap_ax, polar_ax = fig.subplots(1, 2)
    convex = _rows(baselines, "nuclear_norm_regularized")
    for name, title, color in _CASES:
        for _, row in _rows(baselines, name).iterrows():
            history = json.loads(row["history"])
            outer = np.arange(1, len(history) + 1)
            objective = np.array([h["objective"] for h in history], dtype=float)
            if name == "meta_algorithm_matrix" and len(convex):
                reference, label = float(convex["objective"].iloc[0]), f"{title}: |F - convex optimum|"
            else:
                reference, label = float(row["objective"]), f"{title}: F - final F"
            gap = objective - reference
            floor = max(1e-16, 1e-14 * abs(reference))
            gap_ax.plot(outer, np.maximum(np.abs(gap), floor), color=color, marker="o", label=label)
            for x, y, h in zip(outer, np.maximum(np.abs(gap), floor), history):
                gap_ax.annotate(str(h["units"]), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7,
                                color=color)
            if name == "meta_algorithm_matrix" and "dual_bound" in row and len(convex):
                gap_ax.axhline(max(reference - float(row["dual_bound"]), floor), color=color, linestyle=":",
                               linewidth=1.0, label="convex optimum - dual bound at the end")
            ratio = np.array([h["polar_ratio"] for h in history], dtype=float)
            polar_ax.plot(outer, ratio, color=color, marker="o",
                          label=f"{title} ({'certified' if bool(row['certificate']) else 'not certified'})")
    polar_ax.axhline(1.0, color="0.3", linewidth=0.8)
    gap_ax.set_yscale("log")
    gap_ax.set_title("objective gap (labels: units)", fontsize=9)
    polar_ax.set_yscale("log")
    polar_ax.set_title("polar value / lambda (<= 1: no unit lowers F)", fontsize=9)
    for ax in (gap_ax, polar_ax):
        ax.set_xlabel("outer iteration (units added)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def unregularized_runs_figure(runs: pd.DataFrame, trajectories: pd.DataFrame,
                              baselines: pd.DataFrame | None = None) -> Figure:
    """Train loss (the engine's mean squared error) of the unregularized GD runs against the step, a
    panel per problem kind; for completion the nuclear norm of W_2 W_1 against the step, with the
    regularized solutions' (meta-algorithm and convex) as horizontal lines."""
    require_columns(runs, ["run_id", "problem.kind", "model.kind"], "runs")
    require_columns(trajectories, ["run_id", "step", "train_loss"], "trajectories")
    kinds = sorted(runs["problem.kind"].unique())
    nuclear = "nuclear_norm" in trajectories.columns and (runs["problem.kind"] == "completion").any()
    panels = len(kinds) + (1 if nuclear else 0)
    fig = Figure(figsize=(4.6 * panels, 4.0), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    for ax, kind in zip(axes, kinds):
        for _, run in runs[runs["problem.kind"] == kind].iterrows():
            trajectory = by_run.get(run["run_id"])
            if trajectory is None:
                continue
            trajectory = trajectory[trajectory["step"] >= 1]
            ax.plot(trajectory["step"], trajectory["train_loss"], label=f"{run['model.kind']} (seed {run['seed']})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{kind}: unregularized GD, train loss (mean squared error)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if nuclear:
        ax = axes[-1]
        for _, run in runs[runs["problem.kind"] == "completion"].iterrows():
            trajectory = by_run.get(run["run_id"])
            if trajectory is None:
                continue
            trajectory = trajectory[trajectory["step"] >= 1]
            ax.plot(trajectory["step"], trajectory["nuclear_norm"], label="GD on W_2 W_1, no regularizer")
        for name, label, style in (("meta_algorithm_matrix", "meta-algorithm (regularized)", "--"),
                                   ("nuclear_norm_regularized", "convex optimum (regularized)", ":")):
            rows = _rows(baselines, name)
            if len(rows) and "nuclear_norm" in rows:
                ax.axhline(float(rows["nuclear_norm"].iloc[0]), color="0.3", linestyle=style, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title("nuclear norm of the matrix", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig
