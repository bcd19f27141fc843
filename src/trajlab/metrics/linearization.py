"""A run's linearization at init, carried beside it, and the metrics that compare the two.

The linearization of a model f(x; w) at its init w0 (Lee et al., "Wide neural networks of any depth
evolve as linear models under gradient descent", NeurIPS 2019; neural-tangents' ``linearize``):

    f_lin(x; v) = f(x; w0) + J(w0) (v - w0),        J(w0) = d f(x; w) / d w at w0,

computed with one ``jax.jvp`` (the Jacobian is never materialized). When a run records the
``linearization`` metric, the engine (:mod:`trajlab.engine.task`) trains v by the same update rule,
on the same data (the same minibatch), from v(0) = w0, beside the model's own parameters w: the
optimized pytree becomes ``{"model": w, "linear": v, "anchor": w0}`` (the anchor never moves) and
each part's optimizer state is kept separately (:func:`separately`), so that an optimizer with a
global state (normalized GD's gradient-norm average, global clipping) trains each exactly as alone.
Its training loss is ``output_loss(f_lin(train inputs; v), data)``; under squared loss and GD the
linearization's train predictions are those of kernel regression with the empirical neural
tangent kernel Theta = J(w0) J(w0)^T (for GD with step eta on (1/2n)||f - y||^2:
f_k = y - (I - eta Theta / n)^k (y - f(w0))).

Columns of the ``linearization`` metric (w the run's parameters, v its linearization's):

- ``linearization_param_distance``: ||w - v||_2 over all leaves;
- ``linearization_train_distance`` / ``linearization_test_distance``: the root mean square over
  samples of the output difference, sqrt((1/S) sum_i ||f(x_i; w) - f_lin(x_i; v)||^2) on the train /
  test inputs (NaN without a test split);
- ``linearization_train_loss``: the linearization's training loss.

``relative_weight_change`` (a generic metric of its own, no linearization needed):
||w - w0||_2 / ||w0||_2 (Lee et al. 2019, their Figure 1: it falls like 1/sqrt(width)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

#: The parts of the optimized pytree when a run carries its linearization.
PARTS = ("model", "linear")


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def _difference(a, b):
    return jax.tree_util.tree_map(lambda x, y: x - y, a, b)


def linearized_predict(predict: Callable, anchor, params, data, split: str = "train"):
    """f_lin = f(x; w0) + J(w0)(params - w0) on the ``split`` inputs of ``data`` (one jvp)."""
    out0, tangent = jax.jvp(lambda w: predict(w, data, split), (anchor,), (_difference(params, anchor),))
    return out0 + tangent


def linearized_loss(predict: Callable, output_loss: Callable, anchor, params, data):
    """The linearization's training loss: output_loss(f_lin(train inputs; params), data)."""
    return output_loss(linearized_predict(predict, anchor, params, data, "train"), data)


def relative_weight_change(params, initial):
    """||w - w0||_2 / ||w0||_2 over all leaves."""
    return _norm(_difference(params, initial)) / _norm(initial)


def _rms(a, b):
    diff = jnp.reshape(a - b, (a.shape[0], -1)) if a.ndim else jnp.reshape(a - b, (1, -1))
    if diff.shape[0] == 0:
        return jnp.full((), jnp.nan, a.dtype)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(diff), axis=1)))


@dataclass
class LinearizationState:
    """What the ``linearization`` metric reads: the linearization's parameters ``linear`` (v),
    the init ``anchor`` (w0), the family's ``predict`` and ``output_loss``, and the data."""

    linear: Any
    anchor: Any
    predict: Callable
    output_loss: Callable
    data: Any

    def outputs(self, split: str):
        return linearized_predict(self.predict, self.anchor, self.linear, self.data, split)


def linearization_columns(params, state: LinearizationState) -> dict:
    """The columns of the ``linearization`` metric (module docstring) for the run's ``params``."""
    train_lin = state.outputs("train")
    train = state.predict(params, state.data, "train")
    test_shape = jax.eval_shape(lambda: state.predict(params, state.data, "test"))
    if all(dimension > 0 for dimension in test_shape.shape):
        test_distance = _rms(state.predict(params, state.data, "test"), state.outputs("test"))
    else:  # no test samples (problem.test_samples=0): no test distance
        test_distance = jnp.asarray(jnp.nan, train.dtype)
    return {
        "linearization_param_distance": _norm(_difference(params, state.linear)),
        "linearization_train_distance": _rms(train, train_lin),
        "linearization_test_distance": test_distance,
        "linearization_train_loss": state.output_loss(train_lin, state.data),
    }


def linearization_metric(ctx) -> dict:
    """The ``linearization`` metric of a :class:`~trajlab.metrics.generic.MetricContext` that
    carries a :class:`LinearizationState` (the engine attaches it as ``ctx.linearization``)."""
    state = getattr(ctx, "linearization", None)
    if state is None:
        raise ValueError("metrics: linearization needs the linearized reference the engine carries for it")
    return linearization_columns(ctx.params, state)


# --- the engine's side: the pair (model, linearization) as one optimized pytree ------------------


def paired_init(init: Callable):
    """init(key, scale) -> {"model": w0, "linear": w0, "anchor": w0}."""

    def paired(key, scale):
        w0 = init(key, scale)
        return {"model": w0, "linear": w0, "anchor": w0}

    return paired


def paired_loss(loss: Callable, predict: Callable, output_loss: Callable):
    """The loss of the pair whose *value* is the model's loss alone and whose gradient is that of
    the model's loss in ``model`` and of the linearization's loss in ``linear`` (zero in
    ``anchor``): loss(w) + (L_lin(v) - stop_gradient(L_lin(v))). The engine's stopping and
    divergence rules and the recorded loss therefore stay those of the model; a non-finite
    linearization loss adds nothing (its gradient is then zero)."""

    def paired(pair, data):
        model = loss(pair["model"], data)
        anchor = jax.lax.stop_gradient(pair["anchor"])
        linear = linearized_loss(predict, output_loss, anchor, pair["linear"], data)
        finite = jnp.isfinite(linear)
        safe = jnp.where(finite, linear, 0.0)
        return model + jnp.where(finite, safe - jax.lax.stop_gradient(safe), 0.0).astype(model.dtype)

    return paired


def separately(transform: optax.GradientTransformation) -> optax.GradientTransformation:
    """``transform`` applied to the model and to its linearization with separate states (so a rule
    with a global state, e.g. normalized GD, treats each as if it were trained alone); the anchor's
    update is zero."""

    def init(params):
        return {name: transform.init(params[name]) for name in PARTS}

    def update(updates, state, params=None):
        out, new = {}, {}
        for name in PARTS:
            out[name], new[name] = transform.update(updates[name], state[name], None if params is None else params[name])
        out["anchor"] = jax.tree_util.tree_map(jnp.zeros_like, updates["anchor"])
        return out, new

    return optax.GradientTransformation(init, update)


__all__ = [
    "LinearizationState",
    "linearization_columns",
    "linearization_metric",
    "linearized_loss",
    "linearized_predict",
    "paired_init",
    "paired_loss",
    "relative_weight_change",
    "separately",
]
