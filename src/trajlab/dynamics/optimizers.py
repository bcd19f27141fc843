"""Update rules as optax gradient transformations with unit step size.

Every rule here is *linear in the step size*: optimizer(lr) = lr * optimizer(1). The engine builds
the unit-step transformation from the static config and applies params <- params + lr * update, so
that the step size is a plain per-run scalar that vmaps (no learning rate lives in the state).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from trajlab.config import OptimizerConfig


class NormalizedGDState(NamedTuple):
    count: jax.Array
    squared_norm_average: jax.Array


def normalized_gd(learning_rate: float = 1.0, decay: float = 0.99, eps: float = 1e-4):
    """Gradient descent normalized by a running average of the *global* gradient norm.

    This is NOT plain GD. It is the optimizer of the published deep matrix factorization code
    (Arora, Cohen, Hu, Luo, NeurIPS 2019; "GroupRMSprop"): one scalar step for all parameters,

        v_t   = alpha v_{t-1} + (1 - alpha) ||g_t||^2      (sum over all parameters, v_0 = 0)
        v_hat = v_t / (1 - alpha^t)                         (bias correction)
        theta <- theta - lr * g_t / (sqrt(v_hat) + eps),

    with alpha = ``decay`` = 0.99 and eps = 1e-4. The direction is the gradient; only its length is
    adapted, so the trajectory follows that of gradient flow with a time change.
    """

    def init(params):
        del params
        return NormalizedGDState(jnp.zeros([], jnp.int32), jnp.zeros([]))

    def update(updates, state, params=None):
        del params
        leaves = jax.tree_util.tree_leaves(updates)
        squared_norm = sum(jnp.sum(g.astype(jnp.result_type(g, jnp.float32)) ** 2) for g in leaves)
        count = state.count + 1
        average = decay * state.squared_norm_average + (1 - decay) * squared_norm
        corrected = average / (1 - decay ** count.astype(average.dtype))
        factor = -learning_rate / (jnp.sqrt(corrected) + eps)
        updates = jax.tree_util.tree_map(lambda g: (factor * g).astype(g.dtype), updates)
        return updates, NormalizedGDState(count, average.astype(state.squared_norm_average.dtype))

    return optax.GradientTransformation(init, update)


def direction_transform(config: OptimizerConfig) -> optax.GradientTransformation:
    """The optax transformation of ``config.name`` at unit step size (module docstring).

    gd: theta <- theta - lr g. momentum / nesterov: optax.sgd with ``momentum`` (heavy ball, Nesterov).
    adam: b1, b2, eps. adagrad: optax defaults (initial accumulator 0.1, eps 1e-7). adadelta:
    Zeiler 2012 (rho 0.9, eps 1e-6; lr multiplies the step, lr = 1 is the original). rmsprop: decay
    = ``decay``, eps. normalized_gd: :func:`normalized_gd` with alpha = ``decay`` and eps =
    ``normalized_eps``.
    """
    name = config.name
    if name == "gd":
        return optax.sgd(1.0)
    if name == "momentum":
        return optax.sgd(1.0, momentum=config.momentum)
    if name == "nesterov":
        return optax.sgd(1.0, momentum=config.momentum, nesterov=True)
    if name == "adam":
        return optax.adam(1.0, b1=config.b1, b2=config.b2, eps=config.eps)
    if name == "adagrad":
        return optax.adagrad(1.0)
    if name == "adadelta":
        return optax.adadelta(1.0)
    if name == "rmsprop":
        return optax.rmsprop(1.0, decay=config.decay, eps=config.eps)
    if name == "normalized_gd":
        return normalized_gd(1.0, decay=config.decay, eps=config.normalized_eps)
    raise ValueError(f"optimizer.name: unknown optimizer {name!r}")
