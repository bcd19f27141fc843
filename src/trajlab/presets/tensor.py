"""Presets of the tensor factorization papers of Razin, Maman & Cohen.

``tc-incremental`` -- "Implicit Regularization in Tensor Factorization" (ICML 2021).
Tensor completion of an order-4, 10 x 10 x 10 x 10, CP-rank-5 target (||W*||_F^2 = 10^4) from
2000 observed entries by a CP factorization with R = 1000 components, per-factor init std in
{5e-2, 1e-2, 5e-3}, normalized GD (``optimizer.name=normalized_gd``, the "GroupRMSprop" of the 2022 authors' code)
with lr 1e-2, stop at mean squared error 1e-6. Recorded: train loss, reconstruction error
||W - W*||_F / ||W*||_F, the 10 largest component norms at every recording step, and at the end
the estimated CP rank of W (ALS, relative tolerance 1e-2; :mod:`trajlab.families.tensor`).
Paper: the component norms rise one at a time, more so the smaller the init, and the solution has
low tensor rank. The full preset is GPU work: a step of the 3-run batch costs 0.28-0.34 s on a 2-core
CPU, and the smaller inits need ~10^5 or more steps (below); ``--quick`` is the CPU version.

``htf-incremental`` -- "Implicit Regularization in Hierarchical Tensor Factorization and Deep
Convolutional Neural Networks" (ICML 2022; settings of the authors' code, asafmaman101/imp_reg_htf:
order 3, mode dimension 16, hierarchical rank (5, 5), 2048 observed entries, local widths 512, init
std 1e-2, lr 1e-2). A hierarchical factorization ("product" nodes; order 3: tree {0,1}, {2} with a
one-child node) against, on the same data (same ``problem.*`` fields, so the same W* and observed
entries), a CP factorization with 512 components and the same init std, and a depth-3 matrix
factorization (``gaussian_e2e`` scale 1e-3, the deep matrix factorization convention) of the
256 x 16 matricization [W*]_{(0,1)} (``problem.kind=matricized_tensor_completion`` with
``problem.row_modes=2``: rows indexed by the first two modes). Recorded: local
component norms at every internal node, the effective ranks of the matricizations along the mode
tree, and the reconstruction error of each model. GPU work too (local width 512).

Measured (2-core CPU shared with other jobs, float32, seed 0):

- ``trajlab run tc-incremental --quick`` (order 4, dimension 8, CP rank 3, 800 observations,
  R = 50, init std {0.3, 0.1, 0.05}, 4000 steps; the quick stds are larger than the paper's
  because the quick run is short): 20 s wall. std 0.05 fits (done at step 3118) with estimated
  rank 3 and reconstruction error 0.0019, its top-3 norms reaching half their final value at steps
  309 / 1874 / 2696; std 0.1: rank 3, error 0.0055 (334 / 1410 / 2073); std 0.3: rank > 10,
  error 0.092, half-times 524 / 448 / 1533 (not in order). All three claims hold.
- reduced full run, ``trajlab run tc-incremental --set model.width=100 --set
  train.max_steps=30000`` (R = 100 instead of 1000): 152 s wall. std 5e-2 recovers W* (error
  0.0025, estimated rank 5; half-times 288 / 1469 / 2743 / 3465 / 4809); by step 30000 std 1e-2
  had learned 3 components (error 0.49, estimated rank 3) and std 5e-3 one (error 0.75), so the
  claims about the smaller inits are "not measured" there: they need one to two orders of magnitude
  more steps (the full preset allows 10^6). Normalized GD with eps 1e-6 instead of the engine's 1e-4
  (see below) did not change this much (std 1e-2: 4 components, error 0.18).
- ``trajlab run htf-incremental --quick`` (dimension 8, hierarchical rank 3, 256 of 512 entries
  observed, local width and CP components 32, init std 0.1, 6000 steps): 22 s wall.
  Reconstruction errors 0.0148 (hierarchical), 0.0218 (CP), 0.165 (depth-3 matrix factorization
  of the 64 x 8 matricization); the root's top-3 local components reach half their final value at
  steps 147 / 936 / 1803; largest matricization effective rank 2.74. All four claims hold.
- reduced full run, ``trajlab run htf-incremental --set model.width=64 --set
  train.max_steps=20000`` (local width, CP components and the matrix factorization's hidden width
  64): 106 s wall. CP 0.0014, matrix factorization 0.026, but the hierarchical factorization did
  not move (train loss 1.02): from std 1e-2 its gradient norm at init is 5.9e-9 (1.3e-7 at width
  512), far below the eps = 1e-4 of ``normalized_gd`` (trajlab.dynamics.optimizers), which then
  acts as plain GD with step lr / eps. The authors' GroupRMSprop uses eps = 1e-6; with it (same
  run, eps patched) the hierarchical factorization reaches train loss 0.03 / error 0.21 by step
  20000. The preset therefore sets ``optimizer.normalized_eps=1e-6`` (the authors' value) for all
  three models.

Tables and figures, pure functions of the stored tables (nothing is recomputed, every number is a
stored column):

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
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import by_run, crossing, fmt, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TC_METRICS = ("train_loss", "reconstruction_error", "component_norms", "cp_rank_estimate")
HT_METRICS = ("train_loss", "reconstruction_error", "local_component_norms", "matricization_effective_ranks")
CP_METRICS = ("train_loss", "reconstruction_error", "component_norms")
MATRIX_METRICS = ("train_loss", "test_error", "effective_rank", "singular_values")

#: A run "fits" the observations when its final train loss (mean squared error; entries of W* have
#: mean square 1) is at most this: the claims are about solutions, not about unfinished runs.
_FIT = 1e-3
#: Incremental: the last of the top-r norms reaches half its final value at least this many times
#: later than the first.
_SPREAD = 1.25
#: Recovery: reconstruction error below this counts as recovering W*.
_RECOVERED = 0.05


def _fitted(runs: pd.DataFrame) -> pd.DataFrame:
    if "final.train_loss" not in runs.columns:
        return runs.iloc[0:0]
    loss = pd.to_numeric(runs["final.train_loss"], errors="coerce")
    return runs[loss <= _FIT]


def _half_times(trajectory: pd.DataFrame, columns: list[str]) -> list[float]:
    """Step at which each column first reaches half its final value (interpolated)."""
    steps = trajectory["step"].to_numpy(dtype=float)
    out = []
    for column in columns:
        values = trajectory[column].to_numpy(dtype=float)
        out.append(crossing(steps, values, float(values[-1]) / 2))
    return out


def _incremental(halves: list[float]) -> tuple[bool, float]:
    """(ordered with 1% slack, spread last / first). A first half-time of 0 (already at half its
    final value at init) spreads infinitely only when a later one is positive: components that are
    all at half at init were not learned one by one (spread 1)."""
    ordered = all(b >= 0.99 * a for a, b in zip(halves, halves[1:]))
    if not halves:
        return ordered, math.inf
    if halves[0] > 0:
        spread = halves[-1] / halves[0]
    else:
        spread = math.inf if halves[-1] > 0 else 1.0
    return ordered, spread


# ---------------------------------------------------------------------------------------------
# tables and figures of both presets


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
    from matplotlib.figure import Figure

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
    from matplotlib import colormaps

    colors = colormaps[cmap](np.linspace(0.0, 0.85, max(len(columns), 1)))
    for color, column in zip(colors, columns):
        values = trajectory[column].to_numpy(dtype=float)
        ax.plot(steps, values, color=color, linewidth=1.3)


def component_norms_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Top CP component norms (``comp_i``, i-th largest at each step) against the step, a panel per
    CP run (one per init scale and seed), largest init first; titles give the final estimated CP
    rank and reconstruction error. Razin et al. 2021: from small init the norms rise one at a time."""
    from matplotlib.figure import Figure

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
    from matplotlib.figure import Figure

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
    from matplotlib.figure import Figure

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


