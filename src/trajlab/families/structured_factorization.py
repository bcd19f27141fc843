"""Structured matrix factorization X = U V^T with any factor norms, trained by proximal gradient
(Haeffele & Vidal; René Vidal's CVPR 2017 tutorial "Mathematics of Deep Learning"), and its problem.

Problem ``structured_matrix``: an m x n matrix Y = X0 + N, observed on a random fraction
``observed`` of the entries (mask drawn uniformly; 1.0 = fully observed). ``signal``:
``lowrank`` (X0 = A B^T, A, B i.i.d. N(0, 1), ``rank`` columns), ``nonnegative`` (|A| |B|^T) or
``sparse_codes`` (X0 = A B^T where each row of A has exactly one non-zero N(0, 1) entry, at a
random one of the ``rank`` atoms B_i, which have unit l2 norm: each sample uses one atom, the rows
of X0 point in ``rank`` directions). N is Gaussian with ||N||_F = ``noise`` ||X0||_F. Everything is
divided by the spectral norm of the observed data so that ||P(Y)||_2 = 1 (one step size fits every
problem). Data: ``y`` (zero where unobserved), ``mask`` (0/1), ``target`` (X0, same scaling).

Family ``structured_factorization``: U (m x width), V (n x width), init entries N(0, scale^2)
(their absolute values for non-negative factors). The engine's *loss* is the smooth part
l(U V^T) = 1/2 sum_observed ((U V^T)_jk - Y_jk)^2 (half the sum); the regularizer enters through
the family's own update rule (``FamilyParts.optimizer``): one forward-backward step on the
sum-of-squares form

    F2(U, V) = l(U V^T) + lambda/2 sum_i (||u_i||_a^2 + ||v_i||_b^2),

    (U, V) <- prox_{s lambda h}((U, V) - s grad l),  s = ``model.step``,

with the exact proximal maps of :func:`trajlab.baselines.polars.prox_squared_norm` (both blocks at
once: the form is separable). F2 has the minima of the product form F = l + lambda sum_i
||u_i||_a ||v_i||_b (see :mod:`trajlab.baselines.polars`). The optimizer's displacement is
T(theta) - theta and the engine applies theta + lr * (T(theta) - theta): ``optimizer.lr = 1`` is the
exact proximal gradient step, lr < 1 a relaxed (Krasnosel'skii-Mann) one with the same fixed points.
Why the step lives in ``model.step``: a proximal step is not linear in the step size, and
``FamilyParts.optimizer`` (an optax rule) is given the gradient, its state and the parameters but
not the run's (batched) lr; the engine multiplies its output by lr afterwards.

lambda = ``lam_fraction`` x Omega°(P(Y)): X = 0 is optimal from lam_fraction = 1 on (for the
non-negative pair Omega° is the searched value, so this is a lower bound of that threshold).

Metrics (Z = -grad l(X) / lambda = P(Y - X) / lambda): ``objective`` F (product form),
``objective_squares`` F2 (what is minimized; equal to F at balanced columns), ``polar`` Omega°(Z)
(exact for 2,2 / 1,1 / 1,2; a searched lower bound for 2,2+), ``polar_upper`` (equal to ``polar``
where exact; ||max(Z, 0)||_2 for 2,2+), ``stationarity`` ||theta - T(theta)|| / (s max(1,
||theta||)) (0 exactly at stationary points), ``columns_used`` (columns with theta(u_i, v_i) >
1e-6 of the largest), ``rank`` (singular values of U V^T > 1e-6 sigma_max), ``test_error``
||X - X0||_F^2 / ||X0||_F^2. The certificate of global optimality is stationarity ~ 0 and polar <= 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trajlab.baselines.polars import (
    NORM_PAIRS,
    parse_norms,
    polar,
    polar_upper,
    prox_squared_norm,
    theta_product,
    theta_squares,
)
from trajlab.config import require
from trajlab.registry import Family, FamilyParts, Problem, register_family, register_problem

SIGNALS = ("lowrank", "nonnegative", "sparse_codes")


@dataclass(frozen=True)
class StructuredMatrixConfig:
    """An m x n matrix to factorize (see :mod:`trajlab.families.structured_factorization`)."""

    m: int = 20
    n: int = 16
    rank: int = 3
    signal: str = "lowrank"
    noise: float = 0.1
    observed: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.m, int) and 1 <= self.m <= 10**5, "problem.m", "an integer in [1, 10^5]", self.m)
        require(isinstance(self.n, int) and 1 <= self.n <= 10**5, "problem.n", "an integer in [1, 10^5]", self.n)
        require(
            isinstance(self.rank, int) and 1 <= self.rank <= min(self.m, self.n), "problem.rank",
            f"an integer in [1, min(m, n)] = [1, {min(self.m, self.n)}]", self.rank,
        )
        require(self.signal in SIGNALS, "problem.signal", f"one of {SIGNALS}", self.signal)
        require(math.isfinite(self.noise) and self.noise >= 0, "problem.noise", "a number >= 0", self.noise)
        require(0 < self.observed <= 1, "problem.observed", "a fraction in (0, 1] of observed entries", self.observed)
        require(isinstance(self.seed, int) and 0 <= self.seed < 2**32, "problem.seed", "an integer in [0, 2^32)", self.seed)


def structured_matrix_data(config: StructuredMatrixConfig) -> dict:
    """Y = X0 + N on a random mask, scaled to ||P(Y)||_2 = 1 (module docstring)."""
    rng = np.random.default_rng(config.seed)
    m, n, k = config.m, config.n, config.rank
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((n, k))
    if config.signal == "nonnegative":
        a, b = np.abs(a), np.abs(b)
    elif config.signal == "sparse_codes":
        atoms = rng.integers(0, k, size=m)
        a = np.where(np.arange(k)[None, :] == atoms[:, None], a, 0.0)
        b = b / np.linalg.norm(b, axis=0, keepdims=True)
    target = a @ b.T
    noise = rng.standard_normal((m, n))
    noise *= config.noise * np.linalg.norm(target) / np.linalg.norm(noise)
    observed = max(1, int(round(config.observed * m * n)))
    mask = np.zeros(m * n)
    mask[rng.permutation(m * n)[:observed]] = 1.0
    mask = mask.reshape(m, n)
    y = mask * (target + noise)
    spectral = float(np.linalg.norm(y, 2))
    scale = 1.0 / spectral if spectral > 0 else 1.0
    return {"y": y * scale, "mask": mask, "target": target * scale}


register_problem(Problem(
    "structured_matrix", StructuredMatrixConfig, structured_matrix_data,
    description="m x n low-rank / non-negative / sparse-code matrix plus noise, on a random mask (||P(Y)||_2 = 1)",
))


@dataclass(frozen=True)
class StructuredFactorizationConfig:
    """U V^T with theta(u, v) = ||u||_a ||v||_b, trained by proximal gradient (module docstring)."""

    width: int = 8
    norms: str = "2,2"
    lam_fraction: float = 0.3
    step: float = 0.25
    scale: float = 0.1

    def __post_init__(self) -> None:
        require(isinstance(self.width, int) and 1 <= self.width <= 10**5, "model.width", "an integer in [1, 10^5]", self.width)
        require(self.norms in NORM_PAIRS, "model.norms", f"one of {NORM_PAIRS} (norm of u, norm of v; + non-negative)",
                self.norms)
        require(
            isinstance(self.lam_fraction, (int, float)) and math.isfinite(self.lam_fraction) and self.lam_fraction > 0,
            "model.lam_fraction", "a number > 0 (lambda as a fraction of the polar of the data)", self.lam_fraction,
        )
        require(isinstance(self.step, (int, float)) and math.isfinite(self.step) and self.step > 0, "model.step",
                "a number > 0 (the proximal gradient step size)", self.step)
        require(math.isfinite(self.scale) and self.scale > 0, "model.scale", "a number > 0", self.scale)


@functools.lru_cache(maxsize=64)
def regularization_weight(problem: StructuredMatrixConfig, norms: str, lam_fraction: float) -> float:
    """lambda = lam_fraction x Omega°(P(Y)) (float64, host)."""
    data = structured_matrix_data(problem)
    with jax.enable_x64(True):
        return float(lam_fraction * float(polar(jnp.asarray(data["y"], jnp.float64), norms)))


def _lam(config) -> float:
    return regularization_weight(config.problem, config.model.norms, float(config.model.lam_fraction))


def proximal_gradient_rule(loss, lam: float, step: float, norms: str) -> optax.GradientTransformation:
    """The unit-step update T(theta) - theta of one forward-backward step on F2 (the engine adds lr times it)."""
    a, b, nonnegative = parse_norms(norms)

    def update(grads, state, params):
        u = prox_squared_norm(params["u"] - step * grads["u"], step * lam, a, nonnegative)
        v = prox_squared_norm(params["v"] - step * grads["v"], step * lam, b, nonnegative)
        return {"u": u - params["u"], "v": v - params["v"]}, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _product(params):
    return params["u"] @ params["v"].T


def _polar_argument(ctx):
    """Z = -grad l(X) / lambda = P(Y - X) / lambda."""
    return ctx.data["mask"] * (ctx.data["y"] - _product(ctx.params)) / _lam(ctx.config)


def _objective(ctx):
    return ctx.train_loss + _lam(ctx.config) * theta_product(ctx.params["u"], ctx.params["v"], ctx.config.model.norms)


def _objective_squares(ctx):
    return ctx.train_loss + _lam(ctx.config) * theta_squares(ctx.params["u"], ctx.params["v"], ctx.config.model.norms)


def _stationarity(ctx):
    model = ctx.config.model
    grads = jax.grad(ctx.loss)(ctx.params, ctx.data)
    rule = proximal_gradient_rule(ctx.loss, _lam(ctx.config), model.step, model.norms)
    move, _ = rule.update(grads, None, ctx.params)
    size = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(ctx.params)))
    change = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(move)))
    return change / (model.step * jnp.maximum(1.0, size))


def _columns_used(ctx):
    a, b, _ = parse_norms(ctx.config.model.norms)
    u, v = ctx.params["u"], ctx.params["v"]
    norm_u = jnp.sum(jnp.abs(u), axis=0) if a == "1" else jnp.linalg.norm(u, axis=0)
    norm_v = jnp.sum(jnp.abs(v), axis=0) if b == "1" else jnp.linalg.norm(v, axis=0)
    products = norm_u * norm_v
    return jnp.sum(products > 1e-6 * jnp.max(products)).astype(u.dtype)


def _rank(ctx):
    singular = jnp.linalg.svd(_product(ctx.params), compute_uv=False)
    return jnp.sum(singular > 1e-6 * singular[0]).astype(singular.dtype)


def _test_error(ctx):
    target = ctx.data["target"]
    return jnp.sum((_product(ctx.params) - target) ** 2) / jnp.sum(target**2)


METRICS = {
    "objective": _objective,
    "objective_squares": _objective_squares,
    "polar": lambda ctx: polar(_polar_argument(ctx), ctx.config.model.norms),
    "polar_upper": lambda ctx: polar_upper(_polar_argument(ctx), ctx.config.model.norms),
    "stationarity": _stationarity,
    "columns_used": _columns_used,
    "rank": _rank,
    "test_error": _test_error,
}
DEFAULT_METRICS = ("train_loss", "objective", "objective_squares", "polar", "polar_upper", "stationarity",
                   "columns_used", "rank", "test_error")


def build(config) -> FamilyParts:
    """U V^T trained by proximal gradient on F2 (module docstring)."""
    model, problem = config.model, config.problem
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    nonnegative = parse_norms(model.norms)[2]

    def init(key, scale):
        key_u, key_v = jax.random.split(key)
        u = scale * jax.random.normal(key_u, (problem.m, model.width), dtype)
        v = scale * jax.random.normal(key_v, (problem.n, model.width), dtype)
        if nonnegative:
            u, v = jnp.abs(u), jnp.abs(v)
        return {"u": u, "v": v}

    def loss(params, data):
        residual = data["mask"] * (_product(params) - data["y"])
        return 0.5 * jnp.sum(residual**2)

    return FamilyParts(init=init, loss=loss, optimizer=proximal_gradient_rule(loss, _lam(config), model.step, model.norms))


register_family(Family(
    "structured_factorization", StructuredFactorizationConfig, ("structured_matrix",), build, METRICS, DEFAULT_METRICS,
    description="U V^T with factor norms ||u||_a ||v||_b, proximal gradient (Haeffele & Vidal)",
))
