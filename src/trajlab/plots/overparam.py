"""Figure of the over-parameterization experiment of Livni, Shalev-Shwartz, Shamir ("On the
Computational Efficiency of Training Neural Networks", NeurIPS 2014) as shown by Jason Lee: SGD
training loss of two-layer ReLU students of two widths on the data of a teacher network."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")


def student_loss_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Train loss (mean squared error) against the SGD step (log-log), a thin line per seed and a
    thick line for the median over seeds of each student width (``model.width``); right: the same
    for the held-out loss when the sweep has a test split."""
    require_columns(runs, ["run_id", "model.width", "seed"], "runs")
    require_columns(trajectories, ["run_id", "step", "train_loss"], "trajectories")
    test = "test_loss" in trajectories.columns and trajectories["test_loss"].notna().any()
    fig = Figure(figsize=(11.0 if test else 6.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if test else 1, squeeze=False)[0]
    columns = [("train_loss", "train loss")] + ([("test_loss", "test loss")] if test else [])
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    teacher = f" (teacher width {runs['problem.teacher_width'].iloc[0]})" if "problem.teacher_width" in runs else ""
    for color, (width, block) in zip(_COLORS * 4, runs.groupby("model.width", sort=True)):
        for ax, (column, title) in zip(axes, columns):
            curves = []
            for run_id in block["run_id"]:
                trajectory = by_run.get(run_id)
                if trajectory is None:
                    continue
                trajectory = trajectory[trajectory["step"] >= 1]
                ax.plot(trajectory["step"], trajectory[column], color=color, alpha=0.35, linewidth=0.8)
                curves.append(trajectory.set_index("step")[column])
            if curves:
                median = pd.concat(curves, axis=1).median(axis=1, skipna=True)
                ax.plot(median.index, median.to_numpy(), color=color, linewidth=2.2,
                        label=f"student width {width} (median of {len(curves)} seeds)")
            ax.set_title(title + teacher, fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def final_loss_figure(runs: pd.DataFrame) -> Figure:
    """Final train loss of every seed (dots) and the median (bar) per student width, log scale."""
    require_columns(runs, ["model.width", "final.train_loss"], "runs")
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax = fig.subplots()
    widths = sorted(runs["model.width"].unique())
    for position, (color, width) in enumerate(zip(_COLORS * 4, widths)):
        values = runs.loc[runs["model.width"] == width, "final.train_loss"].astype(float).to_numpy()
        ax.scatter(np.full(values.size, position), values, color=color, zorder=3)
        ax.hlines(np.median(values), position - 0.3, position + 0.3, color=color, linewidth=2.5)
    ax.set_xticks(range(len(widths)), [f"width {w}" for w in widths])
    ax.set_yscale("log")
    ax.set_ylabel("final train loss")
    ax.grid(True, axis="y", alpha=0.3)
    return fig
