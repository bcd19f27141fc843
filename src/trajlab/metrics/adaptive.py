"""Curvature as an adaptive optimizer sees it: preconditioned sharpness and R_med.

**Preconditioned sharpness** (Cohen, Ghorbani, Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze,
Nado, Dahl, Gilmer, "Adaptive Gradient Methods at the Edge of Stability", arXiv 2207.14484, 2022).
An adaptive rule theta <- theta - eta P^-1 m with a diagonal preconditioner P is, with P frozen,
gradient descent (with momentum for Adam) on the quadratic model with Hessian P^-1 H; it is stable
there iff the top eigenvalue of P^-1 H is below 2/eta (RMSprop, no momentum) or
(2 + 2 beta1) / ((1 - beta1) eta) (Adam: heavy-ball momentum written as an EMA, m <- beta1 m +
(1 - beta1) g; 38/eta for beta1 = 0.9). The paper's claim is that full-batch Adam's preconditioned
sharpness rises to this threshold and hovers there ("adaptive edge of stability"). The threshold is
that of EMA-style momentum on a quadratic (checked in tests/test_adaptive_sharpness.py against the
spectral radius of the 2 x 2 iteration matrix). The full paper text was not at hand here; its
abstract gives 38/eta for beta1 = 0.9, and a summary of it lambda_1(P^-1 H) = (2 + 2 beta1) /
(eta (1 - beta1)).

``preconditioned_sharpness(ctx)`` = lambda_max(P^-1 H) = lambda_max(P^-1/2 H P^-1/2) (the two are
similar; the second is symmetric, so Lanczos with full reorthogonalization applies: matrix-free,
``train.lanczos_iterations`` Hessian-vector products, start key 0, see
:func:`trajlab.metrics.curvature_suite.flat_lanczos_eigenpairs`). P is the optimizer's own, read
from ``ctx.optimizer_state`` (the state after the run's last update, i.e. the preconditioner its
latest step used):

- ``adam`` (optax.scale_by_adam): P = sqrt(nu / (1 - beta2^t)) + eps, nu the EMA of g^2 and t the
  update count (bias-corrected as optax does; eps_root = 0). Before the first update (t = 0) there
  is no preconditioner yet: NaN. Assumed: the first moment's bias correction 1 - beta1^t, which
  one may also fold into P when the update is written as P^-1 times the raw EMA m, is left out
  (it is within 0.5% of 1 after 50 steps, so it only matters at the very start).
- ``rmsprop`` (optax.rmsprop defaults: eps inside the square root, no bias correction, nu_0 = 0):
  P = sqrt(nu + eps).
- ``normalized_gd`` (:func:`trajlab.dynamics.optimizers.normalized_gd`): the scalar
  P = sqrt(v / (1 - alpha^t)) + normalized_eps times the identity (NaN at t = 0).
- ``gd``, ``momentum``, ``nesterov``, ``gradient_flow``: P = I, so the value is the plain
  ``sharpness`` (our choice; the threshold for heavy-ball momentum is (2 + 2 beta)/eta in optax's
  convention, not read here).
- ``adagrad``, ``adadelta`` and a family's own update rule: refused (one-line ConfigError from
  :func:`check_preconditioned`).

**R_med** (Jiang, Malik, Li, "How Does Adaptive Optimization Impact Local Neural Network
Geometry?", NeurIPS 2023, arXiv 2211.02254). Their statistic R^OPT_med is "analogous to the
condition number of the loss Hessian evaluated at the iterates" of the optimizer OPT; they report
that Adam's trajectories go where it is small and SGD's where it is larger. The paper text was not
at hand (only its abstract); we implement the definition as the brief states it: for each layer l,
R_l = max_i H_ii / median_i H_ii over the diagonal entries of the Hessian block of that layer, and
R_med = median over layers of R_l, with layer = parameter leaf (biases are their own leaves) and H
the Hessian of the (unpreconditioned) train loss. Leaves with a single entry are left out (their
ratio is 1 by construction). A median diagonal entry <= 0 gives a ratio that is not a condition
number (negative or inf); it is reported as it is.

The diagonal is exact for n <= :data:`EXACT_DIAGONAL_LIMIT` parameters (H e_i for every unit
vector, in chunks of :data:`DIAGONAL_CHUNK` vmapped products), else Hutchinson's diagonal estimate
diag(H) ~ (1/P) sum_p z_p * H z_p (Bekas, Kokiopoulou, Saad 2007) with P = ``train.hutchinson_probes``
Rademacher probes (key 2), whose per-entry variance is sum_{j != i} H_ij^2 / P.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from trajlab.dynamics.optimizers import NormalizedGDState
from trajlab.errors import ConfigError
from trajlab.metrics.curvature import _flat_hvp
from trajlab.metrics.curvature_suite import flat_lanczos_eigenpairs

#: Optimizers whose preconditioner ``preconditioned_sharpness`` reads (P = I for the others listed
#: in :data:`IDENTITY_PRECONDITIONED`).
PRECONDITIONED = ("adam", "rmsprop", "normalized_gd")
IDENTITY_PRECONDITIONED = ("gd", "momentum", "nesterov", "gradient_flow")
#: Up to this many parameters ``r_med`` computes the Hessian diagonal exactly (n products).
EXACT_DIAGONAL_LIMIT = 2048
#: Unit vectors per vmapped chunk of the exact diagonal.
DIAGONAL_CHUNK = 64

_STATE_TYPES = (optax.ScaleByAdamState, optax.ScaleByRmsState, NormalizedGDState)


def adam_stability_threshold(lr: float, b1: float = 0.9) -> float:
    """(2 + 2 beta1) / ((1 - beta1) eta): the largest eigenvalue of P^-1 H for which Adam with a frozen
    preconditioner is stable on a quadratic (38/eta at beta1 = 0.9; Cohen et al. 2022)."""
    return (2.0 + 2.0 * b1) / ((1.0 - b1) * lr)


def check_preconditioned(config, own_optimizer: bool) -> None:
    """A one-line ConfigError when ``preconditioned_sharpness`` is asked of an optimizer whose
    preconditioner it does not read."""
    if "preconditioned_sharpness" not in config.metrics:
        return
    name = config.optimizer.name
    if own_optimizer:
        raise ConfigError(
            f"metrics: preconditioned_sharpness is not available for model.kind={config.model.kind} "
            "(the family has its own update rule)"
        )
    allowed = PRECONDITIONED + IDENTITY_PRECONDITIONED
    if name not in allowed:
        raise ConfigError(f"metrics: preconditioned_sharpness needs optimizer.name in {allowed}, got {name!r}")


def _find(state, kind):
    found = [
        leaf
        for leaf in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, _STATE_TYPES))
        if isinstance(leaf, kind)
    ]
    if len(found) != 1:
        raise ValueError(f"metrics: preconditioned_sharpness found {len(found)} {kind.__name__} in the optimizer state")
    return found[0]


def preconditioner(optimizer_config, state):
    """(P, flat): the optimizer's diagonal preconditioner from its state (module docstring); P is a
    pytree shaped like the params (``flat`` False) or a scalar; None for P = I."""
    name = optimizer_config.name
    if name in IDENTITY_PRECONDITIONED:
        return None
    if state is None:
        raise ValueError("metrics: preconditioned_sharpness needs the optimizer state (ctx.optimizer_state)")
    if name == "adam":
        adam = _find(state, optax.ScaleByAdamState)
        count = adam.count
        leaves = jax.tree_util.tree_leaves(adam.nu)
        dtype = leaves[0].dtype
        correction = 1.0 - jnp.asarray(optimizer_config.b2, dtype) ** count.astype(dtype)
        correction = jnp.where(count > 0, correction, jnp.nan)
        return jax.tree_util.tree_map(lambda v: jnp.sqrt(v / correction) + optimizer_config.eps, adam.nu)
    if name == "rmsprop":
        rms = _find(state, optax.ScaleByRmsState)
        return jax.tree_util.tree_map(lambda v: jnp.sqrt(v + optimizer_config.eps), rms.nu)
    if name == "normalized_gd":
        normalized = _find(state, NormalizedGDState)
        average = normalized.squared_norm_average
        count = normalized.count
        correction = jnp.where(count > 0, 1.0 - optimizer_config.decay ** count.astype(average.dtype), jnp.nan)
        return jnp.sqrt(average / correction) + optimizer_config.normalized_eps
    raise ValueError(f"metrics: preconditioned_sharpness: no preconditioner for optimizer {name!r}")


def preconditioned_top_eigenvalue(loss_fn, params, scale, key, iterations: int = 20):
    """lambda_max(P^-1 H) by Lanczos on the symmetric P^-1/2 H P^-1/2 (H the Hessian of ``loss_fn``
    at ``params``); ``scale`` = P: a pytree shaped like params, a scalar, or None (P = I)."""
    product, n, dtype = _flat_hvp(loss_fn, params)
    if scale is None:
        inverse_root = jnp.ones((n,), dtype)
    else:  # one entry per parameter, or one scalar for all (broadcast)
        inverse_root = jnp.broadcast_to(1.0 / jnp.sqrt(ravel_pytree(scale)[0].astype(dtype)), (n,))
    symmetric = lambda v: inverse_root * product(inverse_root * v)  # noqa: E731
    values, _ = flat_lanczos_eigenpairs(symmetric, n, dtype, key, 1, iterations)
    return values[0]


def hessian_diagonal(loss_fn, params, key=None, probes: int = 10, exact_limit: int = EXACT_DIAGONAL_LIMIT):
    """diag(H) as a pytree shaped like ``params``: exact (n Hessian-vector products with unit vectors)
    when n <= ``exact_limit``, else Hutchinson's estimate mean_p z_p * H z_p over ``probes``
    Rademacher probes (from ``key``)."""
    product, n, dtype = _flat_hvp(loss_fn, params)
    unravel = ravel_pytree(params)[1]
    if n <= exact_limit:
        chunks = -(-n // DIAGONAL_CHUNK)
        index = jnp.minimum(jnp.arange(chunks * DIAGONAL_CHUNK).reshape(chunks, DIAGONAL_CHUNK), n - 1)

        def chunk(rows):
            vectors = jax.nn.one_hot(rows, n, dtype=dtype)
            columns = jax.vmap(product)(vectors)
            return columns[jnp.arange(rows.shape[0]), rows]

        diagonal = jax.lax.map(chunk, index).reshape(-1)[:n]
    else:
        key = jax.random.PRNGKey(2) if key is None else key

        def sample(p):
            z = jax.random.rademacher(jax.random.fold_in(key, p), (n,), dtype)
            return z * product(z)

        diagonal = jnp.mean(jax.lax.map(sample, jnp.arange(int(probes))), axis=0)
    return unravel(diagonal)


def layer_ratios(diagonal) -> jax.Array:
    """max_i d_i / median_i d_i for every leaf of the diagonal pytree with more than one entry."""
    leaves = [jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(diagonal) if jnp.size(leaf) > 1]
    if not leaves:
        raise ValueError("metrics: r_med needs a parameter leaf with more than one entry")
    return jnp.stack([jnp.max(d) / jnp.median(d) for d in leaves])


def r_med(diagonal) -> jax.Array:
    """R_med = median over leaves (layers) of max / median of the Hessian diagonal (module docstring)."""
    return jnp.median(layer_ratios(diagonal))


def _train(ctx, name: str, default: int) -> int:
    return getattr(getattr(ctx.config, "train", None), name, default)


def preconditioned_sharpness_metric(ctx):
    """``preconditioned_sharpness``: lambda_max(P^-1 H) with the run's own preconditioner."""
    optimizer = getattr(ctx.config, "optimizer", None)
    if optimizer is None:
        raise ValueError("metrics: preconditioned_sharpness needs the run's config (ctx.config.optimizer)")
    scale = preconditioner(optimizer, getattr(ctx, "optimizer_state", None))
    return preconditioned_top_eigenvalue(
        lambda p: ctx.loss(p, ctx.data), ctx.params, scale, jax.random.PRNGKey(0),
        _train(ctx, "lanczos_iterations", 20),
    )


def r_med_metric(ctx):
    """``r_med``: Jiang, Malik, Li's R_med of the train-loss Hessian at the current parameters."""
    diagonal = hessian_diagonal(
        lambda p: ctx.loss(p, ctx.data), ctx.params, jax.random.PRNGKey(2), _train(ctx, "hutchinson_probes", 10)
    )
    return r_med(diagonal)


#: The generic metrics of this module (registered in :mod:`trajlab.metrics.generic`).
ADAPTIVE_METRICS = {
    "preconditioned_sharpness": preconditioned_sharpness_metric,
    "r_med": r_med_metric,
}

__all__ = [
    "ADAPTIVE_METRICS",
    "EXACT_DIAGONAL_LIMIT",
    "adam_stability_threshold",
    "check_preconditioned",
    "hessian_diagonal",
    "layer_ratios",
    "preconditioned_top_eigenvalue",
    "preconditioner",
    "r_med",
]
