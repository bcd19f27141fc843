"""Preset ``dropout-factorization``: dropout is a low-rank regularizer (Cavazza, Haeffele, Lane,
Morerio, Murino, Vidal, "Dropout as a Low-Rank Regularizer for Matrix Factorization", AISTATS 2018;
René Vidal's CVPR 2017 tutorial "Mathematics of Deep Learning").

Model and formulas: :mod:`trajlab.families.dropout_factorization`. Matrix factorization U V^T of a
fully observed 20 x 16 matrix (rank-5 signal plus 30% noise, ||Y||_2 = 1; problem
``structured_matrix``) with Bernoulli(theta) dropout of whole columns, the same mask for u_i and v_i,
rescaled by 1/theta; loss the squared Frobenius norm (sum, no 1/2). Its expectation is
||Y - U V^T||_F^2 + lambda sum_i ||u_i||^2 ||v_i||^2 with lambda = (1 - theta) / theta, and the global
minimum of that over width-r factorizations is that of ||Y - X||^2 + (lambda / r) ||X||_*^2: the
singular values of Y shrunk by an amount that grows with lambda / r (``dropout_optimum``).

Runs (float64, init N(0, 0.1^2), seed 0):
(a) dropout rate: GD (lr 0.05) on the closed form at width 8, theta in RETAINS: the rank of U V^T at
    the end falls as the rate 1 - theta rises, and equals the closed-form rank;
(b) SGD with dropout: one mask per step drawn through the family's ``minibatch`` hook
    (``optimizer.batch_size = 1``), width 8, theta = 0.5, step 0.02 / (1 + k / 1000)
    (``model.decay_steps``; with a constant step the iterate keeps moving in a neighbourhood of the
    minimum) against GD on the closed form from the same init;
(c) width: widths in WIDTHS at a fixed theta = 0.5 (lambda = 1), and at the size-dependent rate
    lambda(r) = r / 8, i.e. theta(r) = 1 / (1 + r / 8) (so that lambda / r = 1/8 is the same for every
    width, as the paper's argument needs; theta(8) = 0.5, the fixed rate): with the fixed rate the
    induced regularizer (1 / r) ||X||_*^2 vanishes as the width grows and the rank of the solution
    grows with it; with the scaled rate every width >= the solution's rank gives the same solution.
    (The paper's text was not at hand: it argues that the dropout rate must grow with the size of
    the factorization; lambda proportional to r is what keeps the induced problem fixed, and is what
    is used here.)

``rank`` counts singular values above 1e-3 of the largest. The singular values of Y are 1, 0.782,
0.744, 0.438, 0.313, 0.195, 0.136, 0.129, 0.101, ...

Measured with ``trajlab run dropout-factorization --quick`` (15,000 steps; 13 s of CPU on a 2-core
machine shared with other jobs):
(a) dropout rate 1 - theta = 0.10, 0.30, 0.50, 0.70, 0.85: rank 8, 6, 5, 4, 3 = the closed form's,
    every run within 7e-11 (relative) of the global optimum;
(b) SGD with dropout: rank 5, closed-form objective 0.93689 vs GD's 0.93630 = the global optimum
    (relative 6.3e-4; 1.8e-3 with the step decaying over 2000 steps instead of 1000, which the quick
    run's 15,000 steps are too few for; 1.7e-4 after 100,000 steps with decay 2000);
(c) fixed theta = 0.5, width 4, 8, 16, 32, 64: rank 4, 5, 6, 9, 13, objective 1.307, 0.936, 0.620,
    0.386, 0.226 (less and less regularized); lambda = r / 8: rank 4, 5, 5, 5, 5, objective 0.9404,
    then 0.936301 for every width >= 8 (spread 7e-16). Width 4 is below the unconstrained rank 5, so
    the rank constraint binds there.
``trajlab run dropout-factorization`` (60,000 steps; 24 s of CPU): the same ranks and objectives;
SGD with dropout 0.93651 vs 0.93630 (relative 2.2e-4); every GD run within 1.3e-9 of the optimum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RETAINS = (0.9, 0.7, 0.5, 0.3, 0.15)
WIDTHS = (4, 8, 16, 32, 64)
#: lambda(r) = r / REFERENCE_WIDTH for the size-dependent rate (theta = 0.5 at the reference width).
REFERENCE_WIDTH = 8
#: SGD with dropout and GD on the closed form agree when their closed-form objectives differ by at most
#: this relative amount (and both are within it of the global optimum).
SGD_TOLERANCE = 1e-3
#: A GD run has reached the global minimum when its closed-form objective is within this relative amount.
GD_TOLERANCE = 1e-6


def scaled_retain(width: int) -> float:
    """theta(r) = 1 / (1 + r / 8): lambda(r) = (1 - theta) / theta = r / 8."""
    return 1.0 / (1.0 + width / REFERENCE_WIDTH)


def _role(run) -> str:
    if int(run.get("optimizer.batch_size", 0)) > 0:
        return "sgd"
    width, retain = int(run["model.width"]), float(run["model.retain"])
    roles = []
    if width == 8:
        roles.append("rate")
    if np.isclose(retain, 0.5):
        roles.append("fixed")
    if np.isclose(retain, scaled_retain(width)):
        roles.append("scaled")
    return ",".join(roles)


def _runs(data, role: str) -> pd.DataFrame:
    runs = data.runs
    mask = runs.apply(lambda run: role in _role(run).split(","), axis=1) if len(runs) else pd.Series(dtype=bool)
    return runs[mask]


def _closed_form(run) -> dict:
    from trajlab.families.dropout_factorization import dropout_lambda, dropout_optimum
    from trajlab.families.structured_factorization import StructuredMatrixConfig, structured_matrix_data

    fields = {f[len("problem."):]: run[f] for f in run.index if f.startswith("problem.") and f != "problem.kind"}
    problem = StructuredMatrixConfig(**{k: (int(v) if k in ("m", "n", "rank", "seed") else
                                            (float(v) if k in ("noise", "observed") else v)) for k, v in fields.items()})
    y = structured_matrix_data(problem)["y"]
    return dropout_optimum(np.linalg.svd(y, compute_uv=False), dropout_lambda(float(run["model.retain"])),
                           int(run["model.width"]))


_NEEDS = ["model.width", "model.retain", "final.expected_loss", "final.optimum_gap", "final.rank"]


def rank_falls_with_rate(data):
    """GD on the closed form, width 8: the final rank is non-increasing as the dropout rate 1 - theta rises,
    lower at the highest rate than at the lowest, equal to the closed-form rank, and every run is within
    1e-6 (relative) of the global optimum."""
    reason = lacks(data, runs=_NEEDS)
    if reason:
        return not_measured(reason)
    runs = _runs(data, "rate").sort_values("model.retain", ascending=False)
    if len(runs) < 2:
        return not_measured("needs GD runs at two dropout rates")
    ranks = runs["final.rank"].astype(int).to_numpy()
    expected = [_closed_form(run)["rank"] for _, run in runs.iterrows()]
    gaps = (runs["final.optimum_gap"] / runs["final.expected_loss"]).abs().to_numpy()
    holds = bool(np.all(np.diff(ranks) <= 0) and ranks[-1] < ranks[0] and list(ranks) == expected
                 and np.all(gaps <= GD_TOLERANCE))
    pairs = ", ".join(f"{1 - t:.2f}: {r} ({e})" for t, r, e in zip(runs["model.retain"], ranks, expected))
    return f"dropout rate: rank (closed form) {pairs}; largest relative gap to the optimum {fmt(gaps.max())}", holds


def sgd_matches_closed_form(data):
    """SGD with dropout (one mask per step, decaying step) and GD on the closed form, same width, rate and
    init: same final rank, equal to the closed-form rank, and closed-form objectives within 1e-3 relative of
    each other and of the global optimum."""
    reason = lacks(data, runs=_NEEDS + ["optimizer.batch_size"])
    if reason:
        return not_measured(reason)
    sgd = _runs(data, "sgd")
    if len(sgd) == 0:
        return not_measured("no SGD run with dropout")
    parts, holds = [], True
    for _, run in sgd.iterrows():
        gd = data.runs[(data.runs["optimizer.batch_size"] == 0) & (data.runs["model.width"] == run["model.width"])
                       & np.isclose(data.runs["model.retain"], run["model.retain"]) & (data.runs["seed"] == run["seed"])]
        if len(gd) == 0:
            parts.append(f"width {run['model.width']}: no GD run to compare")
            holds = False
            continue
        gd = gd.iloc[0]
        optimum = _closed_form(run)
        objective_sgd, objective_gd = float(run["final.expected_loss"]), float(gd["final.expected_loss"])
        between = abs(objective_sgd - objective_gd) / objective_gd
        to_optimum = abs(objective_sgd - optimum["value"]) / optimum["value"]
        ok = (int(run["final.rank"]) == int(gd["final.rank"]) == optimum["rank"] and between <= SGD_TOLERANCE
              and to_optimum <= SGD_TOLERANCE)
        holds &= ok
        parts.append(
            f"width {int(run['model.width'])}, theta {float(run['model.retain']):g}: SGD with dropout rank "
            f"{int(run['final.rank'])}, objective {objective_sgd:.8g}; GD on the closed form rank {int(gd['final.rank'])}, "
            f"{objective_gd:.8g}; global optimum rank {optimum['rank']}, {optimum['value']:.8g}: relative differences "
            f"{fmt(between)} (SGD vs GD), {fmt(to_optimum)} (SGD vs optimum)"
        )
    return "; ".join(parts), holds


def rate_must_grow_with_width(data):
    """Across widths: at the fixed rate (theta = 0.5) the rank grows with the width (strictly from the
    smallest to the largest width); at the size-dependent rate lambda = r / 8 the rank and the objective are
    the same for every width >= the solution's rank (objective within 1e-6 relative), and every run is at
    the closed-form global optimum (1e-6 relative)."""
    reason = lacks(data, runs=_NEEDS)
    if reason:
        return not_measured(reason)
    fixed = _runs(data, "fixed").sort_values("model.width")
    scaled = _runs(data, "scaled").sort_values("model.width")
    if fixed["model.width"].nunique() < 2 or scaled["model.width"].nunique() < 2:
        return not_measured("needs runs at two widths with the fixed and the scaled rate")
    parts, holds = [], True
    for name, runs in (("fixed theta = 0.5", fixed), ("scaled lambda = r / 8", scaled)):
        ranks = runs["final.rank"].astype(int).to_numpy()
        values = runs["final.expected_loss"].astype(float).to_numpy()
        gaps = (runs["final.optimum_gap"] / runs["final.expected_loss"]).abs().to_numpy()
        holds &= bool(np.all(gaps <= GD_TOLERANCE))
        parts.append(f"{name}: width: rank, objective " + ", ".join(
            f"{int(w)}: {r}, {v:.6g}" for w, r, v in zip(runs["model.width"], ranks, values))
            + f" (largest gap to the optimum {fmt(gaps.max())})")
        if name.startswith("fixed"):
            holds &= bool(np.all(np.diff(ranks) >= 0) and ranks[-1] > ranks[0])
        else:
            wide = ranks < runs["model.width"].to_numpy()  # the widths that do not cap the rank
            if wide.sum() >= 2:
                spread = (values[wide].max() - values[wide].min()) / values[wide].min()
                holds &= bool(len(set(ranks[wide])) == 1 and spread <= GD_TOLERANCE)
                parts[-1] += f"; widths above the rank: objective spread {fmt(spread)}"
            else:
                holds = False
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures


def dropout_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Left: final rank against the dropout rate (GD, width 8) with the closed-form rank; middle: final rank
    against the width at the fixed and the size-dependent rate; right: closed-form objective minus the
    global optimum along SGD with dropout and GD on the closed form."""
    from matplotlib.figure import Figure

    require_columns(runs, ["run_id", "model.width", "model.retain", "final.rank"], "runs")
    require_columns(trajectories, ["run_id", "step", "optimum_gap"], "trajectories")
    fig = Figure(figsize=(13.0, 4.0), layout="constrained")
    rate_ax, width_ax, sgd_ax = fig.subplots(1, 3)

    class _Data:
        pass

    data = _Data()
    data.runs = runs
    rate = _runs(data, "rate").sort_values("model.retain", ascending=False)
    if len(rate):
        rate_ax.plot(1 - rate["model.retain"], rate["final.rank"], marker="o", label="GD on the closed form")
        rate_ax.plot(1 - rate["model.retain"], [_closed_form(r)["rank"] for _, r in rate.iterrows()], "k:",
                     marker="x", label="closed-form optimum")
    rate_ax.set(xlabel="dropout rate 1 - theta", ylabel="rank of U V^T", title="width 8")
    for role, label in (("fixed", "fixed theta = 0.5"), ("scaled", "lambda = r / 8")):
        group = _runs(data, role).sort_values("model.width")
        if len(group):
            width_ax.plot(group["model.width"], group["final.rank"], marker="o", label=label)
    width_ax.set_xscale("log", base=2)
    widths = sorted(runs["model.width"].unique())
    width_ax.set_xticks(widths, [str(int(w)) for w in widths])
    width_ax.minorticks_off()
    width_ax.set(xlabel="width r", ylabel="rank of U V^T", title="rank against the width")
    by_run = {rid: t.sort_values("step") for rid, t in trajectories.groupby("run_id")}
    sgd = _runs(data, "sgd")
    for _, run in sgd.iterrows():
        match = runs[(runs.get("optimizer.batch_size", 0) == 0) & (runs["model.width"] == run["model.width"])
                     & np.isclose(runs["model.retain"], run["model.retain"])]
        for label, rid in (("SGD with dropout", run["run_id"]), *(("GD on the closed form", r) for r in match["run_id"])):
            trajectory = by_run.get(rid)
            if trajectory is not None:
                sgd_ax.plot(np.maximum(trajectory["step"], 1), np.maximum(trajectory["optimum_gap"].abs(), 1e-16),
                            label=label)
    sgd_ax.set(xscale="log", yscale="log", xlabel="step", ylabel="|closed form - global optimum|",
               title="SGD with dropout vs GD (width 8, theta 0.5)")
    for ax in (rate_ax, width_ax, sgd_ax):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def dropout_figures(data) -> dict:
    return {"dropout": dropout_figure(data.runs, data.trajectories)}


