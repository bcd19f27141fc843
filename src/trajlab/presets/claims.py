"""Checking the presets' published claims on a finished sweep, and the small measurements they share.

A :class:`~trajlab.presets.preset.Claim`'s ``measure(data)`` returns ``(measured, holds)``:
``holds`` is True or False when the sweep has what the claim needs, and None with a measured text
starting with :data:`NOT_MEASURED` when it does not (e.g. a ``--quick`` sweep without the init
scale the claim is about). :func:`check_claims` runs them all and never raises: a measurement that
fails is reported as not checked, with the error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from trajlab.report.html import ClaimCheck

#: How every "the sweep does not have what this claim needs" measurement starts.
NOT_MEASURED = "not measured in this sweep"


def not_measured(reason: str) -> tuple[str, None]:
    """``(measured, holds)`` of a claim the sweep cannot check: holds is None (shown as not checked)."""
    return f"{NOT_MEASURED}: {reason}", None


def check_claims(claims: Iterable[Any], data: Any) -> list[ClaimCheck]:
    """Each claim of a preset (a :class:`Claim` or plain text) measured on ``data`` (runs, trajectories, baselines).

    Plain text and claims without ``measure`` are listed as not checked; a measurement that raises
    is not checked either, and its measured value says why.
    """
    checks = []
    runs = getattr(data, "runs", None)
    for claim in claims:
        text = claim if isinstance(claim, str) else claim.text
        measure = None if isinstance(claim, str) else claim.measure
        if measure is None:
            checks.append(ClaimCheck(text, None, None))
            continue
        if runs is None or len(runs) == 0:
            checks.append(ClaimCheck(text, *not_measured("no finished runs")))
            continue
        try:
            measured, holds = measure(data)
        except Exception as error:  # a claim's check must not take the report down with it
            first = str(error).splitlines()[0] if str(error) else ""
            checks.append(ClaimCheck(text, f"could not be measured: {type(error).__name__}: {first}", None))
            continue
        checks.append(ClaimCheck(text, measured, None if holds is None else bool(holds)))
    return checks


# ---------------------------------------------------------------------------------------------
# small measurements


def fmt(value: float, digits: int = 3) -> str:
    """A number in ``digits`` significant digits ('-' for NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never" if value > 0 else "-inf"
    value = float(value)
    if 10**digits <= abs(value) < 1e6:  # 1720, not 1.72e+03
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def crossing(x: np.ndarray, y: np.ndarray, level: float, *, rising: bool = True) -> float:
    """First x at which y reaches ``level`` (>= when ``rising``, <= otherwise), linearly interpolated
    between the two records around it; x[0] if y starts there, inf if it never gets there."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    reached = np.flatnonzero(y >= level if rising else y <= level)
    if reached.size == 0:
        return math.inf
    i = int(reached[0])
    if i == 0:
        return float(x[0])
    fraction = (level - y[i - 1]) / (y[i] - y[i - 1])  # y[i - 1] is on the other side of level
    return float(x[i - 1] + fraction * (x[i] - x[i - 1]))


def by_run(trajectories: pd.DataFrame, x: str = "step") -> dict[str, pd.DataFrame]:
    """Trajectory rows of each run id, sorted by ``x``."""
    return {run_id: frame.sort_values(x) for run_id, frame in trajectories.groupby("run_id", sort=False)}


def value_at_step(trajectory: pd.DataFrame, column: str, step: int) -> float:
    """The value recorded at the largest recorded step <= ``step``; NaN if the run stopped before ``step``."""
    steps = trajectory["step"].to_numpy()
    if steps.size == 0 or steps[-1] < step:
        return math.nan
    return float(trajectory[column].to_numpy()[np.searchsorted(steps, step, side="right") - 1])


def problem_columns(runs: pd.DataFrame, baselines: pd.DataFrame) -> list[str]:
    """The ``problem.*`` columns that runs and baselines share (what matches a baseline to its runs)."""
    return [c for c in runs.columns if c.startswith("problem.") and c in baselines.columns]


def lacks(data: Any, runs: Iterable[str] = (), trajectories: Iterable[str] = ()) -> str | None:
    """Why ``data`` cannot be measured ("runs lack column(s) ...") or None when it has these columns."""
    for table, columns in (("runs", runs), ("trajectories", trajectories)):
        frame = getattr(data, table, None)
        have = set(frame.columns) if frame is not None else set()
        absent = [c for c in columns if c not in have]
        if absent:
            return f"{table} lack column(s) {', '.join(absent)}"
    return None


def baseline_rows(data: Any, name: str) -> pd.DataFrame:
    """The rows of ``data.baselines`` whose ``baseline`` is ``name`` (empty when none)."""
    baselines = getattr(data, "baselines", None)
    if baselines is None or len(baselines) == 0 or "baseline" not in baselines.columns:
        return pd.DataFrame()
    return baselines[baselines["baseline"] == name]
