"""Grids of run configs: ``--set key=value`` parsing, cartesian products, batching.

A value that is a list sweeps that field (one run per entry), except for list-typed fields
(``metrics``) where the list is the value itself.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import yaml

from trajlab.config import RunConfig, field_names, list_fields, replace_dotted, static_key, to_flat
from trajlab.errors import ConfigError



def __getattr__(name: str):
    if name == "LIST_FIELDS":  # computed on use: plug-ins registered later may add list-typed fields
        return list_fields()
    raise AttributeError(name)


def _numeric(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; read numbers the way a researcher writes them."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    if isinstance(value, list):
        return [_numeric(v) for v in value]
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value); value parsed as YAML (``[a, b]`` is a list, ``null`` None)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ConfigError(f"--set: expected key=value (e.g. model.depth=3 or model.depth=[2,3]), got {text!r}")
    if key not in field_names():
        raise ConfigError(f"--set: unknown config field {key!r}; see `trajlab config PRESET` for the fields")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set: cannot parse the value of {key!r}: {raw!r}") from None
    if isinstance(value, dict):
        raise ConfigError(f"--set: the value of {key!r} must be a scalar or a list, got {raw!r}")
    return key, _numeric(value)


def split_axes(assignments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
    """Separate fixed values from swept ones (lists, except for list-typed fields)."""
    fixed, axes = {}, {}
    for key, value in assignments.items():
        if isinstance(value, list) and key not in list_fields():
            if not value:
                raise ConfigError(f"--set: the list of values for {key!r} is empty")
            axes[key] = value
        else:
            fixed[key] = value
    return fixed, axes


def expand_grid(base: RunConfig, axes: dict[str, list]) -> list[RunConfig]:
    """One config per point of the cartesian product of ``axes`` (validated), deduplicated."""
    names = list(axes)
    configs: "OrderedDict[str, RunConfig]" = OrderedDict()
    for point in itertools.product(*(axes[name] for name in names)):
        config = replace_dotted(base, dict(zip(names, point)))
        configs[repr(to_flat(config))] = config
    return list(configs.values())


def group_batches(configs: list[RunConfig], max_batch: "int | None", capacity=None, parts: "int | None" = None
                  ) -> list[list[RunConfig]]:
    """Runs with equal static structure, in batches of at most ``max_batch`` (order kept).

    ``max_batch=None``: the size of each group's batches is ``capacity(first config of the group)``
    (e.g. :func:`trajlab.engine.memory.batch_capacity`, the most runs that fit the free memory),
    512 without ``capacity``. ``parts``: split each group into at least this many batches (as far
    as it has runs), for executors whose workers should share a group out."""
    groups: "OrderedDict[tuple, list[RunConfig]]" = OrderedDict()
    for config in configs:
        groups.setdefault(static_key(config), []).append(config)
    batches = []
    for members in groups.values():
        size = max_batch if max_batch is not None else (max(1, int(capacity(members[0]))) if capacity else 512)
        if parts:
            size = max(1, min(size, -(-len(members) // parts)))
        for start in range(0, len(members), size):
            batches.append(members[start : start + size])
    return batches
