"""Preset ``max-margin``: "The Implicit Bias of Gradient Descent on Separable Data" (Soudry, Hoffer,
Nacson, Gunasekar, Srebro, JMLR 2018, Fig. 1).

Setting (the paper's): the 2-D separable set with support vectors (0.5, 1.5), (1.5, 0.5) labelled +1,
their negatives labelled -1, and 12 random points off the margin (``problem.dataset=separable_2d``,
16 observations; :func:`trajlab.problems.classification.make_soudry_separable`); a linear predictor
f(x) = <w, x> (``model.kind=mlp``, depth 1, no bias, linear), logistic loss, started at the origin,
trained by GD and by GD with momentum 0.9; iterations recorded on a log scale up to 10^8.

Step size. The paper uses eta = 1 / sigma_max(X) on the *sum* loss sum_i log(1 + exp(-y_i <w, x_i>));
our loss is the *mean* over the S samples, so GD on it with lr = S * eta = S / sigma_max(X) makes
exactly the paper's iterates. For the default problem (seed 0) sigma_max(X) = 11.454 and
lr = 16 / 11.454 = 1.3969 (:func:`paper_step_size`; it is computed from the problem at import, so
a changed ``problem.seed`` or ``problem.observations`` needs ``--set optimizer.lr=...``; the
baseline row stores ``sigma_max`` and ``paper_lr`` of every problem). Their theorem asks for
eta < 2 / (beta sigma_max^2) with beta = 1/4 the smoothness of the logistic loss, i.e. lr <
8 S / sigma_max^2 = 0.976 here: the paper's step exceeds that sufficient condition on this set
(sigma_max > 8); the loss still falls monotonically from the first step on, where the curvature
has dropped far below its value 1/4 at the origin.

"From the origin": ``model.init=gaussian`` with per-entry std ``model.scale`` = 1e-12 (scale must be
> 0). The first update has norm 1.87, so the trajectory equals the one from w = 0 to a relative
1e-12 (below float32 rounding, and within 1e-12 in float64).

Precision: float64 (``train.x64``). At t ~ 10^6 the update lr * grad ~ ||w_svm||^2 / t is below
float32's resolution of ||w(t)|| ~ 10, so a float32 run stops moving there.

Baseline: the hard-margin SVM (no bias) solved independently by cvxpy
(:func:`trajlab.baselines.svm.hard_margin_svm`), stored in ``baselines.parquet`` with its distance to
the closed form w_svm = (1/2, 1/2) (margin sqrt 2, ||w_svm||^2 = 1/2). The trajectory metric
``angle_to_max_margin`` measures against the closed form; the claim checks that the two agree.

Theory used by the claims (Soudry et al., Theorem 3 and Section 3): w(t) = w_svm log t + w~ + r(t)
with r -> 0, so the loss falls like L(t) ~ (1/S) sum_SV exp(-<w(t), y x>) = ||w_svm||^2 / (lr t)
(the dual variables sum to ||w_svm||^2), ||w(t)|| grows like ||w_svm|| log t, and the angle is
O(1 / log t). On this set the two support directions carry equal dual variables, so w~ is parallel
to w_svm and the angle decays *faster* than c / log t: linearizing the support-vector dynamics in
log t gives the perpendicular part of r(t) the rate t^(-1/4) (the eigenvalue sum_n alpha_n
<x_n, (1, -1)/sqrt 2>^2 = 1/4 of A = sum_n alpha_n x_n x_n^T with alpha_n = 1/8 on the four
support vectors), so theta(t) ~ C t^(-1/4) / log t, with slower-decaying transients from the
nearest non-support point (margin 1.45 in units of w_svm: t^(-0.45)). The claims therefore check
the bound (theta log t non-increasing) and report the fit c / log t with its quality beside a power
law; a generic (asymmetric) set would show the c / log t law itself.

GD with momentum at the paper's step: the velocity accumulates the first, large gradient for
~1 / (1 - 0.9) steps and throws w to ||w|| = 19.2 (loss 4.5e-13) in ~50 iterations, along the
direction of that gradient (angle 0.0377 rad). From there the loss is ~10^5 times below the 1/t
curve, so nothing moves visibly until t ~ ||w_svm||^2 (1 - 0.9) / (lr L) ~ 10^11: over the whole
horizon the angle stays at 0.0377. The preset also runs momentum at lr (1 - 0.9), whose effective
step lr / (1 - momentum) equals GD's: that run converges in direction like GD. The claims check
the runs whose effective step does not exceed GD's and list the other one with its numbers.

Measured with ``trajlab run max-margin`` (float64; 3 runs of 10^8 iterations, 200 log-spaced
records; 245 s of CPU on a 2-core machine shared with other jobs, 14 min wall there):
- SVM baseline (cvxpy, CLARABEL, polished): w_svm = (0.5, 0.5) to 1e-10, margin 1.4142135624,
  support vectors the 4 of the paper, angle to the closed form 1e-16.
- GD, lr = 1.3969: the angle is 0.041 after the first step, crosses near 0 around t ~ 170 (1e-4),
  comes back to 3.2e-3 at t ~ 1300, then falls monotonically: 7.65e-4 at t = 1.07e6, 2.04e-4 at
  t = 1e8 (angle x log t: 0.0106 -> 0.0038). Fit c / log t on [1.07e6, 1e8]: c = 0.0070, R^2 =
  0.39 (relative rms 0.38): a poor fit; power law t^-p: p = 0.291, R^2 = 0.99999 (the prediction
  t^(-1/4) / log t has local exponent 1/4 + 1/ln t = 0.31 there). t L(t) lr = 0.4999 with slope
  -0.9998 of log L; d ||w|| / d log t = 0.7069 (||w_svm|| = 0.7071).
- momentum 0.9, lr = 0.13969 (GD's effective step): angle 1.24e-3 -> 2.79e-4 on [1.07e6, 1e8]
  (p = 0.328), t L lr_eff = 0.4999, d ||w|| / d log t = 0.7067.
- momentum 0.9, lr = 1.3969 (the paper's): angle 0.03769 from t ~ 100 to 1e8, ||w|| = 19.22, loss
  4.5e-13, unchanged to 4 digits over the horizon.
``--quick`` (10^6 iterations, ~13 s CPU): GD angle 2.53e-3 at t = 1.06e4 -> 7.8e-4 at 1e6,
c = 0.0179 with R^2 = 0.58, p = 0.26; all three claims hold.

Figures (:func:`max_margin_figure`, the paper's Fig. 1, and :func:`angle_fit_figure`, with
:func:`angle_decay_fit`, the fits of the angle's decay they are read with): the x-axis is the
iteration count (``step``), as in the paper; GD and GD with momentum at different step sizes share
it. Every curve is drawn from the stored trajectories (``angle_to_max_margin``,
``normalized_margin``, ``train_loss``, ``parameter_norm``) and the stored hard-margin SVM baseline
(``max_margin_svm``: its ``margin`` = 1 / ||w_svm||); nothing is recomputed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.baselines.svm import angle_between, hard_margin_svm
from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, to_flat
from trajlab.presets.claims import baseline_rows, by_run, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.problems.classification import SOUDRY_MARGIN, SOUDRY_MAX_MARGIN
from trajlab.problems.registry import make_network_problem
from trajlab.report.columns import require_columns
from trajlab.sweep.runner import BaselineJob, baseline_id, flat_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("train_loss", "angle_to_max_margin", "normalized_margin", "parameter_norm", "train_accuracy")
MOMENTUM = 0.9
#: The paper's 4 support vectors plus 12 random points off the margin.
OBSERVATIONS = 16
#: The claims look at the last this many decades of iterations.
TAIL_DECADES = 2.0


def paper_step_size(problem: ProblemConfig) -> float:
    """lr = S / sigma_max(X): Soudry et al.'s eta = 1 / sigma_max(X) on the sum loss, for our mean loss."""
    data = make_network_problem(problem)
    return data.inputs.shape[0] / float(np.linalg.svd(data.inputs, compute_uv=False)[0])


