"""Run configurations: frozen, validated at construction, addressed by dotted names.

A run is described by one :class:`RunConfig`: a ``problem`` section and a ``model`` section, each
the config dataclass of a registered plug-in (:mod:`trajlab.registry`: ``problem.kind`` and
``model.kind`` name them, and each shows and accepts only its own fields), and the shared
``optimizer``, ``train`` and ``flow`` sections. Each field is either *static* (it decides what is
compiled: shapes, depth, optimizer kind, recording schedule) or *batched* (vmapped inside one
compiled loop: the init seed, the step size and the init scale). Runs whose static fields agree
share one compilation and one batch (see :func:`static_key`).

Conventions (DESIGN.md):
- ``train.tol`` compares the train loss as the family defines it (the built-in matrix problems:
  the *mean* squared error over the observations).
- ``model.scale`` follows the convention of the family's ``init`` (the default deep linear
  ``gaussian_e2e`` is the end-to-end scale of the published deep matrix factorization code).
- time ``t = step * optimizer.lr``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import threading
import time
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from trajlab import registry
from trajlab.errors import ConfigError, PluginError

OPTIMIZERS = (
    "gd",
    "momentum",
    "nesterov",
    "adam",
    "adagrad",
    "adadelta",
    "rmsprop",
    "normalized_gd",
    "gradient_flow",
)
FLOW_SOLVERS = ("tsit5", "dopri5", "rk4")
RECORD_SCHEDULES = ("log", "linear")
#: The plug-in sections of a RunConfig: dotted prefix -> what registers them.
SECTIONS = ("problem", "model")


#: Integer widths the engine and the store use: a field stays below the bound of where it is used.
INT32_LIMIT = 2**31  # step counters and static sizes inside the compiled loop (int32)
UINT32_LIMIT = 2**32  # jax.random.PRNGKey(seed) takes a uint32
INT64_LIMIT = 2**63  # parquet stores every integer field as int64
#: Most log-spaced recording points of a run (``train.record_points``): more than this many rows
#: per run is a trajectory no figure or table reads, and the schedule itself must stay small.
MAX_RECORD_POINTS = 10**6
#: The key :func:`to_flat` adds for a problem that reads data files (``Problem.data_files``): the
#: sha256 of their content, so a run id changes when a file does (it is derived, not a field).
DATA_DIGEST_FIELD = "data_sha256"


def require(condition: bool, field_name: str, allowed: str, value: Any) -> None:
    """Raise ``ConfigError("<field> must be <allowed>, got <value>")`` unless ``condition``: the
    one-line error of every config check (plug-in sections use it too)."""
    if not condition:
        raise ConfigError(f"{field_name} must be {allowed}, got {value!r}")


_require = require


def _require_int(value: Any, field_name: str) -> None:
    """ConfigError unless ``value`` is an integer (not a bool, not a float)."""
    require(isinstance(value, numbers.Integral) and not isinstance(value, bool), field_name, "an integer", value)


def _annotation_text(annotation: Any) -> str:
    """A field annotation as text without module prefixes: ``int | None``, ``tuple[float, ...]``."""
    text = annotation if isinstance(annotation, str) else str(annotation)
    text = text.replace("typing.", "").replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional["):-1] + " | None"
    return text.strip()


@functools.lru_cache(maxsize=512)
def _split_optional(text: str) -> tuple[str, bool]:
    """(the type without ``| None``, whether None is allowed) of an annotation text."""
    parts = [part.strip() for part in text.split("|")] if "[" not in text else None
    if parts is None:  # tuple[...] (| None): split only outside the brackets
        head, _, tail = text.rpartition("]")
        parts = [head + "]"] + [part.strip() for part in tail.split("|") if part.strip()]
    optional = "None" in parts
    rest = [part for part in parts if part != "None"]
    return (rest[0] if len(rest) == 1 else "Any"), optional


def _value_ok(value: Any, text: str) -> str | None:
    """None if ``value`` fits the annotation ``text``, else what it must be."""
    base, optional = _split_optional(text)
    if value is None:
        return None if optional or base == "Any" else "not null"
    if base == "int":
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            return "an integer"
        if not -INT64_LIMIT <= value < INT64_LIMIT:
            return "an integer in [-2^63, 2^63) (stored as int64)"
    elif base == "float":
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return "a number"
        if math.isnan(value):
            return "a number (not NaN)"
    elif base == "str":
        if not isinstance(value, str):
            return "a string"
    elif base == "bool":
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            return "true or false"
    elif base.startswith("tuple"):
        if not isinstance(value, (tuple, list)):
            return "a list"
        inner = base[len("tuple["):-1].split(",")[0].strip() if base.endswith("]") else "Any"
        if any(_value_ok(item, inner) is not None for item in value):
            return f"a list of {inner} values"
    return None


def check_field_types(section: Any, prefix: str) -> None:
    """ConfigError naming the first field of a config section whose value does not have its declared
    type (int fields must be integers that fit int64, where parquet stores them; floats not NaN;
    ``X | None`` may be null). Run on every section of a :class:`RunConfig`, plug-ins' included."""
    for name, text in _field_annotations(type(section)):
        value = getattr(section, name)
        problem = _value_ok(value, text)
        if problem is not None:
            raise ConfigError(f"{prefix}{name} must be {problem}, got {value!r}")


