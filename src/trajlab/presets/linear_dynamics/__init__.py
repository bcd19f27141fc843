"""Presets on the optimization dynamics of deep linear networks.

- ``acceleration-lp``: depth accelerates gradient descent on l_4 regression but hardly on l_2
  (Arora, Cohen, Hazan, "On the Optimization of Deep Networks: Implicit Acceleration by
  Overparameterization", ICML 2018).
- ``balanced-convergence``: from a balanced initialization with a positive deficiency margin,
  gradient descent converges at a linear rate; for scalar output a random balanced init has a
  positive margin with constant probability (Arora, Cohen, Golowich, Hu, "A Convergence Analysis of
  Gradient Descent for Deep Linear Neural Networks", ICLR 2019).
- ``saxe-dynamics``: each mode of the target is learned along a logistic curve, strong modes first
  (Saxe, McClelland, Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear
  neural networks", ICLR 2014).

Every number quoted in the presets' docstrings was measured with this code (float64, CPU). Their
figures and tables are in :mod:`trajlab.presets.linear_dynamics.figures`, imported when a figure
is drawn or a claim checked (it imports matplotlib).
"""

from __future__ import annotations

import json
import math

import numpy as np

from trajlab.baselines.lp_regression import lp_regression_minimum
from trajlab.config import FlowConfig, ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, to_flat
from trajlab.presets.claims import baseline_rows, by_run, crossing, fmt, lacks, not_measured, value_at_step
from trajlab.presets.preset import Claim, Preset
from trajlab.sweep.runner import BaselineJob, baseline_id, flat_row
from trajlab.theory.margins import positive_margin_probability

# The table of final values (``trajlab run`` / ``show``) needs these four; the rest are per preset.
_TABLE_METRICS = ("train_loss", "test_error", "effective_rank", "nuclear_norm")


# ---------------------------------------------------------------------------------------------
# baselines


def lp_optimum_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """One ``lp_optimum`` baseline per distinct regression problem: the minimum of its l_p loss."""
    problems = {
        json.dumps(to_flat(c.problem), sort_keys=True): c.problem for c in configs if c.problem.kind == "regression"
    }
    jobs = []
    for key, problem in problems.items():
        columns = {f"problem.{k}": v for k, v in flat_row(problem).items()}
        columns["baseline"] = "lp_optimum"
        jobs.append(BaselineJob(baseline_id("lp_optimum", json.loads(key)), columns, _lp_optimum_solver(problem)))
    return jobs


def _lp_optimum_solver(problem: ProblemConfig):
    def compute() -> dict:
        from trajlab.problems.regression import make_regression

        data = make_regression(problem)
        value, _, iterations = lp_regression_minimum(data.inputs, data.outputs, problem.p)
        return dict(train_loss=value, iterations=iterations, status="optimal")

    return compute


def margin_probability_jobs(configs: list[RunConfig]) -> list[BaselineJob]:
    """For every whitened problem with m = 1 and init scale: the closed-form margin probability."""
    keys = {}
    for config in configs:
        if config.problem.kind == "whitened" and config.problem.m == 1 and config.model.init == "balanced_random":
            key = json.dumps({"problem": to_flat(config.problem), "scale": config.model.scale}, sort_keys=True)
            keys[key] = (config.problem, config.model.scale)
    jobs = []
    for key, (problem, scale) in keys.items():
        columns = {f"problem.{k}": v for k, v in flat_row(problem).items()}
        columns["model.scale"] = scale
        columns["baseline"] = "margin_probability"
        job_id = baseline_id("margin_probability", json.loads(key))
        jobs.append(BaselineJob(job_id, columns, _margin_solver(problem, scale)))
    return jobs


def _margin_solver(problem: ProblemConfig, scale: float):
    def compute() -> dict:
        from trajlab.problems.regression import make_whitened

        return dict(probability=positive_margin_probability(make_whitened(problem).target, scale), status="closed_form")

    return compute


# ---------------------------------------------------------------------------------------------
# figures


def acceleration_figures(data) -> dict:
    from trajlab.plots import table_figure
    from trajlab.presets.linear_dynamics.figures import acceleration_figure, loss_at_steps

    steps = [s for s in (100, 300, 1000, 2000, 3000, 5000) if s <= int(data.runs["steps"].max())]
    table = loss_at_steps(data.runs, data.trajectories, data.baselines, steps=steps)
    return {
        "excess_loss": acceleration_figure(data.runs, data.trajectories, data.baselines),
        "excess_loss_table": table_figure(table, title="loss - min loss at fixed step counts"),
    }


def balanced_convergence_figures(data) -> dict:
    from trajlab.plots import table_figure
    from trajlab.presets.linear_dynamics.figures import (
        convergence_bound_figure,
        margin_probability_figure,
        margin_table,
        plateau_figure,
    )

    table = margin_table(data.runs, data.trajectories)
    columns = [
        "seeds", "positive", "probability", "median c", "done | c>0", "done | c<=0", "steps | c>0", "steps | c<=0"
    ]
    return {
        "margin_probability": margin_probability_figure(data.runs, data.trajectories, data.baselines),
        "margin_table": table_figure(table[columns], title="deficiency margin at init, and convergence"),
        "convergence_bound": convergence_bound_figure(data.runs, data.trajectories),
        "plateau": plateau_figure(data.runs, data.trajectories),
    }


