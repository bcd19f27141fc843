"""Preset ``resnet-conditioning``: residual networks are better conditioned and train faster than plain
ones of the same depth and width (R. Balestriero & R. Baraniuk's affine-spline view of deep networks;
the claim as stated in their abstracts, their exact constructions not at hand).

Model (:mod:`trajlab.families.residual`): h_0 = W_in x, h_l = h_{l-1} + relu(W_l h_{l-1})
(residual) or relu(W_l h_{l-1}) (plain), f(x) = W_out h_L, width 16 = input = output dimension, no
biases, L = 8 hidden layers (4 and 8 in the full sweep); W_in, W_out random orthogonal, W_l He init
(plain) or He / sqrt(L) (residual branches). Problem: 64 samples x ~ N(0, I_16) of a random
one-hidden-layer ReLU teacher R^16 -> R^16 (``problem.kind=square_teacher``); loss 1/(2S) sum
||f(x_s) - y_s||^2. Full-batch GD at the same step 0.01 for both, float64.

Measured along training at 16 training inputs (medians over inputs, and over layers):
kappa(A_l(x)) of the layers' slope matrices A_l = dh_l/dh_{l-1} = I + D_l W_l (residual) or D_l W_l
(plain; D_l the 0/1 diagonal of active units), i.e. the local affine maps of the ReLU spline, which
are also the layers' input-output Jacobians; ``layer_cond_active_median``: kappa over the singular
values above 1e-6 sigma_max (a plain layer's A_l has a zero row per inactive unit, so it is
singular: its kappa reads 1e12, the floor); kappa(A(x)) of the network's slope A = df/dx; the loss.

Claims: (1) residual layers' kappa is below the plain layers' at every recorded step (the plain
ones are singular; the range-restricted kappa gives a finite ratio, reported); (2) the stricter
comparison with the plain layers restricted to their range (added here: it is where a finite
ratio lives, and it does not always hold); (3) the same as (1) for the network's slope A(x);
(4) at equal step size the residual network reaches 5 % of the zero
predictor's loss in fewer steps (ratio reported; infinite when the plain network never gets there
within the run) and ends lower.

Step size: 0.01 for both. In an exploratory run at 0.05 the *residual* network diverged (its
initial loss is ~7 x the plain one's: its branches' nonnegative outputs add up, see
:mod:`trajlab.families.residual`) while the plain one trained, so "faster at equal step size" is
measured at a step both survive; the claim is not checked at larger steps.

Measured with ``trajlab run resnet-conditioning --quick`` (depth 8, seed 0, 2000 steps, float64;
2 runs; 16.5 s user + 1.1 s sys CPU with a cold compilation cache on the shared 2-core machine,
18 s wall): all four claims hold (plain-on-range / residual 1.24-1.88 along training).
- layers: residual median kappa(A_l) 2.31-3.11 along training; every plain slope matrix is
  singular (kappa at the 1e12 floor for 100 % of (layer, input) pairs, 0 % for residual); on its
  range a plain layer's kappa is 4.19 -> 3.87, i.e. 1.54 x the residual one at init and 1.24 x at
  the end;
- network: residual median kappa(df/dx) 15.5-439 (it grows as training proceeds), plain singular
  throughout (at width 16 and depth 8 the masks leave df/dx rank-deficient);
- training: the residual network reaches 5 % of the zero predictor's loss (0.428) at step 446, the
  plain one not within 2000 steps; final losses 0.0749 vs 0.639 (8.5 x lower), although the
  residual one starts higher (91.5 vs 12.9).

Full sweep (``trajlab run resnet-conditioning``: L = 4 and 8, seeds 0-2, 12 runs; 31.7 s user CPU,
52 s wall; run before claim (2) was added, whose value is computed here from its records): claims
(1), (3), (4) hold in every pair: plain layers and plain df/dx always singular, residual kappa(A_l)
3.6-7.8 (L = 4) and 2.3-3.4 (L = 8); residual reaches the loss target at steps 436-587, plain never
within 2000 steps; final loss 3.8-4.1 x (L = 4) and 7.9-8.7 x (L = 8) lower. Claim (2) FAILS at L =
4: the residual branches are larger there (He / sqrt(4)), and on their range the plain layers are
better conditioned than the residual layers for most of training (plain-on-range / residual between
0.46 and 1.13 along the three runs, 0.46-0.65 at the end); at L = 8 it holds (1.06-1.88). So "better conditioned" rests on
the plain layers' singularity (the inactive units), not on a smaller spread of the singular values
that remain.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import by_run, crossing, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Training speed: steps to reach this fraction of the zero predictor's loss 1/(2S) sum ||y_s||^2.
TARGET_FRACTION = 0.05


def _pairs(data):
    """(depth, seed, residual trajectory, plain trajectory, residual run, plain run) for every matched pair."""
    runs, trajectories = data.runs, by_run(data.trajectories)
    for (depth, seed), group in runs.groupby(["model.depth", "seed"]):
        residual = group[group["model.residual"].astype(bool)]
        plain = group[~group["model.residual"].astype(bool)]
        if len(residual) and len(plain):
            r, p = residual.iloc[0], plain.iloc[0]
            if r["run_id"] in trajectories and p["run_id"] in trajectories:
                yield int(depth), int(seed), trajectories[r["run_id"]], trajectories[p["run_id"]], r, p


def _compare(data, column: str, label: str, active: str | None = None):
    reason = lacks(data, runs=["model.residual", "model.depth"], trajectories=[column] + ([active] if active else []))
    if reason:
        return not_measured(reason)
    parts, holds, found = [], True, False
    for depth, seed, residual, plain, _, _ in _pairs(data):
        found = True
        merged = residual[["step", column] + ([active] if active else [])].merge(
            plain[["step", column] + ([active] if active else [])], on="step", suffixes=("_res", "_plain"))
        below = bool((merged[f"{column}_res"] < merged[f"{column}_plain"]).all())
        holds &= below
        r, p = merged[f"{column}_res"].to_numpy(float), merged[f"{column}_plain"].to_numpy(float)
        text = (f"L={depth} seed {seed}: residual {label} in [{fmt(r.min())}, {fmt(r.max())}] vs plain "
                f"[{fmt(p.min())}, {fmt(p.max())}] over {len(merged)} records ({'below at every one' if below else 'NOT always below'})")
        if active:
            ra, pa = merged[f"{active}_res"].to_numpy(float), merged[f"{active}_plain"].to_numpy(float)
            text += (f"; range-restricted: plain / residual = {fmt(pa[0] / ra[0])} at init, {fmt(pa[-1] / ra[-1])} at the end "
                     f"(plain {fmt(pa[0])} -> {fmt(pa[-1])}, residual {fmt(ra[0])} -> {fmt(ra[-1])})")
        parts.append(text)
    if not found:
        return not_measured("needs a residual and a plain run of the same depth and seed")
    return "; ".join(parts), holds


def layers_better_conditioned(data):
    """Residual layers' median kappa(A_l) below the plain layers' at every recorded step."""
    measured, holds = _compare(data, "layer_cond_median", "median kappa(A_l)", "layer_cond_active_median")
    if holds is not None and "singular_fraction" in data.trajectories.columns:
        fractions = data.trajectories.merge(data.runs[["run_id", "model.residual"]], on="run_id")
        plain = fractions[~fractions["model.residual"].astype(bool)]["singular_fraction"]
        residual = fractions[fractions["model.residual"].astype(bool)]["singular_fraction"]
        measured += (f"; singular slope matrices (kappa >= 1e10): plain {fmt(float(plain.mean()))}, residual "
                     f"{fmt(float(residual.mean()))} of (layer, input) pairs")
    return measured, holds


def better_conditioned_on_the_range(data):
    """The stricter comparison: residual layers' median kappa(A_l) at most the plain layers' kappa on
    their range (over the singular values above 1e-6 sigma_max) at every recorded step."""
    reason = lacks(data, runs=["model.residual", "model.depth"], trajectories=["layer_cond_median", "layer_cond_active_median"])
    if reason:
        return not_measured(reason)
    parts, holds, found = [], True, False
    for depth, seed, residual, plain, _, _ in _pairs(data):
        found = True
        merged = residual[["step", "layer_cond_median"]].merge(plain[["step", "layer_cond_active_median"]], on="step")
        ratio = merged["layer_cond_active_median"].to_numpy(float) / merged["layer_cond_median"].to_numpy(float)
        ok = bool((ratio >= 1).all())
        holds &= ok
        parts.append(f"L={depth} seed {seed}: plain-on-range / residual kappa in [{fmt(ratio.min())}, {fmt(ratio.max())}]"
                     f"{'' if ok else ' (below 1 somewhere)'}")
    if not found:
        return not_measured("needs a residual and a plain run of the same depth and seed")
    return "; ".join(parts), holds


def network_better_conditioned(data):
    """Residual network's median kappa(A(x)) below the plain network's at every recorded step."""
    return _compare(data, "net_cond_median", "median kappa(A(x))")


def _zero_predictor_loss(run) -> float:
    from trajlab.config import section_class
    from trajlab.families.residual import square_teacher

    section = section_class("problem", "square_teacher")(samples=int(run["problem.samples"]), dim=int(run["problem.dim"]),
                                                         seed=int(run["problem.seed"]))
    y = square_teacher(section)["y"]
    return 0.5 * float(np.sum(y**2)) / y.shape[0]


def trains_faster(data):
    """Residual reaches TARGET_FRACTION of the zero predictor's loss in fewer steps than plain, and ends lower."""
    reason = lacks(data, runs=["model.residual", "model.depth", "final.train_loss"], trajectories=["train_loss"])
    if reason:
        return not_measured(reason)
    parts, holds, found = [], True, False
    for depth, seed, residual, plain, r, p in _pairs(data):
        found = True
        target = TARGET_FRACTION * _zero_predictor_loss(r)
        steps_r = crossing(residual["step"].to_numpy(), residual["train_loss"].to_numpy(), target, rising=False)
        steps_p = crossing(plain["step"].to_numpy(), plain["train_loss"].to_numpy(), target, rising=False)
        final_r, final_p = float(r["final.train_loss"]), float(p["final.train_loss"])
        ok = steps_r < steps_p and final_r < final_p
        holds &= ok
        ratio = f" (ratio {fmt(steps_p / steps_r)})" if math.isfinite(steps_p) else " within the run"
        parts.append(f"L={depth} seed {seed}: steps to loss {fmt(target)}: residual {fmt(steps_r)}, plain {fmt(steps_p)}"
                     f"{ratio}; final loss residual {fmt(final_r)} vs plain {fmt(final_p)} "
                     f"(ratio {fmt(final_p / final_r)})")
    if not found:
        return not_measured("needs a residual and a plain run of the same depth and seed")
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures


