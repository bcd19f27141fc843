"""End-to-end dynamics as an optax transformation (Arora, Cohen, Hazan, ICML 2018, Eq. (10)).

The parameters are the end-to-end matrix alone, ``(W,)``; the direction is the preconditioned
gradient P_W(grad L(W)) of :func:`trajlab.theory.preconditioner_apply`, so that
``params + lr * update`` is W - lr P_W(grad L(W)). With gradient flow instead of steps this is the
continuous end-to-end dynamics dW/dt = -P_W(grad L(W)), which gradient flow on a balanced
factorization of depth N induces on W (their Theorem 1).
"""

from __future__ import annotations

import jax
import optax

from trajlab.theory.end_to_end import preconditioner_apply


def precondition_end_to_end(params, grads, depth: int):
    """(P_W(g),) for params (W,) and grads (g,)."""
    (w,), (g,) = params, grads
    return (preconditioner_apply(w, g, depth),)


def end_to_end_gd(depth: int) -> optax.GradientTransformation:
    """Unit-step end-to-end GD direction: update = -P_W(grad) (needs ``params`` in ``update``)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("end_to_end_gd needs the parameters to precondition the gradient")
        direction = precondition_end_to_end(params, updates, depth)
        return jax.tree_util.tree_map(lambda d: -d, direction), state

    return optax.GradientTransformation(init, update)
