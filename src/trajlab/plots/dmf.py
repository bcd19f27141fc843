"""Figures for deep matrix factorization (Arora, Cohen, Hu & Luo, NeurIPS 2019).

"Implicit Regularization in Deep Matrix Factorization" shows that gradient descent on a depth-N
factorization W = W_N ... W_1 from small initialization finds low-rank solutions, and that the
effect sharpens with depth while the solution need not minimize the nuclear norm. The figures
here read the stored sweep tables (``runs``, ``trajectories``, ``baselines``) and draw:

* :func:`solution_figure` - final test error / nuclear norm / effective rank against init scale,
  a line per depth, the nuclear-norm-minimization baseline as a dashed line (the paper's Figure 2);
* :func:`singular_values_figure` - top singular values of the end-to-end matrix along training,
  a panel per depth (the paper's Figure 3);
* :func:`loss_figure` - a per-step metric (train loss by default) along training, a line per run.

Pure functions: DataFrame in, :class:`matplotlib.figure.Figure` out. Figures are built with
``Figure()`` directly, never through pyplot, so no GUI backend and no global figure registry is
involved. Nothing is recomputed: every plotted number is a stored column or a median of them.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from trajlab.report.columns import require_columns as _require

__all__ = [
    "NUCLEAR_NORM_LABEL",
    "loss_figure",
    "save_figure",
    "singular_values_figure",
    "solution_figure",
]

#: Legend label of the nuclear-norm-minimization baseline.
NUCLEAR_NORM_LABEL = "nuclear norm min."

# Name of the nuclear-norm-minimization rows in the ``baselines`` table (column ``baseline``).
_NUCLEAR_NORM_BASELINE = "nuclear_norm"

# Metrics spanning orders of magnitude across init scales, drawn on a log y-axis.
_LOG_Y_METRICS = frozenset({"test_error", "nuclear_norm", "train_loss", "frobenius_norm"})

_METRIC_LABELS = {
    "train_loss": "train loss",
    "test_error": "test error",
    "effective_rank": "effective rank",
    "nuclear_norm": "nuclear norm",
    "frobenius_norm": "Frobenius norm",
}

_SV_COLUMN = re.compile(r"^sv_(\d+)$")
_SCALE_LINESTYLES = ("-", "--", ":", "-.")
_MAX_LEGEND_ENTRIES = 40


# ---------------------------------------------------------------------------------------------
# helpers


def _metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric, metric.replace("_", " "))


def _format_value(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return f"{value:g}"
    return str(value)


def _group_title(group: str, value: object, kinds: Sequence[str]) -> str:
    if group == "problem.observations":
        kinds = sorted(set(kinds))
        noun = {"completion": "observed entries", "sensing": "measurements"}.get(
            kinds[0] if len(kinds) == 1 else "", "observations"
        )
        return f"{_format_value(value)} {noun}"
    return f"{group} = {_format_value(value)}"


def _depth_colors(depths: Iterable[int]) -> dict[int, object]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(sorted(set(depths)))}


def _finite_positive(x: np.ndarray, y: np.ndarray, *, logy: bool) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if logy:
        keep &= y > 0
    return x[keep], y[keep]


def _nuclear_norm_baseline(
    baselines: pd.DataFrame | None, runs_subset: pd.DataFrame, metric: str
) -> float | None:
    """Median of the nuclear-norm baseline's ``metric`` over the problems present in the runs.

    Problems are matched on the ``problem.*`` columns the two tables share; with none shared,
    every nuclear-norm row counts (a single-problem sweep). Rows with a non-finite value (a
    failed solve) are skipped. Returns None when nothing matches.
    """
    if baselines is None or len(baselines) == 0 or metric not in baselines.columns:
        return None
    if "baseline" not in baselines.columns:
        raise ValueError("baselines is missing required column(s): baseline")
    rows = baselines[baselines["baseline"] == _NUCLEAR_NORM_BASELINE]
    keys = [c for c in runs_subset.columns if c.startswith("problem.") and c in rows.columns]
    if keys and len(rows):
        problems = runs_subset[keys].drop_duplicates()
        rows = rows.merge(problems, on=keys, how="inner")
    values = pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


# ---------------------------------------------------------------------------------------------
# figures


def solution_figure(
    runs: pd.DataFrame,
    baselines: pd.DataFrame | None = None,
    *,
    metrics: Sequence[str] = ("test_error", "nuclear_norm", "effective_rank"),
    group: str = "problem.observations",
) -> Figure:
    """Final metrics of the solution found against init scale, a line per depth (Arora et al. 2019, Fig. 2).

    Grid: a row of panels per value of ``group`` (default: number of observed entries, or of
    measurements for matrix sensing), a column per metric. Each panel plots ``final.<metric>``
    against ``model.scale`` (the init scale, log x-axis; log y-axis for test error and nuclear
    norm), one line with markers per ``model.depth`` (legend "depth N"), and the
    nuclear-norm-minimization value for the same problem(s) as a horizontal dashed line
    labelled "nuclear norm min." (median over matching baseline rows, absent when there is none).

    Conventions:

    * runs with ``status == "diverged"`` are excluded;
    * when several runs share (group, depth, scale) - several step sizes or seeds - the point is
      the **median** of their final values (NaNs skipped);
    * a point whose runs include one that stopped at ``max_steps`` (not converged to ``train.tol``)
      is drawn with a **hollow** marker;
    * values that a log axis cannot show (<= 0, non-finite) are left out.

    Raises ValueError when a required column is missing or no non-diverged run is left.
    """
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty")
    final_cols = [f"final.{m}" for m in metrics]
    _require(runs, [group, "model.depth", "model.scale", "status", *final_cols], "runs")
    kept = runs[runs["status"] != "diverged"]
    if len(kept) == 0:
        raise ValueError(f"no run to plot: all {len(runs)} run(s) diverged or runs is empty")

    if kept[group].isna().any():
        raise ValueError(f"runs has missing values in column {group}")
    group_values = sorted(kept[group].unique().tolist())
    colors = _depth_colors(kept["model.depth"].tolist())

    nrows, ncols = len(group_values), len(metrics)
    fig = Figure(figsize=(4.0 * ncols + 1.6, 3.2 * nrows + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))

    keys = [group, "model.depth", "model.scale"]
    grouped = kept.groupby(keys, sort=True)
    medians = grouped[final_cols].median()
    hollow = grouped["status"].agg(lambda s: bool((s == "max_steps").any()))
    any_hollow = False

    for row, value in enumerate(group_values):
        subset = kept[kept[group] == value]
        kinds = subset["problem.kind"].astype(str).tolist() if "problem.kind" in subset else []
        title = _group_title(group, value, kinds)
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            logy = metric in _LOG_Y_METRICS
            for depth in sorted(subset["model.depth"].unique().tolist()):
                block = medians.xs((value, depth), level=[group, "model.depth"])
                flags = hollow.xs((value, depth), level=[group, "model.depth"])
                x = block.index.to_numpy(dtype=float)
                y = block[f"final.{metric}"].to_numpy(dtype=float)
                open_ = flags.to_numpy(dtype=bool)
                keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & ((y > 0) if logy else True)
                color = colors[depth]
                ax.plot(
                    x[keep], y[keep], marker="o", markersize=5, color=color,
                    label=f"depth {_format_value(depth)}",
                )
                if (keep & open_).any():
                    any_hollow = True
                    # Hollow overlay as a collection, so the panel keeps one Line2D per depth.
                    ax.scatter(
                        x[keep & open_], y[keep & open_], s=30, facecolors="white",
                        edgecolors=[color], linewidths=1.2, zorder=3,
                    )
            baseline = _nuclear_norm_baseline(baselines, subset, metric)
            if baseline is not None and (baseline > 0 or not logy):
                ax.axhline(baseline, color="black", linestyle="--", linewidth=1.2,
                           label=NUCLEAR_NORM_LABEL)
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
                _plain_log_labels(ax.yaxis)
            ax.set_xlabel("init scale")
            ax.set_ylabel(_metric_label(metric))
            ax.set_title(title)
            ax.grid(True, which="major", alpha=0.3)

    handles, labels = _collect_legend(axes.ravel())
    if any_hollow:
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="white",
                              markeredgecolor="gray"))
        labels.append("hit max_steps")
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    return fig


def _plain_log_labels(axis) -> None:
    """Label a log axis '0.03', '10' rather than '3x10^-2': a narrow range (a nuclear norm
    between 9 and 12) otherwise reads as a column of mathtext powers of ten."""
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


class _PlainLogFormatter(LogFormatter):
    # LogFormatter decides which ticks get a label (all decades, minor ticks only on narrow
    # ranges); the label itself is printed with %g.
    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _collect_legend(axes: Iterable) -> tuple[list, list[str]]:
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


def _sv_columns(trajectories: pd.DataFrame, k: int | None) -> list[str]:
    if k is None:
        indices = sorted(int(m.group(1)) for c in trajectories.columns if (m := _SV_COLUMN.match(c)))
        if not indices:
            raise ValueError("trajectories is missing required column(s): sv_0")
        k = 0
        while k in indices:  # the contiguous top-k block sv_0..sv_{k-1}
            k += 1
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    columns = [f"sv_{i}" for i in range(k)]
    _require(trajectories, columns, "trajectories")
    return columns


def singular_values_figure(
    runs: pd.DataFrame,
    trajectories: pd.DataFrame,
    *,
    k: int | None = None,
    x: str = "step",
    logy: bool = False,
) -> Figure:
    """Top-k singular values of the end-to-end matrix along training, a panel per depth (Arora et al. 2019, Fig. 3).

    One panel per ``model.depth``; in each, one line per singular value ``sv_0 .. sv_{k-1}``
    (legend sigma_1 .. sigma_k, largest first) against ``x`` (``"step"`` or ``"t"`` = step x lr).
    ``k=None`` uses every contiguous ``sv_i`` column stored.

    Conventions:

    * the x-axis is logarithmic because steps are recorded log-spaced; the record at x = 0
      (initialization) cannot sit on a log axis and is **dropped**;
    * if several runs share a depth, the panel shows **one** run: the first by ``run_id`` among
      the non-diverged runs (diverged ones only if nothing else is left); the panel title then
      names that run and how many shared the depth;
    * the y-axis is linear (``logy=True`` for a log axis, which shows the small singular values
      leaving the init scale).
    """
    if x not in ("step", "t"):
        raise ValueError(f"x must be 'step' or 't', got {x!r}")
    _require(runs, ["run_id", "model.depth"], "runs")
    _require(trajectories, ["run_id", x], "trajectories")
    columns = _sv_columns(trajectories, k)

    present = runs[runs["run_id"].isin(trajectories["run_id"])]
    if len(present) == 0:
        raise ValueError("no run in runs has rows in trajectories")
    depths = sorted(present["model.depth"].unique().tolist())

    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    colors = [cmap(i / max(len(columns) - 1, 1) * 0.9) for i in range(len(columns))]

    fig = Figure(figsize=(3.8 * len(depths) + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(depths), squeeze=False, sharey=True)[0]
    for ax, depth in zip(axes, depths):
        candidates = present[present["model.depth"] == depth].sort_values("run_id")
        if "status" in candidates:
            converged = candidates[candidates["status"] != "diverged"]
            if len(converged):
                candidates = converged
        run = candidates.iloc[0]
        traj = trajectories[trajectories["run_id"] == run["run_id"]].sort_values(x)
        xs = traj[x].to_numpy(dtype=float)
        for i, (column, color) in enumerate(zip(columns, colors)):
            xv, yv = _finite_positive(xs, traj[column].to_numpy(dtype=float), logy=logy)
            ax.plot(xv, yv, color=color, label=rf"$\sigma_{{{i + 1}}}$")
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        title = f"depth {_format_value(depth)}"
        if "model.scale" in run.index:
            title += f", init scale {_format_value(run['model.scale'])}"
        n_shared = int((present["model.depth"] == depth).sum())
        if n_shared > 1:
            title += f"\nrun {run['run_id']} (first of {n_shared})"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step" if x == "step" else "time t = step x lr")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("singular value")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    return fig


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
    colors = _depth_colors(present["model.depth"].tolist())
    scales = sorted(present["model.scale"].unique().tolist())
    styles = {s: _SCALE_LINESTYLES[i % len(_SCALE_LINESTYLES)] for i, s in enumerate(scales)}
    show_lr = "optimizer.lr" in present and present["optimizer.lr"].nunique() > 1

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    by_run = {rid: frame for rid, frame in trajectories.groupby("run_id", sort=False)}
    for _, run in present.iterrows():
        traj = by_run[run["run_id"]].sort_values(x)
        xv, yv = _finite_positive(
            traj[x].to_numpy(dtype=float), traj[metric].to_numpy(dtype=float), logy=True
        )
        label = f"depth {_format_value(run['model.depth'])}, scale {_format_value(run['model.scale'])}"
        if show_lr:
            label += f", lr {_format_value(run['optimizer.lr'])}"
        if run.get("status") == "diverged":
            label += " (diverged)"
        ax.plot(xv, yv, color=colors[run["model.depth"]], linestyle=styles[run["model.scale"]],
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step" if x == "step" else "time t = step x lr")
    ax.set_ylabel(_metric_label(metric))
    ax.grid(True, which="major", alpha=0.3)
    n = len(present)
    if n <= _MAX_LEGEND_ENTRIES:  # beyond that a legend hides more than it tells
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8 if n > 8 else 9,
                   ncol=1 + (n - 1) // 20, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# saving


def save_figure(fig: Figure, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` (dpi 150) and ``<folder>/<name>.svg``; return the paths.

    Each file is written atomically: rendered to a temporary file in ``folder`` and moved into
    place with ``os.replace``, so a reader never sees a half-written figure. The folder is
    created if needed. The figure is closed afterwards (removed from pyplot if pyplot manages
    it; a figure made with ``Figure()`` is simply released).
    """
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ValueError(f"name must be a plain file name without folders, got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for fmt in ("png", "svg"):
            target = folder / f"{name}.{fmt}"
            # Not tempfile.mkstemp: its 0600 mode would survive os.replace; open(..., "xb")
            # creates the file with the umask's usual permissions.
            tmp = folder / f".{name}.{fmt}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                with open(tmp, "xb") as fh:
                    fig.savefig(fh, format=fmt, dpi=150)
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            paths.append(target)
    finally:
        _close(fig)
    return paths


def _close(fig: Figure) -> None:
    manager = getattr(fig.canvas, "manager", None)
    if manager is not None:  # registered with pyplot: drop it from the registry
        import matplotlib.pyplot as plt

        plt.close(fig)
