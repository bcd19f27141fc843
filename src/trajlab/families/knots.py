"""A wide two-layer ReLU network in the mean-field parameterization (``model.kind=mean_field_relu``) on
1-D regression with a handful of points (``problem.kind=regression_1d``), and the knot counter:
Shevchenko, Kungurtsev & Mondelli, "Mean-field analysis of piecewise linear solutions for wide ReLU
networks" (JMLR 2022).

Model: f(x) = (1/m) sum_{j=1}^m a_j relu(w_j x + b_j) (m = ``model.width``; biases b_j; mean-field
1/m output scale), every parameter N(0, scale^2) at init.

Objective and dynamics (the paper's setting as far as its abstract states it: SGD on the squared
loss whose limit, as m grows, is a gradient flow on the weight distribution that converges to the
minimizer of a free energy of Gibbs form, i.e. loss + l2 penalty + temperature x entropy; the
exact constants of the paper were not at hand): minibatch SGD on

    L(theta) = 1/(2n) sum_i (f(x_i) - y_i)^2 + lam/2 (1/m) sum_j (a_j^2 + w_j^2 + b_j^2),

with the mean-field time scale (each neuron's update is m times its gradient, the family's own
update rule: theta_j <- theta_j - lr (m grad_j L + xi_j)) and Gaussian noise xi_j ~ N(0, noise^2)
per coordinate and step (Langevin dynamics at temperature tau = lr noise^2 / 2). The noise enters
through the minibatch: a draw adds the linear term (1/m) sum_j xi_j . theta_j to the loss of that
step; the full-data loss (``train_loss``) has no noise term.

Knots (:func:`count_knots`): the learned f is piecewise linear with a kink at every -b_j / w_j;
with m neurons (and noise) a knot of the limit is a cluster of many small kinks. Between each pair
of consecutive training inputs, f is evaluated on a fine grid (:data:`KNOT_GRID` points) and its
slope changes are grouped into clusters (gaps longer than :data:`KNOT_GAP` of the interval split
them; the first and last :data:`KNOT_MARGIN` of the interval are left out: kinks *at* the data
points are not between them); each cluster's positive and negative slope changes are summed
separately and each sum of magnitude >= ``threshold`` counts as one knot. ``knots_final`` sets the
threshold to :data:`KNOT_THRESHOLD` x the largest |slope| between consecutive data points.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem

TARGETS = ("random", "sine")
#: Knot counting: fine-grid points per interval, bins per interval, margin left out at each end.
KNOT_GRID = 4001
KNOT_MARGIN = 0.05
#: Slope changes closer than KNOT_GAP x the interval length belong to one knot; changes below
#: KNOT_FLOOR x the threshold (single far-off neurons) are ignored.
KNOT_GAP = 0.03
KNOT_FLOOR = 0.05
#: The knot threshold, relative to the largest slope between consecutive data points.
KNOT_THRESHOLD = 0.05
#: The learned function is recorded on this many points of [x_min - 0.1, x_max + 0.1] (figures).
FUNCTION_POINTS = 81


@dataclass(frozen=True)
class Regression1D:
    """``samples`` inputs x_i = evenly spaced in [-1, 1] plus uniform jitter of +-jitter x spacing / 2,
    targets y_i uniform in [-1, 1] (``random``) or sin(pi x_i) (``sine``)."""

    samples: int = 6
    targets: str = "random"
    jitter: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.samples, int) and 2 <= self.samples <= 1000, "problem.samples",
                "an integer in [2, 1000]", self.samples)
        require(self.targets in TARGETS, "problem.targets", f"one of {TARGETS}", self.targets)
        require(0 <= self.jitter < 1, "problem.jitter", "a number in [0, 1) (fraction of the spacing)", self.jitter)


@problem("regression_1d", config=Regression1D)
def regression_1d(config: Regression1D) -> dict:
    """Sorted inputs x (n,) and targets y (n,), see :class:`Regression1D`."""
    rng = np.random.default_rng(config.seed)
    n = config.samples
    spacing = 2.0 / (n - 1)
    x = np.linspace(-1.0, 1.0, n) + config.jitter * spacing / 2 * rng.uniform(-1, 1, n)
    x = np.sort(x)
    y = rng.uniform(-1.0, 1.0, n) if config.targets == "random" else np.sin(np.pi * x)
    return {"x": x, "y": y}


@dataclass(frozen=True)
class MeanFieldReLU:
    """f(x) = (1/m) sum_j a_j relu(w_j x + b_j), trained by noisy SGD with weight decay (see the module)."""

    width: int = 500
    lam: float = 1e-3
    noise: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(isinstance(self.width, int) and 1 <= self.width <= 10**7, "model.width",
                "an integer in [1, 10^7] (neurons)", self.width)
        require(0 <= self.lam < float("inf"), "model.lam", "a number >= 0 (l2 penalty)", self.lam)
        require(0 <= self.noise < float("inf"), "model.noise", "a number >= 0 (gradient noise std per coordinate)", self.noise)
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0 (init std)", self.scale)


def mean_field_output(params, x):
    """f(x) = (1/m) sum_j a_j relu(w_j x + b_j) for x of any shape."""
    pre = x[..., None] * params["w"] + params["b"]
    return jnp.mean(params["a"] * jax.nn.relu(pre), axis=-1)


def fit_loss(params, x, y):
    """1/(2n) sum_i (f(x_i) - y_i)^2."""
    return 0.5 * jnp.mean((mean_field_output(params, x) - y) ** 2)


def penalty(params):
    """1/2 (1/m) sum_j (a_j^2 + w_j^2 + b_j^2)."""
    return 0.5 * jnp.mean(params["a"] ** 2 + params["w"] ** 2 + params["b"] ** 2)


# ---------------------------------------------------------------------------------------------
# knots


def slope_changes(function, left: float, right: float, points: int = KNOT_GRID):
    """(grid positions of the interior points, slope change at each) of ``function`` (numpy, vectorized)
    on an evenly spaced grid of ``points`` points in [left, right]."""
    grid = np.linspace(left, right, points)
    values = np.asarray(function(grid), np.float64)
    slopes = np.diff(values) / np.diff(grid)
    return grid[1:-1], np.diff(slopes)


def count_knots_in(positions, changes, left: float, right: float, threshold: float, *, gap: float = KNOT_GAP,
                   margin: float = KNOT_MARGIN, floor: float = KNOT_FLOOR) -> tuple[int, list[float]]:
    """Knots of a piecewise linear function between ``left`` and ``right`` from its slope changes (see the
    module): returns (count, positions: the slope-change-weighted centers).

    The grid slope changes of at least ``floor`` x threshold inside [left + margin L, right - margin L]
    (L = right - left) are grouped into clusters, a new cluster starting wherever two consecutive
    ones are more than ``gap`` L apart; in each cluster the positive and the negative changes are
    summed separately, and each sum of magnitude >= ``threshold`` is one knot (so a cluster is 0, 1
    or 2 knots: a convex and a concave bend that close together count as two).
    """
    length = right - left
    lo, hi = left + margin * length, right - margin * length
    keep = (positions >= lo) & (positions <= hi) & (np.abs(changes) >= floor * threshold)
    where, change = positions[keep], changes[keep]
    if where.size == 0:
        return 0, []
    starts = np.concatenate([[0], np.flatnonzero(np.diff(where) > gap * length) + 1, [where.size]])
    knots = []
    for begin, end in zip(starts[:-1], starts[1:]):
        cluster, at = change[begin:end], where[begin:end]
        for part in (cluster > 0, cluster < 0):
            total = float(np.sum(cluster[part]))
            if abs(total) >= threshold:
                knots.append(float(np.sum(cluster[part] * at[part]) / total))
    return len(knots), sorted(knots)


def count_knots(function, x, threshold: float, **options) -> list[int]:
    """Knots of ``function`` between each pair of consecutive sorted inputs ``x`` (a list of n - 1 counts)."""
    x = np.sort(np.asarray(x, np.float64))
    counts = []
    for left, right in zip(x[:-1], x[1:]):
        positions, changes = slope_changes(function, left, right)
        counts.append(count_knots_in(positions, changes, left, right, threshold, **options)[0])
    return counts


def data_slope_scale(x, y) -> float:
    """The largest |slope| between consecutive data points (the knot threshold's unit)."""
    order = np.argsort(x)
    x, y = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    return float(np.max(np.abs(np.diff(y) / np.diff(x))))


def numpy_output(params):
    a, w, b = (np.asarray(params[k], np.float64) for k in ("a", "w", "b"))

    def function(grid):
        return (np.maximum(np.asarray(grid)[:, None] * w + b, 0.0) @ a) / a.shape[0]

    return function


def knots_final(params, data, config) -> dict:
    """Knot counts of the final network between consecutive training inputs (``knots_i``), their maximum,
    total, and the threshold used."""
    x, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    threshold = KNOT_THRESHOLD * data_slope_scale(x, y)
    counts = count_knots(numpy_output(params), x, threshold)
    out = {f"knots_{i}": float(c) for i, c in enumerate(counts)}
    out.update(knots_max=float(max(counts)), knots_total=float(sum(counts)), knots_threshold=threshold)
    return out


# ---------------------------------------------------------------------------------------------
# the family


def check(config) -> None:
    require(config.optimizer.name == "gd", "optimizer.name",
            "gd for model.kind=mean_field_relu (the family applies its own mean-field SGD rule)", config.optimizer.name)
    require(config.optimizer.batch_size <= config.problem.samples, "optimizer.batch_size",
            f"an integer in [0, problem.samples] = [0, {config.problem.samples}]", config.optimizer.batch_size)


def build(config) -> FamilyParts:
    """Gaussian init, fit + lam penalty, the mean-field update -m (grad + noise / m) (see the module)."""
    model = config.model
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    m = model.width
    batch_size = config.optimizer.batch_size

    def init(key, scale):
        draws = jnp.asarray(scale, dtype) * jax.random.normal(key, (3, m), dtype)
        return {"a": draws[0], "w": draws[1], "b": draws[2]}

    def loss(params, data):
        value = fit_loss(params, data["x"], data["y"]) + model.lam * penalty(params)
        if "noise" in data:
            value = value + sum(jnp.sum(data["noise"][k] * params[k]) for k in ("a", "w", "b")) / m
        return value

    def minibatch(data, key):
        sample_key, noise_key = jax.random.split(key)
        index = jax.random.choice(sample_key, data["x"].shape[0], (batch_size,), replace=False)
        draws = model.noise * jax.random.normal(noise_key, (3, m), data["x"].dtype)
        return {"x": data["x"][index], "y": data["y"][index], "noise": {"a": draws[0], "w": draws[1], "b": draws[2]}}

    return FamilyParts(init=init, loss=loss, minibatch=minibatch, optimizer=optax.scale(-float(m)))


def _function_grid(ctx):
    x = ctx.data["x"]
    grid = jnp.linspace(jnp.min(x) - 0.1, jnp.max(x) + 0.1, FUNCTION_POINTS)
    return mean_field_output(ctx.params, grid)


family(
    "mean_field_relu",
    config=MeanFieldReLU,
    problems=("regression_1d",),
    metrics={
        "fit": lambda ctx: fit_loss(ctx.params, ctx.data["x"], ctx.data["y"]),
        "penalty": lambda ctx: penalty(ctx.params),
        "function_grid": _function_grid,
    },
    final_metrics={"knots": knots_final},
    columns={"function_grid": "f_grid"},
    default_metrics=("train_loss", "fit", "penalty", "knots"),
    check=check,
    description="wide two-layer ReLU net with biases, mean-field 1/m output, noisy SGD with l2 penalty",
)(build)
