"""Preset ``saddle-escape``: random initialization and noise avoid strict saddles (Jason Lee's slide 16;
Lee, Simchowitz, Jordan, Recht, "Gradient descent only converges to minimizers", COLT 2016; Jin, Ge,
Netrapalli, Kakade, Jordan, "How to escape saddle points efficiently", ICML 2017).

Problem: L(U) = 1/4 ||U U^T - M||_F^2, U in R^{8 x 2}, M = diag(1, 1/2, 0, ..., 0)
(``model.kind=saddle_factorization``, ``problem.kind=psd_target``; see
:mod:`trajlab.families.ntk_networks`). U = 0 is a strict saddle: the gradient (U U^T - M) U vanishes
and the Hessian there is -M (x) I_2, with eigenvalue -lambda_1 = -1. Its stable manifold contains
{U : M U = 0} (the rows of U in the span of M are zero): there the gradient is U U^T U and GD
shrinks U back towards 0 (like t^(-1/2)). Near the saddle, GD multiplies the component of U along
the top eigenvector of M by (1 + eta lambda_1) per step, so from a start at distance delta with a
component c delta along it, the escape time to distance rho is about

    T(delta) = log(rho / (c delta)) / log(1 + eta lambda_1) + O(1),

a line in log(1/delta) of slope 1 / log(1 + eta lambda_1) (= 10.49 steps per e-fold for eta = 0.1,
lambda_1 = 1). Perturbed GD (Jin et al. 2017, Algorithm 2: add xi uniform in the ball of radius r
when ||grad|| <= g_thres and no perturbation in the last t_thres steps) started AT the saddle makes
its first perturbation at step 0 and escapes in T(r) with the same slope in log(1/r). Escape time:
the first t (step, interpolated between records in log distance) at which ||U||_F >= rho = 0.5
(the minimizers have ||U||_F = sqrt(1.5)).

Runs (GD, eta = 0.1, float64, 500 steps, seeds 0-2; quick: seeds 0-1): start ``random`` (U(0) =
delta G / ||G||) with delta = 1e-1 ... 1e-7 (quick 1e-2 ... 1e-6; delta is the batched
``model.scale``, so the runs of a seed share the direction G); start ``saddle`` (U(0) = 0) with
plain GD; start ``stable`` (U(0) on {M U = 0}, delta = 0.5); perturbed GD from the saddle with
radius r = eta * ``model.perturbation`` for perturbation 1e-1 ... 1e-6 (quick 1e-2, 1e-4, 1e-6),
g_thres = 1e-3, t_thres = 20 steps.

Measured with ``trajlab run saddle-escape --quick`` (20 runs; 14 s user + 1 s sys of CPU on a
shared 2-core machine), all five claims hold: from U(0) = 0 plain GD keeps ||U|| = 0 exactly (loss
0.3125 = L(0)); from the stable manifold ||U|| falls from 0.5 to 0.135 in 500 steps with the top
component exactly 0; the 10 random starts escape after 51 to 154 steps and end at loss <= 1.2e-19;
the 6 perturbed-GD runs from the saddle escape after 74 to 178 steps; escape step = 5.5 + 10.5
log(1/delta) and 4.6 + 10.5 log(1/r) against the predicted slope 1/log(1.1) = 10.49 (ratios 1.00).
Full (``trajlab run saddle-escape``, 45 runs, 19 s of CPU): the same; random starts from delta = 1e-1
to 1e-7 escape after 26 to 178 steps (escape step = 8.3 + 10.5 log(1/delta)), perturbed GD with r =
1e-2 to 1e-7 after 50 to 178 steps (3.9 + 10.5 log(1/r), ratio 0.999); the perturbed runs end at
loss <= 3.1e-5 (they keep being perturbed near the minimum, as Jin et al.'s rule does).

Figure (:func:`escape_figure`): distance to the saddle along training for every start, and the
escape time against log(1/delta) and log(1/r) with the predicted slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, replace_dotted
from trajlab.presets.claims import by_run, crossing, fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("train_loss", "distance_to_saddle", "top_component", "stable_component", "gradient_norm")
RHO = 0.5  # escape: ||U||_F reaches this
STABLE_DISTANCE = 0.5
PERTURBATIONS, QUICK_PERTURBATIONS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), (1e-2, 1e-4, 1e-6)
DISTANCES, QUICK_DISTANCES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7), (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
#: Claim tolerances on the fitted slope (relative to 1 / log(1 + eta lambda_1)).
DISTANCE_SLOPE_TOLERANCE, RADIUS_SLOPE_TOLERANCE = 0.15, 0.25
MINIMUM_LOSS = 1e-8  # a random start ends at a global minimum (L* = 0): loss at most this


@dataclass(frozen=True)
class SaddlePreset(Preset):
    """The grid (random starts over ``model.scale`` x seeds) plus, per seed, one run from the saddle,
    one from the stable manifold and one perturbed-GD run from the saddle per perturbation radius."""

    perturbations: tuple[float, ...] = PERTURBATIONS
    quick_perturbations: tuple[float, ...] = QUICK_PERTURBATIONS

    def configs(self, fixed=None, axes=None, quick: bool = False):
        grid = super().configs(fixed, axes, quick)
        user = {**(fixed or {}), **(axes or {})}
        if "model.start" in user or "model.perturbation" in user:
            return grid
        out = {repr(c): c for c in grid}
        radii = self.quick_perturbations if quick else self.perturbations
        for config in grid:
            extra = [{"model.start": "saddle", "model.scale": 1.0},
                     {"model.start": "stable", "model.scale": STABLE_DISTANCE}]
            extra += [{"model.start": "saddle", "model.scale": 1.0, "model.perturbation": r} for r in radii]
            for values in extra:
                derived = replace_dotted(config, values)
                out.setdefault(repr(derived), derived)
        return list(out.values())


# ---------------------------------------------------------------------------------------------
# measurements


def predicted_slope(lr: float, top: float) -> float:
    """Escape steps per e-fold of the start distance: 1 / log(1 + eta lambda_1)."""
    return 1.0 / math.log1p(lr * top)


def escape_step(trajectory: pd.DataFrame, rho: float = RHO) -> float:
    """First step at which distance_to_saddle >= rho, interpolated linearly in log distance (inf if never)."""
    distance = trajectory["distance_to_saddle"].to_numpy(float)
    steps = trajectory["step"].to_numpy(float)
    logs = np.log(np.maximum(distance, 1e-300))
    return crossing(steps, logs, math.log(rho))


def _kind(runs: pd.DataFrame) -> pd.Series:
    perturbed = runs["model.perturbation"].astype(float) > 0
    return np.where(perturbed, "perturbed", runs["model.start"])


def escape_table(data) -> pd.DataFrame:
    """One row per run: kind (random / saddle / stable / perturbed), start distance, radius r =
    eta x perturbation, escape step, max and final distance, final loss."""
    runs = data.runs.copy()
    runs["kind"] = _kind(runs)
    trajectories = by_run(data.trajectories)
    rows = []
    for _, run in runs.iterrows():
        trajectory = trajectories.get(run["run_id"])
        if trajectory is None:
            continue
        distance = trajectory["distance_to_saddle"].to_numpy(float)
        rows.append({
            "run_id": run["run_id"], "kind": run["kind"], "seed": int(run["seed"]),
            "delta": float(run["model.scale"]), "radius": float(run["optimizer.lr"]) * float(run["model.perturbation"]),
            "lr": float(run["optimizer.lr"]), "top": float(run["problem.top"]),
            "escape": escape_step(trajectory), "max_distance": float(distance.max()), "initial_distance": float(distance[0]),
            "final_distance": float(distance[-1]), "final_loss": float(trajectory["train_loss"].iloc[-1]),
            "decreasing": bool(np.all(np.diff(distance) <= 0)),
            "max_top": float(trajectory["top_component"].abs().max()),
        })
    return pd.DataFrame(rows)


_COLUMNS = dict(runs=["model.start", "model.perturbation", "model.scale", "optimizer.lr", "problem.top", "seed"],
                trajectories=["run_id", "step", "distance_to_saddle", "train_loss", "top_component"])


def stays_or_returns(data):
    """From U(0) = 0, plain GD: ||U|| stays exactly 0 and the loss stays L(0) = 1/4 sum lambda^2. From
    the stable manifold: the top component stays exactly 0, ||U|| never increases and ends at most
    half of its start."""
    reason = lacks(data, **_COLUMNS)
    if reason:
        return not_measured(reason)
    table = escape_table(data)
    saddle, stable = table[table["kind"] == "saddle"], table[table["kind"] == "stable"]
    if saddle.empty or stable.empty:
        return not_measured("needs runs from the saddle and from the stable manifold")
    stays = bool((saddle["max_distance"] == 0).all())
    returns = bool((stable["max_top"] == 0).all() and stable["decreasing"].all()
                   and (stable["final_distance"] <= 0.5 * stable["initial_distance"]).all())
    measured = (f"from the saddle: max ||U|| {fmt(saddle['max_distance'].max())} ({len(saddle)} runs), final loss "
                f"{fmt(saddle['final_loss'].max(), 6)}; from the stable manifold: ||U|| {fmt(stable['initial_distance'].max())} -> "
                f"{fmt(stable['final_distance'].min())} to {fmt(stable['final_distance'].max())}, max top component "
                f"{fmt(stable['max_top'].max())}, never increasing: {'yes' if stable['decreasing'].all() else 'no'}")
    return measured, stays and returns


def random_init_escapes(data):
    """Every random start escapes (reaches ||U|| >= 0.5) and ends at a global minimum (loss <= 1e-8)."""
    reason = lacks(data, **_COLUMNS)
    if reason:
        return not_measured(reason)
    table = escape_table(data)
    random = table[table["kind"] == "random"]
    if random.empty:
        return not_measured("needs random starts")
    escaped = np.isfinite(random["escape"]).all()
    minimum = bool((random["final_loss"] <= MINIMUM_LOSS).all())
    measured = (f"{int(np.isfinite(random['escape']).sum())} of {len(random)} random starts escape (steps "
                f"{fmt(random['escape'].min())} to {fmt(random['escape'].max())}); final loss at most "
                f"{fmt(random['final_loss'].max())} (claim <= {MINIMUM_LOSS})")
    return measured, bool(escaped and minimum)


def perturbed_gd_escapes(data):
    """Every perturbed-GD run from the saddle itself escapes (reaches ||U|| >= 0.5)."""
    reason = lacks(data, **_COLUMNS)
    if reason:
        return not_measured(reason)
    table = escape_table(data)
    perturbed = table[table["kind"] == "perturbed"]
    if perturbed.empty:
        return not_measured("needs perturbed-GD runs")
    escaped = np.isfinite(perturbed["escape"])
    measured = (f"{int(escaped.sum())} of {len(perturbed)} perturbed-GD runs from U = 0 escape (steps "
                f"{fmt(perturbed['escape'].min())} to {fmt(perturbed['escape'].max())}); final loss at most "
                f"{fmt(perturbed['final_loss'].max())}")
    return measured, bool(escaped.all())


def fit_escape(table: pd.DataFrame, column: str) -> tuple[float, float, pd.Series]:
    """(slope, intercept, medians): least squares of the median escape step against log(1 / column)."""
    medians = table.groupby(column)["escape"].median().sort_index()
    x = np.log(1.0 / medians.index.to_numpy(float))
    slope, intercept = np.polyfit(x, medians.to_numpy(float), 1)
    return float(slope), float(intercept), medians


def _log_law(kind: str, column: str, tolerance: float, data):
    reason = lacks(data, **_COLUMNS)
    if reason:
        return not_measured(reason)
    table = escape_table(data)
    part = table[(table["kind"] == kind) & np.isfinite(table["escape"])]
    if part[column].nunique() < 3:
        return not_measured(f"needs 3 values of {'delta' if column == 'delta' else 'r'} or more that escape")
    slope, intercept, medians = fit_escape(part, column)
    predicted = predicted_slope(part["lr"].iloc[0], part["top"].iloc[0])
    values = ", ".join(f"{fmt(v)}: {fmt(t)}" for v, t in medians.items())
    name = "delta" if column == "delta" else "r"
    measured = (f"escape step = {fmt(intercept)} + {fmt(slope)} log(1/{name}) (predicted slope 1/log(1 + eta lambda_1) = "
                f"{fmt(predicted)}, ratio {fmt(slope / predicted)}, claim within {int(tolerance * 100)}%); median "
                f"escape step by {name}: {values}")
    return measured, abs(slope / predicted - 1) <= tolerance


def distance_law(data):
    """Random starts: median escape step against log(1/delta), slope within 15% of 1/log(1 + eta lambda_1)."""
    return _log_law("random", "delta", DISTANCE_SLOPE_TOLERANCE, data)


def radius_law(data):
    """Perturbed GD from the saddle: median escape step against log(1/r), slope within 25% of 1/log(1 + eta lambda_1)."""
    return _log_law("perturbed", "radius", RADIUS_SLOPE_TOLERANCE, data)


# ---------------------------------------------------------------------------------------------
# figure


def escape_figure(data) -> Figure:
    """Left: ||U(t)||_F for every run, coloured by kind (log y). Middle / right: escape step against
    log(1/delta) (random starts) and log(1/r) (perturbed GD), one dot per run, with the least-squares
    line of the medians and the predicted slope 1/log(1 + eta lambda_1) through the same mean."""
    from matplotlib.figure import Figure

    table = escape_table(data)
    fig = Figure(figsize=(13, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    colors = {"random": "#1f77b4", "saddle": "#d62728", "stable": "#2ca02c", "perturbed": "#ff7f0e"}
    trajectories = by_run(data.trajectories)
    seen = set()
    for _, row in table.iterrows():
        trajectory = trajectories[row["run_id"]]
        distance = np.maximum(trajectory["distance_to_saddle"].to_numpy(float), 1e-12)
        label = row["kind"] if row["kind"] not in seen else None
        seen.add(row["kind"])
        axes[0].semilogy(trajectory["step"], distance, color=colors.get(row["kind"], "k"), alpha=0.6, label=label)
    axes[0].axhline(RHO, color="k", linestyle=":", linewidth=0.8)
    axes[0].set(xlabel="step", ylabel="||U||_F (1e-12 shown for 0)", title="distance to the saddle")
    axes[0].legend(fontsize=8)
    for ax, kind, column, name in ((axes[1], "random", "delta", "delta"), (axes[2], "perturbed", "radius", "r")):
        part = table[(table["kind"] == kind) & np.isfinite(table["escape"])]
        ax.set(xlabel=f"log(1/{name})", ylabel="escape step", title=f"escape time against the start {name}")
        ax.grid(True, alpha=0.3)
        if part[column].nunique() < 2:
            continue
        x = np.log(1.0 / part[column].to_numpy(float))
        ax.plot(x, part["escape"], "o", color=colors[kind], alpha=0.7)
        slope, intercept, medians = fit_escape(part, column)
        grid = np.log(1.0 / medians.index.to_numpy(float))
        predicted = predicted_slope(part["lr"].iloc[0], part["top"].iloc[0])
        ax.plot(grid, intercept + slope * grid, "k-", label=f"fit: slope {fmt(slope)}")
        mean_x, mean_y = grid.mean(), medians.to_numpy(float).mean()
        ax.plot(grid, mean_y + predicted * (grid - mean_x), "k--", label=f"predicted {fmt(predicted)}")
        ax.legend(fontsize=8)
    return fig


def saddle_figures(data) -> dict:
    return {"escape": escape_figure(data)}


SADDLE_ESCAPE = SaddlePreset(
    name="saddle-escape",
    description="Strict saddle of U U^T at U = 0: stays from the saddle, escapes from random init or with perturbed GD in log(1/distance) time",
    base=RunConfig(
        problem=ProblemConfig(kind="psd_target", dim=8, rank=2, top=1.0, ratio=0.5),
        model=ModelConfig(kind="saddle_factorization", width=2, start="random", scale=1e-3, gradient_threshold=1e-3, wait=20),
        optimizer=OptimizerConfig(name="gd", lr=0.1),
        train=TrainConfig(max_steps=500, tol=0.0, record="linear", record_every=2, x64=True),
        metrics=METRICS,
    ),
    axes={"model.scale": list(DISTANCES), "seed": [0, 1, 2]},
    quick={"model.scale": list(QUICK_DISTANCES), "seed": [0, 1]},
    figures=saddle_figures,
    claims=(
        Claim("GD started exactly at the strict saddle U = 0 stays there, and GD started on its stable manifold "
              "{M U = 0} converges back towards it (Lee et al. 2016: only a measure-zero set of starts does this)",
              stays_or_returns),
        Claim("GD from a random init near the saddle escapes it and converges to a global minimum", random_init_escapes),
        Claim("perturbed GD (Jin et al. 2017: isotropic noise of radius r when the gradient is small) escapes from the "
              "saddle itself", perturbed_gd_escapes),
        Claim("the escape time grows like log(1/delta) in the distance delta of the start from the saddle, with slope "
              "1/log(1 + eta lambda_1) (within 15%)", distance_law),
        Claim("for perturbed GD from the saddle the escape time grows like log(1/r) in the perturbation radius r, with "
              "the same slope (within 25%)", radius_law),
    ),
)
