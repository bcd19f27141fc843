"""Preset ``overparam-threshold``: how wide is wide enough to fit random labels (Jason Lee, "Towards
a Foundation of Deep Learning: SGD, Overparametrization, and Generalization", slides 20-21).

n points uniform on the unit sphere of R^d with independent uniform +-1 labels
(``problem.kind=random_labels``); two-layer ReLU networks f(x) = p^-1/2 sum_r a_r relu(<w_r, x>),
both layers trained, NTK parameterization, init w_r ~ N(0, I_d), a_r ~ N(0, 1)
(``model.kind=two_layer_memorizer``, :mod:`trajlab.families.random_labels`); loss the mean squared
error. Width p on a grid of multiples of n (p = m n, m in ``multiples``; p d / n = m d is the grid in
units of n / d, where the parameter count p (d + 1) passes n), many seeds (init draws) per point, all
seeds of a width in one vmapped batch. A run "reaches zero training loss" when its mean squared
error falls to ``train.tol`` = 1e-4 within ``train.max_steps`` (status ``done``).

The slides' claim: in practice the width needed to fit (random) labels is a constant multiple of
n (of n / d in parameter count), far below the polynomial widths of the worst-case theorems. Here:
the fraction of seeds that fit rises from ~0 to 1 across the grid, at a width p_50 (linear
interpolation of the fraction in p) that is a constant multiple c = p_50 / n of n, the same for
every n at each d (within a factor 1.5).

Optimizer (an assumption; the slides' experiment uses SGD and its settings were not at hand): Adam
with lr 0.01 on the full batch, up to 5000 steps; Adam reaches 1e-4 quickly where plain GD
crawls near the threshold, so that the quick version fits the CPU budget. d = 4 (quick) or
d in {4, 8} (full: is the threshold a multiple of n, or of n / d?);
multiples m in {1/4, 3/8, 1/2, 1} (quick), {1/16, 1/8, 3/16, 1/4, 3/8, 1/2, 3/4, 1, 2} (full).
Seeds: 16 per point (quick), 48 (full); n in {16, 32} (quick), {16, 32, 64} (full).

Measured (quick, ``trajlab run overparam-threshold --quick``: 128 runs in 8 batches, about 26 s of
CPU (user) on a shared 2-core machine): fraction fitting at p = 4, 6, 8, 16 (n = 16): 0, 0.5,
0.88, 1; at p = 8, 12, 16, 32 (n = 32): 0, 0.75, 1, 1. p_50 = 6.0 = 0.375 n and 10.7 = 0.333 n:
c = 0.33-0.375 (1.3-1.5 n/d), ratio 1.12 across n: the claim holds.

Measured (full, ``trajlab run overparam-threshold``, n in {16, 32, 64}, d in {4, 8}, 48 seeds per
point, 2592 runs, about 145 s of CPU in two sittings): at d = 4, p_50 = 6.6, 11.2, 28.6 for n = 16, 32, 64, i.e.
c = 0.41, 0.35, 0.45 (1.65, 1.4, 1.8 n/d; ratio 1.28): a constant multiple of n. At d = 8,
p_50 = 6.3, 7.1, 10.1, i.e. c = 0.39, 0.22, 0.16 (3.15, 1.78, 1.26 n/d; ratio 2.5): not a constant
multiple of n over this range, so the claim FAILS on the full sweep. At small n / d (2 and 4) about 6
units are needed whatever n, far more than the n / (d + 1) units a parameter count asks for; by
n = 64 both d need about 1.3-1.8 n / d units, the "multiple of n / d" reading of the slides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig, replace_dotted
from trajlab.presets.claims import fmt, lacks, not_measured
from trajlab.presets.preset import Claim, Preset
from trajlab.report.columns import require_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The fraction of fitting seeds "starts near 0" (<= LOW) and "ends at 1" (>= HIGH).
LOW, HIGH = 0.1, 0.9
#: p_50 / n of the two n must agree within this factor for "a constant multiple of n".
AGREE = 1.5


@dataclass(frozen=True)
class WidthMultiplesPreset(Preset):
    """A preset whose widths are multiples of the number of samples: every config the grid makes is
    repeated with ``model.width = max(1, round(m * problem.samples))`` for m in ``multiples``
    (``quick_multiples`` under ``--quick``). A width the user sets (``--set model.width=...``) is kept."""

    multiples: tuple[float, ...] = ()
    quick_multiples: tuple[float, ...] = ()

    def configs(self, fixed=None, axes=None, quick: bool = False) -> list[RunConfig]:
        user = {**(fixed or {}), **(axes or {})}
        configs = super().configs(fixed, axes, quick)
        if "model.width" in user:
            return configs
        multiples = self.quick_multiples if (quick and self.quick_multiples) else self.multiples
        out: dict[str, RunConfig] = {}
        for config in configs:
            for m in multiples:
                width = max(1, int(round(m * config.problem.samples)))
                sized = replace_dotted(config, {"model.width": width})
                out.setdefault(repr(sized), sized)
        return list(out.values())


def fractions(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (n, d, width): seeds, the fraction with status ``done`` (train loss <= tol), p / n and p d / n."""
    runs = runs.assign(fit=(runs["status"] == "done").astype(float))
    table = runs.groupby(["problem.samples", "problem.dim", "model.width"]).agg(
        seeds=("fit", "size"), fraction=("fit", "mean"), median_loss=("final.train_loss", "median"),
    ).reset_index()
    table["p_over_n"] = table["model.width"] / table["problem.samples"]
    table["p_d_over_n"] = table["p_over_n"] * table["problem.dim"]
    return table