PROBLEM = ProblemConfig(kind="classification", dataset="separable_2d", observations=OBSERVATIONS, loss="logistic")
PAPER_LR = paper_step_size(PROBLEM)


# ---------------------------------------------------------------------------------------------
# baseline: the hard-margin SVM, solved independently and compared with the closed form


def svm_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """One ``max_margin_svm`` baseline per distinct separable_2d problem."""
    problems = {
        json.dumps(to_flat(c.problem), sort_keys=True): c.problem
        for c in configs
        if c.problem.kind == "classification" and c.problem.dataset == "separable_2d"
    }
    jobs = []
    for key, problem in problems.items():
        columns = {f"problem.{k}": v for k, v in flat_row(problem).items()}
        columns["baseline"] = "max_margin_svm"
        jobs.append(BaselineJob(baseline_id("max_margin_svm", json.loads(key)), columns, _svm_solver(problem)))
    return jobs


def _svm_solver(problem: ProblemConfig):
    def compute() -> dict:
        data = make_network_problem(problem)
        result = hard_margin_svm(data.inputs, data.labels)
        sigma_max = float(np.linalg.svd(data.inputs, compute_uv=False)[0])
        return dict(
            w_svm_0=float(result.weights[0]),
            w_svm_1=float(result.weights[1]),
            margin=float(result.margin),
            w_svm_norm_squared=float(result.weights @ result.weights),
            closed_form_angle=float(angle_between(result.weights, SOUDRY_MAX_MARGIN)),
            closed_form_error=float(np.max(np.abs(result.weights - SOUDRY_MAX_MARGIN))),
            support=",".join(str(int(i)) for i in result.support),
            sigma_max=sigma_max,
            paper_lr=data.inputs.shape[0] / sigma_max,
            solve_s=float(result.solve_s),
            status=result.status,
        )

    return compute