# --- tc-incremental claims ----------------------------------------------------------------------


def _cp_runs(data) -> pd.DataFrame:
    runs = data.runs
    return runs[runs["model.kind"] == "cp"] if "model.kind" in runs.columns else runs


def _smallest_scale_fitted(runs: pd.DataFrame):
    """(fitted runs at the smallest init scale of ``runs``, or None and the reason they are missing)."""
    if len(runs) == 0:
        return None, "no CP run"
    smallest = runs["model.scale"].min()
    at_smallest = runs[runs["model.scale"] == smallest]
    fitted = _fitted(at_smallest)
    if len(fitted) == 0:
        losses = ", ".join(fmt(float(v)) for v in pd.to_numeric(at_smallest.get("final.train_loss"), errors="coerce"))
        return None, (f"the runs at the smallest init std {fmt(smallest)} did not fit the observations within "
                      f"train.max_steps (final train loss {losses} > {_FIT:g})")
    return fitted, ""


def components_learned_incrementally(data):
    """For the CP runs that fit the observations: at the smallest init scale, the top r = problem.rank
    component norms reach half their final value in order (1% slack) and the last at least 1.25x
    later than the first; when a larger init scale also fit, more spread out than at the largest
    such scale. Not measured when the runs at the smallest init did not fit."""
    cp_runs = _cp_runs(data)
    smallest_runs, reason = _smallest_scale_fitted(cp_runs)
    if smallest_runs is None:
        return not_measured(reason)
    runs = _fitted(cp_runs)
    trajectories = by_run(data.trajectories)
    spreads: dict[float, list[float]] = {}
    parts, holds = [], True
    smallest, largest = float(smallest_runs["model.scale"].iloc[0]), float(runs["model.scale"].max())
    for _, run in runs.sort_values(["model.scale", "run_id"], ascending=[False, True]).iterrows():
        rank = int(run["problem.rank"])
        columns = [f"comp_{i}" for i in range(rank)]
        trajectory = trajectories.get(run["run_id"])
        if trajectory is None or any(c not in trajectory.columns for c in columns):
            continue
        halves = _half_times(trajectory, columns)
        ordered, spread = _incremental(halves)
        spreads.setdefault(float(run["model.scale"]), []).append(spread)
        parts.append(f"std {fmt(run['model.scale'])}: half-times " + " / ".join(fmt(h) for h in halves)
                     + f" (spread {fmt(spread)}x{'' if ordered else ', not in order'})")
        if float(run["model.scale"]) == smallest:
            holds &= bool(ordered and spread >= _SPREAD)
    if smallest not in spreads:
        return not_measured("the fitted CP runs do not record their top problem.rank component norms (train.top_k)")
    if largest != smallest and largest in spreads:
        holds &= bool(np.median(spreads[smallest]) > np.median(spreads[largest]))
    return "; ".join(parts), holds


