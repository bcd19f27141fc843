"""Presets of "Implicit Regularization in Deep Matrix Factorization" (Arora, Cohen, Hu, Luo, NeurIPS 2019).

- ``dmf-completion`` / ``dmf-sensing``: the solution found by (normalized) gradient descent on
  deep matrix factorizations of depth 1-4, from init scales 1e-3 ... 1e-6, against
  nuclear-norm minimization (paper, Figure 2). Claim checked: with depth >= 2 and small init the
  test error and effective rank fall below those of the minimum nuclear norm solution when
  observations are few, and depth strengthens the effect as the init scale shrinks.
- ``dmf-dynamics``: plain GD; singular values of the end-to-end matrix are learned one after
  another, more sharply for deeper factorizations (paper, Figure 3; Theorem 3: d sigma_r/dt is
  proportional to sigma_r^(2-2/N)).

Figures, pure functions of the stored tables (``runs``, ``trajectories``, ``baselines``; nothing
is recomputed, every plotted number is a stored column or a median of them):

* :func:`solution_figure` - final test error / nuclear norm / effective rank against init scale,
  a line per depth, the nuclear-norm-minimization baseline as a dashed line (the paper's Figure 2);
* :func:`singular_values_figure` - top singular values of the end-to-end matrix along training,
  a panel per depth (the paper's Figure 3);
* :func:`trajlab.plots.loss_figure` - the train loss along training, a line per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, to_flat
from trajlab.presets.claims import (
    baseline_rows,
    by_run,
    crossing,
    fmt,
    lacks,
    not_measured,
    problem_columns,
)
from trajlab.presets.preset import Claim, Preset
from trajlab.problems.matrix import make_matrix_problem
from trajlab.report.columns import require_columns
from trajlab.sweep.runner import BaselineJob, baseline_id, flat_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def nuclear_norm_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """One nuclear-norm minimization (equality constraints, SCS) per distinct problem."""
    problems = {json.dumps(to_flat(c.problem), sort_keys=True): c.problem for c in configs}
    jobs = []
    for key, problem in problems.items():
        columns = {f"problem.{k}": v for k, v in flat_row(problem).items()}
        columns["baseline"] = "nuclear_norm"
        jobs.append(BaselineJob(baseline_id("nuclear_norm", to_flat(problem)), columns, _nuclear_norm_solver(problem)))
    return jobs


def _nuclear_norm_solver(problem: ProblemConfig):
    def compute() -> dict:
        from trajlab.baselines import nuclear_norm_completion, nuclear_norm_sensing  # cvxpy: on use

        data = make_matrix_problem(problem)
        shape = (problem.m, problem.n)
        if problem.kind == "completion":
            result = nuclear_norm_completion(shape, data.rows, data.cols, data.values, target=data.target)
        else:
            result = nuclear_norm_sensing(shape, data.sensing, data.values, target=data.target)
        return dict(
            test_error=result.test_error,
            nuclear_norm=result.nuclear_norm,
            effective_rank=result.effective_rank,
            solve_s=result.solve_s,
            status=result.status,
        )

    return compute


# ---------------------------------------------------------------------------------------------
# claims: measured on the stored runs, trajectories and nuclear-norm baselines

#: Below this relative test error nuclear-norm minimization has recovered the matrix: nothing to beat.
_RECOVERED = 1e-3
#: "Small init": the claims are about init scales at most this.
_SMALL_SCALE = 1e-3


def _problems_with_nuclear_norm(data):
    """[(runs of one problem, its nuclear-norm baseline row)] for every problem that has one."""
    runs, rows = data.runs, baseline_rows(data, "nuclear_norm")
    if len(rows) == 0:
        return []
    keys = problem_columns(runs, rows)
    # Compared as text: a missing value (e.g. problem.path None) must match itself.
    run_keys = runs[keys].astype(str).apply(tuple, axis=1) if keys else pd.Series([()] * len(runs), index=runs.index)
    row_keys = rows[keys].astype(str).apply(tuple, axis=1) if keys else pd.Series([()] * len(rows), index=rows.index)
    pairs = []
    for key in sorted(set(run_keys)):
        match = rows[row_keys == key]
        if len(match):
            pairs.append((runs[run_keys == key], match.iloc[0]))
    return pairs


def _observations(block) -> str:
    return f"{block['problem.observations'].iloc[0]} observations" if "problem.observations" in block else "problem"


def deep_beats_nuclear_norm(data):
    """Depth >= 3 from the smallest init scale (<= 1e-3), on every problem where nuclear-norm
    minimization does not recover the matrix (its test error > 1e-3): each run that reached
    ``train.tol`` has a lower test error *and* a lower effective rank than the nuclear-norm solution."""
    reason = lacks(data, runs=["model.depth", "model.scale", "status", "final.test_error", "final.effective_rank"])
    if reason:
        return not_measured(reason)
    pairs = _problems_with_nuclear_norm(data)
    if not pairs:
        return not_measured("no nuclear-norm baseline")
    parts, holds, compared, eligible = [], True, 0, 0
    for block, nuclear in pairs:
        where = _observations(block)
        if float(nuclear["test_error"]) <= _RECOVERED:
            parts.append(f"{where}: nuclear norm min. recovers the matrix (test error {fmt(nuclear['test_error'])}), "
                         "nothing to beat")
            continue
        scale = float(block["model.scale"].min())
        if scale > _SMALL_SCALE:
            parts.append(f"{where}: smallest init scale {fmt(scale)} > {fmt(_SMALL_SCALE)}")
            continue
        eligible += 1
        small = block[(block["model.scale"] == scale) & (block["status"] == "done")]
        lines = []
        for depth, runs in small.groupby("model.depth"):
            error = runs["final.test_error"].astype(float)
            rank = runs["final.effective_rank"].astype(float)
            lines.append(f"depth {depth}: test error {fmt(error.max())}, effective rank {fmt(rank.max())}")
            if depth >= 3:
                compared += len(runs)
                holds &= bool((error < float(nuclear["test_error"])).all() and (rank < float(nuclear["effective_rank"])).all())
        parts.append(
            f"{where}, init scale {fmt(scale)}, worst run per depth: " + "; ".join(lines)
            + f" vs nuclear norm min.: test error {fmt(nuclear['test_error'])}, effective rank "
            f"{fmt(nuclear['effective_rank'])}"
        )
    if compared == 0:
        return not_measured("; ".join(parts + (["no run of depth >= 3 reached train.tol"] if eligible else [])))
    return "; ".join(parts), holds


def smaller_init_lower_error(data):
    """For every depth >= 2 (and problem, step size): the median final test error of the runs that
    reached ``train.tol`` is lower at the smallest init scale than at the largest."""
    reason = lacks(data, runs=["problem.kind", "model.depth", "model.scale", "status", "final.test_error"])
    if reason:
        return not_measured(reason)
    runs = data.runs[
        data.runs["problem.kind"].isin(["completion", "sensing"]) & (data.runs["model.depth"] >= 2)
        & (data.runs["status"] == "done")
    ]
    if runs["model.scale"].nunique() < 2:
        return not_measured("needs finished depth >= 2 runs at two init scales or more")
    groups = [c for c in runs.columns if c.startswith("problem.") or c == "optimizer.lr"]
    groups = [c for c in groups if runs[c].astype(str).nunique() > 1] + ["model.depth"]
    parts, holds = [], True
    for key, block in runs.groupby(groups, sort=True):
        small, large = block["model.scale"].min(), block["model.scale"].max()
        if small == large:
            continue
        at_small = block.loc[block["model.scale"] == small, "final.test_error"].astype(float).median()
        at_large = block.loc[block["model.scale"] == large, "final.test_error"].astype(float).median()
        holds &= bool(at_small < at_large)
        label = ", ".join(f"{c.rsplit('.', 1)[-1]} {v}" for c, v in zip(groups, key if isinstance(key, tuple) else (key,)))
        parts.append(f"{label}: {fmt(at_large)} at scale {fmt(large)} -> {fmt(at_small)} at {fmt(small)}")
    if not parts:
        return not_measured("no depth >= 2 setting was run at two init scales")
    return "test error " + "; ".join(parts), holds


#: The "many observations" case of dmf-completion (the talk: "all of them ... nuclear norm of 221 ...
#: effective rank of five").
_MANY_OBSERVATIONS = 5000
#: Recovered there: relative test error <= _RECOVERED, and effective rank / nuclear norm within these
#: relative tolerances of the target's own.
_EFFECTIVE_RANK_TOLERANCE = 0.05
_NUCLEAR_NORM_TOLERANCE = 0.01


def _target_spectrum(row) -> tuple[float, float]:
    """(effective rank, nuclear norm) of W* of a completion problem (drawn from problem.seed as
    :func:`trajlab.problems.matrix.make_matrix_problem` draws it; numpy)."""
    from trajlab.problems.matrix import low_rank_target

    rng = np.random.default_rng(int(row["problem.seed"]))
    target = low_rank_target(int(row["problem.m"]), int(row["problem.n"]), int(row["problem.rank"]), rng)
    sigma = np.linalg.svd(target, compute_uv=False)
    p = sigma / sigma.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p)))), float(sigma.sum())


def all_recover_with_many_observations(data):
    """With 5000 observed entries: the nuclear-norm solution and every run of depth >= 2 that reached
    ``train.tol`` recover W*: relative test error <= 1e-3, effective rank within 5% and nuclear norm
    within 1% of W*'s own (W* recomputed from the problem fields). Each depth >= 2 present must have
    such a run; depth-1 runs (plain GD on the entries, which leaves the unobserved ones at their
    init) are reported, not checked.

    Measured (``trajlab run dmf-completion --quick --set problem.observations=5000 --set
    "model.depth=[1,2,3,4]" --set model.scale=1e-3``: the quick settings, lr 1e-3, 60000 steps; 30 s
    user CPU): W* has effective rank 4.909 and nuclear norm 219.6; nuclear-norm minimization test
    error 7e-13, effective rank 4.909, nuclear norm 219.6; depth 2 / 3 / 4 reach tol with test error
    1.8e-5 / 3.5e-6 / 3.2e-6, effective rank 5.11 / 4.93 / 4.93 (depth 2: 4.1% above W*'s, the
    closest to the 5% tolerance), nuclear norm 220.2 / 219.6 / 219.6: holds. Depth 1 does not reach
    tol (test error 0.52, effective rank 62.9)."""
    reason = lacks(data, runs=["problem.observations", "problem.seed", "problem.m", "problem.n", "problem.rank",
                               "model.depth", "status", "final.test_error", "final.effective_rank",
                               "final.nuclear_norm"])
    if reason:
        return not_measured(reason)
    pairs = [(block, row) for block, row in _problems_with_nuclear_norm(data)
             if int(block["problem.observations"].iloc[0]) == _MANY_OBSERVATIONS]
    if not pairs:
        return not_measured(f"needs a problem with {_MANY_OBSERVATIONS} observations and its nuclear-norm baseline")

    def recovered(error, rank, nuclear, target_rank, target_nuclear):
        return bool(
            error <= _RECOVERED and abs(rank - target_rank) <= _EFFECTIVE_RANK_TOLERANCE * target_rank
            and abs(nuclear - target_nuclear) <= _NUCLEAR_NORM_TOLERANCE * target_nuclear
        )

    parts, holds = [], True
    for block, nuclear in pairs:
        target_rank, target_nuclear = _target_spectrum(block.iloc[0])
        convex = (float(nuclear["test_error"]), float(nuclear["effective_rank"]), float(nuclear["nuclear_norm"]))
        holds &= recovered(*convex, target_rank, target_nuclear)
        lines = [f"W*: effective rank {fmt(target_rank)}, nuclear norm {fmt(target_nuclear, 4)}",
                 f"nuclear norm min.: test error {fmt(convex[0])}, effective rank {fmt(convex[1])}, "
                 f"nuclear norm {fmt(convex[2], 4)}"]
        for depth, runs in block.groupby("model.depth"):
            done = runs[runs["status"] == "done"]
            error, rank = done["final.test_error"].astype(float), done["final.effective_rank"].astype(float)
            norm = done["final.nuclear_norm"].astype(float)
            text = f"depth {depth}: {len(done)} of {len(runs)} reached tol"
            if len(done):
                text += (f", test error <= {fmt(error.max())}, effective rank {fmt(rank.min())}-{fmt(rank.max())}, "
                         f"nuclear norm {fmt(norm.min(), 4)}-{fmt(norm.max(), 4)}")
            if depth >= 2:
                holds &= len(done) > 0 and all(
                    recovered(e, r, v, target_rank, target_nuclear) for e, r, v in zip(error, rank, norm)
                )
            else:
                text += " (not checked)"
            lines.append(text)
        parts.append(f"{_observations(block)}: " + "; ".join(lines))
    return " | ".join(parts), holds


#: The r-th singular value must reach half its final value at least this many times later than the first.
_SPREAD = 1.25


def singular_values_one_by_one(data):
    """For every run of depth >= 2, the top ``problem.rank`` singular values of W_e reach half of
    their final value in order (each at least as late as the one before, 1% slack) and the last of
    them at least 1.25x later than the first (times interpolated between records); depth-1 runs
    are shown for contrast (there all rise together)."""
    reason = lacks(data, runs=["run_id", "model.depth", "problem.rank"], trajectories=["run_id", "t", "sv_0"])
    if reason:
        return not_measured(reason)
    trajectories = by_run(data.trajectories, "t")
    parts, holds, checked = [], True, 0
    for _, run in data.runs.sort_values(["model.depth", "run_id"]).iterrows():
        rank = int(run["problem.rank"])
        columns = [f"sv_{k}" for k in range(rank)]
        trajectory = trajectories.get(run["run_id"])
        if rank < 2 or trajectory is None or any(c not in trajectory.columns for c in columns):
            continue  # one singular value (or too few recorded): no order to see
        t = trajectory["t"].to_numpy(dtype=float)
        halves = [crossing(t, trajectory[c].to_numpy(dtype=float), float(trajectory[c].iloc[-1]) / 2) for c in columns]
        spread = halves[-1] / halves[0] if halves[0] > 0 else float("nan")
        ordered = all(b >= 0.99 * a for a, b in zip(halves, halves[1:]))
        text = f"depth {run['model.depth']}: half-times " + " / ".join(fmt(h) for h in halves) + f" (spread {fmt(spread)}x)"
        if int(run["model.depth"]) >= 2:
            checked += 1
            holds &= bool(ordered and spread >= _SPREAD)
        parts.append(text)
    if checked == 0:
        return not_measured("no depth >= 2 run of a rank >= 2 target records its top problem.rank singular values")
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures

# Name of the nuclear-norm-minimization rows in the ``baselines`` table (column ``baseline``).
_NUCLEAR_NORM_BASELINE = "nuclear_norm"

_SV_COLUMN = re.compile(r"^sv_(\d+)$")


def _group_title(group: str, value: object, kinds: Sequence[str]) -> str:
    from trajlab.plots.lines import format_value

    if group == "problem.observations":
        kinds = sorted(set(kinds))
        noun = {"completion": "observed entries", "sensing": "measurements"}.get(
            kinds[0] if len(kinds) == 1 else "", "observations"
        )
        return f"{format_value(value)} {noun}"
    return f"{group} = {format_value(value)}"


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
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from trajlab.plots.lines import (
        LOG_Y_METRICS,
        NUCLEAR_NORM_LABEL,
        collect_legend,
        depth_colors,
        format_value,
        metric_label,
        plain_log_labels,
    )

    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty")
    final_cols = [f"final.{m}" for m in metrics]
    require_columns(runs, [group, "model.depth", "model.scale", "status", *final_cols], "runs")
    kept = runs[runs["status"] != "diverged"]
    if len(kept) == 0:
        raise ValueError(f"no run to plot: all {len(runs)} run(s) diverged or runs is empty")

    if kept[group].isna().any():
        raise ValueError(f"runs has missing values in column {group}")
    group_values = sorted(kept[group].unique().tolist())
    colors = depth_colors(kept["model.depth"].tolist())

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
            logy = metric in LOG_Y_METRICS
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
                    label=f"depth {format_value(depth)}",
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
                plain_log_labels(ax.yaxis)
            ax.set_xlabel("init scale")
            ax.set_ylabel(metric_label(metric))
            ax.set_title(title)
            ax.grid(True, which="major", alpha=0.3)

    handles, labels = collect_legend(axes.ravel())
    if any_hollow:
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="white",
                              markeredgecolor="gray"))
        labels.append("hit max_steps")
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    return fig


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
    require_columns(trajectories, columns, "trajectories")
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
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from trajlab.plots.lines import finite_positive, format_value

    if x not in ("step", "t"):
        raise ValueError(f"x must be 'step' or 't', got {x!r}")
    require_columns(runs, ["run_id", "model.depth"], "runs")
    require_columns(trajectories, ["run_id", x], "trajectories")
    columns = _sv_columns(trajectories, k)

    present = runs[runs["run_id"].isin(trajectories["run_id"])]
    if len(present) == 0:
        raise ValueError("no run in runs has rows in trajectories")
    depths = sorted(present["model.depth"].unique().tolist())

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
            xv, yv = finite_positive(xs, traj[column].to_numpy(dtype=float), logy=logy)
            ax.plot(xv, yv, color=color, label=rf"$\sigma_{{{i + 1}}}$")
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        title = f"depth {format_value(depth)}"
        if "model.scale" in run.index:
            title += f", init scale {format_value(run['model.scale'])}"
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


def solution_figures(data) -> dict:
    from trajlab.plots import loss_figure

    return {
        "solution": solution_figure(data.runs, data.baselines),
        "train_loss": loss_figure(data.runs, data.trajectories),
    }


def dynamics_figures(data) -> dict:
    from trajlab.plots import loss_figure

    return {
        "singular_values": singular_values_figure(data.runs, data.trajectories),
        "singular_values_log": singular_values_figure(data.runs, data.trajectories, logy=True),
        "train_loss": loss_figure(data.runs, data.trajectories),
    }


_SOLUTION_AXES = {
    "model.depth": [1, 2, 3, 4],
    "model.scale": [1e-3, 1e-4, 1e-5, 1e-6],
    "optimizer.lr": [1e-3, 3e-4],
}

DMF_COMPLETION = Preset(
    name="dmf-completion",
    description="Deep matrix factorization vs nuclear norm on 100x100 rank-5 completion (Arora et al. 2019, Fig. 2)",
    base=RunConfig(
        problem=ProblemConfig(kind="completion", m=100, n=100, rank=5, observations=2000),
        model=ModelConfig(init="gaussian_e2e"),
        optimizer=OptimizerConfig(name="normalized_gd"),
        train=TrainConfig(max_steps=1_000_000, tol=1e-6),
    ),
    axes={"problem.observations": [2000, 5000], **_SOLUTION_AXES},
    quick={
        "problem.observations": 2000,
        "model.depth": [1, 2, 3],
        "model.scale": [1e-2, 1e-3],
        "optimizer.lr": 1e-3,
        "train.max_steps": 60_000,
        "train.record_points": 40,
    },
    baselines=nuclear_norm_jobs,
    figures=solution_figures,
    claims=(
        Claim(
            "depth >= 3 from small init (scale <= 1e-3): lower test error and lower effective rank than nuclear-norm "
            "minimization when observations are few (2000 of 10^4 entries; where nuclear norm min. does not "
            "recover the matrix; paper, Fig. 2)",
            deep_beats_nuclear_norm,
        ),
        Claim("depth >= 2: the smaller the init scale, the lower the test error", smaller_init_lower_error),
        Claim(
            "5000 observations (half the entries): nuclear-norm minimization and every depth >= 2 recover W* "
            "(test error <= 1e-3, effective rank ~5 and nuclear norm ~221 as W*'s, within 5% and 1%; the talk: "
            "\"all of them\"); depth 1 is reported, not checked",
            all_recover_with_many_observations,
        ),
    ),
)

DMF_SENSING = Preset(
    name="dmf-sensing",
    description="Deep matrix factorization vs nuclear norm on 100x100 rank-5 Gaussian matrix sensing",
    base=RunConfig(
        problem=ProblemConfig(kind="sensing", m=100, n=100, rank=5, observations=2000),
        model=ModelConfig(init="gaussian_e2e"),
        optimizer=OptimizerConfig(name="normalized_gd"),
        train=TrainConfig(max_steps=1_000_000, tol=1e-6),
    ),
    axes={"problem.observations": [2000, 5000], **_SOLUTION_AXES},
    quick={
        "problem.m": 30,
        "problem.n": 30,
        "problem.rank": 2,
        "problem.observations": 300,
        "model.depth": [1, 2, 3],
        "model.scale": [1e-2, 1e-3],
        "optimizer.lr": 1e-3,
        "train.max_steps": 60_000,
        "train.record_points": 40,
    },
    baselines=nuclear_norm_jobs,
    figures=solution_figures,
    claims=(
        Claim(
            "depth >= 3 from small init (scale <= 1e-3): lower test error and lower effective rank than nuclear-norm "
            "minimization when measurements are few (where nuclear norm min. does not recover the matrix)",
            deep_beats_nuclear_norm,
        ),
        Claim("depth >= 2: the smaller the init scale, the lower the test error", smaller_init_lower_error),
    ),
)

DMF_DYNAMICS = Preset(
    name="dmf-dynamics",
    description="Plain GD on 100x100 completion: singular values learned one by one for depth >= 2 (Fig. 3)",
    base=RunConfig(
        problem=ProblemConfig(kind="completion", m=100, n=100, rank=5, observations=2000),
        model=ModelConfig(init="gaussian_e2e", scale=1e-3),
        optimizer=OptimizerConfig(name="gd", lr=0.25),
        train=TrainConfig(max_steps=200_000, tol=1e-6, record_points=200),
    ),
    axes={"model.depth": [1, 2, 3]},
    quick={"train.max_steps": 30_000, "train.record_points": 60},
    figures=dynamics_figures,
    claims=(
        Claim(
            "singular values of W_e are learned one after another for depth >= 2 (the top r reach half their final "
            "value in order of size, spread out in time; paper, Fig. 3)",
            singular_values_one_by_one,
        ),
    ),
)