# ---------------------------------------------------------------------------------------------
# claims


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


def _svm(data):
    rows = baseline_rows(data, "max_margin_svm")
    return None if len(rows) == 0 else rows.iloc[0]


def _scoped_runs(data):
    """(runs whose effective step lr / (1 - momentum) is at most GD's, the others); GD's step is the
    largest GD lr in the sweep (the paper's S / sigma_max(X) by default)."""
    runs = data.runs
    gd = runs[runs["optimizer.name"] == "gd"]
    limit = float(gd["optimizer.lr"].max()) if len(gd) else PAPER_LR
    steps = runs.apply(effective_step, axis=1)
    inside = steps <= limit * (1 + 1e-9)
    return runs[inside], runs[~inside]


def _tail(trajectory, decades=TAIL_DECADES):
    steps = trajectory["step"].to_numpy(dtype=float)
    return trajectory[(steps >= max(2.0, steps.max() / 10.0**decades))]


def svm_matches_closed_form(data):
    """The cvxpy hard-margin SVM agrees with the closed form w_svm = (1/2, 1/2): angle <= 1e-6 rad and
    margin within 1e-6 of sqrt 2."""
    svm = _svm(data)
    if svm is None:
        return not_measured("no max_margin_svm baseline")
    angle, margin = float(svm["closed_form_angle"]), float(svm["margin"])
    measured = (
        f"w_svm = ({float(svm['w_svm_0']):.10f}, {float(svm['w_svm_1']):.10f}) ({svm['status']}), angle to (1/2, 1/2) "
        f"{fmt(angle)} rad, margin {margin:.10f} (sqrt 2 = {SOUDRY_MARGIN:.10f}), support vectors {svm['support']}"
    )
    return measured, angle <= 1e-6 and abs(margin - SOUDRY_MARGIN) <= 1e-6


