"""The deep linear network family (deep matrix factorization): W_e = W_N ... W_1 on a matrix or
regression problem, trained layer-wise or through the end-to-end dynamics."""

from __future__ import annotations

import jax.numpy as jnp

from trajlab.config import RunConfig
from trajlab.dynamics.end_to_end import end_to_end_gd, precondition_end_to_end
from trajlab.engine.family import FamilyParts
from trajlab.metrics.registry import MetricState, evaluate_metrics, resolve_metrics
from trajlab.models.deep_linear import DeepLinear, end_to_end
from trajlab.problems.registry import loss_function


def model_of(config: RunConfig) -> DeepLinear:
    p, m = config.problem, config.model
    return DeepLinear(p.m, p.n, m.depth, m.width)


def family_parts(config: RunConfig, extra_metrics: dict | None = None) -> FamilyParts:
    model = model_of(config)
    model.check_init(config.model.init)
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    end_to_end_parameters = config.model.parameterization == "end_to_end"
    functions = resolve_metrics(config.metrics, extra_metrics)
    if end_to_end_parameters:
        # The layers are not trained, only W_e: balancedness is undefined (not 0) for these runs.
        for name in ("balancedness", "balancedness_relative"):
            if name in functions:
                functions[name] = lambda state: jnp.full((), jnp.nan, dtype)
    top_k, schatten_p = config.train.top_k, config.train.schatten_p
    depth = config.model.depth

    def init(key, scale):
        layers = model.init(key, scale, config.model.init, dtype, config.model.condition)
        return (end_to_end(layers),) if end_to_end_parameters else layers

    problem_loss = loss_function(config.problem)

    def loss(params, data):
        return problem_loss(end_to_end(params), data)

    def metrics(params, initial, reference, data):
        state = MetricState(
            params,
            initial,
            data,
            top_k=top_k,
            schatten_p=schatten_p,
            reference_layers=reference,
            loss=problem_loss,
        )
        return evaluate_metrics(functions, state)

    if not end_to_end_parameters:
        return FamilyParts(init=init, loss=loss, metrics=metrics)
    gradient_flow = config.optimizer.name == "gradient_flow"
    return FamilyParts(
        init=init,
        loss=loss,
        metrics=metrics,
        precondition=lambda params, grads: precondition_end_to_end(params, grads, depth),
        optimizer=None if gradient_flow else end_to_end_gd(depth),
    )


__all__ = ["family_parts", "model_of"]