def saxe_figures(data) -> dict:
    from trajlab.plots import table_figure
    from trajlab.presets.linear_dynamics.figures import mode_error_figure, mode_strengths_figure, mode_table

    table = mode_table(data.runs, data.trajectories).reset_index()
    first_seed = table.groupby("model.scale")["seed"].transform("min")
    first = table[table["seed"] == first_seed].drop(columns="seed").set_index(["model.scale", "mode"])
    return {
        "mode_strengths": mode_strengths_figure(data.runs, data.trajectories),
        "mode_error": mode_error_figure(data.runs, data.trajectories),
        "mode_table": table_figure(first, title="modes of the smallest seed per init scale"),
    }


# ---------------------------------------------------------------------------------------------
# claims of acceleration-lp: excess loss (loss - the lp_optimum baseline) at fixed step counts

#: The float64 floor of the excess loss: smaller values (or round-off below the optimum) count as this.
_EXCESS_FLOOR = 1e-16


def _excess_losses(data, steps):
    """{(p, optimizer, depth): {step: excess loss}}, the best over step sizes/seeds; None without an lp_optimum."""
    optimum = baseline_rows(data, "lp_optimum")
    if len(optimum) == 0 or "problem.p" not in optimum.columns:
        return None
    best_of_p = optimum.groupby("problem.p")["train_loss"].min()
    trajectories = by_run(data.trajectories)
    table: dict = {}
    for _, run in data.runs.iterrows():
        p = run["problem.p"]
        trajectory = trajectories.get(run["run_id"])
        if p not in best_of_p.index or trajectory is None:
            continue
        key = (float(p), str(run["optimizer.name"]), int(run["model.depth"]))
        for step in steps:
            value = max(value_at_step(trajectory, "train_loss", step) - float(best_of_p[p]), _EXCESS_FLOOR)
            previous = table.setdefault(key, {}).get(step, math.inf)
            table[key][step] = value if math.isnan(previous) or value < previous else previous
    return table


def _last_step(data, candidates=(3000, 2000, 1000)):
    """The largest of ``candidates`` every run reached (None if none, or without the columns needed)."""
    if lacks(data, runs=["run_id", "steps", "problem.p", "optimizer.name", "model.depth"],
             trajectories=["run_id", "step", "train_loss"]):
        return None
    reached = int(data.runs["steps"].min())
    return next((step for step in candidates if step <= reached), None)


def _gd(table, p, depth, step):
    return table.get((float(p), "gd", depth), {}).get(step, math.nan)


def deep_gd_beats_depth_one_on_l4(data):
    """l4: GD at depth 2 and 3 has a lower excess loss than depth-1 GD at the largest of 3000 / 2000 / 1000
    steps that every run reached."""
    step = _last_step(data)
    table = _excess_losses(data, [step]) if step else None
    if table is None:
        return not_measured("needs l_p regression runs of >= 1000 steps and the lp_optimum baseline")
    shallow, deep = _gd(table, 4, 1, step), [_gd(table, 4, d, step) for d in (2, 3)]
    if any(math.isnan(v) for v in [shallow, *deep]):
        return not_measured("needs GD at depth 1, 2 and 3 on l4 regression")
    measured = f"excess loss at {step} steps: depth 1 {fmt(shallow)}, depth 2 {fmt(deep[0])}, depth 3 {fmt(deep[1])}"
    return measured, all(v < shallow for v in deep)


def deep_gd_beats_adaptive_on_l4(data):
    """l4: GD at depth 2 and 3 has a lower excess loss than AdaGrad and AdaDelta (best step size each)."""
    step = _last_step(data)
    table = _excess_losses(data, [step]) if step else None
    if table is None:
        return not_measured("needs l_p regression runs of >= 1000 steps and the lp_optimum baseline")
    deep = [_gd(table, 4, d, step) for d in (2, 3)]
    adaptive = {name: table.get((4.0, name, 1), {}).get(step, math.nan) for name in ("adagrad", "adadelta")}
    if any(math.isnan(v) for v in [*deep, *adaptive.values()]):
        return not_measured("needs GD at depth 2 and 3, AdaGrad and AdaDelta on l4 regression")
    measured = (
        f"excess loss at {step} steps: GD depth 2 {fmt(deep[0])}, depth 3 {fmt(deep[1])}; "
        f"AdaGrad {fmt(adaptive['adagrad'])}, AdaDelta {fmt(adaptive['adadelta'])}"
    )
    return measured, max(deep) < min(adaptive.values())


#: "No comparable gain": depth's gain on l2 is at most this fraction of its gain on l4.
_COMPARABLE = 0.01


