"""The memory of a batch of runs, estimated before anything is allocated, and the check that
refuses a batch that does not fit with one line naming the field to blame.

What a batch of ``runs`` runs of one config needs (bytes):

- **data**: the problem's data on the host at the peak of drawing or loading it
  (``Problem.nbytes(section)``, from the fields, nothing drawn), plus its copy on the device in
  the run's precision. A problem without the hook: unknown, counted as 0.
- **per run** (times ``runs``: everything of a run is vmapped): the family's parameters and
  per-step working memory (``Family.nbytes(config)``), plus the copies of the parameters the
  engine keeps: the initial parameters, the optimizer state (0-2 copies by optimizer), the
  gradient, the update and the new parameters; the reference gradient flow and the solver stages
  for flows; the Lanczos basis for the curvature metrics. The parameter size comes from
  ``jax.eval_shape`` of the family's init (shapes only, nothing allocated). A family without
  ``nbytes``: parameters and gradient only (its working memory, e.g. activations, is unknown).
- **recording**: the recording schedule and the trajectory rows of a run that goes to
  ``train.max_steps`` (Python lists on the host while recording, then arrays and a DataFrame),
  for every run of the batch.

:func:`available_memory` reads ``MemAvailable`` of ``/proc/meminfo`` (and the cgroup limit when
it is lower); on a GPU backend the device's free memory from ``memory_stats()`` when the device
reports it. On the CPU backend the device and the host share one pool.

The estimate is an approximation (typically within a factor of two of the peak), made to refuse
what cannot work (a width of 10^6, 10^8 sensing measurements, a billion recording steps) rather
than to pack memory tightly. ``TRAJLAB_MEMORY_CHECK=0`` skips the check.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence

from trajlab import registry
from trajlab.config import RunConfig
from trajlab.engine.schedule import schedule_length
from trajlab.errors import ConfigError

#: Optimizer state, in copies of the parameters.
OPTIMIZER_SLOTS = {
    "gd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "adagrad": 1, "adadelta": 2, "rmsprop": 1,
    "normalized_gd": 1, "gradient_flow": 0,
}
#: Copies of the state an ODE solver holds (stages, the two ends, the error estimate).
FLOW_COPIES = {"tsit5": 10, "dopri5": 10, "rk4": 6}
#: Bytes per recorded value on the host: a Python float in a list while recording, then its
#: array, DataFrame and parquet buffers.
BYTES_PER_RECORDED_VALUE = 64
#: Bytes per entry of the schedule: the int64 array and the loop's list of Python ints.
BYTES_PER_SCHEDULE_STEP = 48
#: Metrics whose columns number train.top_k (vectors of singular values, components, eigenvalues).
TOP_K_METRICS = ("singular_values", "target_mode_strengths", "component_norms", "hessian_eigenvalues",
                 "leaf_singular_values", "local_component_norms", "edge_eigenvalues",
                 "edge_tracking")
CURVATURE_METRICS = ("sharpness", "hessian_eigenvalues", "hessian_density", "gauss_newton_sharpness",
                     "preconditioned_sharpness", "r_med",
                     "leaf_sharpness", "edge_eigenvalues", "edge_tracking")
#: Integer fields of the shared sections that size a run (the others are not memory).
_TRAIN_SIZE_FIELDS = ("max_steps", "record_points", "record_every", "top_k", "lanczos_iterations", "hutchinson_probes")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of a batch of ``runs`` runs of one config (see the module docstring)."""

    runs: int
    data_host: int
    data_device: int
    per_run: int
    recording: int
    parameters: int | None  # bytes of one run's parameters (eval_shape of init); None if unknown
    notes: tuple[str, ...] = ()  # what the estimate does not know

    @property
    def device(self) -> int:
        """On the accelerator: the batch's state and working memory, and the data."""
        return self.runs * self.per_run + self.data_device

    @property
    def host(self) -> int:
        """On the host: the data while it is made, the schedule and the recorded rows."""
        return self.data_host + self.recording

    @property
    def total(self) -> int:
        return self.device + self.host

    def parts(self) -> str:
        return (
            f"data {format_bytes(self.data_host + self.data_device)}, parameters and working memory "
            f"{format_bytes(self.runs * self.per_run)}, recorded trajectories {format_bytes(self.recording)}"
        )


