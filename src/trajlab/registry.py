"""The plug-in registry: model families and problems by name, the one door for built-ins and users alike.

A **problem** (``problem.kind``) is a frozen, validated config section and ``data(section) ->
pytree of arrays``. A **family** (``model.kind``) is a frozen, validated config section (with a
float field ``scale``: the batched init scale), the problem kinds it solves, named metrics, and
``build(run_config) -> FamilyParts`` (init, loss, and optionally a preconditioner, its own update
rule, minibatch draws and a metric context). The built-in families and problems
(:mod:`trajlab.families`) are registered with the same :func:`register_family` /
:func:`register_problem` calls a user makes in a file or a notebook::

    @trajlab.problem("psd_sensing", config=PSDSensing)
    def psd_sensing(config): ...            # -> data pytree

    @trajlab.family("symmetric", config=Symmetric, problems=("psd_sensing",),
                    metrics={"effective_rank": lambda ctx: ...})
    def symmetric(config):                   # config: the whole RunConfig
        return trajlab.FamilyParts(init=..., loss=...)

Registering checks the contract and raises a one-line :class:`~trajlab.errors.PluginError`
naming the plug-in: a name registered twice, a config section that is not a frozen dataclass
with defaults, a reserved or clashing field name, a model section without ``scale``. What can only
be checked by running (init returns a pytree of arrays, the loss is a scalar, metrics have the
right shapes) is checked by :func:`trajlab.engine.check_family` before any run of a sweep starts.

Where a plug-in comes from (:attr:`Family.origin`) is recorded so that remote workers (Dask,
SLURM) can import it: an importable module by name, or the file it was loaded from by path.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import keyword
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from trajlab.errors import PluginError

#: Field names a config section may not use: ``kind`` is the section's registry name;
#: ``data_sha256`` the content hash of a problem's data files (see :attr:`Problem.data_files`).
RESERVED_FIELDS = ("kind", "data_sha256")
#: Field types a section may use (what ``--set`` can parse and parquet can store).
_FIELD_TYPES = ("int", "float", "str", "bool", "tuple", "None")


@dataclass(frozen=True)
class FamilyParts:
    """What a family builds for one static config (everything the engine needs of the model).

    - ``init(key, scale) -> params``: any pytree of float arrays; ``key`` is
      ``jax.random.PRNGKey(config.seed)``, ``scale`` is ``model.scale`` (both batched: vmapped
      across the runs of a batch, so use them as traced values). Make the arrays in the run's
      precision: float64 when ``config.train.x64``, else float32 (``trajlab.init_params(config)``
      returns what the engine draws).
    - ``loss(params, data) -> scalar``: the training objective (the stopping rule compares it with
      ``train.tol``).
    - ``precondition(params, grads) -> field``: the field F of the flow d theta/dt = -F (None:
      F = grads); gradient flow and ``distance_to_flow`` integrate it.
    - ``optimizer``: a unit-step optax rule that replaces the config's (the engine applies
      params + lr * update); None: from ``config.optimizer``.
    - ``minibatch(data, key) -> data``: the samples of one stochastic step (used when
      ``optimizer.batch_size`` > 0; a family without it refuses batch_size > 0).
    - ``context(params, initial, reference, data) -> MetricContext``: the object the metrics
      receive (None: a plain :class:`trajlab.metrics.generic.MetricContext`); a family passes a subclass
      to share derived quantities (e.g. the end-to-end matrix) between its metrics.
    - ``predict(params, data, split) -> outputs`` and ``output_loss(outputs, data) -> scalar``
      (optional, together): the model's outputs on the ``"train"`` or ``"test"`` inputs of ``data``
      (an array whose first axis is the samples; zero rows when the problem has no test split),
      and the training loss of the train outputs, so that ``loss(params, data) ==
      output_loss(predict(params, data, "train"), data)``. With them the engine can carry the
      run's linearization at init, f_lin(x; w) = f(x; w0) + J(w0)(w - w0), beside the run (the
      ``linearization`` metric, :mod:`trajlab.metrics.linearization`); without them that metric is
      refused with a one-line error. ``data`` may be a minibatch (``minibatch``).
    """

    init: Callable[[Any, Any], Any]
    loss: Callable[[Any, Any], Any]
    precondition: Callable[[Any, Any], Any] | None = None
    optimizer: Any = None
    minibatch: Callable[[Any, Any], Any] | None = None
    context: Callable[..., Any] | None = None
    predict: Callable[[Any, Any, str], Any] | None = None
    output_loss: Callable[[Any, Any], Any] | None = None


@dataclass(frozen=True)
class Problem:
    """A problem kind: ``config`` (a frozen dataclass of its fields, validated in ``__post_init__``)
    and ``data(section) -> pytree`` (numpy or JAX arrays; floats are cast to the run's precision).

    ``loss(section) -> loss(output, data)`` (optional): the loss of a model's *output* on this
    problem, for families that produce an output and leave the objective to the problem (the deep
    linear family calls it with the end-to-end matrix). Registering sets ``config.kind`` to the
    name (a class attribute, so ``config.problem.kind`` reads it).

    Optional hooks for the checks made before any run (see :mod:`trajlab.engine.memory`):

    - ``nbytes(section) -> int``: the host memory (bytes) that ``data(section)`` needs at its
      peak, computed from the fields *without* drawing or loading the data; without it the data's
      size is unknown to the memory check (counted as 0).
    - ``families``: the families that solve it besides those whose ``problems`` name it.
    - ``data_files(section) -> sequence of paths``: the files ``data`` reads. Their content hash
      becomes part of the run id (``problem.data_sha256`` in :func:`trajlab.config.to_flat`), so
      a file that changes gives new runs, never stale ones; and ``data(section)`` is called before
      a sweep writes anything, so a bad file is a one-line error that leaves no folder behind.
    """

    name: str
    config: type
    data: Callable[[Any], Any]
    loss: Callable[[Any], Callable[[Any, Any], Any]] | None = None
    description: str = ""
    origin: str | None = None
    nbytes: Callable[[Any], int] | None = None
    data_files: Callable[[Any], Any] | None = None
    #: Families (``model.kind`` names) that solve this problem besides those whose own
    #: ``problems`` name it: a new problem for an existing family (e.g. a matrix problem with a
    #: ``loss`` of the end-to-end matrix for ``deep_linear``) is a new module and nothing else.
    families: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A model family (``model.kind``).

    - ``config``: a frozen dataclass of the family's own fields (validated in ``__post_init__``),
      among them ``scale: float`` (the init scale, batched like seed and step size).
    - ``problems``: the problem kinds it solves.
    - ``build(config) -> FamilyParts``: ``config`` is the whole :class:`~trajlab.config.RunConfig`.
    - ``metrics``: ``{name: metric(ctx)}`` where ``ctx`` is the :class:`~trajlab.metrics.generic.MetricContext`
      (or the family's subclass, see :attr:`FamilyParts.context`); a metric returns a scalar, a 1-D
      array (columns ``prefix_i``, prefix from ``columns`` or the name) or ``{column: scalar}``.
      They add to (and may refine) the generic metrics of :data:`trajlab.registry.GENERIC_METRICS`.
    - ``default_metrics``: recorded when the config names none.
    - ``final_metrics``: ``{name: metric(params, data, config) -> float or {column: float}}``,
      computed on the host once per run from its final parameters (numpy float64), stored as
      ``final.<column>`` only.
    - ``check(config)``: cross-section rules (raise :class:`~trajlab.errors.ConfigError` naming the
      field), run when a RunConfig of this family is made.
    - ``flow_metrics``: the family's metrics that read ``ctx.reference`` (the gradient flow from the
      run's own init): naming one makes the engine carry that flow beside the run.
    - ``nbytes(config) -> int`` (optional): the memory (bytes) of one run's parameters plus its
      per-step working memory (intermediates of the loss, its gradient and the metrics: e.g. the
      end-to-end product, activations) in the run's precision, before batching, computed from the
      fields without allocating. The engine adds the copies of the parameters it keeps (initial
      parameters, optimizer state, gradient and update, reference flow; measured with
      ``jax.eval_shape`` of init) and multiplies by the batch size (:mod:`trajlab.engine.memory`).
      Without it the engine counts the parameters (``jax.eval_shape`` of init, nothing allocated)
      twice and the working memory is unknown.

    Registering sets ``config.kind`` to the name (a class attribute: ``config.model.kind`` reads it).
    """

    name: str
    config: type
    problems: tuple[str, ...]
    build: Callable[[Any], FamilyParts]
    metrics: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    default_metrics: tuple[str, ...] = ("train_loss",)
    final_metrics: Mapping[str, Callable[[Any, Any, Any], Any]] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None
    flow_metrics: tuple[str, ...] = ()
    description: str = ""
    origin: str | None = None
    nbytes: Callable[[Any], int] | None = None


#: Metrics every family records without writing them (:mod:`trajlab.metrics.generic`): train loss,
#: gradient and parameter norms, distances from the init and to the reference gradient flow,
#: curvature (Lanczos / Hutchinson over any params pytree), spectra of matrix-shaped leaves, the
#: relative weight change and the distances to the run's linearization at init.
GENERIC_METRICS = (
    "train_loss",
    "gradient_norm",
    "parameter_norm",
    "distance_from_init",
    "distance_to_flow",
    "sharpness",
    "hessian_eigenvalues",
    "hessian_trace",
    "leaf_singular_values",
    "leaf_effective_ranks",
    "relative_weight_change",
    "linearization",
    "hessian_density",
    "hessian_trace_suite",
    "gauss_newton_sharpness",
    "preconditioned_sharpness",
    "r_med",
    "leaf_sharpness",
    "edge_eigenvalues",
    "edge_tracking",
)
#: Generic metrics that read the reference gradient flow carried beside each run.
GENERIC_FLOW_METRICS = ("distance_to_flow",)
#: Generic metrics that read the linearization at init carried beside each run (they need
#: :attr:`FamilyParts.predict` and :attr:`FamilyParts.output_loss`).
GENERIC_LINEARIZATION_METRICS = ("linearization",)

_FAMILIES: dict[str, Family] = {}
_PROBLEMS: dict[str, Problem] = {}
_LOCK = threading.RLock()
_BUILTINS_LOADED = False


def load_builtins() -> None:
    """Register the built-in families and problems (imports :mod:`trajlab.families` once)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _LOCK:
        if _BUILTINS_LOADED:
            return
        _BUILTINS_LOADED = True
        try:
            importlib.import_module("trajlab.families")
        except BaseException:
            _BUILTINS_LOADED = False
            raise


def _origin_of(obj: Any) -> str | None:
    """Where a plug-in's code lives, for remote workers: ``module:NAME@PATH`` (PATH may be empty)."""
    module = inspect.getmodule(obj)
    if module is None:
        return None
    name = module.__name__
    path = getattr(module, "__file__", None) or ""
    return f"{name}@{path}"


def _field_type_ok(annotation: Any) -> bool:
    """Whether an annotation (a type, or its text under ``from __future__ import annotations``)
    names only int, float, str, bool, tuple, ``...`` and None: what ``--set`` parses and parquet stores."""
    text = annotation if isinstance(annotation, str) else str(annotation)
    text = text.replace("typing.", "").replace("<class '", "").replace("'>", "")
    parts = [p.strip() for p in text.replace("Optional[", "").replace("]", "").replace("|", ",").replace("[", ",").split(",")]
    return all(p in _FIELD_TYPES or p == "..." or p == "NoneType" for p in parts if p)


def check_section(cls: Any, what: str, *, needs_scale: bool) -> None:
    """A config section's contract: a frozen dataclass whose fields all have defaults, simple types
    and no reserved names (raises PluginError naming ``what``)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise PluginError(f"{what}: config must be a dataclass class, got {cls!r}")
    if not cls.__dataclass_params__.frozen:
        raise PluginError(f"{what}: config {cls.__name__} must be frozen (@dataclass(frozen=True))")
    names = []
    for f in dataclasses.fields(cls):
        names.append(f.name)
        if f.name in RESERVED_FIELDS:
            raise PluginError(f"{what}: config field {f.name!r} clashes with the built-in field {f.name!r} (the registered name)")
        if f.name.startswith("_") or not f.name.isidentifier() or keyword.iskeyword(f.name):
            raise PluginError(f"{what}: config field {f.name!r} must be a public identifier")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PluginError(f"{what}: config field {f.name!r} needs a default value")
        if not _field_type_ok(f.type):
            raise PluginError(
                f"{what}: config field {f.name!r} has type {f.type!r}; allowed: int, float, str, bool, "
                "tuple[...] of those, or X | None"
            )
    if needs_scale:
        scale = next((f for f in dataclasses.fields(cls) if f.name == "scale"), None)
        if scale is None or "float" not in str(scale.type):
            raise PluginError(f"{what}: config {cls.__name__} needs a field 'scale: float' (the batched init scale)")
    try:
        cls()
    except Exception as error:  # noqa: BLE001 - any failure of the defaults is the plug-in's
        raise PluginError(f"{what}: config {cls.__name__}() with its defaults fails: {error}") from None


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise PluginError(f"{what}: name must be a non-empty string of letters, digits, _ and -, got {name!r}")


def kind_of(section: str, cls: type) -> str | None:
    """The name under which ``cls`` is registered as a ``section`` ("problem" or "model") config."""
    load_builtins()
    table = _PROBLEMS if section == "problem" else _FAMILIES
    name = getattr(cls, "kind", None)
    if isinstance(name, str) and name in table and table[name].config is cls:
        return name
    for name, entry in table.items():
        if entry.config is cls:
            return name
    return None


def _check_class_unique(table: dict, name: str, cls: type, what: str) -> None:
    for other, entry in table.items():
        if other != name and entry.config is cls:
            raise PluginError(f"{what}: config {cls.__name__} is already the config of {other!r}; give each kind its own class")


def register_problem(problem: Problem, *, replace: bool = False) -> Problem:
    """Register a problem kind (``problem.kind=NAME``). ``replace=True`` allows redefining a name
    (e.g. re-running a notebook cell); otherwise a second registration is an error."""
    _check_name(problem.name, "problem")
    what = f"problem {problem.name!r}"
    check_section(problem.config, what, needs_scale=False)
    if not callable(problem.data):
        raise PluginError(f"{what}: data must be a function data(config) -> pytree of arrays")
    for hook in ("nbytes", "data_files"):
        if getattr(problem, hook) is not None and not callable(getattr(problem, hook)):
            raise PluginError(f"{what}: {hook} must be a function of the problem's config section, or None")
    if isinstance(problem.families, str) or not all(isinstance(f, str) and f for f in problem.families):
        raise PluginError(f"{what}: families must be a tuple of family names (model.kind), got {problem.families!r}")
    problem = dataclasses.replace(problem, families=tuple(problem.families))
    with _LOCK:
        _check_class_unique(_PROBLEMS, problem.name, problem.config, what)
        if problem.origin is None:
            problem = dataclasses.replace(problem, origin=_origin_of(problem.data))
        old = _PROBLEMS.get(problem.name)
        if old is not None and not replace and old.origin != problem.origin:
            raise PluginError(f"{what}: a problem is already registered under this name (from {old.origin})")
        problem.config.kind = problem.name
        _PROBLEMS[problem.name] = problem
    return problem


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Register a model family (``model.kind=NAME``); see :class:`Family` for the contract."""
    _check_name(family.name, "family")
    what = f"family {family.name!r}"
    check_section(family.config, what, needs_scale=True)
    if not callable(family.build):
        raise PluginError(f"{what}: build must be a function build(config) -> FamilyParts")
    if family.nbytes is not None and not callable(family.nbytes):
        raise PluginError(f"{what}: nbytes must be a function nbytes(config) -> int, or None")
    if isinstance(family.problems, str) or not family.problems:
        raise PluginError(f"{what}: problems must be a non-empty tuple of problem kinds")
    for name, function in {**dict(family.metrics), **dict(family.final_metrics)}.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"{what}: metric name {name!r} must be an identifier")
        if not callable(function):
            raise PluginError(f"{what}: metric {name!r} must be callable")
    clash = sorted(set(family.metrics) & set(family.final_metrics))
    if clash:
        raise PluginError(f"{what}: {clash} named both as a trajectory metric and a final metric")
    family = dataclasses.replace(
        family,
        problems=tuple(family.problems),
        default_metrics=tuple(family.default_metrics),
        origin=family.origin or _origin_of(family.build),
    )
    with _LOCK:
        _check_class_unique(_FAMILIES, family.name, family.config, what)
        old = _FAMILIES.get(family.name)
        if old is not None and not replace and old.origin != family.origin:
            raise PluginError(f"{what}: a family is already registered under this name (from {old.origin})")
        family.config.kind = family.name
        _FAMILIES[family.name] = family
    return family


