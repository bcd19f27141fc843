"""Preset ``mean-field-knots``: SGD on a wide two-layer ReLU network makes at most three knots between
consecutive training inputs (Shevchenko, Kungurtsev & Mondelli, "Mean-field analysis of piecewise
linear solutions for wide ReLU networks", JMLR 2022).

Setting (:mod:`trajlab.families.knots`; the paper's text was not at hand, its abstract was: SGD in
the mean-field regime, whose limit converges to the minimizer of a free energy of Gibbs form, and
the claim "the number of knot points between two consecutive training inputs is at most three"):
f(x) = (1/m) sum_j a_j relu(w_j x + b_j) with m = 500 neurons (biases; init N(0, 1)), 6 training
inputs in [-1, 1] (evenly spaced with jitter) with targets uniform in [-1, 1] (``problem.seed``
draws the data set), squared loss 1/(2n) sum (f(x_i) - y_i)^2 plus lam/2 (1/m) sum (a^2 + w^2 + b^2)
with lam = 1e-3; SGD on minibatches of 2 of the 6 points at mean-field step 0.1 (each neuron moves
by 0.1 x m x its gradient), with Gaussian gradient noise of std 0.03 per coordinate (Langevin
temperature tau = lr x noise^2 / 2 = 4.5e-5) or none, for 50 000 steps (t = 5000).

Knots (final metric ``knots``): between each pair of consecutive inputs, the slope changes of f on
a grid of 4001 points are grouped into clusters (gaps over 3 % of the interval split them; the
first and last 5 % of the interval are left out, so the kinks at the data points do not count);
each cluster's positive and negative slope changes are summed separately and each sum of at least
0.05 x the largest |slope| between consecutive data points counts as one knot
(:func:`trajlab.families.knots.count_knots_in`).

What the threshold means: at zero temperature GD/SGD makes sharp knots (clusters of neuron kinks
within ~0.01); at higher temperature the Gibbs measure has a density and f bends smoothly. An
exploratory run with noise 0.1 (tau = 5e-4) bent f smoothly over half an interval, which the gap
rule cut into 3-4 "knots": the count is a statement about the low-temperature limit, and the
preset stays there (noise 0 and 0.03).

Measured with ``trajlab run mean-field-knots --quick`` (data set 0, noise 0.03, init seeds 0 and 1,
30 000 steps: 2 runs in one compiled batch; 16.3 s user + 1.1 s sys CPU with a cold compilation
cache on the shared 2-core machine, 21 s wall): at most 1 knot between consecutive inputs (10
intervals: 8 with none, 2 with one: both runs make a knot at x = 0.45 between the inputs 0.10 and
0.66); every other bend of f sits at (within 5 % of the interval of) a data point. The networks fit
the data to 0.4 % of the zero function's loss (lam = 1e-3 keeps them from interpolating exactly).
Exploratory runs: data sets 0 and 1 with noise 0 and 0.03 (seed 0) gave the same maximum, 1 knot
(data set 1: none between inputs), and so did noise 0 on data set 0 with seeds 0 and 1.

Full sweep (``trajlab run mean-field-knots``: data sets 0-3 x noise 0, 0.03 x seeds 0, 1 = 16 runs of
50 000 steps; 53.9 s user + 2.8 s sys CPU, 44 s wall): at most 2 knots between consecutive inputs;
of the 80 intervals 68 have none, 8 one and 4 two; fits at most 3.4 % (median 0.9 %) of the zero
function's loss. The bound 3 holds and is not reached on these data sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.presets.claims import fmt, not_measured
from trajlab.presets.preset import Claim, Preset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The paper's bound on the knots between consecutive training inputs.
MAX_KNOTS = 3
#: "Fits the data": final fit loss at most this fraction of the fit loss of f = 0 (mean y^2 / 2).
FIT_FRACTION = 0.05


def _knot_columns(runs: pd.DataFrame) -> list[str]:
    return sorted((c for c in runs.columns if c.startswith("final.knots_") and c.split("_")[-1].isdigit()),
                  key=lambda c: int(c.split("_")[-1]))


def at_most_three_knots(data):
    """The largest knot count over every run and interval is at most three; also the distribution."""
    runs = data.runs
    columns = _knot_columns(runs)
    if not columns:
        return not_measured("runs lack final.knots_* (the knots metric)")
    counts = runs[columns].to_numpy(float)
    counts = counts[np.isfinite(counts)].astype(int)
    if counts.size == 0:
        return not_measured("no knot counts")
    values, frequency = np.unique(counts, return_counts=True)
    distribution = ", ".join(f"{v}: {f}" for v, f in zip(values, frequency))
    return (f"max {counts.max()} knots between consecutive inputs over {len(runs)} runs x {len(columns)} intervals; "
            f"intervals by knot count {{{distribution}}}"), bool(counts.max() <= MAX_KNOTS)


def networks_fit_the_data(data):
    """Every run ends with a fit loss below FIT_FRACTION of the zero function's (the knot count is about a trained network)."""
    runs = data.runs
    if "final.fit" not in runs.columns:
        return not_measured("runs lack final.fit")
    from trajlab.families.knots import regression_1d
    from trajlab.config import section_class

    ratios = []
    for _, run in runs.iterrows():
        section = section_class("problem", "regression_1d")(
            samples=int(run["problem.samples"]), targets=run["problem.targets"], jitter=float(run["problem.jitter"]),
            seed=int(run["problem.seed"]))
        y = regression_1d(section)["y"]
        ratios.append(float(run["final.fit"]) / (0.5 * float(np.mean(y**2))))
    ratios = np.array(ratios)
    return (f"final fit / fit of f = 0: max {fmt(ratios.max())}, median {fmt(float(np.median(ratios)))}"), bool(
        ratios.max() <= FIT_FRACTION)