def crossing_width(widths: np.ndarray, fraction: np.ndarray, level: float = 0.5) -> float:
    """The width at which the fraction first reaches ``level`` (linear interpolation between the two
    grid widths around it); nan when it never does or already does at the smallest width."""
    reached = np.flatnonzero(fraction >= level)
    if reached.size == 0 or reached[0] == 0:
        return math.nan
    i = int(reached[0])
    t = (level - fraction[i - 1]) / (fraction[i] - fraction[i - 1])
    return float(widths[i - 1] + t * (widths[i] - widths[i - 1]))


def threshold_is_a_multiple_of_n(data):
    """For every (n, d): at the smallest width at most 10% of the seeds fit, at the largest at least 90%;
    at each d, the width p_50 where half fit is c n with c = p_50 / n within a factor 1.5 across the n of
    the sweep. Measured: c and c d (p_50 in units of n / d); with several d, whether c or c d is the
    constant is reported (not part of the verdict)."""
    reason = lacks(data, runs=["status", "problem.samples", "problem.dim", "model.width", "final.train_loss"])
    if reason:
        return not_measured(reason)
    table = fractions(data.runs)
    parts, holds = [], True
    constants: dict[int, list[float]] = {}
    for (n, d), group in table.groupby(["problem.samples", "problem.dim"]):
        group = group.sort_values("model.width")
        if len(group) < 3:
            continue
        widths, fraction = group["model.width"].to_numpy(float), group["fraction"].to_numpy(float)
        ok = fraction[0] <= LOW and fraction[-1] >= HIGH
        p50 = crossing_width(widths, fraction)
        if math.isnan(p50):
            ok = False
        else:
            constants.setdefault(int(d), []).append(p50 / n)
        holds &= ok
        curve = ", ".join(f"{int(w)}: {fmt(f, 2)}" for w, f in zip(widths, fraction))
        parts.append(f"n={int(n)}, d={int(d)}: fraction fitting by width {{{curve}}} "
                     f"({int(group['seeds'].min())} seeds each); p_50 = {fmt(p50, 3)} = {fmt(p50 / n, 3)} n "
                     f"= {fmt(p50 * d / n, 3)} n/d")
    if not parts:
        return not_measured("needs three or more widths per n")
    for d, values in sorted(constants.items()):
        if len(values) >= 2:
            spread = max(values) / min(values)
            holds &= spread <= AGREE
            parts.append(f"d={d}: c = p_50 / n from {fmt(min(values), 3)} to {fmt(max(values), 3)} across n "
                         f"(ratio {fmt(spread, 3)})")
    if len(constants) >= 2:  # several d: is p_50 a multiple of n, or of n / d? (reported, not part of the verdict)
        means = {d: float(np.mean(v)) for d, v in constants.items()}
        parts.append("across d: mean c = " + ", ".join(f"{fmt(c, 3)} (d={d})" for d, c in sorted(means.items()))
                     + "; mean c d = " + ", ".join(f"{fmt(c * d, 3)} (d={d})" for d, c in sorted(means.items())))
    return "; ".join(parts), holds


# ---------------------------------------------------------------------------------------------
# figures


def fraction_figure(runs: pd.DataFrame) -> Figure:
    """Fraction of seeds reaching the loss tolerance against p / n (left) and p d / n (right), a line
    per (n, d)."""
    from matplotlib.figure import Figure

    require_columns(runs, ["status", "problem.samples", "problem.dim", "model.width", "final.train_loss"], "runs")
    table = fractions(runs)
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for (n, d), group in table.groupby(["problem.samples", "problem.dim"]):
        group = group.sort_values("model.width")
        for ax, column in zip(axes, ("p_over_n", "p_d_over_n")):
            ax.semilogx(group[column], group["fraction"], marker="o", label=f"n = {int(n)}, d = {int(d)}")
    axes[0].set(xlabel="width p / n", ylabel="fraction of seeds with train loss <= tol",
                title="fitting random labels")
    axes[1].set(xlabel="width p / (n / d)", title="in units of n / d (parameters per sample)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax in axes:
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def overparam_threshold_figures(data) -> dict:
    return {"fraction_fitting": fraction_figure(data.runs)}


OVERPARAM_THRESHOLD = WidthMultiplesPreset(
    name="overparam-threshold",
    description="Two-layer ReLU nets fit random labels once the width passes a constant multiple of n (Lee's slides)",
    base=RunConfig(
        problem=ProblemConfig("random_labels", samples=32, dim=4, seed=0),
        model=ModelConfig("two_layer_memorizer", width=16, scale=1.0),
        optimizer=OptimizerConfig(name="adam", lr=0.01),
        train=TrainConfig(max_steps=5000, tol=1e-4, record_points=20),
    ),
    axes={"problem.samples": [16, 32, 64], "problem.dim": [4, 8], "seed": list(range(48))},
    multiples=(1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0, 2.0),
    quick_multiples=(1 / 4, 3 / 8, 1 / 2, 1.0),
    quick={"problem.samples": [16, 32], "problem.dim": 4, "seed": list(range(16))},
    figures=overparam_threshold_figures,
    claims=(
        Claim(
            "the fraction of seeds that reach zero training loss (to 1e-4) rises from ~0 to 1 across a width that "
            "is a constant multiple of n (Lee, slides 20-21; the constant c = p_50 / n is reported)",
            threshold_is_a_multiple_of_n,
        ),
    ),
)