def family(
    name: str,
    *,
    config: type,
    problems: tuple[str, ...],
    metrics: Mapping[str, Callable] | None = None,
    default_metrics: tuple[str, ...] = ("train_loss",),
    final_metrics: Mapping[str, Callable] | None = None,
    columns: Mapping[str, str] | None = None,
    check: Callable | None = None,
    flow_metrics: tuple[str, ...] = (),
    description: str = "",
    replace: bool = False,
    nbytes: Callable | None = None,
):
    """Decorator form of :func:`register_family`: decorates ``build(config) -> FamilyParts``."""

    def decorate(build):
        register_family(
            Family(
                name, config, tuple(problems), build, dict(metrics or {}), tuple(default_metrics),
                dict(final_metrics or {}), dict(columns or {}), check, tuple(flow_metrics),
                description or (inspect.getdoc(build) or "").split("\n")[0], nbytes=nbytes,
            ),
            replace=replace,
        )
        return build

    return decorate


def problem(
    name: str,
    *,
    config: type,
    loss: Callable | None = None,
    description: str = "",
    replace: bool = False,
    nbytes: Callable | None = None,
    data_files: Callable | None = None,
    families: tuple[str, ...] = (),
):
    """Decorator form of :func:`register_problem`: decorates ``data(config) -> pytree``."""

    def decorate(data):
        register_problem(
            Problem(
                name, config, data, loss, description or (inspect.getdoc(data) or "").split("\n")[0],
                nbytes=nbytes, data_files=data_files, families=tuple(families),
            ),
            replace=replace,
        )
        return data

    return decorate


