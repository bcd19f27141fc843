"""Build the engine's :class:`Task` for a run config, from its model family (:mod:`trajlab.engine.family`)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import jax
import jax.numpy as jnp

from trajlab.config import FLOW_METRICS, RunConfig, static_key
from trajlab.dynamics.gradient_flow import flow_integrator
from trajlab.dynamics.optimizers import direction_transform
from trajlab.engine.family import family_parts
from trajlab.engine.loop import CompiledTask, Task, run_batch
from trajlab.engine.schedule import recording_steps
from trajlab.problems.registry import make_data


def enable_precision(config: RunConfig) -> None:
    """float64 needs JAX's x64 mode, switched on before any array of the batch is made."""
    if config.train.x64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def build_task(config: RunConfig, extra_metrics: dict | None = None) -> Task:
    """The Task of ``config``: its static fields only (seed, lr and scale are batched).

    The model family (``config.model.kind``, see :mod:`trajlab.engine.family`) gives init, loss,
    metrics and an optional preconditioner / update rule; the rest is shared by every family.
    """
    enable_precision(config)
    parts = family_parts(config, extra_metrics)
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    precondition = parts.precondition

    def direction(params, data):
        """The field F of the flow d theta/dt = -F(theta): the (preconditioned) gradient."""
        grads = jax.grad(parts.loss)(params, data)
        return grads if precondition is None else precondition(params, grads)

    gradient_flow = config.optimizer.name == "gradient_flow"
    wants_reference = any(name in FLOW_METRICS for name in config.metrics)
    if gradient_flow:
        optimizer = None
    else:
        optimizer = parts.optimizer or direction_transform(config.optimizer)
    integrator = flow_integrator(direction, config.flow) if (gradient_flow or wants_reference) else None
    return Task(
        init=parts.init,
        loss=parts.loss,
        metrics=parts.metrics,
        optimizer=optimizer,
        max_steps=config.train.max_steps,
        tol=config.train.tol,
        diverge_factor=config.train.diverge_factor,
        dtype=dtype,
        flow=integrator if gradient_flow else None,
        reference=integrator if wants_reference else None,
        final_metrics=parts.final_metrics,
        minibatch=parts.minibatch if config.optimizer.batch_size > 0 else None,
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
