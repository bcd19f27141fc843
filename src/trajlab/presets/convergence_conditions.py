"""``convergence-conditions``: each assumption of the linear-rate theorem for deep linear networks is
needed (Arora, Cohen, Golowich, Hu, "A Convergence Analysis of Gradient Descent for Deep Linear Neural
Networks", ICLR 2019).

Their Theorem 1 (as used here; recalled from arXiv:1810.02281, the text was not at hand in this
session): whitened regression, loss l(W) = 1/2 ||W - Phi||_F^2 of the end-to-end matrix
W = W_N ... W_1; if (iii) every hidden width is >= min(d_0, d_N), (ii) W(0) has deficiency margin
c > 0 (||W(0) - Phi||_F <= sigma_min(Phi) - c, their Definition 2), (i) the layers are delta-balanced
(||W_{j+1}^T W_{j+1} - W_j W_j^T||_F <= delta, Definition 1) with
delta <= c^2 / (256 N^3 ||Phi||_F^(2(N-1)/N)), and (iv) eta <= c^((4N-2)/N) / (6144 N^3
||Phi||_F^((6N-4)/N)), then l(T) <= eps for every T >= log(l(0)/eps) / (eta c^(2(N-1)/N)), i.e.
l(t) <= l(0) exp(-eta c^(2(N-1)/N) t). The claim checked here is the per-step form the existing
``balanced-convergence`` preset checks, l(t) <= l(0) (1 - eta c^(2(N-1)/N))^t (stronger, since
1 - x <= e^(-x)), with the helpers of that preset
(:func:`trajlab.presets.linear_dynamics.figures.bound_table`, reused by import). The abstract and
the talk: the assumptions on the init are necessary, "if you erase any one of them convergence is
going to fail or even diverge".

Step size: the literal eta bound is tiny (N = 3, c = 0.5, ||Phi|| = 1: 6.0e-7; at that step 1e-12
would take ~1e8 steps), so the compliant runs use eta = 0.05, four to five orders above it but below
the stability threshold 2 / (N ||Phi||_2^(2-2/N)) of GD at the balanced minimum (the top Hessian
eigenvalue of the layers' loss there is N ||Phi||_2^(2-2/N)); the broken-step family uses
eta = 1.5, above that threshold for every depth >= 2. The bound is still checked with the eta
actually used; the compliant claim's measured value gives the theorem's literal eta beside it, and
the unbalanced one delta(0) as a multiple of the theorem's delta.

Families (model ``deep_linear_prescribed``, :mod:`trajlab.families.deep_linear_inits`: W(0) a
chosen multiple of Phi, factorized into balanced layers by their Procedure 1; float64; GD; tol
1e-12; each broken family differs from a compliant one in one condition only; a run is labelled by
:func:`condition_of`):

============  ==========================================  ======================================
family        init / step                                 broken condition
============  ==========================================  ======================================
compliant     m = 1: W(0) = 0.5 Phi (c = 0.5);            none
              m = n = 4: W(0) = 0.9 Phi (c = 0.226);
              eta = 0.05
unbalanced    as compliant m = 1, then W_1 x lambda,      (i): delta(0) = 50 (lambda 10) or
              W_N / lambda, lambda in {10, 100}           5000 (lambda 100) >> delta_thm ~ 1e-4
negative      m = 1: W(0) = -0.5 Phi (c = -0.5)           (ii): margin < 0 (d_N = 1)
bottleneck    as compliant m = n = 4, hidden width 2      (iii): width 2 < min(m, n) = rank 4
large step    as compliant m = 1, eta = 1.5               (iv)
============  ==========================================  ======================================

Targets: m = 1, n = 4, Phi a unit row vector (``target_singular_values`` (1,)); m = n = 4,
singular values (2, 1.5, 1, 0.5) on random orthogonal modes (``problem.seed``).

What the paper says for the broken ones, and what is measured (full sweep: depths 2, 3, 4, problem
seeds 0, 1, 2, 5000 steps, 63 runs; ``trajlab run convergence-conditions``, 30 s user CPU):

- compliant: 18 of 18 reach 1e-12 (median 138 steps), loss <= bound at every recorded step (max
  ratio 1, at step 0); delta(0) <= 2e-15; the theorem's literal eta would be 9e-11 to 2.5e-6.
- (i) unbalanced, same W(0), same c = 0.5, same eta: lambda = 100 diverges in all 9 runs (the loss
  exceeds 1e6 loss(0) at step 2; with ``train.diverge_factor=1e300`` it overflows to inf by step
  6). lambda = 10 (delta(0) already 4e5 to 5e6 times the theorem's delta) converges anyway, in 23-41
  steps (faster than balanced): the theorem's delta is sufficient, far from necessary, and the
  failure is the interplay of imbalance and step size: the layers' curvature grows like lambda^2,
  so the step a balanced init tolerates no longer suffices. (Under gradient flow the imbalance
  could not stop convergence here: the loss decreases and every critical point below l(0) is
  global.)
- (ii) negative margin, d_N = 1, balanced, W(0) along -Phi: on the balanced manifold W stays on the
  ray of -Phi, whose norm can only shrink (d||W||/dt = -N ||W||^(2-2/N) (||W|| + ||Phi||) < 0):
  W(t) -> 0, a saddle, and l(t) > 1/2 ||Phi||^2 at every step (the paper's Section 3.3 example, as
  I recall it: for d_N = 1 such an init cannot converge). Measured: depth 3 and 4 stuck at
  l = 1/2 ||Phi||^2 (ratio 1 and 1.00001 after 5000 steps). **Depth 2 converges anyway** (all 3
  runs, at step ~969): in float64 the layers are balanced only up to ~1e-16, and for N = 2 the
  saddle W = 0 is strict: the antisymmetric part w_1 + w_2 of the two layers' components grows by
  (1 + eta (1 - p)) per step while the rest shrinks, so round-off escapes after
  ~log(1e16) / eta steps. In exact arithmetic the run would stay on the ray; for N >= 3 the saddle
  is degenerate (order N) and the runs stay stuck. So the claim reads not holding, with these values.
- (iii) bottleneck: a rank-2 product cannot come closer than the Eckart-Young floor
  1/2 (s_3^2 + s_4^2) = 0.625; all 9 runs converge to that floor (relative gap <= 2e-16), never
  below it: stuck at a positive loss.
- (iv) large step eta = 1.5: depth 3 and 4 diverge within 4 steps; depth 2 (threshold 1) never
  converges: it oscillates chaotically (loss between 0.002 and 0.4 for 5000 steps, still balanced).

``--quick``: depths 2 and 3, problem seed 0, 3000 steps, 14 runs; the same verdicts (4 of 5
claims hold; (ii) does not, at depth 2: done at step 962); about 9 s user CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import by_run, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset

FAMILIES = ("compliant", "unbalanced", "negative margin", "bottleneck", "large step")

_COMPLIANT_LR = 0.05
_LARGE_LR = 1.5
_MILD_IMBALANCE = 10.0
_IMBALANCE = 100.0
_SCALAR = {"problem.m": 1, "problem.target_singular_values": [1.0]}
_SQUARE = {"problem.m": 4, "problem.target_singular_values": [2.0, 1.5, 1.0, 0.5]}


# ---------------------------------------------------------------------------------------------
# the theorem's quantities (ICLR 2019, Theorem 1), as functions of a run's config


def target_values(run) -> np.ndarray:
    """The singular values of Phi, descending, padded with zeros to min(m, n) (what ``whitened`` draws)."""
    from trajlab.presets.linear_dynamics.figures import _target_values

    values = _target_values(run)
    k = int(min(run["problem.m"], run["problem.n"]))
    return np.concatenate([values, np.zeros(max(k - values.size, 0))])


def stability_threshold(depth: int, top: float) -> float:
    """2 / (N s_max^(2 - 2/N)): GD is unstable at every step size above it near the balanced minimum,
    whose Hessian (in the layers) has top eigenvalue N s_max^(2 - 2/N)."""
    return 2.0 / (depth * top ** (2 - 2 / depth))


def theorem_delta(margin: float, depth: int, frobenius: float) -> float:
    """delta = c^2 / (256 N^3 ||Phi||_F^(2(N-1)/N)) (Theorem 1's balancedness)."""
    return margin**2 / (256 * depth**3 * frobenius ** (2 * (depth - 1) / depth))


def theorem_lr(margin: float, depth: int, frobenius: float) -> float:
    """eta = c^((4N-2)/N) / (6144 N^3 ||Phi||_F^((6N-4)/N)) (Theorem 1's step size)."""
    return margin ** ((4 * depth - 2) / depth) / (6144 * depth**3 * frobenius ** ((6 * depth - 4) / depth))


def condition_of(run) -> str:
    """Which family a run belongs to: the first condition of (ii) margin (``negative_target``), (iii)
    width < min(m, n), (i) imbalance > 1, (iv) eta above :func:`stability_threshold` that it breaks;
    "compliant" when none."""
    depth = int(run["model.depth"])
    width = run.get("model.width")
    if run["model.end_to_end"] == "negative_target":
        return "negative margin"
    if width is not None and not (isinstance(width, float) and math.isnan(width)) and int(width) < min(
        int(run["problem.m"]), int(run["problem.n"])
    ):
        return "bottleneck"
    if float(run["model.imbalance"]) > 1:
        return "unbalanced"
    if float(run["optimizer.lr"]) > stability_threshold(depth, float(target_values(run)[0])):
        return "large step"
    return "compliant"


def _lacks(data):
    return lacks(
        data,
        runs=["run_id", "status", "steps", "model.depth", "model.width", "model.end_to_end", "model.imbalance",
              "optimizer.lr", "problem.m", "problem.n", "problem.target_singular_values", "train.tol"],
        trajectories=["run_id", "step", "train_loss", "deficiency_margin", "balancedness"],
    )


def _family(data, name):
    runs = data.runs[data.runs["run_id"].isin(data.trajectories["run_id"])]
    return runs[runs.apply(condition_of, axis=1) == name]


def _statuses(runs) -> str:
    counts = runs["status"].value_counts()
    return ", ".join(f"{int(n)} {status}" for status, n in counts.items())


def _initial(trajectories, column) -> pd.Series:
    first = trajectories.sort_values("step").groupby("run_id").first()
    return first[column].astype(float)


# ---------------------------------------------------------------------------------------------
# claims


def compliant_meets_bound(data):
    """Every compliant run has c > 0 and delta(0) <= the theorem's delta at init, reaches train.tol,
    and its recorded loss never exceeds l(0) (1 - eta c^(2(N-1)/N))^t (relative slack 1e-6)."""
    reason = _lacks(data)
    if reason:
        return not_measured(reason)
    runs = _family(data, "compliant")
    if len(runs) == 0:
        return not_measured("no compliant run")
    from trajlab.presets.linear_dynamics.figures import bound_table

    frame = bound_table(runs, data.trajectories[data.trajectories["run_id"].isin(runs["run_id"])])
    margin = _initial(data.trajectories, "deficiency_margin")
    delta = _initial(data.trajectories, "balancedness")
    balanced, literal = True, []
    for _, run in runs.iterrows():
        c = float(margin[run["run_id"]])
        frobenius = float(np.linalg.norm(target_values(run)))
        depth = int(run["model.depth"])
        balanced &= c > 0 and float(delta[run["run_id"]]) <= theorem_delta(c, depth, frobenius)
        literal.append(theorem_lr(c, depth, frobenius) if c > 0 else math.nan)
    done = int((runs["status"] == "done").sum())
    slack = 1e-6 * frame["bound"] + 1e-15 * frame["loss0"]
    within = bool(len(frame) and (frame["train_loss"] <= frame["bound"] + slack).all())
    ratio = (frame["train_loss"] / frame["bound"]).replace([np.inf, -np.inf], np.nan).max()
    lr = sorted(runs["optimizer.lr"].unique())
    measured = (
        f"{done} of {len(runs)} reached tol (median {fmt(runs['steps'].median())} steps); max loss / bound "
        f"{fmt(ratio, 4)}; c(0) {fmt(margin[runs['run_id']].min())}-{fmt(margin[runs['run_id']].max())}, "
        f"max delta(0) {fmt(delta[runs['run_id']].max())}; eta {', '.join(fmt(v) for v in lr)} "
        f"(theorem's literal eta {fmt(np.nanmin(literal))}-{fmt(np.nanmax(literal))})"
    )
    return measured, bool(balanced and done == len(runs) and within)


def unbalanced_fails(data):
    """The runs with the largest imbalance lambda in the sweep (positive margin, delta(0) far above the
    theorem's delta) all stop without reaching train.tol (diverged or out of steps); the runs of
    every other lambda are reported (measured), not checked."""
    reason = _lacks(data)
    if reason:
        return not_measured(reason)
    runs = _family(data, "unbalanced")
    if len(runs) == 0:
        return not_measured("no unbalanced run")
    margin = _initial(data.trajectories, "deficiency_margin")
    delta = _initial(data.trajectories, "balancedness")
    parts = []
    for imbalance, block in runs.groupby("model.imbalance"):
        ratios = [
            float(delta[r["run_id"]]) / theorem_delta(float(margin[r["run_id"]]), int(r["model.depth"]),
                                                       float(np.linalg.norm(target_values(r))))
            for _, r in block.iterrows()
        ]
        parts.append(
            f"lambda {fmt(imbalance)}: {_statuses(block)} of {len(block)}, steps {fmt(block['steps'].min())}-"
            f"{fmt(block['steps'].max())}, delta(0) {fmt(min(ratios))}-{fmt(max(ratios))} x the theorem's delta"
        )
    strongest = runs[runs["model.imbalance"] == runs["model.imbalance"].max()]
    failed = int((strongest["status"] != "done").sum())
    positive = float(margin[runs["run_id"]].min()) > 0
    return f"c(0) >= {fmt(margin[runs['run_id']].min())}; " + "; ".join(parts), bool(failed == len(strongest) and positive)


def negative_margin_stuck(data):
    """Every negative-margin run (d_N = 1, W(0) along -Phi) has c(0) < 0 and its loss stays >= 1/2
    ||Phi||^2 (the loss at W = 0) at every recorded step: it never reaches train.tol. Measured per depth."""
    reason = _lacks(data)
    if reason:
        return not_measured(reason)
    runs = _family(data, "negative margin")
    if len(runs) == 0:
        return not_measured("no negative-margin run")
    trajectories = by_run(data.trajectories)
    margin = _initial(data.trajectories, "deficiency_margin")[runs["run_id"]]
    parts, lowest = [], []
    for depth, block in runs.groupby("model.depth"):
        ratios, final = [], []
        for _, run in block.iterrows():
            zero = 0.5 * float(np.sum(target_values(run) ** 2))
            loss = trajectories[run["run_id"]]["train_loss"].to_numpy(float)
            ratios.append(float(loss.min()) / zero)
            final.append(float(loss[-1]) / zero)
        lowest += ratios
        parts.append(
            f"depth {depth}: {_statuses(block)} (steps {fmt(block['steps'].max())}), min loss / (1/2 ||Phi||^2) "
            f"{fmt(min(ratios), 6)}, final {fmt(max(final), 6)}"
        )
    measured = f"c(0) <= {fmt(margin.max())}; " + "; ".join(parts)
    holds = (runs["status"] != "done").all() and min(lowest) >= 1 - 1e-9 and float(margin.max()) < 0
    return measured, bool(holds)


def bottleneck_stuck(data):
    """Every bottleneck run (hidden width k < min(m, n) = rank Phi) keeps its loss >= the Eckart-Young
    floor 1/2 sum_{r > k} s_r^2 > 0 and ends within 1e-6 (relative) of it: it converges to the best
    rank-k approximation, not to the global minimum 0."""
    reason = _lacks(data)
    if reason:
        return not_measured(reason)
    runs = _family(data, "bottleneck")
    if len(runs) == 0:
        return not_measured("no bottleneck run")
    trajectories = by_run(data.trajectories)
    lowest, final, floors = [], [], []
    for _, run in runs.iterrows():
        floor = 0.5 * float(np.sum(target_values(run)[int(run["model.width"]):] ** 2))
        loss = trajectories[run["run_id"]]["train_loss"].to_numpy(float)
        floors.append(floor)
        lowest.append(float(loss.min()) / floor)
        final.append(float(loss[-1]) / floor - 1)
    measured = (
        f"{_statuses(runs)} of {len(runs)}; floor {', '.join(sorted({fmt(f) for f in floors}))}; min loss / floor "
        f"{fmt(min(lowest), 9)}; final loss / floor - 1 at most {fmt(max(final))}"
    )
    holds = (runs["status"] != "done").all() and min(lowest) >= 1 - 1e-9 and max(final) <= 1e-6
    return measured, bool(holds)


def large_step_fails(data):
    """Every run with eta above 2 / (N s_max^(2-2/N)) (and otherwise compliant) stops without reaching
    train.tol (diverged, or out of steps: then its final loss is reported). Measured per depth."""
    reason = _lacks(data)
    if reason:
        return not_measured(reason)
    runs = _family(data, "large step")
    if len(runs) == 0:
        return not_measured("no large-step run")
    parts = []
    for depth, block in runs.groupby("model.depth"):
        threshold = stability_threshold(int(depth), float(target_values(block.iloc[0])[0]))
        parts.append(
            f"depth {depth} (threshold {fmt(threshold)}): {_statuses(block)} at step {fmt(block['steps'].max())}, "
            f"final loss {fmt(block['final.train_loss'].max())}"
        )
    lr = ", ".join(fmt(v) for v in sorted(runs["optimizer.lr"].unique()))
    failed = int((runs["status"] != "done").sum())
    return f"eta {lr}; " + "; ".join(parts), failed == len(runs)


# ---------------------------------------------------------------------------------------------
# figure


def failure_modes_figure(runs: pd.DataFrame, trajectories: pd.DataFrame):
    """loss(t) / loss(0) of every run, one panel per family (colour: depth; in the unbalanced panel the
    largest imbalance is dash-dotted); the compliant panel also draws the bound
    (1 - eta c^(2(N-1)/N))^t (dashed); the bottleneck panel its floor / loss(0) (dotted)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    runs = runs[runs["run_id"].isin(trajectories["run_id"])].copy()
    runs["family"] = runs.apply(condition_of, axis=1)
    present = [f for f in FAMILIES if (runs["family"] == f).any()]
    if not present:
        raise ValueError("no run to draw")
    depths = sorted(runs["model.depth"].unique())
    cmap = colormaps["viridis"]
    colors = {d: cmap(0.85 * i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    traj = by_run(trajectories)
    strongest = float(runs["model.imbalance"].max())
    fig = Figure(figsize=(3.6 * len(present), 3.6), layout="constrained")
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, family in zip(axes, present):
        for _, run in runs[runs["family"] == family].iterrows():
            frame = traj[run["run_id"]]
            step = frame["step"].to_numpy(float)
            loss = frame["train_loss"].to_numpy(float)
            color = colors[run["model.depth"]]
            style = "-." if family == "unbalanced" and float(run["model.imbalance"]) == strongest else "-"
            ax.plot(np.maximum(step, 0.5), loss / loss[0], color=color, lw=1.2, ls=style)
            if family == "compliant":
                c = float(frame["deficiency_margin"].iloc[0])
                rate = 1 - float(run["optimizer.lr"]) * c ** (2 * (run["model.depth"] - 1) / run["model.depth"])
                ax.plot(np.maximum(step, 0.5), rate**step, color=color, lw=0.8, ls="--")
            if family == "bottleneck":
                floor = 0.5 * float(np.sum(target_values(run)[int(run["model.width"]):] ** 2))
                ax.axhline(floor / loss[0], color="k", lw=0.6, ls=":")
        ax.set(xscale="log", yscale="log", title=family, xlabel="step")
    axes[0].set_ylabel("loss / loss(0)")
    handles = [axes[0].plot([], [], color=colors[d], label=f"depth {d}")[0] for d in depths]
    axes[0].legend(handles=handles, fontsize=8)
    return fig


def convergence_conditions_figures(data) -> dict:
    return {"failure_modes": failure_modes_figure(data.runs, data.trajectories)}


# ---------------------------------------------------------------------------------------------
# the preset

CONVERGENCE_CONDITIONS = Preset(
    name="convergence-conditions",
    description="ICLR 2019 linear-rate theorem: compliant runs meet the bound; unbalanced, negative margin, "
    "bottleneck or large step each fail",
    base=RunConfig(
        problem=ProblemConfig(kind="whitened", m=1, n=4, target_singular_values=(1.0,)),
        model=ModelConfig("deep_linear_prescribed", depth=2, scale=0.5),
        optimizer=OptimizerConfig(name="gd", lr=_COMPLIANT_LR),
        train=TrainConfig(max_steps=5000, tol=1e-12, record="log", record_points=60, x64=True),
        metrics=("train_loss", "test_error", "effective_rank", "nuclear_norm", "deficiency_margin", "balancedness"),
    ),
    variants=(
        {**_SCALAR, "model.scale": 0.5},  # compliant, c = 0.5
        {**_SQUARE, "model.scale": 0.9},  # compliant, c = 0.5 - 0.1 sqrt(7.5) = 0.226
        {**_SCALAR, "model.scale": 0.5, "model.imbalance": _MILD_IMBALANCE},  # (i) broken, mildly
        {**_SCALAR, "model.scale": 0.5, "model.imbalance": _IMBALANCE},  # (i) broken, strongly
        {**_SCALAR, "model.scale": 0.5, "model.end_to_end": "negative_target"},  # (ii) broken
        {**_SQUARE, "model.scale": 0.9, "model.width": 2},  # (iii) broken
        {**_SCALAR, "model.scale": 0.5, "optimizer.lr": _LARGE_LR},  # (iv) broken
    ),
    axes={"model.depth": [2, 3, 4], "problem.seed": [0, 1, 2]},
    quick={"model.depth": [2, 3], "problem.seed": [0], "train.max_steps": 3000},
    figures=convergence_conditions_figures,
    claims=(
        Claim(
            "compliant (balanced, c > 0, widths >= min(m, n), eta below the stability threshold): every run reaches "
            "tol 1e-12 and its loss stays below loss(0) (1 - eta c^(2(N-1)/N))^t (Theorem 1; full sweep: 18 of 18, "
            "median 138 steps, max loss / bound 1)",
            compliant_meets_bound,
        ),
        Claim(
            "(i) strongly unbalanced (W_1 x 100, W_N / 100: same W(0), same c > 0, same eta): GD diverges "
            "(full: 9 of 9 at step 2; a milder lambda = 10, also far above the theorem's delta, converges: reported)",
            unbalanced_fails,
        ),
        Claim(
            "(ii) negative margin (d_N = 1, balanced, W(0) = -0.5 Phi): stuck, the loss never goes below "
            "1/2 ||Phi||^2, the loss at W = 0 (measured: holds at depth 3 and 4; depth 2 escapes through round-off "
            "and converges at step ~969)",
            negative_margin_stuck,
        ),
        Claim(
            "(iii) bottleneck (hidden width 2 < rank Phi = 4): stuck at the Eckart-Young floor 1/2 (s_3^2 + s_4^2) "
            "= 0.625 > 0, which GD reaches (the best rank-2 approximation)",
            bottleneck_stuck,
        ),
        Claim(
            "(iv) step size 1.5, above 2 / (N ||Phi||_2^(2-2/N)): GD fails (depth 3, 4: diverges within 4 steps; "
            "depth 2: oscillates without converging)",
            large_step_fails,
        ),
    ),
)