def get_family(name: str) -> Family:
    load_builtins()
    if name not in _FAMILIES:
        from trajlab.errors import ConfigError

        raise ConfigError(f"model.kind must be one of {tuple(_FAMILIES)} (registered families), got {name!r}")
    return _FAMILIES[name]


def get_problem(name: str) -> Problem:
    load_builtins()
    if name not in _PROBLEMS:
        from trajlab.errors import ConfigError

        raise ConfigError(f"problem.kind must be one of {tuple(_PROBLEMS)} (registered problems), got {name!r}")
    return _PROBLEMS[name]


def families() -> dict[str, Family]:
    """The registered families by name (built-ins first)."""
    load_builtins()
    return dict(_FAMILIES)


def problems() -> dict[str, Problem]:
    """The registered problems by name (built-ins first)."""
    load_builtins()
    return dict(_PROBLEMS)


def problems_of(family: "Family | str") -> tuple[str, ...]:
    """The problem kinds a family solves: its own ``problems``, then every registered problem whose
    ``families`` names it."""
    family = get_family(family) if isinstance(family, str) else family
    extra = tuple(name for name, entry in problems().items() if family.name in entry.families and name not in family.problems)
    return tuple(family.problems) + extra


def unregister(name: str, *, kind: str = "family") -> None:
    """Remove a registered family (``kind="family"``) or problem (``kind="problem"``): for tests and notebooks."""
    with _LOCK:
        (_FAMILIES if kind == "family" else _PROBLEMS).pop(name, None)


