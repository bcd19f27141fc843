"""Figures and tables of the tensor factorization presets (Razin, Maman, Cohen, ICML 2021 and 2022).

* :func:`component_norms_figure` - the top CP component norms against the step, a panel per init
  scale (Razin et al. 2021, Figure 2): under small init the components are learned one after another.
* :func:`local_component_norms_figure` - the top local component norms of a hierarchical
  factorization against the step, a panel per internal node of the mode tree, a row per init scale
  (Razin et al. 2022, the same figure for local components).
* :func:`reconstruction_figure` - the reconstruction error against the step, a line per run
  (hierarchical, CP and matrix factorization side by side on the same data).
* :func:`final_values_table` - one row per run: model, init, status, steps, final train loss,
  reconstruction error ||W - W*||_F / ||W*||_F (not squared; for matrix factorization runs the
  square root of the stored ``test_error``, which is squared) and the estimated CP rank;
  :func:`table_figure` draws such a table.

Pure functions: DataFrame in, DataFrame or :class:`matplotlib.figure.Figure` out; nothing is
recomputed, every number is a stored column.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

__all__ = [
    "component_norms_figure",
    "final_values_table",
    "local_component_norms_figure",
    "model_label",
    "reconstruction_error_of",
    "reconstruction_figure",
    "table_figure",
]

_LOCAL = re.compile(r"^local_l(\d+)_n(\d+)_(\d+)$")
_COMPONENT = re.compile(r"^comp_(\d+)$")


def model_label(run: pd.Series) -> str:
    """'hierarchical', 'CP' or 'matrix depth N' (a ``runs`` row)."""
    kind = run.get("model.kind", "deep_linear")
    if kind == "hierarchical":
        return "hierarchical"
    if kind == "cp":
        return "CP"
    depth = run.get("model.depth")
    return f"matrix depth {int(depth)}" if depth is not None and not pd.isna(depth) else "matrix"


def reconstruction_error_of(runs: pd.DataFrame, prefix: str = "final.") -> pd.Series:
    """||W - W*||_F / ||W*||_F of each run: ``reconstruction_error`` for tensor runs, the square root
    of ``test_error`` (||W - W*||_F^2 / ||W*||_F^2 of the matricized tensor) for matrix runs."""
    out = pd.Series(np.nan, index=runs.index, dtype=float)
    if f"{prefix}reconstruction_error" in runs.columns:
        out = pd.to_numeric(runs[f"{prefix}reconstruction_error"], errors="coerce").astype(float)
    if f"{prefix}test_error" in runs.columns:
        matrix = np.sqrt(pd.to_numeric(runs[f"{prefix}test_error"], errors="coerce").astype(float))
        out = out.where(out.notna(), matrix)
    return out


def final_values_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run, sorted by model and init scale: ``model``, ``init``, ``status``,
    ``steps``, ``train_loss``, ``reconstruction_error`` (not squared, see module docstring) and
    ``cp_rank_estimate`` (when recorded; r + 1 beyond the largest rank tried means "more than r")."""
    require_columns(runs, ["run_id", "status", "steps", "model.scale"], "runs")
    table = pd.DataFrame(index=runs.index)
    table["model"] = runs.apply(model_label, axis=1)
    table["init"] = runs["model.init"] if "model.init" in runs.columns else ""
    table["scale"] = runs["model.scale"].astype(float)
    if "seed" in runs.columns:
        table["seed"] = runs["seed"]
    table["status"] = runs["status"]
    table["steps"] = runs["steps"].astype("Int64")
    if "final.train_loss" in runs.columns:
        table["train_loss"] = pd.to_numeric(runs["final.train_loss"], errors="coerce").astype(float)
    table["reconstruction_error"] = reconstruction_error_of(runs)
    if "final.cp_rank_estimate" in runs.columns:
        table["cp_rank_estimate"] = pd.to_numeric(runs["final.cp_rank_estimate"], errors="coerce").astype(float)
    table["run_id"] = runs["run_id"]
    order = {"hierarchical": 0, "CP": 1}
    table["_order"] = table["model"].map(lambda m: order.get(m, 2))
    table = table.sort_values(["_order", "model", "scale", "run_id"], ascending=[True, True, False, True])
    return table.drop(columns="_order").reset_index(drop=True)


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        if float(value).is_integer() and abs(value) < 1e4:
            return f"{int(value)}"
        return f"{value:.3g}"
    return str(value)


def table_figure(table: pd.DataFrame, title: str = "final values") -> Figure:
    """A DataFrame drawn as a matplotlib table (numbers to 3 significant digits)."""
    columns = [c for c in table.columns if c != "run_id"]
    cells = [[_fmt(v) for v in row] for row in table[columns].itertuples(index=False)]
    fig = Figure(figsize=(1.05 * len(columns) + 0.5, 0.32 * (len(cells) + 2) + 0.4), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    if cells:
        drawn = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="center")
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(8)
        drawn.scale(1.0, 1.2)
    ax.set_title(title, fontsize=10)
    return fig