def no_comparable_gain_on_l2(data):
    """l2: depth-1 GD is ahead of depth 2 and 3 at 1000 steps, and at the last common step the gain
    of depth (depth-1 excess loss / best deep excess loss) is at most 1/100 of its gain on l4."""
    step = _last_step(data)
    table = _excess_losses(data, sorted({1000, step})) if step else None
    if table is None:
        return not_measured("needs l_p regression runs of >= 1000 steps and the lp_optimum baseline")
    values = {(p, d, k): _gd(table, p, d, k) for p in (2, 4) for d in (1, 2, 3) for k in (1000, step)}
    if any(math.isnan(v) for v in values.values()):
        return not_measured("needs GD at depth 1, 2 and 3 on l2 and l4 regression")
    ahead = all(values[(2, 1, 1000)] < values[(2, d, 1000)] for d in (2, 3))
    gain = {p: values[(p, 1, step)] / min(values[(p, 2, step)], values[(p, 3, step)]) for p in (2, 4)}
    measured = (
        f"l2 excess loss at 1000 steps: depth 1 {fmt(values[(2, 1, 1000)])}, depth 2 {fmt(values[(2, 2, 1000)])}, "
        f"depth 3 {fmt(values[(2, 3, 1000)])}; gain of depth at {step} steps: l2 {fmt(gain[2])}x, l4 {fmt(gain[4])}x"
    )
    return measured, bool(ahead and gain[2] <= _COMPARABLE * gain[4])


# ---------------------------------------------------------------------------------------------
# acceleration-lp

_DIABETES = ProblemConfig(kind="regression", dataset="diabetes", m=1, n=10, observations=442)


def _method(p: float, optimizer: str, lr: float, depth: int = 1) -> dict:
    return {"problem.p": p, "optimizer.name": optimizer, "optimizer.lr": lr, "model.depth": depth}


