"""Matrix factorization trained with dropout of whole columns: dropout is a low-rank regularizer
(Cavazza, Haeffele, Lane, Morerio, Murino, Vidal, "Dropout as a Low-Rank Regularizer for Matrix
Factorization", AISTATS 2018).

Family ``dropout_factorization`` on the problem ``structured_matrix``
(:mod:`trajlab.families.structured_factorization`): U (m x width), V (n x width), init entries
N(0, scale^2). With a Bernoulli(theta) mask r (``model.retain`` = theta, the retain probability; the
dropout rate is 1 - theta) on the columns, the same r_i for u_i and v_i, rescaled by 1/theta:

    dropout loss      ||P(Y - U diag(r / theta) V^T)||_F^2   (the *sum* of squares, no 1/2: the paper's),
    its expectation   ||P(Y - U V^T)||_F^2 + lambda sum_i ||P(u_i v_i^T)||_F^2,   lambda = (1 - theta) / theta,

since E[r_i / theta] = 1, Var(r_i / theta) = (1 - theta) / theta and the r_i are independent; fully
observed, ||u_i v_i^T||_F^2 = ||u_i||^2 ||v_i||^2 (the paper's regularizer). (Derived here; the
paper's Eq. for l = squared Frobenius norm has the same constants.)

The engine's ``loss`` is the closed-form expectation (full-batch runs do gradient descent on it, and
it is what the stopping rule and ``train_loss`` read). With ``optimizer.batch_size = k > 0`` each
step draws k independent masks through the family's ``minibatch(data, key)`` hook (the engine's
per-step key) and takes the gradient of the dropout loss averaged over them: stochastic gradient
descent *with dropout*, whose expected gradient is the closed form's. ``model.decay_steps = T > 0``
makes the family supply its own update rule, steps lr / (1 + k / T) at step k (plain SGD otherwise:
with dropout the gradient noise does not vanish at the minimum, so a constant step ends in a
neighbourhood of it).

Global optimum (fully observed; derived following the paper's Theorem on the induced regularizer):
min over width-r factorizations of sum_i ||u_i||^2 ||v_i||^2 with U V^T = X is ||X||_*^2 / r (Cauchy-
Schwarz, attained when every column has the same ||u_i|| ||v_i|| = ||X||_* / r, possible for r >=
rank X), so the problem is min_{rank X <= r} ||Y - X||_F^2 + (lambda / r) ||X||_*^2, solved by
shrinking the singular values s_i of Y: sigma_i = (s_i - (lambda / r) S)_+ with S = sum_{i<=k} s_i /
(1 + k lambda / r) over the k active values (:func:`dropout_optimum`). The rank of the solution
falls as lambda / r grows: as the dropout rate grows, or, at a fixed rate, as the width *shrinks*;
at a fixed rate a wider factorization is regularized less (lambda / r -> 0).

Metrics: ``expected_loss`` (the closed form), ``induced_objective`` ||P(Y - X)||^2 + (lambda / r)
||X||_*^2 (equal to the closed form at a global minimum, below it elsewhere), ``optimum_gap``
(expected_loss minus the global optimum of :func:`dropout_optimum`; NaN unless fully observed),
``rank`` (singular values of U V^T above ``RANK_TOLERANCE`` sigma_max), ``singular_values`` (top 8),
``column_products`` spread (max / min of ||u_i|| ||v_i||: 1 at a global minimum).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trajlab.config import require
from trajlab.registry import Family, FamilyParts, register_family

#: Singular values of U V^T above this fraction of the largest count toward the rank.
RANK_TOLERANCE = 1e-3
#: Singular values recorded by the ``singular_values`` metric.
TOP_SINGULAR_VALUES = 8


@dataclass(frozen=True)
class DropoutFactorizationConfig:
    """U V^T trained with column dropout (see :mod:`trajlab.families.dropout_factorization`)."""

    width: int = 8
    retain: float = 0.5
    decay_steps: int = 0
    scale: float = 0.1

    def __post_init__(self) -> None:
        require(isinstance(self.width, int) and 1 <= self.width <= 10**5, "model.width", "an integer in [1, 10^5]", self.width)
        require(
            isinstance(self.retain, (int, float)) and math.isfinite(self.retain) and 0 < self.retain <= 1,
            "model.retain", "a probability in (0, 1] (theta, the probability of keeping a column)", self.retain,
        )
        require(isinstance(self.decay_steps, int) and 0 <= self.decay_steps < 2**31, "model.decay_steps",
                "an integer >= 0 (0: constant step)", self.decay_steps)
        require(math.isfinite(self.scale) and self.scale > 0, "model.scale", "a number > 0", self.scale)


def dropout_lambda(retain: float) -> float:
    """lambda = (1 - theta) / theta."""
    return (1.0 - retain) / retain


def dropout_optimum(singular_values, lam: float, width: int) -> dict:
    """The global minimum of ||Y - U V^T||_F^2 + lam sum_i ||u_i||^2 ||v_i||^2 over width-``width``
    factorizations, from the singular values s of Y (module docstring): value, rank and the singular
    values of the solution. Every support size k <= min(width, len(s)) whose shrunk values are all
    positive is evaluated and the smallest objective kept."""
    s = np.sort(np.asarray(singular_values, np.float64))[::-1]
    per_column = lam / width
    best = dict(value=float(np.sum(s**2)), rank=0, singular_values=np.zeros_like(s))
    for k in range(1, min(width, len(s)) + 1):
        total = s[:k].sum() / (1.0 + k * per_column)
        sigma = s[:k] - per_column * total
        if sigma[-1] <= 0:
            continue
        value = float(np.sum((s[:k] - sigma) ** 2) + np.sum(s[k:] ** 2) + per_column * sigma.sum() ** 2)
        if value < best["value"]:
            best = dict(value=value, rank=k, singular_values=np.concatenate([sigma, np.zeros(len(s) - k)]))
    return best


@functools.lru_cache(maxsize=64)
def _optimum(problem, retain: float, width: int) -> float:
    from trajlab.families.structured_factorization import structured_matrix_data

    if problem.observed < 1:
        return math.nan
    y = structured_matrix_data(problem)["y"]
    return dropout_optimum(np.linalg.svd(y, compute_uv=False), dropout_lambda(retain), width)["value"]


def _product(params):
    return params["u"] @ params["v"].T


def expected_loss(params, data, lam):
    """||P(Y - U V^T)||^2 + lam sum_i ||P(u_i v_i^T)||^2 (= sum(M * (U^2 (V^2)^T)) for the penalty)."""
    u, v, mask = params["u"], params["v"], data["mask"]
    fit = jnp.sum((mask * (u @ v.T - data["y"])) ** 2)
    return fit + lam * jnp.sum(mask * ((u**2) @ (v**2).T))


def dropout_loss(params, data, masks):
    """The dropout loss averaged over the rows of ``masks`` (each r / theta, one entry per column)."""
    u, v, mask = params["u"], params["v"], data["mask"]

    def one(keep):
        return jnp.sum((mask * ((u * keep) @ v.T - data["y"])) ** 2)

    return jnp.mean(jax.vmap(one)(masks))


def _lam(ctx):
    return dropout_lambda(float(ctx.config.model.retain))


def _singular_values(ctx):
    singular = jnp.linalg.svd(_product(ctx.params), compute_uv=False)
    k = min(TOP_SINGULAR_VALUES, singular.shape[0])
    return jnp.zeros(TOP_SINGULAR_VALUES, singular.dtype).at[:k].set(singular[:k])


def _rank(ctx):
    singular = jnp.linalg.svd(_product(ctx.params), compute_uv=False)
    return jnp.sum(singular > RANK_TOLERANCE * singular[0]).astype(singular.dtype)


def _induced(ctx):
    x = _product(ctx.params)
    fit = jnp.sum((ctx.data["mask"] * (x - ctx.data["y"])) ** 2)
    nuclear = jnp.sum(jnp.linalg.svd(x, compute_uv=False))
    return fit + _lam(ctx) / ctx.config.model.width * nuclear**2


def _optimum_gap(ctx):
    model = ctx.config.model
    return expected_loss(ctx.params, ctx.data, _lam(ctx)) - _optimum(ctx.config.problem, float(model.retain), model.width)


def _spread(ctx):
    products = jnp.linalg.norm(ctx.params["u"], axis=0) * jnp.linalg.norm(ctx.params["v"], axis=0)
    return jnp.max(products) / jnp.maximum(jnp.min(products), 1e-300)


METRICS = {
    "expected_loss": lambda ctx: expected_loss(ctx.params, ctx.data, _lam(ctx)),
    "induced_objective": _induced,
    "optimum_gap": _optimum_gap,
    "rank": _rank,
    "singular_values": _singular_values,
    "column_spread": _spread,
}
DEFAULT_METRICS = ("train_loss", "expected_loss", "induced_objective", "optimum_gap", "rank", "singular_values",
                   "column_spread")


def build(config) -> FamilyParts:
    """U V^T with column dropout (module docstring)."""
    model, problem = config.model, config.problem
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    lam = dropout_lambda(float(model.retain))
    retain = float(model.retain)
    draws = max(1, config.optimizer.batch_size)

    def init(key, scale):
        key_u, key_v = jax.random.split(key)
        return {"u": scale * jax.random.normal(key_u, (problem.m, model.width), dtype),
                "v": scale * jax.random.normal(key_v, (problem.n, model.width), dtype)}

    def loss(params, data):
        if "dropout" in data:  # a minibatch: the dropout loss of its masks
            return dropout_loss(params, data, data["dropout"])
        return expected_loss(params, data, lam)

    def minibatch(data, key):
        keep = jax.random.bernoulli(key, retain, (draws, model.width))
        return dict(data, dropout=keep.astype(data["y"].dtype) / retain)

    optimizer = None
    if model.decay_steps > 0:
        optimizer = optax.chain(optax.scale_by_schedule(lambda k: 1.0 / (1.0 + k / model.decay_steps)),
                                optax.scale(-1.0))
    return FamilyParts(init=init, loss=loss, minibatch=minibatch, optimizer=optimizer)


def _check(config) -> None:
    require(config.optimizer.name in ("gd",) or config.model.decay_steps == 0, "model.decay_steps",
            "0 unless optimizer.name=gd (the decaying step replaces plain (S)GD)", config.model.decay_steps)


register_family(Family(
    "dropout_factorization", DropoutFactorizationConfig, ("structured_matrix",), build, METRICS, DEFAULT_METRICS,
    columns={"singular_values": "sv"}, check=_check,
    description="U V^T trained with column dropout: an induced (lambda / r) ||X||_*^2 regularizer (Cavazza et al. 2018)",
))