# --- loading plug-ins from files or modules -------------------------------------------------------

_LOADED_FILES: dict[str, Any] = {}


def load_file(path: str | Path, module_name: str | None = None):
    """Import a Python file as a module (its registrations run); the same file is loaded once.

    The module is named ``module_name`` (default ``trajlab_user_<stem>_<hash of the path>``) and
    put in ``sys.modules`` so that its classes pickle by reference within this process.
    """
    import hashlib

    resolved = Path(path).expanduser().resolve()
    key = str(resolved)
    if key in _LOADED_FILES:
        return _LOADED_FILES[key]
    for module in list(sys.modules.values()):  # already imported by name: the same registrations
        file = getattr(module, "__file__", None)
        if file and module_name is None and Path(file).resolve() == resolved:
            _LOADED_FILES[key] = module
            return module
    if not resolved.is_file():
        raise PluginError(f"{path}: no such file")
    if module_name is None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
        module_name = f"trajlab_user_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except PluginError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as error:
        sys.modules.pop(module_name, None)
        first = str(error).splitlines()[0] if str(error) else ""
        raise PluginError(f"{path}: importing it failed: {type(error).__name__}: {first}") from error
    _LOADED_FILES[key] = module
    return module


def import_origin(origin: str) -> None:
    """Make a plug-in's code available in this process (a worker): import ``module`` by name, or,
    when that module is not importable here, load its file (the path recorded in ``origin``)."""
    name, _, path = origin.partition("@")
    if name in sys.modules or name in ("__main__", ""):
        return
    try:
        importlib.import_module(name)
        return
    except ImportError:
        if not path:
            raise PluginError(f"plug-in module {name!r} cannot be imported on this worker (and has no file)") from None
    load_file(path, module_name=name)


