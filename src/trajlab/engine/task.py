"""Build the engine's :class:`Task` for a run config from its registered model family (:mod:`trajlab.registry`).

The family gives init, loss, named metrics and optionally a preconditioner, its own update rule,
minibatch draws and a metric context; the rest (optimizer, gradient flow, the reference flow of
``distance_to_flow``, stopping rules, generic metrics) is the same for every family.

When a run records ``linearization``, it also carries its linearization at init, trained beside it
by the same rule on the same data: the optimized pytree is ``{"model", "linear", "anchor"}``
(see :mod:`trajlab.metrics.linearization`), while the loss value, the stopping rules and every other
metric stay those of the model alone.

Metrics see the run's optimizer state as ``ctx.optimizer_state`` (the Task passes it to ``metrics``
as the keyword ``optimizer_state``); for a run carrying its linearization, the model's part of the
state kept by ``separately(...)``. They see the run's own step size as ``ctx.lr`` (a traced scalar:
lr is a batched field, while ``ctx.config.optimizer.lr`` is the batch representative's). A
:class:`~trajlab.metrics.carried.CarriedMetric` carries state from one recording point to the next
(e.g. eigenvectors that warm-start the next eigensolve): the Task keeps ``{name: carry}`` per run
(``Task.metric_carry``) and hands each carried metric its own entry.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import jax
import jax.numpy as jnp

from trajlab import registry
from trajlab.config import RunConfig, static_key
from trajlab.dynamics.gradient_flow import flow_integrator
from trajlab.dynamics.optimizers import direction_transform
from trajlab.engine.loop import CompiledTask, Task, cast_data, run_batch
from trajlab.engine.schedule import recording_steps
from trajlab.errors import ConfigError, PluginError
from trajlab.metrics.adaptive import check_preconditioned
from trajlab.metrics.carried import CarriedMetric
from trajlab.metrics.generic import GENERIC_METRIC_FUNCTIONS, MetricContext
from trajlab.metrics.linearization import LinearizationState, paired_init, paired_loss, separately
from trajlab.metrics.registry import evaluate_metrics, resolve_metrics
from trajlab.problems.registry import make_data


def enable_precision(config: RunConfig) -> None:
    """float64 needs JAX's x64 mode, switched on before any array of the batch is made."""
    if config.train.x64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def _parts(config: RunConfig):
    family = registry.get_family(config.model.kind)
    try:
        parts = family.build(config)
    except ConfigError:
        raise
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        raise PluginError(f"family {family.name!r}: build(config) failed: {type(error).__name__}: {first}") from error
    if not isinstance(parts, registry.FamilyParts):
        raise PluginError(f"family {family.name!r}: build(config) must return trajlab.FamilyParts, got {type(parts).__name__}")
    for name in ("init", "loss"):
        if not callable(getattr(parts, name)):
            raise PluginError(f"family {family.name!r}: FamilyParts.{name} is missing (must be a function)")
    return family, parts