ACCELERATION_LP = Preset(
    name="acceleration-lp",
    description="Depth accelerates GD on l4 (not l2) regression: depth 1-3 vs AdaGrad/AdaDelta/Adam (ICML 2018)",
    base=RunConfig(
        problem=_DIABETES,
        model=ModelConfig(depth=1, width=1, init="balanced_random", scale=1e-2),
        optimizer=OptimizerConfig(name="gd", lr=0.05),
        train=TrainConfig(max_steps=5000, tol=0.0, record="linear", record_every=10, x64=True),
        metrics=_TABLE_METRICS,
    ),
    variants=(
        # l_4: deep GD tolerates twice the step of depth-1 GD (its effective step grows with ||w||).
        _method(4, "gd", 0.05, 1),
        _method(4, "gd", 0.1, 2),
        _method(4, "gd", 0.1, 3),
        _method(4, "adagrad", 0.1),
        _method(4, "adadelta", 0.1),
        _method(4, "adam", 0.03),
        # l_2: one step size serves every depth (the curvature does not change along the way).
        _method(2, "gd", 0.2, 1),
        _method(2, "gd", 0.2, 2),
        _method(2, "gd", 0.2, 3),
        _method(2, "adagrad", 0.2),
        _method(2, "adadelta", 0.1),
        _method(2, "adam", 0.03),
    ),
    quick={"train.max_steps": 2000},
    baselines=lp_optimum_jobs,
    figures=acceleration_figures,
    claims=(
        Claim(
            "l4 regression: GD on depth 2 and 3 (hidden width 1) reaches a lower loss than depth-1 GD at equal steps "
            "(excess loss at 3000 steps 6e-13 and 3e-13 vs 7e-8)",
            deep_gd_beats_depth_one_on_l4,
        ),
        Claim(
            "l4 regression: deep GD also beats AdaGrad and AdaDelta at their tuned step sizes (9e-7, 8e-10 at 3000 "
            "steps)",
            deep_gd_beats_adaptive_on_l4,
        ),
        Claim(
            "l2 regression: no comparable gain (depth-1 GD is ahead at 1000 steps; at most ~20x behind at 3000 "
            "vs ~1e5x for l4; checked: the gain of depth on l2 is at most 1/100 of that on l4)",
            no_comparable_gain_on_l2,
        ),
    ),
)
"""Implicit acceleration by overparameterization (Arora, Cohen, Hazan, ICML 2018, Section 7 / Fig. 3).

Claim: for l_p regression with p > 2, replacing the weight vector w by a depth-N product
W_N ... W_1 (a linear network; for one output, hidden width 1 suffices) and running plain GD on the
layers converges faster than GD on w itself, and faster than AdaGrad and AdaDelta; for p = 2 the
effect is absent. On the end-to-end vector the layers' GD is GD with the preconditioner
P_w(g) = ||w||^(2-2/N) (g + (N-1) <g, w/||w||> w/||w||) (their Theorem 1): an adaptive step size
that grows with ||w||, plus momentum-like emphasis along w.

Setting: scikit-learn's diabetes data (442 samples, 10 standardized features, standardized target),
loss (1/442) sum_i |y_i - w.x_i|^p, p in {4, 2}. All runs start from the same end-to-end vector
w(0) (``balanced_random``, scale 1e-2, seed 0: ||w(0)|| ~ 0.03; depth 1 uses it as is, depth 2 and 3
split it into balanced layers). The excess loss is measured against the exact minimum
(baseline ``lp_optimum``: Newton's method in float64; min loss 0.608115 for p = 4, 0.482252 for
p = 2). float64 throughout, so the excess loss can be followed down to ~1e-15.

Step sizes (one per (p, method), because the comparison is between methods at their own
well-tuned step): on a grid of ratio 1.1-1.5, seed 0, 5000 steps, GD uses about 80% of the largest
step at which its loss still decreases monotonically; the adaptive methods use the grid value with
the lowest excess loss at 3000 steps among those that stay monotone.

- p = 4: depth-1 GD diverges at lr >= 0.065: the Hessian (12/S) X^T diag(r^2) X is largest at the
  start, where the residuals are largest (top eigenvalue 57 at w = 0, 20 at the minimum, where
  2/20 = 0.10 would be stable), so lr = 0.05. Deep GD is stable up to ~0.13-0.16 (its effective
  step ||w||^(2-2/N) is small while ||w|| is small, i.e. exactly while the curvature is large), so
  lr = 0.1. AdaGrad 0.1 (of 0.03-1), AdaDelta 0.1 (0.2 and above oscillate), Adam 0.03 (of
  0.001-0.05).
- p = 2: the curvature 2 X^T X / S is constant (largest eigenvalue 8.05): depth-1 GD is stable
  below 2/8.05 = 0.248 and deep GD up to ~0.24-0.28 before oscillating, so lr = 0.2 for every depth. AdaGrad 0.2,
  AdaDelta 0.1, Adam 0.03.

Measured excess loss (loss - min), seed 0:

=========  ==========  ==========  ==========  ===========  ===========
p          step        GD depth 1  GD depth 2  GD depth 3   AdaGrad / AdaDelta / Adam
=========  ==========  ==========  ==========  ===========  ===========
4          1000        1.5e-4      1.8e-5      3.9e-5       3.7e-4 / 2.8e-3 / 3e-11
4          3000        7.3e-8      5.8e-13     3.4e-13      8.8e-7 / 8.1e-10 / 2e-16
2          1000        3.9e-6      1.1e-5      1.8e-5       1.0e-5 / 2.5e-3 / 5e-13
2          3000        4.3e-12     7.4e-13     2.4e-13      7.0e-11 / 2.6e-6 / 6e-17
=========  ==========  ==========  ==========  ===========  ===========

So for p = 4 depth buys ~5 orders of magnitude at 3000 steps and beats AdaGrad and AdaDelta, as
published; for p = 2 depth-1 GD is ahead at 1000 steps and at most ~20x behind at 3000. Seeds 0-4
agree to within a factor 2. Two observations beyond the paper: at *equal* step size deep GD is
slower than depth-1 GD (at lr 0.05, p = 4: 2.4e-7 for depth 2 vs 7.3e-8 at 3000 steps): the
acceleration comes from the larger step that depth makes stable, i.e. from the adaptive step size;
and Adam at its tuned step is faster than all of them on this small, well-conditioned problem
(it reaches round-off by step ~1300), but with a constant step it does not stay there: once its
second-moment estimate has decayed with the gradient, it jumps back to ~1e-3 excess loss
(around steps 4100 and 4700 in both panels) before converging again. The float64 floor of the
excess loss is ~1e-16. ``--quick``: 2000 steps instead of 5000.
"""


# ---------------------------------------------------------------------------------------------
# claims of balanced-convergence: deficiency margin at step 0, the bound, steps to halve the loss


def _margin_data_lacks(data):
    return lacks(
        data, runs=["run_id", "problem.m", "model.depth", "model.scale", "status", "steps", "optimizer.lr"],
        trajectories=["run_id", "step", "train_loss", "deficiency_margin"],
    )


def _margins(data):
    from trajlab.presets.linear_dynamics.figures import margin_table

    return margin_table(data.runs, data.trajectories).reset_index()


def margin_probability_scalar_output(data):
    """m = 1: at every init scale the fraction of inits with a positive margin is the same at every
    depth, does not grow with the scale, and lies within 3 standard errors (+ 1/seeds) of the
    closed form (the ``margin_probability`` baseline) where there is one."""
    reason = _margin_data_lacks(data)
    if reason:
        return not_measured(reason)
    table = _margins(data)
    table = table[table["problem.m"] == 1]
    if len(table) == 0:
        return not_measured("no run with output dimension m = 1")
    closed = baseline_rows(data, "margin_probability")
    closed = closed[closed["problem.m"] == 1] if len(closed) else closed
    parts, holds = [], True
    by_scale = table.groupby("model.scale")
    for scale, block in by_scale:
        probability = block["probability"]
        holds &= bool(probability.max() == probability.min())  # same inits at every depth
        text = f"scale {fmt(scale)}: {fmt(probability.iloc[0])} of {int(block['seeds'].iloc[0])} seeds"
        match = closed[np.isclose(closed["model.scale"], scale)] if len(closed) else closed
        if len(match):
            expected = float(match["probability"].iloc[0])
            seeds = int(block["seeds"].min())
            tolerance = 3 * math.sqrt(expected * (1 - expected) / seeds) + 1 / seeds
            holds &= bool(abs(probability - expected).max() <= tolerance)
            text += f" (closed form {fmt(expected)})"
        parts.append(text)
    medians = by_scale["probability"].median()
    holds &= bool((np.diff(medians.to_numpy()) <= 0).all())
    depths = ", ".join(str(d) for d in sorted(table["model.depth"].unique()))
    return "; ".join(parts) + f"; depths {depths}", holds


