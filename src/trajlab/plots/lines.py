"""Line plots shared by the presets: DataFrame in, :class:`matplotlib.figure.Figure` out.

* :func:`loss_figure` - a per-step metric (train loss by default) along training, a line per run,
  coloured by depth and dashed by init scale;
* the pieces the presets' own line plots are built from: axis labels of the stored metrics
  (:func:`metric_label`), numbers in titles and legends (:func:`format_value`), a colour per depth
  (:func:`depth_colors`), points a log axis can show (:func:`finite_positive`), plain labels on log
  axes (:func:`plain_log_labels`), one legend over many panels (:func:`collect_legend`);
* :data:`NUCLEAR_NORM_LABEL`, the label of the nuclear-norm-minimization baseline in figures and tables.

Figures are built with ``Figure()`` directly, never through pyplot, so no GUI backend and no
global figure registry is involved. Nothing is recomputed: every plotted number is a stored column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from trajlab.report.columns import require_columns as _require

__all__ = [
    "LOG_Y_METRICS",
    "NUCLEAR_NORM_LABEL",
    "collect_legend",
    "depth_colors",
    "finite_positive",
    "format_value",
    "loss_figure",
    "metric_label",
    "plain_log_labels",
]

#: Legend label of the nuclear-norm-minimization baseline.
NUCLEAR_NORM_LABEL = "nuclear norm min."

#: Metrics spanning orders of magnitude across init scales, drawn on a log y-axis.
LOG_Y_METRICS = frozenset({"test_error", "nuclear_norm", "train_loss", "frobenius_norm"})

_METRIC_LABELS = {
    "train_loss": "train loss",
    "test_error": "test error",
    "effective_rank": "effective rank",
    "nuclear_norm": "nuclear norm",
    "frobenius_norm": "Frobenius norm",
}

_SCALE_LINESTYLES = ("-", "--", ":", "-.")
_MAX_LEGEND_ENTRIES = 40


# ---------------------------------------------------------------------------------------------
# helpers


def metric_label(metric: str) -> str:
    """Axis label of a stored metric: "train_loss" -> "train loss"."""
    return _METRIC_LABELS.get(metric, metric.replace("_", " "))


def format_value(value: object) -> str:
    """A value in a title or legend: 3.0 -> "3", 0.001 -> "0.001", anything else as ``str``."""
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return f"{value:g}"
    return str(value)


def depth_colors(depths: Iterable[int]) -> dict[int, object]:
    """A tab10 colour per distinct depth, in increasing order of depth."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(sorted(set(depths)))}


def finite_positive(x: np.ndarray, y: np.ndarray, *, logy: bool) -> tuple[np.ndarray, np.ndarray]:
    """The points a log x-axis (and with ``logy`` a log y-axis) can show: finite, x > 0 (and y > 0)."""
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if logy:
        keep &= y > 0
    return x[keep], y[keep]


def plain_log_labels(axis) -> None:
    """Label a log axis '0.03', '10' rather than '3x10^-2': a narrow range (a nuclear norm
    between 9 and 12) otherwise reads as a column of mathtext powers of ten."""
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


class _PlainLogFormatter(LogFormatter):
    # LogFormatter decides which ticks get a label (all decades, minor ticks only on narrow
    # ranges); the label itself is printed with %g.
    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def collect_legend(axes: Iterable) -> tuple[list, list[str]]:
    """Unique legend entries over panels: depths in increasing order, then the baseline."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)

    def order(label: str) -> tuple[int, float]:
        if label.startswith("depth "):
            try:
                return (0, float(label.split()[1]))
            except ValueError:
                return (0, math.inf)
        return (1, 0.0)

    labels = sorted(seen, key=order)
    return [seen[label] for label in labels], labels


# ---------------------------------------------------------------------------------------------
# figures


def loss_figure(
    runs: pd.DataFrame,
    trajectories: pd.DataFrame,
    *,
    metric: str = "train_loss",
    x: str = "step",
) -> Figure:
    """A per-step metric (default: train loss) against ``x`` (``"step"`` or ``"t"``), log-log, a line per run.

    Lines are coloured by ``model.depth`` and dashed differently per ``model.scale``, labelled
    "depth N, scale s" (plus the step size when runs differ in ``optimizer.lr``, and
    "(diverged)" for diverged runs); the legend is left out beyond 40 runs. Points a log axis cannot show (x <= 0, so step 0; y <= 0;
    non-finite values of diverged runs) are left out. The loss is plotted as stored; its
    convention (mean over observations vs sum/2) is the problem's.
    """
    if x not in ("step", "t"):
        raise ValueError(f"x must be 'step' or 't', got {x!r}")
    _require(runs, ["run_id", "model.depth", "model.scale"], "runs")
    _require(trajectories, ["run_id", x, metric], "trajectories")

    present = runs[runs["run_id"].isin(trajectories["run_id"])]
    if len(present) == 0:
        raise ValueError("no run in runs has rows in trajectories")
    order = [c for c in ("model.depth", "model.scale", "optimizer.lr", "run_id") if c in present]
    present = present.sort_values(order)
    colors = depth_colors(present["model.depth"].tolist())
    scales = sorted(present["model.scale"].unique().tolist())
    styles = {s: _SCALE_LINESTYLES[i % len(_SCALE_LINESTYLES)] for i, s in enumerate(scales)}
    show_lr = "optimizer.lr" in present and present["optimizer.lr"].nunique() > 1

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    by_run = {rid: frame for rid, frame in trajectories.groupby("run_id", sort=False)}
    for _, run in present.iterrows():
        traj = by_run[run["run_id"]].sort_values(x)
        xv, yv = finite_positive(
            traj[x].to_numpy(dtype=float), traj[metric].to_numpy(dtype=float), logy=True
        )
        label = f"depth {format_value(run['model.depth'])}, scale {format_value(run['model.scale'])}"
        if show_lr:
            label += f", lr {format_value(run['optimizer.lr'])}"
        if run.get("status") == "diverged":
            label += " (diverged)"
        ax.plot(xv, yv, color=colors[run["model.depth"]], linestyle=styles[run["model.scale"]],
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step" if x == "step" else "time t = step x lr")
    ax.set_ylabel(metric_label(metric))
    ax.grid(True, which="major", alpha=0.3)
    n = len(present)
    if n <= _MAX_LEGEND_ENTRIES:  # beyond that a legend hides more than it tells
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8 if n > 8 else 9,
                   ncol=1 + (n - 1) // 20, frameon=False)
    return fig