def build_task(config: RunConfig, extra_metrics: dict | None = None) -> Task:
    """The Task of ``config``: its static fields only (seed, lr and scale are batched)."""
    enable_precision(config)
    family, parts = _parts(config)
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    precondition = parts.precondition
    init, loss = parts.init, parts.loss
    linearized = any(name in registry.GENERIC_LINEARIZATION_METRICS for name in config.metrics) and (
        "linearization" not in family.metrics
    )
    if "gauss_newton_sharpness" in config.metrics and "gauss_newton_sharpness" not in family.metrics and (
        parts.predict is None or parts.output_loss is None
    ):
        raise ConfigError(
            f"metrics: gauss_newton_sharpness needs model.kind={family.name} to give FamilyParts.predict and "
            "output_loss (its outputs separately from its loss); this family does not"
        )
    check_preconditioned(config, own_optimizer=parts.optimizer is not None)
    if linearized:  # the pair (model, linearization at init) is optimized as one pytree
        _check_linearization(family.name, parts)
        init, loss = paired_init(parts.init), paired_loss(parts.loss, parts.predict, parts.output_loss)

    def direction(params, data):
        """The field F of the flow d theta/dt = -F(theta): the (preconditioned) gradient."""
        grads = jax.grad(loss)(params, data)
        return grads if precondition is None else precondition(params, grads)

    gradient_flow = config.optimizer.name == "gradient_flow"
    flow_metrics = set(registry.GENERIC_FLOW_METRICS) | set(family.flow_metrics)
    wants_reference = any(name in flow_metrics for name in config.metrics)
    if gradient_flow:
        optimizer = None
    else:
        optimizer = parts.optimizer or direction_transform(config.optimizer)
    if config.optimizer.batch_size > 0 and parts.minibatch is None:
        raise ConfigError(f"optimizer.batch_size must be 0 for model.kind={family.name} (the family draws no minibatches)")
    if linearized and optimizer is not None:
        optimizer = separately(optimizer)
    integrator = flow_integrator(direction, config.flow) if (gradient_flow or wants_reference) else None
    final_names = [name for name in config.metrics if name in family.final_metrics]
    table = {**GENERIC_METRIC_FUNCTIONS, **family.metrics}
    functions = resolve_metrics([n for n in config.metrics if n not in final_names], extra_metrics, table=table)
    context = parts.context or (lambda params, initial, reference, data: MetricContext(params, initial, reference, data, parts.loss, config))

    def with_outputs(ctx):
        if parts.predict is not None and parts.output_loss is not None:
            object.__setattr__(ctx, "predict", parts.predict)  # also for a family's frozen context
            object.__setattr__(ctx, "output_loss", parts.output_loss)
        return ctx

    def with_state(ctx, optimizer_state, lr=None, carry=None):
        """The engine's per-run extras on the context: optimizer state, step size, metric carry."""
        for name, value in (("optimizer_state", optimizer_state), ("lr", lr), ("carry", carry)):
            if value is not None:
                try:
                    object.__setattr__(ctx, name, value)  # also a family's frozen context
                except (AttributeError, TypeError):  # a context without attributes (e.g. a tuple): not offered
                    pass
        return ctx

    # A carried metric keeps its state under the name it is recorded by.
    functions = {name: dataclasses.replace(fn, key=name) if isinstance(fn, CarriedMetric) else fn
                 for name, fn in functions.items()}
    carry_inits = {name: fn.init for name, fn in functions.items() if isinstance(fn, CarriedMetric)}

    def metric_carry(params, data):
        """{metric name: its carry at init} for the metrics that carry state between recordings."""
        params = params["model"] if linearized else params
        ctx = with_outputs(context(params, params, None, data))
        return {name: init(ctx) for name, init in carry_inits.items()}

    def metrics(params, initial, reference, data, optimizer_state=None, lr=None, carry=None):
        carry = None if carry is None else dict(carry)  # the metrics replace their entries in it
        if not linearized:
            ctx = with_state(with_outputs(context(params, initial, reference, data)), optimizer_state, lr, carry)
            values = evaluate_metrics(functions, ctx, family.columns)
            return values if carry is None else (values, carry)
        state = LinearizationState(params["linear"], params["anchor"], parts.predict, parts.output_loss, data)
        reference = None if reference is None else reference["model"]
        ctx = with_outputs(context(params["model"], initial["model"], reference, data))
        object.__setattr__(ctx, "linearization", state)
        # separately(...) keeps one state per part: the metrics see the model's own.
        model_state = optimizer_state["model"] if isinstance(optimizer_state, dict) else optimizer_state
        values = evaluate_metrics(functions, with_state(ctx, model_state, lr, carry), family.columns)
        return values if carry is None else (values, carry)

    def final_metrics(params, data):
        if linearized:
            params = params["model"]
        out = {}
        for name in final_names:
            value = family.final_metrics[name](params, data, config)
            out.update(value if isinstance(value, dict) else {name: value})
        return out

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
        final_metrics=final_metrics if final_names else None,
        minibatch=parts.minibatch if config.optimizer.batch_size > 0 else None,
        metrics_optimizer_state=True,
        metrics_lr=True,
        metric_carry=metric_carry if carry_inits else None,
    )