# ---------------------------------------------------------------------------------------------
# figures


def functions_figure(runs: pd.DataFrame) -> Figure:
    """The final networks f on [x_min - 0.1, x_max + 0.1] (recorded ``f_grid`` columns), a panel per data
    set, with the training points; the legend gives the knot counts per interval."""
    from matplotlib.figure import Figure

    from trajlab.config import section_class
    from trajlab.families.knots import regression_1d

    grid_columns = sorted((c for c in runs.columns if c.startswith("final.f_grid_")), key=lambda c: int(c.split("_")[-1]))
    datasets = sorted(runs["problem.seed"].unique())
    fig = Figure(figsize=(4.5 * len(datasets), 3.8), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    knot_columns = _knot_columns(runs)
    for ax, dataset in zip(axes, datasets):
        chosen = runs[runs["problem.seed"] == dataset]
        first = chosen.iloc[0]
        section = section_class("problem", "regression_1d")(
            samples=int(first["problem.samples"]), targets=first["problem.targets"], jitter=float(first["problem.jitter"]),
            seed=int(dataset))
        data = regression_1d(section)
        grid = np.linspace(data["x"].min() - 0.1, data["x"].max() + 0.1, len(grid_columns))
        for index, (_, run) in enumerate(chosen.iterrows()):
            counts = [int(run[c]) for c in knot_columns]
            ax.plot(grid, run[grid_columns].to_numpy(float), color=f"C{index}",
                    label=f"noise {run['model.noise']:g}, seed {run['seed']}: knots {counts}")
        ax.plot(data["x"], data["y"], "ko", markersize=5)
        for x in data["x"]:
            ax.axvline(x, color="0.85", linewidth=0.6, zorder=0)
        ax.set(xlabel="x", title=f"data set {dataset}")
        ax.legend(fontsize=6)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("f(x), final network")
    return fig


def knot_histogram_figure(runs: pd.DataFrame) -> Figure:
    """How many intervals (over every run) have 0, 1, 2, ... knots; the paper's bound 3 dashed."""
    from matplotlib.figure import Figure

    counts = runs[_knot_columns(runs)].to_numpy(float)
    counts = counts[np.isfinite(counts)].astype(int)
    fig = Figure(figsize=(4.5, 3.5), layout="constrained")
    ax = fig.subplots()
    if counts.size:
        ax.hist(counts, bins=np.arange(-0.5, max(counts.max(), MAX_KNOTS) + 1.5, 1.0), rwidth=0.8)
    ax.axvline(MAX_KNOTS + 0.5, color="0.3", linestyle="--", label="bound: 3")
    ax.set(xlabel="knots between consecutive training inputs", ylabel="intervals")
    ax.legend(fontsize=7)
    return fig


def knots_figures(data) -> dict:
    return {"functions": functions_figure(data.runs), "knot_histogram": knot_histogram_figure(data.runs)}


MEAN_FIELD_KNOTS = Preset(
    name="mean-field-knots",
    description="Wide mean-field ReLU net, SGD on 6 points in 1-D: at most 3 knots between consecutive inputs (JMLR 2022)",
    base=RunConfig(
        problem=ProblemConfig("regression_1d", samples=6, targets="random"),
        model=ModelConfig("mean_field_relu", width=500, lam=1e-3, noise=0.03, scale=1.0),
        optimizer=OptimizerConfig(name="gd", lr=0.1, batch_size=2),
        train=TrainConfig(max_steps=50_000, tol=0.0, record_points=20),
        metrics=("train_loss", "fit", "penalty", "function_grid", "knots"),
    ),
    axes={"problem.seed": [0, 1, 2, 3], "model.noise": [0.0, 0.03], "seed": [0, 1]},
    quick={"problem.seed": 0, "model.noise": 0.03, "seed": [0, 1], "train.max_steps": 30_000, "train.record_points": 10},
    figures=knots_figures,
    claims=(
        Claim("SGD on a wide (mean-field) two-layer ReLU network makes at most three knots between consecutive training "
              "inputs (Shevchenko, Kungurtsev & Mondelli 2022); measured maximum and distribution", at_most_three_knots),
        Claim("the networks are trained: final fit loss below 5 % of the zero function's", networks_fit_the_data),
    ),
)