VARIANTS = (
    *({"model.width": 8, "model.retain": retain} for retain in RETAINS),
    {"model.width": 8, "model.retain": 0.5, "optimizer.batch_size": 1, "optimizer.lr": 0.02, "model.decay_steps": 1000},
    *({"model.width": width, "model.retain": 0.5} for width in WIDTHS if width != 8),
    *({"model.width": width, "model.retain": scaled_retain(width)} for width in WIDTHS if width != 8),
)

DROPOUT_FACTORIZATION = Preset(
    name="dropout-factorization",
    description="Dropout of whole columns is a low-rank regularizer: (lambda / r) ||X||_*^2 (Cavazza et al. 2018)",
    base=RunConfig(
        problem=ProblemConfig(kind="structured_matrix", m=20, n=16, rank=5, noise=0.3, observed=1.0),
        model=ModelConfig(kind="dropout_factorization", width=8, retain=0.5, scale=0.1),
        optimizer=OptimizerConfig(name="gd", lr=0.05),
        train=TrainConfig(max_steps=60_000, tol=0.0, record_points=30, x64=True),
    ),
    variants=VARIANTS,
    quick={"train.max_steps": 15_000, "train.record_points": 20},
    figures=dropout_figures,
    table_metrics=("expected_loss", "optimum_gap", "rank"),
    claims=(
        Claim("the rank of the solution falls as the dropout rate rises (GD on the closed-form objective, width 8), "
              "as the closed form (lambda / r) ||X||_*^2 predicts", rank_falls_with_rate),
        Claim("SGD with dropout and GD on the closed-form expected objective reach solutions of the same rank and "
              "objective (relative 1e-3), the closed-form global optimum", sgd_matches_closed_form),
        Claim("the dropout rate must grow with the factorization size: at a fixed rate the rank grows with the width "
              "(the induced regularizer vanishes), at lambda proportional to the width every wide enough "
              "factorization reaches the same solution", rate_must_grow_with_width),
    ),
)