def conditioning_figure(runs: pd.DataFrame, trajectories: pd.DataFrame) -> Figure:
    """Against the step, residual (solid) and plain (dashed): the train loss, the median kappa of the
    layers' slope matrices (and its range-restricted version, dotted) and the median kappa of the
    network's slope A(x)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    loss_ax, layer_ax, net_ax = fig.subplots(1, 3)
    series = by_run(trajectories)
    for index, (_, run) in enumerate(runs.sort_values(["model.depth", "seed", "model.residual"]).iterrows()):
        trajectory = series.get(run["run_id"])
        if trajectory is None:
            continue
        trajectory = trajectory[trajectory["step"] >= 1]
        residual = bool(run["model.residual"])
        style = "-" if residual else "--"
        color = f"C{int(run['model.depth']) % 10}"
        label = f"{'residual' if residual else 'plain'} L={int(run['model.depth'])} seed {int(run['seed'])}"
        loss_ax.plot(trajectory["step"], trajectory["train_loss"], style, color=color, label=label)
        layer_ax.plot(trajectory["step"], trajectory["layer_cond_median"], style, color=color, label=label)
        layer_ax.plot(trajectory["step"], trajectory["layer_cond_active_median"], ":", color=color)
        net_ax.plot(trajectory["step"], trajectory["net_cond_median"], style, color=color, label=label)
    loss_ax.set(xscale="log", yscale="log", xlabel="step", title="train loss (equal step size)")
    layer_ax.set(xscale="log", yscale="log", xlabel="step", title="median kappa(A_l) (dotted: on the range)")
    net_ax.set(xscale="log", yscale="log", xlabel="step", title="median kappa(A(x)) of df/dx")
    for ax in (loss_ax, layer_ax, net_ax):
        ax.grid(True, alpha=0.3)
    loss_ax.legend(fontsize=7)
    return fig


def resnet_figures(data) -> dict:
    return {"conditioning": conditioning_figure(data.runs, data.trajectories)}


RESNET_CONDITIONING = Preset(
    name="resnet-conditioning",
    description="Residual vs plain ReLU MLPs (width 16): condition numbers of the slope matrices and training speed at equal step",
    base=RunConfig(
        problem=ProblemConfig("square_teacher", samples=64, dim=16),
        model=ModelConfig("residual_mlp", depth=8, residual=True, scale=1.0),
        optimizer=OptimizerConfig(name="gd", lr=0.01),
        train=TrainConfig(max_steps=2000, tol=0.0, record_points=15, x64=True),
        metrics=("train_loss", "layer_condition_summary", "network_condition"),
    ),
    axes={"model.residual": [True, False], "model.depth": [4, 8], "seed": [0, 1, 2]},
    quick={"model.depth": 8, "seed": 0},
    figures=resnet_figures,
    claims=(
        Claim("residual layers' slope matrices (local affine maps of the ReLU spline = layer Jacobians) are better "
              "conditioned than plain layers' along training (Balestriero & Baraniuk)", layers_better_conditioned),
        Claim("stricter: residual layers' kappa is also at most the plain layers' kappa restricted to their range "
              "(the active units), at every recorded step", better_conditioned_on_the_range),
        Claim("the residual network's input-output slope A(x) = df/dx is better conditioned than the plain one's",
              network_better_conditioned),
        Claim("at equal step size the residual network trains faster (fewer steps to 5 % of the zero predictor's loss) "
              "and ends lower", trains_faster),
    ),
)
