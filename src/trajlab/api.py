"""The Python entry points: build sweeps and run them, as the command line does.

::

    import trajlab
    configs = trajlab.grid("dmf-completion", set={"model.depth": [2, 3]}, quick=True)
    data = trajlab.run(configs, out="results/mine")          # -> SweepData
    data = trajlab.run("path/to/file.py:my-preset", quick=True)

``grid`` returns exactly the configs ``trajlab config`` / ``trajlab run`` would make of the same
preset and ``--set`` values; ``run`` stores them in a sweep folder (resuming what is there) and
returns :func:`trajlab.load` of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

from trajlab.config import RunConfig, replace_dotted, run_id
from trajlab.errors import ConfigError
from trajlab.presets import Preset, get_preset, preset_source
from trajlab.sweep.grid import expand_grid, split_axes


def _split(set_: dict[str, Any] | None, x64: bool) -> tuple[dict, dict]:
    assignments = dict(set_ or {})
    for key in assignments:
        if not isinstance(key, str):
            raise ConfigError(f"set: field names must be dotted strings, got {key!r}")
    if x64:
        assignments["train.x64"] = True
    return split_axes(assignments)


def grid(
    base: "RunConfig | Preset | str | None" = None,
    *,
    set: dict[str, Any] | None = None,  # noqa: A002 - the CLI's --set
    quick: bool = False,
    x64: bool = False,
) -> list[RunConfig]:
    """The configs of a sweep: a preset (object, name or ``file.py:NAME``) with ``set`` values as
    ``--set`` gives them (a list sweeps the field, except for list-typed fields), or the cartesian
    product of ``set``'s lists over a base RunConfig (default ``RunConfig()``)."""
    fixed, axes = _split(set, x64)
    if isinstance(base, (Preset, str)):
        return get_preset(base).configs(fixed, axes, quick)
    if quick:
        raise ConfigError("quick: applies to presets only")
    base = RunConfig() if base is None else base
    if not isinstance(base, RunConfig):
        raise ConfigError(f"grid: base must be a RunConfig, a Preset or a preset name, got {type(base).__name__}")
    return expand_grid(replace_dotted(base, fixed), axes)


def _executor(executor: Any):
    from trajlab.executors import Executor, make_executor

    if executor is None or isinstance(executor, str):
        return make_executor(executor or "inprocess"), True
    if isinstance(executor, Executor):
        return executor, False
    raise ConfigError(f"executor: must be 'inprocess', 'dask', 'slurm' or a trajlab Executor, got {executor!r}")


def run(
    target: "Preset | str | RunConfig | Iterable[RunConfig]",
    *,
    out: str | Path | None = None,
    set: dict[str, Any] | None = None,  # noqa: A002 - the CLI's --set
    quick: bool = False,
    x64: bool = False,
    executor: Any = None,
    progress: bool = False,
    max_batch: int | None = None,
    extra_metrics: dict | None = None,
    figures: bool = False,
):
    """Run a preset (object, name or ``file.py:NAME``) or configs into the sweep folder ``out``
    and return its :class:`~trajlab.store.SweepData` (``runs``, ``trajectories``, ``baselines``,
    ``manifest``). Finished runs already in ``out`` are skipped (resume).

    ``out`` defaults to ``results/<preset>[-quick]`` for a preset and ``results/sweep-<hash of the
    run ids>`` for configs. ``executor``: ``"inprocess"`` (default), ``"dask"``, ``"slurm"`` or an
    :class:`~trajlab.executors.Executor` (left running for the caller). ``figures=True`` also
    writes a preset's figures into ``out/figures``.
    """
    from trajlab.sweep import run_sweep

    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch}")
    preset = None
    if isinstance(target, (Preset, str)):
        preset = get_preset(target)
        configs = grid(preset, set=set, quick=quick, x64=x64)
    else:
        configs = [target] if isinstance(target, RunConfig) else list(target)
        if not configs or not all(isinstance(c, RunConfig) for c in configs):
            raise ConfigError("run: target must be a preset, a preset name, a RunConfig or a non-empty list of RunConfigs")
        if set or x64:
            fixed, axes = _split(set, x64)
            configs = [c for config in configs for c in expand_grid(replace_dotted(config, fixed), axes)]
    if out is None:
        if preset is not None:
            out = Path("results") / (preset.name + ("-quick" if quick else ""))
        else:
            digest = hashlib.sha256("".join(sorted(run_id(c) for c in configs)).encode()).hexdigest()[:10]
            out = Path("results") / f"sweep-{digest}"
    chosen, owned = _executor(executor)
    try:
        baselines = preset.baselines(configs) if preset is not None and preset.baselines else []
        data = run_sweep(
            configs, out, preset=preset.name if preset is not None else None, baselines=baselines,
            extra_metrics=extra_metrics, max_batch=max_batch, show_progress=progress, executor=chosen,
            preset_source=preset_source(preset) if preset is not None else None,
        )
    finally:
        if owned:
            chosen.shutdown()
    if figures and preset is not None and preset.figures is not None and len(data.runs):
        from trajlab.plots import save_figure

        for name, figure in preset.figures(data).items():
            save_figure(figure, Path(out) / "figures", name)
    return data


def init_params(config: RunConfig):
    """The initial parameters of the run ``config`` exactly as the engine draws them:
    ``init(PRNGKey(config.seed), model.scale)`` of its family, in the run's precision (the model's
    own parameters also when the run carries its linearization beside it)."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from trajlab.engine.task import build_task

    if config.metrics and "linearization" in config.metrics:
        # the engine then optimizes {"model", "linear", "anchor"}; the model's part is drawn alike
        config = dataclasses.replace(config, metrics=[m for m in config.metrics if m != "linearization"])
    task = build_task(config)
    key = jax.random.PRNGKey(config.seed)
    return jax.jit(task.init)(key, jnp.asarray(config.model.scale, task.dtype))


__all__ = ["grid", "init_params", "run"]