def smaller_init_lower_rank(data):
    """Among the CP runs that fit the observations: the median estimated CP rank at the smallest
    init scale is at most that at the largest, and the median reconstruction error is lower."""
    runs = _fitted(_cp_runs(data))
    if "final.cp_rank_estimate" not in runs.columns or runs["model.scale"].nunique() < 2:
        return not_measured("needs fitted CP runs at two init scales or more, with cp_rank_estimate")
    parts = []
    medians = {}
    for scale, block in runs.groupby("model.scale"):
        rank = float(pd.to_numeric(block["final.cp_rank_estimate"]).median())
        error = float(pd.to_numeric(block["final.reconstruction_error"]).median())
        medians[scale] = (rank, error)
        parts.append(f"std {fmt(scale)}: estimated rank {fmt(rank)}, reconstruction error {fmt(error)}")
    small, large = min(medians), max(medians)
    holds = medians[small][0] <= medians[large][0] and medians[small][1] < medians[large][1]
    return "; ".join(reversed(parts)) + " (estimated rank r + 1 = above the largest rank tried)", bool(holds)


def smallest_init_recovers_low_rank(data):
    """Every CP run at the smallest init scale that fits the observations has estimated CP rank
    equal to the target's (problem.rank) and reconstruction error below 0.05 (not measured when none
    of them fit within train.max_steps)."""
    runs = _cp_runs(data)
    if "final.cp_rank_estimate" not in runs.columns or len(runs) == 0:
        return not_measured("no CP run with cp_rank_estimate")
    small, reason = _smallest_scale_fitted(runs)
    if small is None:
        return not_measured(reason)
    parts, holds = [], True
    for _, run in small.iterrows():
        rank, error = float(run["final.cp_rank_estimate"]), float(run["final.reconstruction_error"])
        loss = float(run["final.train_loss"])
        parts.append(f"std {fmt(run['model.scale'])} seed {run['seed']}: train loss {fmt(loss)}, estimated rank "
                     f"{fmt(rank)} (target {int(run['problem.rank'])}), reconstruction error {fmt(error)}")
        holds &= bool(rank == int(run["problem.rank"]) and error < _RECOVERED)
    return "; ".join(parts), holds


def tc_figures(data) -> dict:
    return {
        "component_norms": component_norms_figure(data.runs, data.trajectories),
        "reconstruction": reconstruction_figure(data.runs, data.trajectories),
        "final_values": table_figure(final_values_table(data.runs), "tc-incremental: final values"),
    }