def _check_linearization(name: str, parts) -> None:
    """The linearization needs the family's outputs (predict, output_loss) and a plain update rule."""
    if parts.predict is None or parts.output_loss is None:
        raise ConfigError(
            f"metrics: linearization needs model.kind={name} to give FamilyParts.predict and output_loss "
            "(its outputs separately from its loss); this family does not"
        )
    if parts.precondition is not None or parts.optimizer is not None:
        raise ConfigError(
            f"metrics: linearization is not available for model.kind={name} (the family has its own "
            "preconditioner or update rule)"
        )


def check_family(config: RunConfig, extra_metrics: dict | None = None) -> None:
    """Check a family's contract on ``config`` by tracing (no compilation, no run): init returns a
    pytree of float arrays, the loss is a scalar, every metric a scalar, a 1-D array or a dict of
    scalars. Raises a one-line PluginError naming the family and what is wrong."""
    task = build_task(config, extra_metrics)
    name = config.model.kind
    dtype = task.dtype
    data = make_data(config.problem)
    try:
        data = cast_data(data, dtype)
    except Exception as error:
        raise PluginError(f"problem {config.problem.kind!r}: data(config) must return a pytree of arrays ({error})") from None
    key = jax.random.PRNGKey(0)
    scale = jnp.asarray(config.model.scale, dtype)

    def trace(what, function, *args):
        try:
            return jax.eval_shape(function, *args)
        except PluginError:
            raise
        except ConfigError as error:
            raise PluginError(f"family {name!r}: {error}") from None
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise PluginError(f"family {name!r}: {what} fails: {type(error).__name__}: {first}") from None

    params = trace("init(key, scale)", task.init, key, scale)
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or not all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        raise PluginError(f"family {name!r}: init(key, scale) must return a non-empty pytree of arrays, got {params!r}")
    if not all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves):
        raise PluginError(f"family {name!r}: init(key, scale) must return float arrays, got dtypes {[str(x.dtype) for x in leaves]}")
    loss = trace("loss(params, data)", task.loss, params, data)
    if not isinstance(loss, jax.ShapeDtypeStruct) or loss.shape != ():
        raise PluginError(f"family {name!r}: loss(params, data) must return a scalar, got shape {getattr(loss, 'shape', loss)}")
    def metrics_of(p):
        state = task.optimizer.init(p) if task.optimizer is not None else ()
        lr = jnp.asarray(config.optimizer.lr, dtype)
        if task.metric_carry is None:
            return task.metrics(p, p, p, data, optimizer_state=state, lr=lr)
        return task.metrics(p, p, p, data, optimizer_state=state, lr=lr, carry=task.metric_carry(p, data))[0]

    values = trace("a metric", metrics_of, params)
    for column, value in values.items():
        if getattr(value, "shape", None) != ():
            raise PluginError(f"family {name!r}: metric column {column!r} must be a scalar, got shape {value.shape}")


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


def compile_configs_ahead(configs: list[RunConfig], extra_metrics: dict | None = None) -> bool:
    """Compile the programs of the batch ``configs`` (one static structure) ahead of
    :func:`run_configs`, e.g. in a thread while the previous batch runs; nothing is run or kept but
    JAX's compiled executables. Skipped (False) when the batch needs float64 and the process is not
    in x64 mode yet (switching it under a running batch would change that batch's dtypes)."""
    from trajlab.engine.loop import compile_ahead

    first = configs[0]
    if first.train.x64 and not jax.config.jax_enable_x64:
        return False
    return compile_ahead(compiled_task(first, extra_metrics), make_data(first.problem),
                         [c.seed for c in configs], [c.model.scale for c in configs],
                         [c.optimizer.lr for c in configs])


def run_configs(configs: list[RunConfig], extra_metrics: dict | None = None, progress=None):
    """Run configs that share one static structure as one vmapped batch (see :func:`run_batch`)."""
    first = configs[0]
    if any(static_key(c) != static_key(first) for c in configs[1:]):
        raise ValueError("run_configs: configs differ in static fields; group them with sweep.group_batches")
    from trajlab.engine.memory import check_memory

    check_memory([(first, len(configs))])  # a one-line ConfigError before anything is allocated
    return run_batch(
        compiled_task(first, extra_metrics),
        make_data(first.problem),
        seeds=[c.seed for c in configs],
        scales=[c.model.scale for c in configs],
        lrs=[c.optimizer.lr for c in configs],
        schedule=recording_steps(first.train),
        progress=progress,
    )