def ProblemConfig(kind: str = "completion", **fields_: Any) -> Any:  # noqa: N802 - reads like a class
    """The config section of problem ``kind`` (a registered problem) with ``fields_`` set."""
    return _section("problem", kind, fields_)


def ModelConfig(kind: str = "deep_linear", **fields_: Any) -> Any:  # noqa: N802 - reads like a class
    """The config section of model family ``kind`` (a registered family) with ``fields_`` set."""
    return _section("model", kind, fields_)


def section_class(section: str, kind: str) -> type:
    """The config dataclass registered as ``<section>.kind=kind``."""
    entry = registry.get_problem(kind) if section == "problem" else registry.get_family(kind)
    return entry.config


def section_kind(section: str, value: Any) -> str:
    """The registered name of a section instance (ConfigError if it is no registered section)."""
    kind = registry.kind_of(section, type(value))
    if kind is None:
        raise ConfigError(f"{section} must be the config of a registered {section} kind, got {type(value).__name__}")
    return kind


def _section(section: str, kind: str, values: dict[str, Any]) -> Any:
    cls = section_class(section, kind)
    names = {f.name for f in fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(_not_a_field(section, kind, unknown[0], cls))
    return cls(**values)


def _not_a_field(section: str, kind: str, name: str, cls: type) -> str:
    owners = [
        other for other, entry in (registry.problems() if section == "problem" else registry.families()).items()
        if name in {f.name for f in fields(entry.config)}
    ]
    where = f"; it is a field of {section}.kind={', '.join(owners)}" if owners else ""
    own = ", ".join(f.name for f in fields(cls))
    return f"{section}.{name} is not a field of {section}.kind={kind} (its fields: kind, {own}){where}"


@dataclass(frozen=True)
class OptimizerConfig:
    """The update rule. ``lr`` is the step size eta; time t = step * lr.

    ``gradient_flow`` integrates d theta/dt = -grad L(theta) with the solver of ``flow``; there
    ``lr`` is the time unit that maps steps to time, so GD and GF trajectories share the time axis.

    momentum: used by ``momentum`` and ``nesterov``. b1, b2, eps: Adam.  decay: RMSprop /
    normalized GD EMA coefficient (alpha). ``normalized_gd`` is *not* plain GD: see
    :func:`trajlab.dynamics.normalized_gd`; ``normalized_eps`` is its eps (1e-4 as in the published
    deep matrix factorization code; the hierarchical tensor factorization code uses 1e-6, which
    matters when gradients at init are far below 1e-4). batch_size: 0 for full-batch gradients; k > 0 for
    stochastic gradients on k samples drawn without replacement at every step (network problems;
    stopping and divergence look at the full train loss at the recording points only: no full
    forward pass per step, and a run that reaches train.tol stops at the next recording point).
    """

    name: str = "normalized_gd"
    lr: float = 1e-3
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    decay: float = 0.99
    batch_size: int = 0
    normalized_eps: float = 1e-4

    def __post_init__(self) -> None:
        _require(self.name in OPTIMIZERS, "optimizer.name", f"one of {OPTIMIZERS}", self.name)
        _require(self.normalized_eps > 0, "optimizer.normalized_eps", "a number > 0", self.normalized_eps)
        _require_int(self.batch_size, "optimizer.batch_size")
        _require(
            0 <= self.batch_size < INT32_LIMIT, "optimizer.batch_size", "an integer in [0, 2^31) (0: full batch)",
            self.batch_size,
        )
        _require(
            self.batch_size == 0 or self.name != "gradient_flow",
            "optimizer.batch_size",
            "0 for optimizer.name=gradient_flow",
            self.batch_size,
        )
        _require(self.lr > 0, "optimizer.lr", "a number > 0", self.lr)
        _require(0 <= self.momentum < 1, "optimizer.momentum", "a number in [0, 1)", self.momentum)
        _require(0 <= self.b1 < 1, "optimizer.b1", "a number in [0, 1)", self.b1)
        _require(0 <= self.b2 < 1, "optimizer.b2", "a number in [0, 1)", self.b2)
        _require(self.eps >= 0, "optimizer.eps", "a number >= 0", self.eps)
        _require(0 < self.decay < 1, "optimizer.decay", "a number in (0, 1)", self.decay)


@dataclass(frozen=True)
class FlowConfig:
    """Gradient flow solver (diffrax), used by ``optimizer.name=gradient_flow`` and by the
    ``distance_to_flow`` metrics.

    solver: ``tsit5`` or ``dopri5`` (adaptive, PID step-size controller with rtol / atol), or
    ``rk4`` (fixed step, dt = optimizer.lr). max_solver_steps: the most solver steps between two
    recording points (always explicit; a run that needs more is marked ``diverged``).
    """

    solver: str = "tsit5"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_solver_steps: int = 100_000

    def __post_init__(self) -> None:
        _require(self.solver in FLOW_SOLVERS, "flow.solver", f"one of {FLOW_SOLVERS}", self.solver)
        _require(self.rtol > 0, "flow.rtol", "a number > 0", self.rtol)
        _require(self.atol > 0, "flow.atol", "a number > 0", self.atol)
        _require_int(self.max_solver_steps, "flow.max_solver_steps")
        _require(
            1 <= self.max_solver_steps < INT32_LIMIT, "flow.max_solver_steps", "an integer in [1, 2^31)",
            self.max_solver_steps,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Stopping and recording.

    A run stops as ``done`` once its train loss <= tol, as ``max_steps`` after max_steps updates,
    and as ``diverged`` once its loss is non-finite or exceeds diverge_factor * max(1, loss at
    step 0). Metrics are recorded at step 0, at the recording steps, and at each run's last step.
    record = ``log``: ``record_points`` log-spaced steps in [1, max_steps] (deduplicated integers);
    ``linear``: every ``record_every`` steps.
    """

    max_steps: int = 1_000_000
    tol: float = 1e-6
    record: str = "log"
    record_points: int = 100
    record_every: int = 1000
    top_k: int = 10
    schatten_p: float = 0.5
    diverge_factor: float = 1e6
    x64: bool = False
    lanczos_iterations: int = 20
    hutchinson_probes: int = 10

    def __post_init__(self) -> None:
        for name in ("max_steps", "record_points", "record_every", "top_k", "lanczos_iterations", "hutchinson_probes"):
            _require_int(getattr(self, name), f"train.{name}")
        # Step and gradient-evaluation counters are int32 inside the compiled loop; a run that goes
        # to max_steps evaluates its gradient max_steps + 1 times.
        _require(
            1 <= self.max_steps < INT32_LIMIT - 1, "train.max_steps",
            "an integer in [1, 2^31 - 2] (int32 step and evaluation counters)", self.max_steps,
        )
        _require(self.tol >= 0, "train.tol", "a number >= 0", self.tol)
        _require(self.record in RECORD_SCHEDULES, "train.record", f"one of {RECORD_SCHEDULES}", self.record)
        _require(
            1 <= self.record_points <= MAX_RECORD_POINTS, "train.record_points",
            f"an integer in [1, {MAX_RECORD_POINTS}] (log-spaced recording points)", self.record_points,
        )
        _require(
            1 <= self.record_every < INT32_LIMIT, "train.record_every", "an integer in [1, 2^31) (int32 step counters)",
            self.record_every,
        )
        _require(1 <= self.top_k < INT32_LIMIT, "train.top_k", "an integer in [1, 2^31)", self.top_k)
        _require(0 < self.schatten_p <= 1, "train.schatten_p", "a number in (0, 1]", self.schatten_p)
        _require(self.diverge_factor > 1, "train.diverge_factor", "a number > 1", self.diverge_factor)
        _require(
            2 <= self.lanczos_iterations < INT32_LIMIT, "train.lanczos_iterations", "an integer in [2, 2^31)",
            self.lanczos_iterations,
        )
        _require(
            1 <= self.hutchinson_probes < INT32_LIMIT, "train.hutchinson_probes", "an integer in [1, 2^31)",
            self.hutchinson_probes,
        )


@dataclass(frozen=True)
class RunConfig:
    """One run: a problem section, a model section, optimizer, training, flow, the init ``seed``
    and the recorded ``metrics`` (None: the family's defaults)."""

    problem: Any = field(default_factory=lambda: ProblemConfig())
    model: Any = field(default_factory=lambda: ModelConfig())
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    seed: int = 0
    metrics: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        require(
            isinstance(self.seed, numbers.Integral) and not isinstance(self.seed, bool) and 0 <= self.seed < UINT32_LIMIT,
            "seed", "an integer in [0, 2^32) (jax.random.PRNGKey takes a uint32)", self.seed,
        )
        problem_kind = section_kind("problem", self.problem)
        kind = section_kind("model", self.model)
        for name in ("problem", "model", "optimizer", "train", "flow"):
            check_field_types(getattr(self, name), f"{name}.")
        family = registry.get_family(kind)
        solved = registry.problems_of(family)
        require(problem_kind in solved, "problem.kind", f"one of {solved} for model.kind={kind}", problem_kind)
        scale = getattr(self.model, "scale")
        require(
            isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0, "model.scale", "a number > 0", scale
        )
        if self.metrics is None:
            object.__setattr__(self, "metrics", family.default_metrics)
        elif not isinstance(self.metrics, tuple):
            object.__setattr__(self, "metrics", tuple(self.metrics))
        known = metric_names(kind)
        unknown = [m for m in self.metrics if m not in known]
        require(not unknown, "metrics", f"a list drawn from {known} for model.kind={kind}", unknown)
        if family.check is not None:
            family.check(self)


_SHARED_SECTIONS = {"optimizer": OptimizerConfig, "train": TrainConfig, "flow": FlowConfig}
# Fields vmapped inside one compiled batch; every other field is static.
BATCHED_FIELDS = ("seed", "optimizer.lr", "model.scale")


def metric_names(kind: str) -> tuple[str, ...]:
    """Every metric a run of family ``kind`` may record: the family's own, its final metrics and
    the generic ones (:data:`trajlab.registry.GENERIC_METRICS`)."""
    family = registry.get_family(kind)
    names = list(family.metrics) + list(family.final_metrics)
    return tuple(names + [m for m in registry.GENERIC_METRICS if m not in names])


def _section_fields(section: str) -> dict[str, str]:
    """{field name: annotation text} over every registered config class of ``section``."""
    entries = registry.problems() if section == "problem" else registry.families()
    out: dict[str, str] = {"kind": "str"}
    for entry in entries.values():
        for f in fields(entry.config):
            out.setdefault(f.name, str(f.type))
            if str(f.type).startswith("tuple"):
                out[f.name] = str(f.type)
    return out


def field_names(config: Any = None) -> list[str]:
    """Dotted names of the fields of ``config`` (default: every field of every registered section,
    i.e. what ``--set`` may name)."""
    if config is not None:
        return list(to_flat(config))
    names = []
    for f in fields(RunConfig):
        if f.name in SECTIONS:
            names.extend(f"{f.name}.{name}" for name in _section_fields(f.name))
        elif f.name in _SHARED_SECTIONS:
            names.extend(f"{f.name}.{g.name}" for g in fields(_SHARED_SECTIONS[f.name]))
        else:
            names.append(f.name)
    return names


def list_fields() -> set[str]:
    """Dotted names of tuple-typed fields (in any registered section): for these a list is the
    value, not a sweep."""
    out = {"metrics"}
    for section in SECTIONS:
        out |= {f"{section}.{name}" for name, text in _section_fields(section).items() if text.startswith("tuple")}
    for section, cls in _SHARED_SECTIONS.items():
        out |= {f"{section}.{f.name}" for f in fields(cls) if str(f.type).startswith("tuple")}
    return out


def to_flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config tree to ``{dotted.name: value}`` (tuples become lists; a plug-in section,
    in a RunConfig or alone, starts with its ``kind``)."""
    out: dict[str, Any] = {}
    if prefix == "" and not isinstance(config, RunConfig):
        kind = registry.kind_of("problem", type(config)) or registry.kind_of("model", type(config))
        if kind is not None:
            out["kind"] = kind
    for f in fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if prefix == "" and f.name in SECTIONS:
            out[f"{name}.kind"] = section_kind(f.name, value)
            out.update(to_flat(value, name + "."))
        elif is_dataclass(value):
            out.update(to_flat(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    if not isinstance(config, RunConfig) and registry.kind_of("problem", type(config)) is not None and data_files(config):
        out[f"{prefix}{DATA_DIGEST_FIELD}"] = data_digest(config)  # derived: the run id follows the content
    return out


_DIGESTS: dict[tuple, str] = {}
_DIGESTS_LOCK = threading.Lock()


def data_files(section: Any) -> tuple[str, ...]:
    """The data files a problem section reads (its registered ``Problem.data_files``; () for
    problems that draw or bundle their data)."""
    kind = registry.kind_of("problem", type(section))
    if kind is None:
        return ()
    hook = registry.get_problem(kind).data_files
    if hook is None:
        return ()
    try:
        files = hook(section)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a plug-in's hook that fails is named
        raise PluginError(f"problem {kind!r}: data_files(config) failed: {type(error).__name__}: {error}") from None
    return tuple(os.fspath(f) for f in (files or ()))


def file_digest(path: str) -> str | None:
    """sha256 (hex) of a file's content; None if it cannot be read. Cached by (path, device,
    inode, size, mtime, ctime), so a file that changes is hashed again (a file modified in the
    last two seconds is hashed every time)."""
    try:
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    except (OSError, ValueError):
        return None
    with _DIGESTS_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (OSError, ValueError):
        return None
    value = digest.hexdigest()
    # A file modified within the file system's timestamp granularity of now could change again
    # without changing its stat: cache only files older than that (as git does for its index).
    if time.time() - stat.st_mtime > 2.0:
        with _DIGESTS_LOCK:
            if len(_DIGESTS) > 1024:
                _DIGESTS.clear()
            _DIGESTS[key] = value
    return value


def data_digest(section: Any) -> str | None:
    """The content hash of a problem section's data files (:func:`data_files`): the sha256 of the
    file, or of the files' digests in order; None if the problem reads no files or one cannot be
    read. :func:`to_flat` records it as ``problem.data_sha256``, so it is part of the run id."""
    files = data_files(section)
    digests = [file_digest(path) for path in files]
    if not files or any(d is None for d in digests):
        return None
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _check_digest(section: Any, recorded: Any) -> None:
    """A config rebuilt from a flat dict with ``data_sha256``: the files must still be those."""
    if recorded is None:
        return
    current = data_digest(section)
    if current != recorded:
        files = ", ".join(repr(f) for f in data_files(section)) or "(none)"
        now = f"now {current[:12]}" if current else "now unreadable"
        raise ConfigError(
            f"problem.{DATA_DIGEST_FIELD}: the data file {files} changed since this config was recorded "
            f"(sha256 {str(recorded)[:12]}, {now}); run the sweep again to use the new data"
        )


def from_flat(flat: dict[str, Any]) -> RunConfig:
    """Inverse of :func:`to_flat` (missing fields take their defaults)."""
    return replace_dotted(RunConfig(), flat)


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert a parsed value to the field's declared type, or raise ConfigError."""
    text = _annotation_text(annotation)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{name} must not be null")
    base, optional = _split_optional(text)
    if optional and base != "Any":  # a value of an optional field: coerce to the type it has when set
        text = annotation = base
    if annotation is bool or text == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if text.startswith("int") or annotation is int or text == "<class 'int'>":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # exactly, however large (a float would round it)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or float(value) != int(value)
        ):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if annotation is float or text in ("float", "<class 'float'>"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str or text in ("str", "<class 'str'>"):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if text.startswith("tuple"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        if "float" in text:
            try:
                parsed = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a list of numbers, got {value!r}") from None
            if not all(math.isfinite(v) for v in parsed):
                raise ConfigError(f"{name} must be a list of finite numbers, got {value!r}")
            return parsed
        if "int" in text:
            return tuple(_coerce(v, int, name) for v in value)
        return tuple(value)
    return value


@functools.lru_cache(maxsize=256)
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a config class (cached: a class's annotations do not change)."""
    try:
        return get_type_hints(cls)
    except Exception:  # noqa: BLE001 - annotations a user's module cannot resolve: use their text
        return {f.name: f.type for f in fields(cls)}


@functools.lru_cache(maxsize=256)
def _field_annotations(cls: type) -> tuple[tuple[str, str], ...]:
    hints = _hints(cls)
    return tuple((f.name, _annotation_text(hints.get(f.name, f.type))) for f in fields(cls))


def _replace_section(config: RunConfig, section: str, updates: dict[str, Any]) -> tuple[Any, bool]:
    """The ``section`` of ``config`` with ``updates``; a new ``kind`` starts from that kind's defaults
    and carries over the fields both kinds have that were set away from the old kind's defaults.
    Returns (section, kind changed)."""
    current = getattr(config, section)
    kind = section_kind(section, current)
    updates = dict(updates)
    changed = False
    if "kind" in updates:
        new_kind = _coerce(updates.pop("kind"), str, f"{section}.kind")
        if new_kind != kind:
            cls = section_class(section, new_kind)
            defaults = type(current)()
            shared = {f.name for f in fields(cls)} & {f.name for f in fields(type(current))}
            carried = {
                name: getattr(current, name) for name in shared
                if name not in updates and getattr(current, name) != getattr(defaults, name)
            }
            kind, changed = new_kind, True
        else:
            cls, carried = type(current), None
    else:
        cls, carried = type(current), None
    names = {f.name for f in fields(cls)}
    hints = _hints(cls)
    coerced = {}
    for name, value in updates.items():
        if name not in names:
            raise ConfigError(_not_a_field(section, kind, name, cls))
        coerced[name] = _coerce(value, hints.get(name, Any), f"{section}.{name}")
    if carried is None:
        return (dataclasses.replace(current, **coerced) if coerced else current), False
    return cls(**carried, **coerced), changed


def replace_dotted(config: Any, updates: dict[str, Any]) -> Any:
    """Return ``config`` with fields set by dotted name; unknown names raise ConfigError.

    ``problem.kind`` / ``model.kind`` switch the section to that kind's config class, keeping the
    values of the fields both kinds share that were set away from the old kind's defaults; a new model kind whose metrics are not given records its
    own defaults when the config recorded the old family's defaults.
    """
    if not isinstance(config, RunConfig):
        return _replace_plain(config, updates)
    updates = dict(updates)
    digest_key = f"problem.{DATA_DIGEST_FIELD}"
    recorded = updates.pop(digest_key, None)  # derived (see to_flat): checked, not set
    result = _replace_dotted(config, updates)
    _check_digest(result.problem, recorded)
    return result


def _replace_dotted(config: RunConfig, updates: dict[str, Any]) -> RunConfig:
    known = set(field_names())
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in known:
            raise ConfigError(f"unknown config field {key!r}; see `trajlab config PRESET` for the fields")
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    hints = _hints(RunConfig)
    kwargs: dict[str, Any] = {}
    for name, value in direct.items():
        kwargs[name] = _coerce(value, hints[name], name)
    for head, sub in nested.items():
        if head in SECTIONS:
            kwargs[head], changed = _replace_section(config, head, sub)
            if head == "model" and changed and "metrics" not in kwargs:
                old = registry.get_family(section_kind("model", config.model))
                if tuple(config.metrics) == tuple(old.default_metrics):
                    kwargs["metrics"] = None
            continue
        child = getattr(config, head)
        child_hints = _hints(type(child))
        coerced = {k: _coerce(v, child_hints[k], f"{head}.{k}") for k, v in sub.items()}
        kwargs[head] = dataclasses.replace(child, **coerced)
    return dataclasses.replace(config, **kwargs)


def _replace_plain(config: Any, updates: dict[str, Any]) -> Any:
    """replace_dotted for a single section (e.g. a TrainConfig): ``{field: value}``."""
    names = {f.name for f in fields(config)}
    hints = _hints(type(config))
    updates = dict(updates)
    recorded = updates.pop(DATA_DIGEST_FIELD, None)
    for key in updates:
        if key not in names:
            raise ConfigError(f"unknown config field {key!r}")
    result = dataclasses.replace(config, **{k: _coerce(v, hints.get(k, Any), k) for k, v in updates.items()})
    if registry.kind_of("problem", type(result)) is not None:
        _check_digest(result, recorded)
    return result


# The flat config of trajlab 0.1 (one ProblemConfig / ModelConfig class for every kind) at its
# defaults. A config whose fields all existed then hashes as it did then (its flat dict laid over
# these defaults), so the run ids, and the resume, of sweep folders written by 0.1 survive.
_V1_DEFAULTS: dict[str, Any] = {
    "problem.kind": "completion", "problem.m": 100, "problem.n": 100, "problem.rank": 5,
    "problem.observations": 2000, "problem.seed": 0, "problem.p": 2.0, "problem.dataset": "synthetic",
    "problem.path": None, "problem.target_singular_values": [], "problem.loss_convention": "mean",
    "problem.order": 4, "problem.dim": 10, "problem.target": "cp", "problem.loss": "cross_entropy",
    "problem.teacher_width": 50, "problem.test_samples": 0,
    "model.depth": 3, "model.width": None, "model.init": "gaussian_e2e", "model.scale": 0.001,
    "model.parameterization": "factorized", "model.condition": "none", "model.kind": "deep_linear",
    "model.core": "product", "model.activation": "relu", "model.bias": False,
    "optimizer.name": "normalized_gd", "optimizer.lr": 0.001, "optimizer.momentum": 0.9, "optimizer.b1": 0.9,
    "optimizer.b2": 0.999, "optimizer.eps": 1e-08, "optimizer.decay": 0.99, "optimizer.batch_size": 0,
    "optimizer.normalized_eps": 0.0001,
    "train.max_steps": 1000000, "train.tol": 1e-06, "train.record": "log", "train.record_points": 100,
    "train.record_every": 1000, "train.top_k": 10, "train.schatten_p": 0.5, "train.diverge_factor": 1000000.0,
    "train.x64": False, "train.lanczos_iterations": 20, "train.hutchinson_probes": 10,
    "flow.solver": "tsit5", "flow.rtol": 1e-06, "flow.atol": 1e-09, "flow.max_solver_steps": 100000,
    "seed": 0,
    "metrics": ["train_loss", "test_error", "singular_values", "effective_rank", "nuclear_norm",
                "schatten_quasi_norm", "frobenius_norm", "balancedness", "balancedness_relative",
                "distance_from_init"],
}
# Fields 0.1 added after its first release: left out of its hash while at their defaults.
_V1_LATER_FIELDS = (
    "problem.order", "problem.dim", "problem.target", "problem.loss", "problem.teacher_width",
    "problem.test_samples", "model.kind", "model.core", "model.activation", "model.bias",
    "optimizer.batch_size", "optimizer.normalized_eps", "train.lanczos_iterations", "train.hutchinson_probes",
)


def id_fields(config: Any) -> dict[str, Any]:
    """What :func:`run_id` hashes: the flat config, laid over trajlab 0.1's defaults when every
    field it has existed in 0.1 (so 0.1's ids are kept), fields added later omitted at their defaults."""
    flat = config if isinstance(config, dict) else to_flat(config)
    if not set(flat) <= set(_V1_DEFAULTS):
        return dict(flat)
    full = {**_V1_DEFAULTS, **flat}
    for name in _V1_LATER_FIELDS:
        if full[name] == _V1_DEFAULTS[name]:
            del full[name]
    return full


def run_id(config: Any) -> str:
    """A stable 16-hex-digit hash of the whole config (sorted JSON of :func:`id_fields`); accepts a
    RunConfig or its flat dict."""
    text = json.dumps(id_fields(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def static_key(config: RunConfig) -> tuple:
    """Everything except the batched fields: runs with equal keys share one compiled batch."""
    flat = to_flat(config)
    return tuple(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(flat.items()) if k not in BATCHED_FIELDS
    )
