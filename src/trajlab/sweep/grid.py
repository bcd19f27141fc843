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


def split_groups(batches: list[list[RunConfig]], parts: int) -> list[list[RunConfig]]:
    """Each batch split into at least ``parts`` batches as far as it has runs (order kept)."""
    out = []
    for batch in batches:
        size = max(1, -(-len(batch) // max(1, parts)))
        out.extend(batch[start : start + size] for start in range(0, len(batch), size))
    return out


def run_cost(config: RunConfig) -> float:
    """A rough relative cost of one run, to order and share out batches (never to decide results):
    parameters (bytes of one run's parameters, ``eval_shape`` of the family's init) x ``max_steps``,
    computed once per static structure. Runs that stop early at ``train.tol`` cost less than this
    says; the order is a heuristic."""
    key = static_key(config)
    if key not in _COSTS:
        from trajlab.engine.memory import parameter_bytes

        _COSTS[key] = float(max(parameter_bytes(config) or 1, 1)) * float(max(config.train.max_steps, 1))
    return _COSTS[key]


_COSTS: dict = {}


def batch_cost(batch: list[RunConfig]) -> float:
    """:func:`run_cost` of the batch's first config x its number of runs (a batch shares its structure)."""
    return run_cost(batch[0]) * len(batch)


def balance_batches(batches: list[list[RunConfig]], lanes: int, cost=batch_cost) -> list[list[RunConfig]]:
    """The batches for ``lanes`` workers that each take the next batch when free: while the
    costliest batch of two or more runs costs more than one worker's share (total / lanes), it is
    split in two halves; then the batches are ordered costliest first (the longest-processing-time
    rule: a first-in first-out pool given this order puts each batch on the worker that frees up
    first). A group is split only when that is needed to keep the workers busy, since each part
    compiles the same programs again in another process. Every run is kept, once."""
    items = [(float(cost(batch)), index, 0, batch) for index, batch in enumerate(batches)]
    total = sum(item[0] for item in items)
    if lanes > 1 and total > 0:
        share = total / lanes
        while True:
            splittable = [item for item in items if len(item[3]) >= 2]
            if not splittable:
                break
            largest = max(splittable, key=lambda item: item[0])
            if largest[0] <= share * (1 + 1e-9):
                break
            items.remove(largest)
            value, index, offset, batch = largest
            half = -(-len(batch) // 2)
            for start, part in ((0, batch[:half]), (half, batch[half:])):
                items.append((value * len(part) / len(batch), index, offset + start, part))
    items.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [item[3] for item in items]