def angle_decreases_to_zero(data):
    """GD runs (and momentum runs whose effective step does not exceed GD's): over the last two
    decades of iterations the angle to w_svm never increases (relative slack 1e-9), ends below 0.8 of
    its value at the tail's start, and theta log t never increases either (the decay is at least as
    fast as the O(1/log t) of Theorem 3). Reports the fit theta ~ c / log t (c, R^2) and the power law
    theta ~ t^-p."""
    reason = lacks(data, runs=["optimizer.name", "optimizer.lr"], trajectories=["angle_to_max_margin"])
    if reason:
        return not_measured(reason)
    trajectories = by_run(data.trajectories)
    scoped, others = _scoped_runs(data)
    parts, holds, checked = [], True, 0
    for _, run in scoped.iterrows():
        trajectory = trajectories.get(run["run_id"])
        if trajectory is None:
            continue
        end = _tail(trajectory)
        if len(end) < 3:
            parts.append(f"{run_label(run)}: too few records on the tail")
            holds = False
            continue
        checked += 1
        t = end["step"].to_numpy(dtype=float)
        angle = end["angle_to_max_margin"].to_numpy(dtype=float)
        scaled = angle * np.log(t)
        monotone = bool(np.all(np.diff(angle) <= 1e-9 * angle[:-1]))
        bound = bool(np.all(np.diff(scaled) <= 1e-9 * scaled[:-1]))
        fell = bool(angle[-1] < 0.8 * angle[0])
        fit = angle_decay_fit(trajectory["step"], trajectory["angle_to_max_margin"], TAIL_DECADES)
        holds &= monotone and bound and fell
        parts.append(
            f"{run_label(run)}: angle {fmt(angle[0])} at t = {fmt(t[0])} -> {fmt(angle[-1])} at t = {fmt(t[-1])}"
            f"{'' if monotone else ' (not monotone)'}; angle x log t {fmt(scaled[0])} -> {fmt(scaled[-1])}"
            f"{'' if bound else ' (rises)'}; fit c / log t: c = {fmt(fit.c)}, R^2 = {fmt(fit.r2)}, relative rms "
            f"{fmt(fit.relative_rms)}; power law t^-p: p = {fmt(fit.p)}, R^2 = {fmt(fit.power_r2, 5)}"
        )
    if checked == 0:
        return not_measured("no GD run with records on the tail")
    for _, run in others.iterrows():
        trajectory = trajectories.get(run["run_id"])
        if trajectory is not None:
            end = _tail(trajectory)
            parts.append(
                f"left out (effective step {fmt(effective_step(run))} > GD's): {run_label(run)}: angle "
                f"{fmt(float(end['angle_to_max_margin'].iloc[0]))} -> {fmt(float(end['angle_to_max_margin'].iloc[-1]))}"
            )
    return "; ".join(parts), holds