#: "(Almost) no init": at most this fraction of the m >= 2 inits has a positive margin.
_ALMOST_NONE = 0.02


def margin_rare_for_vector_output(data):
    """m >= 2: at most 2% of the inits have a positive deficiency margin."""
    reason = _margin_data_lacks(data)
    if reason:
        return not_measured(reason)
    table = _margins(data)
    table = table[table["problem.m"] >= 2]
    if len(table) == 0:
        return not_measured("no run with output dimension m >= 2")
    parts = []
    for m, block in table.groupby("problem.m"):
        parts.append(f"m = {m}: {int(block['positive'].sum())} of {int(block['seeds'].sum())}")
    fraction = table["positive"].sum() / table["seeds"].sum()
    return "runs with a positive margin: " + ", ".join(parts) + f" ({fmt(fraction)})", bool(fraction <= _ALMOST_NONE)


def positive_margin_converges_within_bound(data):
    """Every run with a positive margin at init reaches ``train.tol`` and its recorded loss never
    exceeds loss(0) (1 - eta c^(2(N-1)/N))^t (relative slack 1e-6 for round-off)."""
    reason = _margin_data_lacks(data)
    if reason:
        return not_measured(reason)
    from trajlab.presets.linear_dynamics.figures import bound_table

    frame = bound_table(data.runs, data.trajectories)
    if len(frame) == 0:
        return not_measured("no run with a positive deficiency margin at init")
    chosen = data.runs[data.runs["run_id"].isin(frame["run_id"])]
    done = int((chosen["status"] == "done").sum())
    slack = 1e-6 * frame["bound"] + 1e-15 * frame["loss0"]
    within = bool((frame["train_loss"] <= frame["bound"] + slack).all())
    ratio = (frame["train_loss"] / frame["bound"]).replace([np.inf, -np.inf], np.nan).max()
    measured = (
        f"{done} of {len(chosen)} runs with c > 0 reached train.tol (median {fmt(chosen['steps'].median())} steps); "
        f"max loss / bound {fmt(ratio, 4)}"
    )
    return measured, bool(done == len(chosen) and within)


def _halving_steps(data, runs):
    trajectories = by_run(data.trajectories)
    steps = []
    for run_id in runs["run_id"]:
        trajectory = trajectories[run_id]
        loss = trajectory["train_loss"].to_numpy(dtype=float)
        steps.append(crossing(trajectory["step"].to_numpy(dtype=float), loss, loss[0] / 2, rising=False))
    return np.median(steps)


def plateau_grows_with_depth(data):
    """m = 1, smallest init scale (<= 1e-2): the median number of steps until the loss halves grows
    strictly with depth; at the largest scale (>= 0.1) every depth halves its loss sooner than
    depth 2 does at the smallest."""
    reason = _margin_data_lacks(data)
    if reason:
        return not_measured(reason)
    runs = data.runs[(data.runs["problem.m"] == 1) & data.runs["run_id"].isin(data.trajectories["run_id"])]
    if len(runs) == 0:
        return not_measured("no run with output dimension m = 1")
    small, large = float(runs["model.scale"].min()), float(runs["model.scale"].max())
    if small > 1e-2 or large < 0.1:
        return not_measured(f"needs init scales <= 1e-2 and >= 0.1 (has {fmt(small)} to {fmt(large)})")
    depths = sorted(runs["model.depth"].unique())
    if len(depths) < 2:
        return not_measured("needs two depths or more")
    near_zero = [_halving_steps(data, runs[(runs["model.scale"] == small) & (runs["model.depth"] == d)]) for d in depths]
    far = [_halving_steps(data, runs[(runs["model.scale"] == large) & (runs["model.depth"] == d)]) for d in depths]
    label = " / ".join(str(d) for d in depths)
    measured = (
        f"median steps to halve the loss, depth {label}: {' / '.join(fmt(v) for v in near_zero)} at scale "
        f"{fmt(small)}, {' / '.join(fmt(v) for v in far)} at scale {fmt(large)}"
    )
    grows = all(b > a for a, b in zip(near_zero, near_zero[1:]))
    return measured, bool(grows and max(far) < near_zero[0])


# ---------------------------------------------------------------------------------------------
# balanced-convergence

_WHITENED_N = 4


def _output_dimension(m: int) -> dict:
    # sigma_min(Phi) = 1 for every m: Phi = U V^T on m random orthonormal modes.
    return {"problem.m": m, "problem.target_singular_values": [1.0] * m}