@dataclass(frozen=True)
class Available:
    """Free memory: ``host`` (bytes, None if unknown) and ``device`` (None: the host's pool)."""

    host: int | None
    host_source: str
    device: int | None = None
    device_source: str = ""


def format_bytes(value: float) -> str:
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:  # "max": no limit
        return None


def _cgroup_available() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, then v1); None without a limit."""
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_path)
        if limit is not None and limit < 2**60:
            usage = _read_int(usage_path) or 0
            return max(limit - usage, 0)
    return None


def host_available() -> tuple[int | None, str]:
    """Free host memory in bytes and where it was read (MemAvailable, or a lower cgroup limit)."""
    meminfo = _meminfo_available()
    cgroup = _cgroup_available()
    if cgroup is not None and (meminfo is None or cgroup < meminfo):
        return cgroup, "left under the cgroup memory limit"
    if meminfo is not None:
        return meminfo, "available (MemAvailable)"
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available (free pages)"
    except (OSError, ValueError, AttributeError):
        return None, "unknown"


#: Environment variable capping the memory trajlab plans for (bytes, or with a unit: 512MiB, 2GiB, 1.5GB).
MEMORY_LIMIT_ENV = "TRAJLAB_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def memory_limit() -> int | None:
    """``TRAJLAB_MEMORY_LIMIT`` in bytes (None when unset); a one-line ConfigError when malformed."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not text:
        return None
    import re

    match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise ConfigError(
            f"{MEMORY_LIMIT_ENV} must be a number of bytes >= 1, optionally with a unit (KiB, MiB, GiB, KB, MB, GB), "
            f"got {text!r}"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def available_memory() -> Available:
    """Free host memory and, on a GPU backend, the default device's free memory (its
    ``memory_stats()``: bytes_limit - bytes_in_use) when it reports it; both capped by
    ``TRAJLAB_MEMORY_LIMIT`` when it is set."""
    available = _available_memory()
    limit = memory_limit()
    if limit is None:
        return available
    source = f"allowed by {MEMORY_LIMIT_ENV}"
    host, host_source = available.host, available.host_source
    if host is None or limit < host:
        host, host_source = limit, source
    device, device_source = available.device, available.device_source
    if device is not None and limit < device:
        device, device_source = limit, source
    return Available(host, host_source, device, device_source)


def _available_memory() -> Available:
    host, source = host_available()
    try:
        import jax

        if jax.default_backend() != "cpu":
            device = jax.local_devices()[0]
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
                return Available(host, source, max(free, 0), f"free on {device.device_kind} (memory_stats)")
    except Exception:  # noqa: BLE001 - a backend without memory stats: the host's numbers only
        pass
    return Available(host, source)


def parameter_bytes(config: RunConfig) -> int | None:
    """Bytes of one run's parameters in the run's precision: ``jax.eval_shape`` of the family's
    init (shapes only, nothing allocated); None if the family cannot be built or traced."""
    import jax
    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float64 shapes before x64 is switched on: only sizes matter
            parts = registry.get_family(config.model.kind).build(config)
            key = jax.ShapeDtypeStruct((2,), np.uint32)
            scale = jax.ShapeDtypeStruct((), np.float32)
            shapes = jax.eval_shape(parts.init, key, scale)
        count = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
    except Exception:  # noqa: BLE001 - check_family reports a family that cannot be traced
        return None
    return int(count) * (8 if config.train.x64 else 4)


_FAILED = -1


def _hook(function, argument, what: str) -> int | None:
    """The hook's number of bytes; None without a hook, _FAILED if it raised (the plug-in's own
    checks, or check_family, report a config it cannot size)."""
    if function is None:
        return None
    try:
        value = function(argument)
    except Exception:  # noqa: BLE001
        return _FAILED
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise registry.PluginError(f"{what}: nbytes must return a number of bytes >= 0, got {value!r}")
    return int(value)


def recorded_columns(config: RunConfig) -> int:
    """About how many columns a trajectory row has: one per metric, train.top_k per vector metric."""
    columns = 2  # run, step
    for name in config.metrics:
        columns += config.train.top_k if name in TOP_K_METRICS else 1
    return columns


def estimate(config: RunConfig, runs: int = 1, *, parameters: int | None | bool = True) -> MemoryEstimate:
    """The memory of a batch of ``runs`` runs of ``config`` (module docstring); nothing allocated.

    ``parameters``: the bytes of one run's parameters if known, True to measure them
    (:func:`parameter_bytes`), False to skip (the family's ``nbytes`` alone then)."""
    family = registry.get_family(config.model.kind)
    problem = registry.get_problem(config.problem.kind)
    bytes_per_float = 8 if config.train.x64 else 4
    notes = []
    data = _hook(problem.nbytes, config.problem, f"problem {problem.name!r}")
    if data is None or data == _FAILED:
        why = "no nbytes hook" if data is None else "its nbytes hook failed"
        notes.append(f"the data of problem.kind={problem.name} ({why})")
        data = 0
    if parameters is True:
        parameters = parameter_bytes(config)
    elif parameters is False:
        parameters = None
    own = _hook(family.nbytes, config, f"family {family.name!r}")
    if own is None or own == _FAILED:
        why = "no nbytes hook" if own is None else "its nbytes hook failed"
        notes.append(f"the working memory of model.kind={family.name} ({why})")
        own = 2 * (parameters or 0)
    copies_of = parameters if parameters is not None else own
    name = config.optimizer.name
    copies = 1 + OPTIMIZER_SLOTS.get(name, 2) + 3  # initial; optimizer state; gradient, update, new params
    flow_metrics = set(registry.GENERIC_FLOW_METRICS) | set(family.flow_metrics)
    if name == "gradient_flow" or any(m in flow_metrics for m in config.metrics):
        copies += 1 + FLOW_COPIES.get(config.flow.solver, 10)
    if "linearization" in config.metrics:
        # the linearization and its anchor beside the model, with their own optimizer state,
        # gradient and update; a jvp per step as working memory
        copies += 2 + OPTIMIZER_SLOTS.get(name, 2) + 2
        own += own
    working = own
    if any(m in CURVATURE_METRICS for m in config.metrics):
        copies += config.train.lanczos_iterations + 3
        working += own  # Hessian-vector products: a gradient of the gradient
    if "edge_tracking" in config.metrics:
        copies += config.train.top_k  # the carried Ritz vectors (warm start of the next recording)
    if "hessian_trace" in config.metrics or "hessian_trace_suite" in config.metrics:
        copies += 3
        working += own
    per_run = working + copies * copies_of
    steps = schedule_length(config.train)
    recording = steps * BYTES_PER_SCHEDULE_STEP + steps * runs * recorded_columns(config) * BYTES_PER_RECORDED_VALUE
    data_device = data * bytes_per_float // 8
    return MemoryEstimate(runs, data, data_device, per_run, recording, parameters, tuple(notes))


def _candidates(config: RunConfig) -> Iterable[tuple[str, str, Any]]:
    """(section, field, default) of the integer fields that may size a run, set away from their default."""
    for section in ("problem", "model"):
        value = getattr(config, section)
        for f in fields(value):
            current = getattr(value, f.name)
            if f.name == "seed" or isinstance(current, bool) or not isinstance(current, int):
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue
            if default != current:
                yield section, f.name, default
    defaults = type(config.train)()
    for name in _TRAIN_SIZE_FIELDS:
        if getattr(config.train, name) != getattr(defaults, name):
            yield "train", name, getattr(defaults, name)


def _with(config: RunConfig, section: str, name: str, value: Any) -> RunConfig:
    """``config`` with one field set, without validation (for what-if estimates only)."""
    part = copy.copy(getattr(config, section))
    object.__setattr__(part, name, value)
    out = copy.copy(config)
    object.__setattr__(out, section, part)
    return out


def blame(config: RunConfig, runs: int, current: MemoryEstimate) -> tuple[str, str]:
    """(the field to blame as ``section.name=value``, what to reduce): the integer field whose
    default value shrinks the estimate most; the batch size when none does."""
    savings = []
    for section, name, default in _candidates(config):
        try:
            other = estimate(_with(config, section, name, default), runs)
        except Exception:  # noqa: BLE001 - a what-if the family cannot size
            continue
        saving = current.total - other.total
        if saving > 0:
            savings.append((saving, f"{section}.{name}", getattr(getattr(config, section), name)))
    savings.sort(key=lambda item: -item[0])
    if savings and (savings[0][0] >= 0.25 * current.total or runs == 1):
        # Fields that matter about as much are named together (record_every=1 with a huge max_steps).
        named = [item for item in savings[:3] if item[0] >= 0.9 * savings[0][0]]
        return " with ".join(f"{name}={value}" for _, name, value in named), " or ".join(name for _, name, _ in named)
    if runs > 1:
        return f"a batch of {runs} runs", "the number of runs in a batch (--max-batch)"
    return f"model.kind={config.model.kind} on problem.kind={config.problem.kind}", "the problem or model size"


def enabled() -> bool:
    """False when ``TRAJLAB_MEMORY_CHECK=0`` (skip the check)."""
    return os.environ.get("TRAJLAB_MEMORY_CHECK", "1").strip().lower() not in ("0", "false", "no", "off")


def check_memory(batches: Sequence[tuple[RunConfig, int]], available: Available | None = None) -> None:
    """Raise a one-line ConfigError for the first batch (a config and its number of runs) whose
    estimated memory exceeds the free memory: it names the field to blame, the estimate and the
    available memory. Nothing is allocated. Skipped when ``TRAJLAB_MEMORY_CHECK=0``."""
    if not enabled() or not batches:
        return
    available = available or available_memory()
    seen: set = set()
    for config, runs in batches:
        key = (id(type(config.model)), repr(config.problem), repr(config.model), repr(config.train),
               config.optimizer.name, config.flow.solver, tuple(config.metrics), runs)
        if key in seen:
            continue
        seen.add(key)
        current = estimate(config, runs)
        if available.device is not None:
            checks = [(current.device, available.device, available.device_source),
                      (current.host, available.host, available.host_source)]
        else:
            checks = [(current.total, available.host, available.host_source)]
        for needed, free, source in checks:
            if free is None or needed <= free:
                continue
            field, reduce = blame(config, runs, current)
            raise ConfigError(
                f"memory: {field} needs about {format_bytes(needed)} for a batch of {runs} "
                f"run{'s' if runs != 1 else ''} ({current.parts()}), but {format_bytes(free)} {source}; "
                f"reduce {reduce} (TRAJLAB_MEMORY_CHECK=0 skips this check)"
            )


#: Share of the free memory that a batch whose size is chosen from the estimate may plan to use
#: (the estimate is typically within a factor of two of the peak).
BATCH_MEMORY_FRACTION = 0.5
#: The most runs in one vmapped batch when ``--max-batch`` is not given.
DEFAULT_MAX_BATCH = 512


def batch_capacity(config: RunConfig, available: Available | None = None, *, limit: int = DEFAULT_MAX_BATCH,
                   fraction: float = BATCH_MEMORY_FRACTION) -> int:
    """The most runs of ``config`` in one batch whose estimated memory stays within ``fraction``
    of the free memory (host, and device where it is separate), at most ``limit`` and at least 1
    (a single run that does not fit is refused by :func:`check_memory`, naming the field).

    The estimate is affine in the number of runs (data and schedule once, parameters, optimizer
    state and recorded rows per run), so two estimates give the slope."""
    if not enabled():
        return limit
    available = available or available_memory()
    one = estimate(config, 1)
    two = estimate(config, 2, parameters=one.parameters if one.parameters is not None else False)
    budgets = []
    if available.device is not None:
        budgets.append((one.device, two.device - one.device, available.device))
        budgets.append((one.host, two.host - one.host, available.host))
    else:
        budgets.append((one.total, two.total - one.total, available.host))
    runs = limit
    for first, slope, free in budgets:
        if free is None or slope <= 0:
            continue
        fixed = first - slope
        runs = min(runs, int((fraction * free - fixed) // slope))
    return max(1, min(runs, limit))
