"""A preset: a named, reproducible sweep with its baselines and figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from trajlab.config import RunConfig, replace_dotted
from trajlab.config import list_fields
from trajlab.sweep.grid import expand_grid
from trajlab.sweep.runner import BaselineJob


@dataclass(frozen=True)
class Claim:
    """A published claim and how a finished sweep checks it.

    ``text`` states the claim and its source. ``measure(data)`` (``data`` as loaded by
    :func:`trajlab.load`: ``runs`` with one row per run, its config fields by dotted name, ``run_id``,
    ``status``, ``steps`` and ``final.<column>`` for every metric column at the run's last step;
    ``trajectories`` with ``run_id``, ``step``, ``t`` and one column per metric column;
    ``baselines``) returns ``(measured, holds)``:
    the measured value in words or as a number, and whether the claim holds on this sweep (None:
    not checked, e.g. the sweep lacks the data).
    A claim without ``measure`` is listed but not checked.
    """

    text: str
    measure: Callable[[Any], tuple[Any, "bool | None"]] | None = None


@dataclass(frozen=True)
class Preset:
    """name, one-line description, base config, swept axes, and what ``--quick`` changes.

    ``quick`` maps dotted fields to values (lists sweep) that replace the preset's own for
    ``--quick``. ``variants`` (optional) are sets of fixed values, each crossed with the grid:
    for comparisons that are not a cartesian product (e.g. GD at depth 1-3 plus Adam at depth 1). ``baselines(configs)`` lists the reference computations of a sweep;
    ``figures(data)`` returns {name: matplotlib Figure} from the stored DataFrames; ``claims`` are
    the published claims the preset reproduces (:class:`Claim`, or plain text when unchecked).
    ``table_metrics``: metrics of the family (names without ``final.``) shown in the table of final
    values besides :data:`trajlab.report.tables.FINAL_TABLE_METRICS`.
    """

    name: str
    description: str
    base: RunConfig
    axes: dict[str, list] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    baselines: Callable[[list[RunConfig]], list[BaselineJob]] | None = None
    figures: Callable[[Any], dict[str, Any]] | None = None
    claims: tuple["str | Claim", ...] = ()
    variants: tuple[dict[str, Any], ...] = ()
    table_metrics: tuple[str, ...] = ()

    def resolve(
        self, fixed: dict[str, Any] | None = None, axes: dict[str, list] | None = None, quick: bool = False
    ) -> tuple[RunConfig, dict[str, list]]:
        """The base config and the swept axes after ``--quick`` and the user's ``--set`` values.

        Order: preset, then ``quick``, then the user's values; a user's fixed value for a swept
        field replaces that axis.
        """
        base, grid = self.base, dict(self.axes)
        layers = [self.quick] if quick else []
        layers.append({**(fixed or {}), **(axes or {})})
        list_valued = list_fields()
        for layer in layers:
            scalars = {}
            for key, value in layer.items():
                if isinstance(value, list) and key not in list_valued:
                    grid[key] = value
                else:
                    grid.pop(key, None)
                    scalars[key] = value
            base = replace_dotted(base, scalars)
        return base, grid

    def configs(self, fixed=None, axes=None, quick: bool = False) -> list[RunConfig]:
        """Every run: the grid, once per variant; the user's values override the variants'."""
        base, grid = self.resolve(fixed, axes, quick)
        if not self.variants:
            return expand_grid(base, grid)
        user = {**(fixed or {}), **(axes or {})}
        configs: dict[str, RunConfig] = {}
        for variant in self.variants:
            overrides = {k: v for k, v in variant.items() if k not in user and k not in grid}
            for config in expand_grid(replace_dotted(base, overrides), grid):
                configs.setdefault(repr(config), config)
        return list(configs.values())
