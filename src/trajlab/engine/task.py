"""Build the engine's :class:`Task` for a run config (deep linear network on a matrix or regression problem)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import jax
import jax.numpy as jnp

from trajlab.config import FLOW_METRICS, RunConfig, static_key
from trajlab.dynamics.end_to_end import end_to_end_gd, precondition_end_to_end
from trajlab.dynamics.gradient_flow import flow_integrator
from trajlab.dynamics.optimizers import direction_transform
from trajlab.engine.loop import CompiledTask, Task, run_batch
from trajlab.engine.schedule import recording_steps
from trajlab.metrics.registry import MetricState, evaluate_metrics, resolve_metrics
from trajlab.models.deep_linear import DeepLinear, end_to_end
from trajlab.problems.registry import loss_function, make_data


def enable_precision(config: RunConfig) -> None:
    """float64 needs JAX's x64 mode, switched on before any array of the batch is made."""
    if config.train.x64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def model_of(config: RunConfig) -> DeepLinear:
    p, m = config.problem, config.model
    return DeepLinear(p.m, p.n, m.depth, m.width)


def build_task(config: RunConfig, extra_metrics: dict | None = None) -> Task:
    """The Task of ``config``: its static fields only (seed, lr and scale are batched)."""
    enable_precision(config)
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

    def direction(params, data):
        """The field F of the flow d theta/dt = -F(theta): the (preconditioned) gradient."""
        grads = jax.grad(loss)(params, data)
        return precondition_end_to_end(params, grads, depth) if end_to_end_parameters else grads

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

    gradient_flow = config.optimizer.name == "gradient_flow"
    wants_reference = any(name in FLOW_METRICS for name in config.metrics)
    if end_to_end_parameters:
        optimizer = None if gradient_flow else end_to_end_gd(depth)
    else:
        optimizer = None if gradient_flow else direction_transform(config.optimizer)
    integrator = flow_integrator(direction, config.flow) if (gradient_flow or wants_reference) else None
    return Task(
        init=init,
        loss=loss,
        metrics=metrics,
        optimizer=optimizer,
        max_steps=config.train.max_steps,
        tol=config.train.tol,
        diverge_factor=config.train.diverge_factor,
        dtype=dtype,
        flow=integrator if gradient_flow else None,
        reference=integrator if wants_reference else None,
    )


@lru_cache(maxsize=32)
def _compiled(representative: RunConfig, extra: tuple, x64: bool) -> CompiledTask:
    del x64  # part of the cache key: the same config compiles differently under x64
    return CompiledTask(build_task(representative, dict(extra)))


def compiled_task(config: RunConfig, extra_metrics: dict | None = None) -> CompiledTask:
    """One CompiledTask (hence one compilation) per static structure and precision.

    The cache key is the config with its batched fields (seed, lr, scale) reset, so runs that
    differ only in those share the entry.
    """
    enable_precision(config)
    representative = dataclasses.replace(
        config,
        seed=0,
        model=dataclasses.replace(config.model, scale=1.0),
        optimizer=dataclasses.replace(config.optimizer, lr=1.0),
    )
    extra = tuple(sorted((extra_metrics or {}).items()))
    return _compiled(representative, extra, bool(jax.config.jax_enable_x64))


def run_configs(configs: list[RunConfig], extra_metrics: dict | None = None, progress=None):
    """Run configs that share one static structure as one vmapped batch (see :func:`run_batch`)."""
    first = configs[0]
    if any(static_key(c) != static_key(first) for c in configs[1:]):
        raise ValueError("run_configs: configs differ in static fields; group them with sweep.group_batches")
    return run_batch(
        compiled_task(first, extra_metrics),
        make_data(first.problem),
        seeds=[c.seed for c in configs],
        scales=[c.model.scale for c in configs],
        lrs=[c.optimizer.lr for c in configs],
        schedule=recording_steps(first.train),
        progress=progress,
    )
