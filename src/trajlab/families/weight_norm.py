"""Overparameterized least squares, plain or weight-normalized (Wu, Dobriban, Ren, Wu, Li,
Gunasekar, Ward, Liu, "Implicit Regularization and Convergence for Weight Normalization", NeurIPS 2020).

Problem ``wide_least_squares`` (``problem.kind``): X in R^{n x d} with i.i.d. N(0, 1) entries,
n = ``samples`` < d = ``dim``, labels y ~ N(0, I_n) rescaled so that the minimum-norm solution
x_dagger = pinv(X) y has ||x_dagger|| = 1. Loss L(w) = 1/(2n) ||X w - y||^2. The data carry x_dagger
and the projector P_N = I - pinv(X) X onto the null space of X (numpy float64, computed
independently of any training).

Family ``weight_normalized_linear`` (``model.kind``), ``parameterization``:

- ``plain``: params w, plain GD w <- w - lr grad L(w). Every gradient X^T r / n lies in the row
  space, so P_N w(t) = P_N w(0) for all t and GD converges to x_dagger + P_N w(0): the minimum-norm
  solution only from an init in the row space.
- ``weight_norm``: params (g, v), w = g v / ||v|| (Salimans & Kingma 2016). Gradients:
  dL/dg = u^T grad L(w), dL/dv = (g / ||v||) (I - u u^T) grad L(w), u = v / ||v||. Steps:
  g <- g - gamma dL/dg with gamma = ``optimizer.lr``, v <- v - eta dL/dv with
  eta = ``direction_lr`` x gamma (the family's own update rule and flow field: the paper uses
  separate step sizes for g and v, and the ratio eta / gamma is what matters below).

Init: the unit direction d0 (``init``: ``row_space`` = P_R z / ||P_R z||, ``random`` = z / ||z||,
``null_space`` = P_N z / ||P_N z||, z ~ N(0, I_d) from the run's seed), and w(0) = ``scale`` d0 for
both parameterizations: plain w(0) = scale d0; weight_norm g(0) = scale, v(0) = ``v_norm`` d0.

Invariant of the weight-normalized flow (derived here; the paper reports "explicit invariants along
the gradient flow paths", its text was not at hand): ||v|| is constant along the flow (dL/dv is
orthogonal to v); du/dt = -(eta g / ||v||^2) (I - u u^T) grad L and dg/dt = -gamma u^T grad L, and
as P_N grad L = 0, d(P_N u)/dt = (eta g / ||v||^2) (u^T grad L) P_N u = -(eta / (gamma ||v||^2)) g (dg/dt) P_N u, so

    P_N u(t) = P_N u(0) exp(-c (g(t)^2 - g(0)^2)),   c = eta / (2 gamma ||v||^2).

At convergence P_R w = x_dagger and ||w||^2 = g^2, so the null-space residual
||P_N w(inf)|| = |g_inf| ||P_N u(0)|| exp(-c (g_inf^2 - g(0)^2)) is exponentially small in c when
|g(0)| < ||x_dagger|| (g^2 grows from g(0)^2 to about ||x_dagger||^2): WN converges close to the
minimum-norm solution from an init whose direction is far from the row space. When |g(0)| >
||x_dagger||, g^2 may fall and the null component does not decay (the second regime of the paper's
continuous-time analysis, as its reviewers summarize it). Discrete steps grow ||v||
(||v_{t+1}||^2 = ||v_t||^2 + eta^2 ||dL/dv||^2), which lowers c along the way.

Metrics (relative to ||x_dagger|| = 1): ``distance_to_min_norm`` ||w - x_dagger||, ``null_norm``
||P_N w||, ``row_error`` ||P_R w - x_dagger||, ``null_direction`` ||P_N u|| (u = w / ||w|| for
plain), ``g`` (weight_norm: g; plain: ||w||), ``v_norm`` (weight_norm: ||v||; plain: 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem

PARAMETERIZATIONS = ("plain", "weight_norm")
INIT_DIRECTIONS = ("row_space", "random", "null_space")
MAX_DIM = 5_000


@dataclass(frozen=True)
class WideLeastSquaresConfig:
    """n < d Gaussian least squares with ||pinv(X) y|| = 1 (see :mod:`trajlab.families.weight_norm`)."""

    samples: int = 20
    dim: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(2 <= self.dim <= MAX_DIM, "problem.dim", f"an integer in [2, {MAX_DIM}] (dimension d)", self.dim)
        require(1 <= self.samples < self.dim, "problem.samples",
                f"an integer in [1, problem.dim - 1] = [1, {self.dim - 1}] (overparameterized: n < d)", self.samples)


@problem("wide_least_squares", config=WideLeastSquaresConfig,
         nbytes=lambda c: 8 * (3 * c.dim * c.dim + 3 * c.samples * c.dim + 2 * c.dim + c.samples))
def wide_least_squares(config):
    """Gaussian X (n x d, n < d), y with ||pinv(X) y|| = 1, the min-norm solution and the null-space projector."""
    rng = np.random.default_rng(config.seed)
    x = rng.standard_normal((config.samples, config.dim))
    y = rng.standard_normal(config.samples)
    pseudo_inverse = np.linalg.pinv(x)
    min_norm = pseudo_inverse @ y
    scale = np.linalg.norm(min_norm)
    return {
        "x": x,
        "y": y / scale,
        "min_norm": min_norm / scale,
        "null_projector": np.eye(config.dim) - pseudo_inverse @ x,
    }


@dataclass(frozen=True)
class WeightNormalizedLinearConfig:
    """w (plain) or w = g v / ||v|| (weight_norm), see :mod:`trajlab.families.weight_norm`."""

    parameterization: str = "weight_norm"
    scale: float = 0.5
    init: str = "random"
    direction_lr: float = 20.0
    v_norm: float = 1.0

    def __post_init__(self) -> None:
        require(self.parameterization in PARAMETERIZATIONS, "model.parameterization", f"one of {PARAMETERIZATIONS}",
                self.parameterization)
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0 (||w(0)|| = g(0))", self.scale)
        require(self.init in INIT_DIRECTIONS, "model.init", f"one of {INIT_DIRECTIONS} (direction of w(0))", self.init)
        require(0 < self.direction_lr < float("inf"), "model.direction_lr",
                "a number > 0 (step size of v over step size of g)", self.direction_lr)
        require(0 < self.v_norm < float("inf"), "model.v_norm", "a number > 0 (||v(0)||)", self.v_norm)


class WeightNorm(NamedTuple):
    """w = g v / ||v||."""

    g: jax.Array
    v: jax.Array


def predictor(params):
    """The linear weights w of either parameterization."""
    if isinstance(params, WeightNorm):
        return params.g * params.v / jnp.linalg.norm(params.v)
    return params


def loss(params, data):
    """L = 1/(2n) ||X w - y||^2."""
    residual = data["x"] @ predictor(params) - data["y"]
    return 0.5 * jnp.mean(residual**2)


def _direction(params):
    if isinstance(params, WeightNorm):
        return params.v / jnp.linalg.norm(params.v)
    return params / jnp.linalg.norm(params)


METRICS = {
    "distance_to_min_norm": lambda ctx: jnp.linalg.norm(predictor(ctx.params) - ctx.data["min_norm"]),
    "null_norm": lambda ctx: jnp.linalg.norm(ctx.data["null_projector"] @ predictor(ctx.params)),
    "row_error": lambda ctx: jnp.linalg.norm(
        predictor(ctx.params) - ctx.data["null_projector"] @ predictor(ctx.params) - ctx.data["min_norm"]
    ),
    "null_direction": lambda ctx: jnp.linalg.norm(ctx.data["null_projector"] @ _direction(ctx.params)),
    "g": lambda ctx: ctx.params.g if isinstance(ctx.params, WeightNorm) else jnp.linalg.norm(ctx.params),
    "v_norm": lambda ctx: (
        jnp.linalg.norm(ctx.params.v) if isinstance(ctx.params, WeightNorm) else jnp.ones((), ctx.params.dtype)
    ),
}
DEFAULT_METRICS = ("train_loss", "distance_to_min_norm", "null_norm", "row_error", "null_direction", "g", "v_norm")


def scaled_descent(direction_lr: float) -> optax.GradientTransformation:
    """The unit-step rule (-dL/dg, -direction_lr dL/dv) (the engine multiplies by lr = gamma)."""

    def update(grads, state, params=None):
        if isinstance(grads, WeightNorm):
            return WeightNorm(-grads.g, -direction_lr * grads.v), state
        return jax.tree_util.tree_map(jnp.negative, grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def check(config) -> None:
    """The weight-normalized parameterization brings its own update rule (separate steps on g and v):
    plain GD steps or the gradient flow of that rule, not another optimizer."""
    require(
        config.model.parameterization == "plain" or config.optimizer.name in ("gd", "gradient_flow"),
        "optimizer.name", "gd or gradient_flow for model.parameterization=weight_norm (its own steps on g and v)",
        config.optimizer.name,
    )


def _nbytes(config) -> int:
    n, d = config.problem.samples, config.problem.dim
    return (8 if config.train.x64 else 4) * (d * d + n * d + 8 * d + 2 * n)


@family("weight_normalized_linear", config=WeightNormalizedLinearConfig, problems=("wide_least_squares",),
        metrics=METRICS, default_metrics=DEFAULT_METRICS, check=check, nbytes=_nbytes)
def weight_normalized_linear(config):
    """Linear least squares, plain w or weight-normalized w = g v / ||v|| (Wu et al. 2020)."""
    model = config.model
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    data = wide_least_squares(config.problem)  # the init direction needs the null-space projector
    null_projector = jnp.asarray(data["null_projector"], dtype)
    d = config.problem.dim

    def init(key, scale):
        z = jax.random.normal(key, (d,), dtype)
        if model.init == "row_space":
            z = z - null_projector @ z
        elif model.init == "null_space":
            z = null_projector @ z
        direction = z / jnp.linalg.norm(z)
        scale = jnp.asarray(scale, dtype)
        if model.parameterization == "plain":
            return scale * direction
        return WeightNorm(scale, model.v_norm * direction)

    if model.parameterization == "plain":
        return FamilyParts(init=init, loss=loss)
    ratio = model.direction_lr

    def precondition(params, grads):
        return WeightNorm(grads.g, ratio * grads.v)

    return FamilyParts(init=init, loss=loss, precondition=precondition, optimizer=scaled_descent(ratio))