def loss_decays_like_one_over_t(data):
    """Runs as for the angle claim, on the last two decades: the slope of log L against log t is in
    [-1.05, -0.95] and t L(t) lr_eff ends within 2% of ||w_svm||^2 (the SVM baseline's; 1/2 in
    closed form), lr_eff = lr / (1 - momentum); ||w(t)|| grows by ||w_svm|| per e-fold of t (5%)."""
    reason = lacks(data, runs=["optimizer.name", "optimizer.lr"], trajectories=["train_loss", "parameter_norm"])
    if reason:
        return not_measured(reason)
    svm = _svm(data)
    w_squared = float(svm["w_svm_norm_squared"]) if svm is not None else 0.5
    trajectories = by_run(data.trajectories)
    scoped, others = _scoped_runs(data)
    parts, holds, checked = [], True, 0
    for _, run in scoped.iterrows():
        trajectory = trajectories.get(run["run_id"])
        if trajectory is None:
            continue
        end = _tail(trajectory)
        if len(end) < 3:
            continue
        checked += 1
        t = end["step"].to_numpy(dtype=float)
        loss = end["train_loss"].to_numpy(dtype=float)
        norm = end["parameter_norm"].to_numpy(dtype=float)
        slope = float(np.polyfit(np.log(t), np.log(loss), 1)[0])
        constant = float(t[-1] * loss[-1] * effective_step(run))
        growth = float(np.polyfit(np.log(t), norm, 1)[0])
        ok = -1.05 <= slope <= -0.95 and abs(constant / w_squared - 1) <= 0.02
        ok &= abs(growth / math.sqrt(w_squared) - 1) <= 0.05
        holds &= ok
        parts.append(
            f"{run_label(run)}: slope of log L {fmt(slope, 4)}, t L lr_eff = {fmt(constant, 4)} (||w_svm||^2 = "
            f"{fmt(w_squared, 4)}), d||w|| / d log t = {fmt(growth, 4)} (||w_svm|| = {fmt(math.sqrt(w_squared), 4)})"
        )
    if checked == 0:
        return not_measured("no GD run with records on the tail")
    for _, run in others.iterrows():
        trajectory = trajectories.get(run["run_id"])
        if trajectory is not None:
            end = _tail(trajectory)
            loss = end["train_loss"].to_numpy(dtype=float)
            parts.append(
                f"left out (effective step {fmt(effective_step(run))} > GD's): {run_label(run)}: loss "
                f"{fmt(loss[0])} -> {fmt(loss[-1])}, ||w|| {fmt(float(end['parameter_norm'].iloc[-1]))}"
            )
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# the fit of the angle's decay, and the figures


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
    from matplotlib.figure import Figure

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
    from matplotlib.figure import Figure

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


def max_margin_figures(data) -> dict:
    return {
        "max_margin": max_margin_figure(data.runs, data.trajectories, data.baselines),
        "angle_decay_fit": angle_fit_figure(data.runs, data.trajectories, TAIL_DECADES),
    }


MAX_MARGIN = Preset(
    name="max-margin",
    description="GD on separable data converges to the max-margin direction, slowly (Soudry et al. 2018, Fig. 1)",
    base=RunConfig(
        problem=PROBLEM,
        model=ModelConfig(kind="mlp", depth=1, width=1, activation="linear", bias=False, init="gaussian", scale=1e-12),
        optimizer=OptimizerConfig(name="gd", lr=PAPER_LR, momentum=MOMENTUM),
        train=TrainConfig(max_steps=100_000_000, tol=0.0, record_points=200, x64=True),
        metrics=METRICS,
    ),
    variants=(
        {"optimizer.name": "gd", "optimizer.lr": PAPER_LR},
        {"optimizer.name": "momentum", "optimizer.lr": PAPER_LR},
        {"optimizer.name": "momentum", "optimizer.lr": PAPER_LR * (1 - MOMENTUM)},
    ),
    quick={"train.max_steps": 1_000_000, "train.record_points": 80},
    baselines=svm_jobs,
    figures=max_margin_figures,
    claims=(
        Claim(
            "the hard-margin SVM solved by cvxpy is the closed form w_svm = (1/2, 1/2) with margin sqrt 2",
            svm_matches_closed_form,
        ),
        Claim(
            "GD from the origin: the angle between w(t) and w_svm decreases to 0, at rate O(1/log t) (Theorem 3); "
            "on this set faster (w~ is parallel to w_svm: ~t^(-1/4)/log t), so the fit c / log t is reported, not "
            "required (momentum runs with effective step lr/(1-momentum) above GD's are listed, not checked)",
            angle_decreases_to_zero,
        ),
        Claim(
            "the loss decays like 1/t: t L(t) -> ||w_svm||^2 / lr_eff, while ||w(t)|| grows like ||w_svm|| log t",
            loss_decays_like_one_over_t,
        ),
    ),
)