TC_INCREMENTAL = Preset(
    name="tc-incremental",
    description="CP tensor completion: components learned one by one, low tensor rank (Razin et al. 2021)",
    base=RunConfig(
        problem=ProblemConfig(kind="tensor_completion", order=4, dim=10, rank=5, observations=2000, target="cp"),
        model=ModelConfig(kind="cp", width=1000, init="gaussian", scale=1e-2),
        optimizer=OptimizerConfig(name="normalized_gd", lr=1e-2),
        train=TrainConfig(max_steps=1_000_000, tol=1e-6, record_points=200, top_k=10),
        metrics=TC_METRICS,
    ),
    axes={"model.scale": [5e-2, 1e-2, 5e-3]},
    quick={
        "problem.dim": 8,
        "problem.rank": 3,
        "problem.observations": 800,
        "model.width": 50,
        "model.scale": [0.3, 0.1, 0.05],
        "train.max_steps": 4000,
        "train.record": "linear",
        "train.record_every": 50,
        "train.top_k": 8,
    },
    figures=tc_figures,
    claims=(
        Claim(
            "CP components are learned one after another from small init: at the smallest init the top problem.rank "
            "component norms reach half their final value in order, spread out in time, and more so than at the "
            "largest init (paper, Fig. 2)",
            components_learned_incrementally,
        ),
        Claim(
            "the smaller the init, the lower the tensor rank of the solution: estimated CP rank at the smallest init "
            "at most that at the largest, and lower reconstruction error (fitted runs)",
            smaller_init_lower_rank,
        ),
        Claim(
            "from the smallest init, GD fits the observations with a tensor of the target's CP rank and recovers W* "
            "(reconstruction error < 0.05)",
            smallest_init_recovers_low_rank,
        ),
    ),
)


# --- htf-incremental claims ---------------------------------------------------------------------


def _root_level(order: int) -> int:
    levels, size = 0, order
    while size > 1:
        size, levels = (size + 1) // 2, levels + 1
    return levels


def local_components_learned_incrementally(data):
    """For every hierarchical run that fits the observations: at the root of the mode tree, the top
    r = problem.rank local component norms reach half their final value in order (1% slack), the
    last at least 1.25x later than the first."""
    runs = data.runs[data.runs["model.kind"] == "hierarchical"] if "model.kind" in data.runs.columns else data.runs
    runs = _fitted(runs)
    if len(runs) == 0:
        return not_measured(f"no hierarchical run fit the observations (final train loss <= {_FIT:g})")
    trajectories = by_run(data.trajectories)
    parts, holds, checked = [], True, 0
    for _, run in runs.sort_values(["model.scale", "run_id"], ascending=[False, True]).iterrows():
        level = _root_level(int(run["problem.order"]))
        columns = [f"local_l{level}_n0_{i}" for i in range(int(run["problem.rank"]))]
        trajectory = trajectories.get(run["run_id"])
        if trajectory is None or any(c not in trajectory.columns for c in columns):
            continue
        halves = _half_times(trajectory, columns)
        ordered, spread = _incremental(halves)
        checked += 1
        holds &= bool(ordered and spread >= _SPREAD)
        parts.append(f"std {fmt(run['model.scale'])}: root half-times " + " / ".join(fmt(h) for h in halves)
                     + f" (spread {fmt(spread)}x{'' if ordered else ', not in order'})")
    if checked == 0:
        return not_measured("no fitted hierarchical run records its top problem.rank local component norms (train.top_k)")
    return "; ".join(parts), holds


def low_hierarchical_rank(data):
    """Every hierarchical run that fits the observations has a solution of low hierarchical rank:
    the effective rank of every matricization along the mode tree is at most problem.rank."""
    runs = data.runs[data.runs["model.kind"] == "hierarchical"] if "model.kind" in data.runs.columns else data.runs
    runs = _fitted(runs)
    columns = [c for c in runs.columns if c.startswith("final.erank_l")]
    if len(runs) == 0 or not columns:
        return not_measured("no fitted hierarchical run records matricization_effective_ranks")
    parts, holds = [], True
    for _, run in runs.iterrows():
        values = pd.to_numeric(run[columns], errors="coerce").astype(float)
        top = float(values.max())
        holds &= bool(top <= int(run["problem.rank"]))
        parts.append(f"std {fmt(run['model.scale'])}: largest matricization effective rank {fmt(top)} "
                     f"(target hierarchical rank {int(run['problem.rank'])})")
    return "; ".join(parts), holds