BALANCED_CONVERGENCE = Preset(
    name="balanced-convergence",
    description="Balanced init: P(deficiency margin > 0), linear rate vs its bound, plateaus near zero (ICLR 2019)",
    base=RunConfig(
        problem=ProblemConfig(kind="whitened", m=1, n=_WHITENED_N, target_singular_values=(1.0,)),
        model=ModelConfig(depth=2, init="balanced_random", scale=0.5),
        optimizer=OptimizerConfig(name="gd", lr=0.05),
        train=TrainConfig(max_steps=5000, tol=1e-12, record="log", record_points=80, x64=True),
        metrics=(*_TABLE_METRICS, "deficiency_margin"),
    ),
    variants=tuple(_output_dimension(m) for m in (1, 2, 4)),
    axes={
        "model.depth": [2, 3, 4],
        "model.scale": [1e-3, 0.1, 0.5, 1.0],
        "seed": list(range(128)),
    },
    quick={"model.scale": [1e-3, 0.5], "seed": list(range(32)), "train.max_steps": 2000, "train.record_points": 50},
    baselines=margin_probability_jobs,
    figures=balanced_convergence_figures,
    claims=(
        Claim(
            "m = 1: a random balanced init has a positive deficiency margin with probability ~1/2 at small scale "
            "(0.45 at scale 1e-3, closed form 0.50), decreasing with scale (0.08 at scale 1), the same at every depth",
            margin_probability_scalar_output,
        ),
        Claim(
            "m = 2, 4: (almost) no init with a positive margin (1 of 128 for m = 2 at scale 0.5, none otherwise; "
            "checked: at most 2%)",
            margin_rare_for_vector_output,
        ),
        Claim(
            "every run with a positive margin converges, and its loss stays below loss(0) (1 - eta c^(2(N-1)/N))^t",
            positive_margin_converges_within_bound,
        ),
        Claim(
            "near-zero init (scale 1e-3): the loss is flat for longer the deeper the network "
            "(median steps to halve the loss, m = 1: 75 / 272 / 579 for depth 2 / 3 / 4, vs <= 8 at scale 0.5)",
            plateau_grows_with_depth,
        ),
    ),
)
"""Linear convergence of GD on deep linear networks (Arora, Cohen, Golowich, Hu, ICLR 2019).

Claim (their Theorem 1): for whitened regression, loss 1/2 ||W - Phi||_F^2, GD on a depth-N linear
network whose hidden widths are >= min(m, n) converges to the global minimum at a linear rate,
loss(t) <= loss(0) (1 - eta c^(2(N-1)/N))^t, when the init is (approximately) balanced and has a
deficiency margin c > 0 (||W(0) - Phi||_F <= sigma_min(Phi) - c; their Definition 2) and eta is small.
For output dimension 1 a random balanced init (their Procedure 1: draw the end-to-end matrix A, split
it into balanced layers) meets the margin condition with constant probability (their Theorem 2);
without a margin, GD can fail (their Section 4).

Setting: n = 4 inputs, m in {1, 2, 4} outputs, Phi = U V^T on m random orthonormal modes
(``target_singular_values`` all 1: sigma_min(Phi) = 1, ||Phi||_F = sqrt(m)), ``balanced_random``
init at scale {1e-3, 0.1, 0.5, 1} (entries of W(0) = A ~ N(0, scale^2 / m)), depth {2, 3, 4},
128 seeds each, GD with eta = 0.05 (stable for every depth here; far above the theorem's
worst-case eta, which does not matter for the check below), tol 1e-12, float64.

(a) Probability of a positive margin (metric ``deficiency_margin`` at step 0; every seed is a run of
one vmapped batch, so the estimate comes from the actual initialization code), 128 seeds, m = 1:
0.45 / 0.38 / 0.23 / 0.08 at scale 1e-3 / 0.1 / 0.5 / 1 (closed form, baseline
``margin_probability``: P(noncentral chi-square_n(a^2) < a^2), a = ||Phi|| / scale, i.e.
0.50 / 0.44 / 0.22 / 0.06). It is *identical* at every depth, because ``balanced_random`` draws
W(0) from the seed alone and the margin depends on W(0) only; and it can only decrease with the
scale for a fixed seed (a margin at scale s implies one at every smaller scale). m = 2: 1 of 128 at
scale 0.5, 0 at the other scales; m = 4: 0 everywhere. Near zero the margin is
sigma_min - ||Phi||_F = 1 - sqrt(m) < 0 for m >= 2, and a random W(0) far from zero rarely lands
within sigma_min of Phi. So the probability falls with the output dimension (to ~0 for m >= 2), not
with depth. The paper guarantees a constant probability only for m = 1 (its Theorem 2).

(b) All 444 runs with a positive margin (148 per depth) reach the tolerance (median 256-573
steps) and the measured loss never exceeds the bound (max ratio measured / bound = 1, attained at
step 0). The bound is loose: along the flow d loss / dt <= -2 N c^(2(N-1)/N) loss, so the measured
rate is faster by about 2N.

(c) Near zero the origin is a saddle of order N: with scale 1e-3 (m = 1) the median number of steps
until the loss halves is 75 / 272 / 579 for depth 2 / 3 / 4 (the escape time grows like
log(1/scale) for N = 2 and like scale^(-(N-2)/N) for N >= 3), against 8 / 8 / 7 at scale 0.5.

Also visible (m = n = 4, square): about half the inits have sign det W(0) != sign det Phi. On the
exactly balanced manifold the flow cannot change that sign (singular values of W cannot cross 0),
so those runs first approach the saddle with one mode missing (loss 0.5) and leave it only through
the imbalance that round-off or the discrete steps create. For depth 2 that saddle is strict in
the layers and any imbalance grows exponentially, so all runs converge (checked also under gradient
flow); for depth 3 and 4 it is degenerate and ~46% of the runs are still at loss 0.5 after 5000
steps. A negative margin is what the paper shows can make GD fail (its Section 4).
``--quick``: 32 seeds, scales {1e-3, 0.5}, 2000 steps.
"""