def _by_run(trajectories: pd.DataFrame) -> dict:
    return {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id", sort=False)}


def _ranked_columns(columns, pattern: re.Pattern, **fixed) -> list[str]:
    """Columns matching ``pattern`` (last group = rank i), sorted by i, the other groups fixed."""
    out = []
    for column in columns:
        match = pattern.match(column)
        if match is None:
            continue
        groups = [int(g) for g in match.groups()]
        if fixed and tuple(groups[:-1]) != tuple(fixed.values()):
            continue
        out.append((groups[-1], column))
    return [c for _, c in sorted(out)]


def _lines(ax, steps, trajectory, columns, cmap="viridis"):
    colors = colormaps[cmap](np.linspace(0.0, 0.85, max(len(columns), 1)))
    for color, column in zip(colors, columns):
        values = trajectory[column].to_numpy(dtype=float)
        ax.plot(steps, values, color=color, linewidth=1.3)


def component_norms_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Top CP component norms (``comp_i``, i-th largest at each step) against the step, a panel per
    CP run (one per init scale and seed), largest init first; titles give the final estimated CP
    rank and reconstruction error. Razin et al. 2021: from small init the norms rise one at a time."""
    require_columns(runs, ["run_id", "model.scale"], "runs")
    require_columns(trajectories, ["run_id", "step"], "trajectories")
    selected = runs[runs["model.kind"] == "cp"] if "model.kind" in runs.columns else runs
    selected = selected.sort_values(["model.scale", "run_id"], ascending=[False, True])
    columns = _ranked_columns(trajectories.columns, _COMPONENT)
    count = max(len(selected), 1)
    fig = Figure(figsize=(3.8 * count, 3.2), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    by_run = _by_run(trajectories)
    errors = reconstruction_error_of(selected)
    for ax, (index, run) in zip(axes, selected.iterrows()):
        trajectory = by_run.get(run["run_id"])
        if trajectory is None:
            continue
        present = [c for c in columns if trajectory[c].notna().any()]
        _lines(ax, trajectory["step"].to_numpy(), trajectory, present)
        rank = run.get("final.cp_rank_estimate", math.nan)
        ax.set_title(
            f"init std {run['model.scale']:g}: rank est. {_fmt(float(rank))}, rec. err {_fmt(float(errors[index]))}",
            fontsize=9,
        )
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("top component norms")
    return fig


def local_component_norms_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Top local component norms (``local_l{l}_n{n}_i``) against the step: a row per hierarchical
    run (largest init first), a column per internal node of the mode tree (level l >= 1, node n;
    "one child" marks the one-child nodes of odd orders). Razin et al. 2022: local components are
    learned one after another, as CP components are."""
    require_columns(runs, ["run_id", "model.scale"], "runs")
    require_columns(trajectories, ["run_id", "step"], "trajectories")
    selected = runs[runs["model.kind"] == "hierarchical"] if "model.kind" in runs.columns else runs
    selected = selected.sort_values(["model.scale", "run_id"], ascending=[False, True])
    nodes = sorted({tuple(int(g) for g in m.groups()[:2]) for c in trajectories.columns if (m := _LOCAL.match(c))})
    rows, cols = max(len(selected), 1), max(len(nodes), 1)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    by_run = _by_run(trajectories)
    for row, (_, run) in enumerate(selected.iterrows()):
        trajectory = by_run.get(run["run_id"])
        if trajectory is None:
            continue
        order = int(run.get("problem.order", 0) or 0)
        for col, (level, node) in enumerate(nodes):
            ax = axes[row, col]
            columns = [c for c in _ranked_columns(trajectory.columns, _LOCAL, level=level, node=node)
                       if trajectory[c].notna().any()]
            _lines(ax, trajectory["step"].to_numpy(), trajectory, columns, cmap="summer")
            one_child = order > 0 and _one_child(order, level, node)
            ax.set_title(
                f"level {level} node {node}{' (one child)' if one_child else ''}, init std {run['model.scale']:g}",
                fontsize=9,
            )
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
        axes[row, 0].set_ylabel("local component norms")
    return fig


def _one_child(order: int, level: int, node: int) -> bool:
    """Whether node ``node`` of ``level`` has one child in the mode tree of trajlab.models.tensor."""
    size = order
    for _ in range(level - 1):
        size = (size + 1) // 2
    return 2 * node + 1 >= size


def reconstruction_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Reconstruction error ||W - W*||_F / ||W*||_F (square root of ``test_error`` for matrix
    runs) and train loss against the step, a line per run labelled by model and init scale."""
    require_columns(runs, ["run_id", "model.scale"], "runs")
    require_columns(trajectories, ["run_id", "step"], "trajectories")
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    error_ax, loss_ax = fig.subplots(1, 2)
    by_run = _by_run(trajectories)
    palette = {"hierarchical": "#2ca02c", "CP": "#1f77b4"}
    styles = ["-", "--", ":", "-."]
    seen: dict[str, int] = {}
    for _, run in runs.sort_values(["model.scale", "run_id"], ascending=[False, True]).iterrows():
        trajectory = by_run.get(run["run_id"])
        if trajectory is None:
            continue
        label = model_label(run)
        style = styles[seen.get(label, 0) % len(styles)]
        seen[label] = seen.get(label, 0) + 1
        steps = trajectory["step"].to_numpy()
        if "reconstruction_error" in trajectory and trajectory["reconstruction_error"].notna().any():
            error = trajectory["reconstruction_error"].to_numpy(dtype=float)
        elif "test_error" in trajectory:
            error = np.sqrt(trajectory["test_error"].to_numpy(dtype=float))
        else:
            continue
        color = palette.get(label, "#d62728")
        name = f"{label}, init {run['model.scale']:g}"
        error_ax.plot(steps, error, color=color, linestyle=style, label=name)
        if "train_loss" in trajectory:
            loss_ax.plot(steps, trajectory["train_loss"].to_numpy(dtype=float), color=color, linestyle=style, label=name)
    error_ax.set_ylabel("||W - W*|| / ||W*||")
    loss_ax.set_ylabel("train loss (mean squared error)")
    for ax in (error_ax, loss_ax):
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    error_ax.legend(fontsize=7)
    return fig