def _comparison(data, kind: str):
    runs = data.runs
    if "model.kind" not in runs.columns:
        return not_measured("no model.kind column")
    errors = reconstruction_error_of(runs)
    keys = [c for c in ("problem.order", "problem.dim", "problem.rank", "problem.observations", "problem.seed",
                        "problem.target") if c in runs.columns]
    parts, holds, compared, unfit = [], True, 0, []
    for key, block in runs.groupby(keys, sort=True):
        fitted = _fitted(block)
        tensor = fitted[fitted["model.kind"] == kind]
        matrix = fitted[fitted["model.kind"] == "deep_linear"]
        unfit += sorted(set(block["model.kind"]) - set(fitted["model.kind"]))
        if len(tensor) == 0 or len(matrix) == 0:
            continue
        compared += 1
        worst_tensor, best_matrix = float(errors[tensor.index].max()), float(errors[matrix.index].min())
        holds &= bool(worst_tensor < best_matrix)
        where = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in zip(keys, key if isinstance(key, tuple) else (key,)))
        depths = "/".join(str(int(d)) for d in sorted(matrix["model.depth"].unique()))
        parts.append(f"{where}: {kind} (worst run) {fmt(worst_tensor)} vs matrix depth {depths} (best run) "
                     f"{fmt(best_matrix)}")
    if compared == 0:
        reason = f"needs fitted {kind} and matrix factorization runs on the same problem"
        if unfit:
            reason += f" (did not fit the observations within train.max_steps: {', '.join(sorted(set(unfit)))})"
        return not_measured(reason)
    return "; ".join(parts), holds


def hierarchical_beats_matrix(data):
    """On the same problem (W* and observed entries), every hierarchical run that fits the
    observations reaches a lower reconstruction error ||W - W*||_F / ||W*||_F than the best fitted
    matrix factorization run of the matricized tensor."""
    return _comparison(data, "hierarchical")


def cp_beats_matrix(data):
    """As :func:`hierarchical_beats_matrix`, for the CP factorization runs."""
    return _comparison(data, "cp")


def htf_figures(data) -> dict:
    return {
        "local_component_norms": local_component_norms_figure(data.runs, data.trajectories),
        "reconstruction": reconstruction_figure(data.runs, data.trajectories),
        "final_values": table_figure(final_values_table(data.runs), "htf-incremental: final values"),
    }


HTF_INCREMENTAL = Preset(
    name="htf-incremental",
    description="Hierarchical tensor completion vs CP and depth-3 matrix factorization (Razin et al. 2022)",
    base=RunConfig(
        problem=ProblemConfig(kind="tensor_completion", order=3, dim=16, rank=5, observations=2048, target="hierarchical"),
        model=ModelConfig(kind="hierarchical", width=512, core="product", init="gaussian", scale=1e-2),
        optimizer=OptimizerConfig(name="normalized_gd", lr=1e-2, normalized_eps=1e-6),
        train=TrainConfig(max_steps=1_000_000, tol=1e-6, record_points=200, top_k=10),
        metrics=HT_METRICS,
    ),
    variants=(
        {"model.kind": "hierarchical", "metrics": list(HT_METRICS)},
        {"model.kind": "cp", "metrics": list(CP_METRICS)},
        {
            "problem.kind": "matricized_tensor_completion",
            "problem.row_modes": 2,
            "model.kind": "deep_linear",
            "model.depth": 3,
            "model.width": None,
            "model.init": "gaussian_e2e",
            "model.scale": 1e-3,
            "metrics": list(MATRIX_METRICS),
        },
    ),
    quick={
        "problem.dim": 8,
        "problem.rank": 3,
        "problem.observations": 256,
        "model.width": 32,
        "model.scale": 0.1,
        "train.max_steps": 6000,
        "train.record": "linear",
        "train.record_every": 60,
        "train.top_k": 6,
    },
    figures=htf_figures,
    claims=(
        Claim(
            "local components of the hierarchical factorization are learned one after another: at the root, the top "
            "problem.rank local component norms reach half their final value in order, spread out in time (2022 paper)",
            local_components_learned_incrementally,
        ),
        Claim(
            "the hierarchical factorization's solution has low hierarchical rank: every matricization along the mode "
            "tree has effective rank at most the target's hierarchical rank",
            low_hierarchical_rank,
        ),
        Claim(
            "on the same observations, hierarchical tensor factorization reaches a lower reconstruction error than "
            "depth-3 matrix factorization of the matricized tensor",
            hierarchical_beats_matrix,
        ),
        Claim(
            "on the same observations, CP factorization reaches a lower reconstruction error than depth-3 matrix "
            "factorization of the matricized tensor",
            cp_beats_matrix,
        ),
    ),
)