def origins_of(kinds: set[tuple[str, str]]) -> tuple[str, ...]:
    """The origins to import on a worker for ``{("family" | "problem", name)}``; built-ins need none."""
    out = []
    for kind, name in sorted(kinds):
        entry = get_family(name) if kind == "family" else get_problem(name)
        module = (entry.origin or "").partition("@")[0]
        if (module == "trajlab" or module.startswith("trajlab.")) or entry.origin in out:
            continue
        out.append(entry.origin or "")
    return tuple(out)


def check_remote(origins: tuple[str, ...]) -> None:
    """PluginError when a plug-in cannot be imported by a remote worker: one defined in ``__main__``
    (a notebook, ``python -c``) has no module or file another process could import."""
    for origin in origins:
        module, _, path = origin.partition("@")
        if module in ("__main__", "") or (module.startswith("__") and not path):
            raise PluginError(
                f"a plug-in is defined in {module or 'an unknown module'} (a notebook or script): remote workers "
                "cannot import it; define it in a module or a .py file and load that (trajlab.load_plugins)"
            )


__all__ = [
    "GENERIC_FLOW_METRICS",
    "GENERIC_LINEARIZATION_METRICS",
    "GENERIC_METRICS",
    "Family",
    "FamilyParts",
    "Problem",
    "family",
    "families",
    "get_family",
    "get_problem",
    "problems_of",
    "check_remote",
    "import_origin",
    "kind_of",
    "load_builtins",
    "load_file",
    "origins_of",
    "problem",
    "problems",
    "register_family",
    "register_problem",
    "unregister",
]