# ---------------------------------------------------------------------------------------------
# claims of saxe-dynamics: the measured modes against the closed form (mode_table)

#: The scale the published deviations refer to.
_SAXE_SCALE = 1e-4


def _mode_data_lacks(data):
    return lacks(
        data, runs=["run_id", "problem.target_singular_values", "model.scale", "seed"],
        trajectories=["run_id", "t", "mode_0"],
    )


def _modes_at(data, scale):
    from trajlab.presets.linear_dynamics.figures import mode_table

    table = mode_table(data.runs, data.trajectories).reset_index()
    return table[np.isclose(table["model.scale"], scale, rtol=1e-9, atol=0)]


def modes_follow_logistic(data):
    """At init scale 1e-4, max_t |u - u_closed| / s (closed form from the effective u0) is <= 2.5% for
    every mode that reached s/2; modes that never did are counted, not checked."""
    reason = _mode_data_lacks(data)
    if reason:
        return not_measured(reason)
    table = _modes_at(data, _SAXE_SCALE)
    if len(table) == 0:
        return not_measured(f"no run at init scale {fmt(_SAXE_SCALE)}")
    errors = table["max error"].to_numpy(dtype=float)
    learned = errors[np.isfinite(errors)]
    if learned.size == 0:
        return not_measured("no mode reached s/2 within the recorded time")
    measured = f"max deviation / s at scale {fmt(_SAXE_SCALE)}: max {fmt(100 * learned.max(), 2)}%, median " \
        f"{fmt(100 * np.median(learned), 2)}% over {learned.size} modes"
    if learned.size < errors.size:
        measured += f" ({errors.size - learned.size} modes did not reach s/2, not checked)"
    return measured, bool(learned.max() <= 0.025)


def modes_learned_in_order(data):
    """In every run, the half-times t(u_r = s_r / 2) increase as s_r decreases (a mode that never
    reached s_r / 2 counts as learned last)."""
    reason = _mode_data_lacks(data)
    if reason:
        return not_measured(reason)
    from trajlab.presets.linear_dynamics.figures import mode_table

    table = mode_table(data.runs, data.trajectories).reset_index()
    ordered, medians = 0, []
    runs = list(table.groupby(["model.scale", "seed"]))
    for _, block in runs:
        halves = block.sort_values("s", ascending=False)["t half"].fillna(np.inf).to_numpy()
        ordered += int(all(b > a for a, b in zip(halves, halves[1:])))
    for s, block in table.groupby("s", sort=False):
        medians.append(f"s = {fmt(s)}: {fmt(block['t half'].median())}")
    measured = f"ordered by s in {ordered} of {len(runs)} runs; median half-times " + ", ".join(medians)
    return measured, ordered == len(runs)


def rise_time_matches(data):
    """At init scale 1e-4, the median of |rise 10-90 - ln(81) / (2 s)| / (ln(81) / (2 s)) over the
    modes that rose is <= 2%."""
    reason = _mode_data_lacks(data)
    if reason:
        return not_measured(reason)
    table = _modes_at(data, _SAXE_SCALE)
    if len(table) == 0:
        return not_measured(f"no run at init scale {fmt(_SAXE_SCALE)}")
    deviation = ((table["rise 10-90"] - table["rise 10-90 theory"]).abs() / table["rise 10-90 theory"]).to_numpy()
    deviation = deviation[np.isfinite(deviation)]
    if deviation.size == 0:
        return not_measured("no mode rose from 10% to 90% of s within the recorded time")
    measured = f"relative deviation at scale {fmt(_SAXE_SCALE)}: median {fmt(100 * np.median(deviation), 2)}%, " \
        f"max {fmt(100 * deviation.max(), 2)}% over {deviation.size} modes"
    return measured, bool(np.median(deviation) <= 0.02)


# ---------------------------------------------------------------------------------------------
# saxe-dynamics

