"""Figures of "The Implicit Bias of Gradient Descent on Separable Data" (Soudry, Hoffer, Nacson,
Gunasekar, Srebro, JMLR 2018, Fig. 1), and the fits of the angle's decay they are read with.

The x-axis is the iteration count (``step``), as in the paper; GD and GD with momentum at different
step sizes share it. Every curve is drawn from the stored trajectories (``angle_to_max_margin``,
``normalized_margin``, ``train_loss``, ``parameter_norm``) and the stored hard-margin SVM baseline
(``max_margin_svm``: its ``margin`` = 1 / ||w_svm||); nothing is recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.report.columns import require_columns

__all__ = ["AngleDecayFit", "angle_decay_fit", "angle_fit_figure", "max_margin_figure", "run_label", "tail"]


@dataclass(frozen=True)
class AngleDecayFit:
    """Two fits of the angle theta(t) (radians) on a tail of iterations t.

    inverse_log: theta ~ c / log t, least squares through the origin in the variable 1 / log t;
    ``r2`` is its coefficient of determination (1 - residual sum of squares / total sum of squares
    about the mean of theta) and ``relative_rms`` the root mean square of (fit - theta) / theta.
    power: log theta ~ log C - p log t (ordinary least squares), ``p`` and ``power_r2``.
    ``start`` / ``end``: the first and last iteration of the tail, ``points`` how many records.
    """

    c: float
    r2: float
    relative_rms: float
    p: float
    power_r2: float
    start: int
    end: int
    points: int


def tail(steps: np.ndarray, values: np.ndarray, decades: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The records with step >= last step / 10^decades (and step >= 2, so that log t > 0)."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = (steps >= max(2.0, steps.max() / 10.0**decades)) & np.isfinite(values) & (values > 0)
    return steps[keep], values[keep]


def angle_decay_fit(steps, angle, decades: float = 2.0) -> AngleDecayFit:
    """Fit theta ~ c / log t and theta ~ C t^-p on the last ``decades`` decades of iterations."""
    t, theta = tail(steps, angle, decades)
    if t.size < 3:
        raise ValueError(f"angle_decay_fit: {t.size} records on the tail, need 3 or more")
    x = 1.0 / np.log(t)
    c = float(np.dot(x, theta) / np.dot(x, x))
    fitted = c * x
    total = float(np.sum((theta - theta.mean()) ** 2))
    r2 = 1.0 - float(np.sum((theta - fitted) ** 2)) / total if total > 0 else math.nan
    relative_rms = float(np.sqrt(np.mean(((fitted - theta) / theta) ** 2)))
    slope, intercept = np.polyfit(np.log(t), np.log(theta), 1)
    residual = np.log(theta) - (slope * np.log(t) + intercept)
    log_total = float(np.sum((np.log(theta) - np.log(theta).mean()) ** 2))
    power_r2 = 1.0 - float(np.sum(residual**2)) / log_total if log_total > 0 else math.nan
    return AngleDecayFit(c, r2, relative_rms, float(-slope), power_r2, int(t[0]), int(t[-1]), int(t.size))


def run_label(run: pd.Series) -> str:
    """'GD, lr 1.4' or 'momentum 0.9, lr 0.14' (lr in the mean-loss convention)."""
    name = str(run["optimizer.name"])
    lr = float(run["optimizer.lr"])
    if name in ("momentum", "nesterov"):
        return f"{name} {float(run['optimizer.momentum']):g}, lr {lr:.3g}"
    return f"{'GD' if name == 'gd' else name}, lr {lr:.3g}"


def effective_step(run: pd.Series) -> float:
    """lr / (1 - momentum) for heavy-ball / Nesterov runs (their step on a slowly varying gradient), else lr."""
    lr = float(run["optimizer.lr"])
    if str(run["optimizer.name"]) in ("momentum", "nesterov"):
        return lr / (1.0 - float(run["optimizer.momentum"]))
    return lr


def _svm_margin(baselines: pd.DataFrame | None) -> float:
    if baselines is None or len(baselines) == 0 or "baseline" not in baselines.columns:
        return math.sqrt(2.0)  # closed form of Soudry et al.'s set (no baseline stored)
    rows = baselines[baselines["baseline"] == "max_margin_svm"]
    return float(rows["margin"].iloc[0]) if len(rows) else math.sqrt(2.0)


_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _runs_in_order(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.sort_values(["optimizer.name", "optimizer.lr"], ascending=[True, False], kind="stable")


def max_margin_figure(runs: pd.DataFrame, trajectories: pd.DataFrame, baselines: pd.DataFrame | None = None) -> Figure:
    """Soudry et al. (2018), Fig. 1 B-E, against the iteration t (log x-axis), a line per run.

    Panels: the angle between w(t) and w_svm (radians); the margin gap
    margin(w_svm) - min_i y_i <w(t), x_i> / ||w(t)|| (margin of the stored SVM baseline); the train
    loss (mean logistic loss) with the predicted tail ||w_svm||^2 / (t * effective step), dashed,
    effective step = lr / (1 - momentum); and ||w(t)|| with the predicted slope ||w_svm|| log t
    (dashed, through each run's last point).
    """
    require_columns(runs, ["run_id", "optimizer.name", "optimizer.lr", "optimizer.momentum"], "runs")
    require_columns(
        trajectories,
        ["run_id", "step", "angle_to_max_margin", "normalized_margin", "train_loss", "parameter_norm"],
        "trajectories",
    )
    margin = _svm_margin(baselines)
    w_svm_squared = 1.0 / margin**2  # ||w_svm||^2 = 1 / margin^2
    fig = Figure(figsize=(16.0, 4.0), layout="constrained")
    axes = fig.subplots(1, 4)
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    for color, (_, run) in zip(_COLORS * 4, _runs_in_order(runs).iterrows()):
        trajectory = by_run.get(run["run_id"])
        if trajectory is None:
            continue
        trajectory = trajectory[trajectory["step"] >= 1]
        t = trajectory["step"].to_numpy(dtype=float)
        label = run_label(run)
        axes[0].plot(t, trajectory["angle_to_max_margin"], color=color, label=label)
        gap = margin - trajectory["normalized_margin"].to_numpy(dtype=float)
        axes[1].plot(t, np.where(gap > 0, gap, np.nan), color=color, label=label)
        axes[2].plot(t, trajectory["train_loss"], color=color, label=label)
        axes[2].plot(t, w_svm_squared / (t * effective_step(run)), color=color, linestyle="--", linewidth=0.9)
        norm = trajectory["parameter_norm"].to_numpy(dtype=float)
        axes[3].plot(t, norm, color=color, label=label)
        axes[3].plot(t, norm[-1] + math.sqrt(w_svm_squared) * (np.log(t) - np.log(t[-1])), color=color,
                     linestyle="--", linewidth=0.9)
    titles = (
        ("angle to w_svm (rad)", "log"),
        ("margin gap", "log"),
        ("train loss (dashed: ||w_svm||² / (η_eff t))", "log"),
        ("||w(t)|| (dashed: slope ||w_svm|| log t)", "linear"),
    )
    for ax, (title, yscale) in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_yscale(yscale)
        ax.set_xlabel("iteration t")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[3].set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)), frameon=False)
    return fig


def angle_fit_figure(runs: pd.DataFrame, trajectories: pd.DataFrame, decades: float = 2.0) -> Figure:
    """The decay of the angle against 1 / log t (log-log, so theta ~ c / log t is a line of slope 1),
    with the fit theta ~ c / log t on the last ``decades`` decades of iterations (dashed; c, R^2 and the
    power-law exponent p of theta ~ t^-p in the legend) for each run, drawn from one decade before that
    tail on (a fit with R^2 <= 0 is not drawn); right: theta log t against t (log-log; flat if
    theta ~ c / log t, falling if the angle decays faster)."""
    require_columns(runs, ["run_id", "optimizer.name", "optimizer.lr", "optimizer.momentum"], "runs")
    require_columns(trajectories, ["run_id", "step", "angle_to_max_margin"], "trajectories")
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    for color, (_, run) in zip(_COLORS * 4, _runs_in_order(runs).iterrows()):
        trajectory = by_run.get(run["run_id"])
        if trajectory is None:
            continue
        steps = trajectory["step"].to_numpy(dtype=float)
        angle = trajectory["angle_to_max_margin"].to_numpy(dtype=float)
        label = run_label(run)
        keep = steps >= 2
        right.plot(steps[keep], angle[keep] * np.log(steps[keep]), color=color, label=label)
        shown = steps >= max(2.0, steps.max() / 10.0 ** (decades + 1))
        left.plot(1.0 / np.log(steps[shown]), angle[shown], color=color, marker=".", markersize=3, linewidth=0.8,
                  label=label)
        try:
            fit = angle_decay_fit(steps, angle, decades)
        except ValueError:
            continue
        if not fit.r2 > 0:  # e.g. a run whose angle does not move: no 1/log t law to draw
            left.plot([], [], color=color, linestyle="--", label=f"c / log t: R² = {fit.r2:.3g} < 0, not drawn")
            continue
        x = 1.0 / np.log(steps[shown])
        left.plot(x, fit.c * x, color=color, linestyle="--", linewidth=1.0,
                  label=f"c / log t on t >= {fit.start:.3g}: c = {fit.c:.3g}, R² = {fit.r2:.3f}; t^-p: p = {fit.p:.3g}")
        left.axvline(1.0 / math.log(fit.start), color="0.6", linewidth=0.6, linestyle=":")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("1 / log t   (dotted: start of the fitted tail; c / log t is a line of slope 1)")
    left.set_ylabel("angle to w_svm (rad)")
    left.legend(fontsize=7)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("iteration t")
    right.set_title("angle x log t", fontsize=9)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    return fig
