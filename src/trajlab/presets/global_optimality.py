"""Preset ``global-optimality``: "Global Optimality in Neural Network Training" (Haeffele & Vidal,
CVPR 2017).

For parallel positively homogeneous units W = (v_r, u_r) and the regularizer Theta(W) = sum_r
||u_r|| ||v_r|| of the same degree, a local minimum of loss + lambda Theta at which some unit is
entirely zero is a global minimum (their Theorem 2). Their meta-algorithm: descend to a local
minimum; if a unit is zero, stop (certified); otherwise add a unit and continue. Implemented in
:mod:`trajlab.baselines.meta_algorithm` (PALM local descent with exact group soft-thresholding, so
useless units become exactly zero; the added unit solves the polar problem) and run here as
baselines, one row per problem in ``baselines.parquet``:

(a) ``meta_algorithm_matrix``: matrix completion with rank-one units, f(W) = sum_r u_r v_r^T,
    loss 1/2 sum over the observed entries of the squared residual (half the *sum*, Haeffele &
    Vidal's convention); 20 x 20 rank-3 target, 200 of 400 entries observed (``problem.kind=
    completion``). The unit added is the top singular pair of -grad loss
    (:func:`trajlab.models.mlp.matrix_polar`). Compared with ``nuclear_norm_regularized``: the convex
    problem min_X 1/2 ||P_Omega(X) - y||^2 + lambda ||X||_* solved by cvxpy with SCS (eps 1e-9),
    which bounds every factorization from below (Theta >= ||X||_*), and with the Fenchel dual value
    at the meta-algorithm's residual (``dual_bound``, a certified lower bound needing no solver).
    lambda = 0.125 sigma_max(P_Omega^*(y)) (X = 0 is optimal from lambda = sigma_max on).
(b) ``meta_algorithm_relu``: a one-hidden-layer ReLU network f(x) = sum_r u_r relu(<v_r, x>) (no
    biases: positively homogeneous of degree 2, like Theta), loss 1/(2 S) sum_i (f(x_i) - y_i)^2 on
    100 samples of a 3-unit ReLU teacher in R^5 (``problem.kind=teacher_student``). The polar
    problem is not tractable here; it is maximized by a search over 2000 random directions refined by
    projected gradient ascent, so the certificate reads "converged, some unit exactly zero, and no
    unit found whose addition lowers the objective" (polar / lambda <= 1 + 1e-4). No convex bound is
    computed for this case; the objective is reported. lambda = 0.25 times the searched polar value
    at f = 0.

Both runs of the meta-algorithm start from one random unit, so the history shows units being
added one at a time until a zero unit certifies the point.

The engine runs of the sweep are the *unregularized* counterparts on the same data, for contrast
(and because a sweep folder needs runs): plain GD on the factorization W_2 W_1 (depth 2, width 20,
small init; mean squared error over the observations) and on a 6-unit two-layer ReLU network
(mean squared error). Without the regularizer they fit the observations (train loss -> 0), the
factorization with a larger nuclear norm than the regularized solution.

Baseline rows also carry ``train_loss`` in the engine's convention (mean squared error over the
observations or samples) so that the table of final values compares them with the runs.

Measured with ``trajlab run global-optimality`` (float64 baselines; 24 s of CPU on a 2-core machine
shared with other jobs, 114 s wall there; ``--quick`` only shortens the two engine runs):
- matrix, lambda = 0.9716: from one unit, units were added while sigma_max(-grad) / lambda was
  5.61, 2.64, 1.21, 1.035, 1.0000036, 1.0000009; at 7 units one is exactly zero with polar / lambda
  = 1.00000034: certified after 3979 PALM sweeps (14 s wall). Objective 27.2644801839 vs the convex
  optimum 27.2644801874 (SCS, 0.1-0.3 s): relative difference 1.3e-10 (the meta-algorithm is the
  lower of the two: SCS's own error); the dual bound at the meta-algorithm's residual is
  27.2644720609 (3e-7 relative below). Same rank (5) and nuclear norm (24.397601) as the convex
  solution; test error 0.129 against 0.043 for the unregularized GD run, whose nuclear norm is 32.7.
- ReLU net, lambda = 0.3079: the random first unit is thresholded to zero at once, a saddle
  (polar / lambda = 4.0), and replaced by the polar unit; units added while polar / lambda was
  1.32, 1.19, 1.0019, 1.0008, 1.00005; at 6 units (5 nonzero) one is zero with polar / lambda =
  1.0000007: certified after 12311 sweeps (30 s wall). Objective 0.65956962 = loss 0.18925 +
  lambda x 1.52772 (train mean squared error 0.378).

Figures: :func:`meta_algorithm_figure`, the meta-algorithm's progress (objective and polar value per
outer iteration, i.e. per unit added) against the convex bound in the matrix case, and
:func:`unregularized_runs_figure`, the unregularized runs of the sweep for contrast. The
meta-algorithm rows (``meta_algorithm_matrix`` / ``meta_algorithm_relu``) store their history as
JSON (one dict per outer iteration: units, objective, zero_units, polar_ratio, sweeps).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, to_flat
from trajlab.presets.claims import baseline_rows, fmt, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns
from trajlab.sweep.runner import BaselineJob, baseline_id, flat_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: lambda = this times sigma_max(P_Omega^*(y)) for the matrix case.
LAMBDA_MATRIX = 0.125
#: lambda = this times the (searched) polar value at f = 0 for the ReLU network.
LAMBDA_RELU = 0.25
#: The meta-algorithm's objective must match the convex optimum to this relative tolerance (SCS runs
#: at eps 1e-9; the two agree to ~1e-10 relative on the default problem).
MATCH_TOLERANCE = 1e-6
RELU_POLAR_TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------------
# baselines


def _columns(problem: ProblemConfig, name: str) -> dict:
    columns = {f"problem.{k}": v for k, v in flat_row(problem).items()}
    columns["baseline"] = name
    return columns


def global_optimality_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """Per distinct completion problem: the meta-algorithm and the convex bound; per teacher-student
    problem: the meta-algorithm for the ReLU network."""
    problems = {json.dumps(to_flat(c.problem), sort_keys=True): c.problem for c in configs}
    jobs = []
    for key, problem in problems.items():
        flat = json.loads(key)
        if problem.kind == "completion":
            for name, compute in (
                ("meta_algorithm_matrix", _matrix_meta(problem)),
                ("nuclear_norm_regularized", _matrix_convex(problem)),
            ):
                jobs.append(BaselineJob(baseline_id(name, flat), _columns(problem, name), compute))
        elif problem.kind == "teacher_student":
            name = "meta_algorithm_relu"
            jobs.append(BaselineJob(baseline_id(name, flat), _columns(problem, name), _relu_meta(problem)))
    return jobs


def _completion(problem: ProblemConfig):
    from trajlab.problems.matrix import make_matrix_problem

    data = make_matrix_problem(problem)
    adjoint = np.zeros((problem.m, problem.n))
    np.add.at(adjoint, (data.rows, data.cols), data.values)
    lam = LAMBDA_MATRIX * float(np.linalg.norm(adjoint, 2))
    return data, lam


def _matrix_summary(x: np.ndarray, target: np.ndarray) -> dict:
    singular = np.linalg.svd(x, compute_uv=False)
    p = singular / singular.sum() if singular.sum() > 0 else singular
    entropy = -float(np.sum(p[p > 0] * np.log(p[p > 0])))
    return dict(
        nuclear_norm=float(singular.sum()),
        rank=int(np.sum(singular > 1e-6 * singular[0])) if singular[0] > 0 else 0,
        effective_rank=float(np.exp(entropy)) if singular.sum() > 0 else 0.0,
        test_error=float(np.sum((x - target) ** 2) / np.sum(target**2)),
    )


def _history_text(history) -> str:
    return json.dumps([{k: (bool(v) if isinstance(v, (bool, np.bool_)) else v) for k, v in h.items()} for h in history])


def _result_columns(result, lam: float, fraction: float) -> dict:
    return dict(
        lam=lam,
        lam_fraction=fraction,
        objective=result.objective,
        loss=result.loss,
        regularizer=result.regularizer,
        units=result.units,
        zero_units=result.zero_units,
        polar_ratio=result.polar_ratio,
        converged=result.converged,
        certificate=result.certificate,
        outer_iterations=result.outer_iterations,
        inner_iterations=result.inner_iterations,
        history=_history_text(result.history),
        solve_s=result.solve_s,
        status="certified" if result.certificate else "not certified",
    )


def _matrix_meta(problem: ProblemConfig):
    def compute() -> dict:
        from trajlab.baselines.meta_algorithm import completion_dual_bound, meta_algorithm_matrix

        data, lam = _completion(problem)
        shape = (problem.m, problem.n)
        result = meta_algorithm_matrix(shape, data.rows, data.cols, data.values, lam, seed=problem.seed)
        x = result.params.outer.T @ result.params.inner
        return dict(
            **_result_columns(result, lam, LAMBDA_MATRIX),
            **_matrix_summary(x, data.target),
            dual_bound=completion_dual_bound(shape, data.rows, data.cols, data.values, lam, x),
            train_loss=2.0 * result.loss / len(data.values),  # the engine's convention: mean squared error
        )

    return compute


def _matrix_convex(problem: ProblemConfig):
    def compute() -> dict:
        from trajlab.baselines.meta_algorithm import nuclear_norm_regularized

        data, lam = _completion(problem)
        result = nuclear_norm_regularized((problem.m, problem.n), data.rows, data.cols, data.values, lam)
        summary = _matrix_summary(result["solution"], data.target)
        residual = result["solution"][data.rows, data.cols] - data.values
        return dict(
            lam=lam,
            lam_fraction=LAMBDA_MATRIX,
            objective=result["objective"],
            solver_objective=result["solver_objective"],
            nuclear_norm=result["nuclear_norm"],
            rank=result["rank"],
            effective_rank=summary["effective_rank"],
            test_error=summary["test_error"],
            train_loss=float(np.mean(residual**2)),
            solve_s=result["solve_s"],
            status=result["status"],
        )

    return compute


def _relu_meta(problem: ProblemConfig):
    def compute() -> dict:
        from trajlab.baselines.meta_algorithm import meta_algorithm_relu, relu_polar
        from trajlab.problems.registry import make_network_problem

        data = make_network_problem(problem)
        outputs = np.asarray(data.outputs, np.float64)[:, None]
        lam = LAMBDA_RELU * relu_polar(data.inputs, -outputs)[0]  # the polar value at f = 0
        result = meta_algorithm_relu(data.inputs, outputs, lam, seed=problem.seed, polar_tol=RELU_POLAR_TOLERANCE)
        products = np.linalg.norm(result.params.inner, axis=1) * np.linalg.norm(result.params.outer, axis=1)
        return dict(
            **_result_columns(result, lam, LAMBDA_RELU),
            nonzero_units=int(np.sum(products > 0)),
            train_loss=2.0 * result.loss,  # the engine's convention: mean squared error
        )

    return compute


# ---------------------------------------------------------------------------------------------
# claims


def _meta_rows(data) -> pd.DataFrame:
    parts = [baseline_rows(data, name) for name in ("meta_algorithm_matrix", "meta_algorithm_relu")]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def certificate_holds(data):
    """Every run of the meta-algorithm ends certified: its last local descent converged, some unit is
    exactly zero and the polar value is at most lambda (1 + 1e-6 for rank-one units, exact; 1 + 1e-4
    for ReLU units, searched)."""
    rows = _meta_rows(data)
    if len(rows) == 0:
        return not_measured("no meta-algorithm baseline")
    parts, holds = [], True
    for _, row in rows.iterrows():
        case = "matrix" if row["baseline"] == "meta_algorithm_matrix" else "ReLU net"
        holds &= bool(row["certificate"])
        parts.append(
            f"{case}: {'certified' if row['certificate'] else 'NOT certified'} after {int(row['outer_iterations'])} "
            f"outer iterations ({int(row['inner_iterations'])} PALM sweeps): {int(row['units'])} units, "
            f"{int(row['zero_units'])} zero, polar / lambda = {float(row['polar_ratio']):.9f}, objective "
            f"{float(row['objective']):.10g} (lambda {fmt(float(row['lam']), 4)})"
        )
    return "; ".join(parts), holds


def _problem_keys(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """One text key per row from its problem columns (missing values, None or NaN, as '')."""

    def text(value) -> str:
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    return frame[keys].apply(lambda row: "|".join(text(v) for v in row), axis=1)


def matches_convex_optimum(data):
    """Matrix case: the meta-algorithm's objective equals the convex optimum (cvxpy/SCS) within a relative
    1e-6, and neither is below the certified dual bound (relative slack 1e-9)."""
    meta, convex = baseline_rows(data, "meta_algorithm_matrix"), baseline_rows(data, "nuclear_norm_regularized")
    if len(meta) == 0 or len(convex) == 0:
        return not_measured("needs the meta_algorithm_matrix and nuclear_norm_regularized baselines")
    keys = [c for c in meta.columns if c.startswith("problem.") and c in convex.columns]
    convex_keys = _problem_keys(convex, keys)
    parts, holds = [], True
    for index, row in meta.iterrows():
        match = convex[convex_keys == _problem_keys(meta.loc[[index]], keys).iloc[0]]
        if len(match) == 0:
            continue
        reference = match.iloc[0]
        objective, optimum, dual = float(row["objective"]), float(reference["objective"]), float(row["dual_bound"])
        relative = abs(objective - optimum) / abs(optimum)
        ok = relative <= MATCH_TOLERANCE and objective >= dual - 1e-9 * abs(dual) and optimum >= dual - 1e-9 * abs(dual)
        holds &= ok
        parts.append(
            f"meta-algorithm {objective:.12g} vs convex optimum (SCS, {reference['status']}) {optimum:.12g}: relative "
            f"difference {fmt(relative)}; dual bound {dual:.12g} (gap {fmt((objective - dual) / abs(objective))} relative); "
            f"rank {int(row['rank'])} vs {int(reference['rank'])}, nuclear norm {fmt(float(row['nuclear_norm']), 8)} vs "
            f"{fmt(float(reference['nuclear_norm']), 8)}"
        )
    if not parts:
        return not_measured("no convex bound for the meta-algorithm's problem")
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures


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
    from matplotlib.figure import Figure

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
    from matplotlib.figure import Figure

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


def global_optimality_figures(data) -> dict:
    return {
        "meta_algorithm": meta_algorithm_figure(data.baselines),
        "unregularized_runs": unregularized_runs_figure(data.runs, data.trajectories, data.baselines),
    }


_RELU_VARIANT = {
    "problem.kind": "teacher_student",
    "problem.n": 5,
    "problem.teacher_width": 3,
    "problem.observations": 100,
    "model.kind": "two_layer",
    "model.width": 6,
    "model.init": "gaussian",
    "model.scale": 1.0,
    "model.activation": "relu",
    "optimizer.lr": 0.05,
    "metrics": ["train_loss", "parameter_norm"],
}

GLOBAL_OPTIMALITY = Preset(
    name="global-optimality",
    description="Haeffele & Vidal 2017: the meta-algorithm certifies global optimality (zero unit) and meets the convex bound",
    base=RunConfig(
        problem=ProblemConfig(kind="completion", m=20, n=20, rank=3, observations=200),
        model=ModelConfig(depth=2, init="gaussian_e2e", scale=1e-3),
        optimizer=OptimizerConfig(name="gd", lr=0.5),
        train=TrainConfig(max_steps=20_000, tol=1e-8, record_points=60),
        metrics=("train_loss", "test_error", "nuclear_norm", "effective_rank"),
    ),
    variants=({}, _RELU_VARIANT),
    quick={"train.max_steps": 2000, "train.record_points": 25},
    baselines=global_optimality_jobs,
    figures=global_optimality_figures,
    claims=(
        Claim(
            "the meta-algorithm ends at a certified global minimum: a local minimum with an entirely zero unit "
            "(Haeffele & Vidal 2017, Theorem 2), for rank-one units and for ReLU units",
            certificate_holds,
        ),
        Claim(
            "matrix case: the objective it reaches equals the convex optimum min 1/2 ||P(X) - y||^2 + lambda ||X||_* "
            "(cvxpy, SCS) to solver tolerance (relative 1e-6)",
            matches_convex_optimum,
        ),
    ),
)