SAXE_DYNAMICS = Preset(
    name="saxe-dynamics",
    description="Depth-2 linear net, gradient flow: each mode follows Saxe et al.'s logistic curve (ICLR 2014)",
    base=RunConfig(
        problem=ProblemConfig(kind="whitened", m=4, n=6, target_singular_values=(3.0, 2.0, 1.0, 0.5)),
        model=ModelConfig(depth=2, init="balanced_random", scale=1e-4),
        optimizer=OptimizerConfig(name="gradient_flow", lr=0.05),
        flow=FlowConfig(solver="tsit5", rtol=1e-10, atol=1e-12),
        train=TrainConfig(max_steps=600, tol=0.0, record="linear", record_every=2, top_k=4, x64=True),
        metrics=(*_TABLE_METRICS, "target_mode_strengths"),
    ),
    axes={"model.scale": [1e-2, 1e-4, 1e-6], "seed": list(range(8))},
    quick={"model.scale": [1e-2, 1e-4], "seed": [0, 1]},
    figures=saxe_figures,
    claims=(
        Claim(
            "after the layers align, every mode follows u(t) = s / (1 + (s/u0 - 1) e^(-2 s t)) "
            "(max deviation <= 2.5% of s at scale 1e-4, median 0.2%, with the effective u0)",
            modes_follow_logistic,
        ),
        Claim("modes with larger s are learned first (half-times ordered by s)", modes_learned_in_order),
        Claim(
            "the 10%-90% rise time of a mode is ln(81) / (2 s), independent of the init "
            "(median deviation 0.9% at scale 1e-4; checked: <= 2%)",
            rise_time_matches,
        ),
    ),
)
"""Exact learning dynamics of a two-layer linear network (Saxe, McClelland, Ganguli, ICLR 2014).

Claim: under gradient flow from a small balanced init aligned with the target's modes, the strength
u_r = u_r^T W v_r of each mode of Phi = sum_r s_r u_r v_r^T follows the logistic curve
u(t) = s e^(2st/tau) / (e^(2st/tau) - 1 + s/u0) independently of the others, and a mode is
learned in time ~ (tau / s) ln(s / eps): strong modes first, in sharp transitions. Closed forms and
the tau = 1 convention: :mod:`trajlab.theory.saxe`.

Setting: whitened regression, Phi of shape 4 x 6 with singular values (3, 2, 1, 0.5) on random
orthonormal modes, depth 2 (hidden width 6), ``balanced_random`` init at scale {1e-2, 1e-4, 1e-6},
8 seeds, gradient flow (Tsit5, rtol 1e-10, atol 1e-12, float64) to t = 30, recorded every
dt = 0.1.

Init: ``balanced_random`` is balanced but *not aligned* (none of the existing schemes is: the
identity init gives W(0) = scale I, which is diagonal in Phi's basis only if U = V). Two
consequences, measured here:

- u_r^T W(0) v_r is not the u0 the mode follows: it is <= 0 for half of the modes (outside the
  closed form's domain) and, where positive, the closed form from it is off by up to 60% of s. The
  figures therefore draw the closed form from an *effective* u0: the u0 whose curve passes through
  the measured half-time (:func:`trajlab.theory.saxe.initial_strength`). This is one fitted number
  per mode (a time shift); the shape (rate 2 s, logistic form) is not fitted. The remaining error
  comes from the alignment transient and shrinks with the init scale (numbers below). For depth 2
  the top mode's effective u0 is also predicted by the linearized early dynamics,
  (u_r^T |W| u_r + v_r^T |W| v_r + 2 u_r^T W v_r) / 4 with |W| = (W W^T)^(1/2) resp. (W^T W)^(1/2),
  to within 1% in our checks; weaker modes start later than that (they compete with the modes
  already learned for the hidden directions).
- Phi is 4 x 6, not square, on purpose: for square Phi a balanced init with sign(det W(0)) !=
  sign(det Phi) cannot reach Phi on the balanced manifold (singular values of W cannot cross 0);
  the weakest mode then decays towards 0 first and is learned only after the layers' round-off
  imbalance has grown enough, at a time set by the round-off, not by Saxe's dynamics (one seed of
  four at m = n = 4 still had that mode at 1e-15 at t = 40).

Measured (8 seeds per scale, scale 1e-6 / 1e-4 / 1e-2): max_t |u - u_closed| / s with the effective
u0 has median 0.04% / 0.2% / 1% and maximum 0.6% / 2.5% / 8% over modes and seeds; with u0 measured
it is 0.05-60% where defined. The modes are learned in the order of s in every run (median
half-times 2.7 / 4.0 / 7.7 / 15.2 at scale 1e-6 and 1.9 / 2.9 / 5.4 / 10.6 at 1e-4 for
s = 3 / 2 / 1 / 0.5: time ~ 1/s up to Saxe's logarithm (1/s) ln(s/u0)). The 10%-90% rise time, a
prediction free of u0, ln(81) / (2 s), is matched to a median 0.3% / 0.9% / 3.4% (max 2% / 7% / 21%).
``--quick``: scales {1e-2, 1e-4} and seeds {0, 1}.
"""
