"""Deprecated alias of :mod:`trajlab.presets.claims`."""

from trajlab.presets.claims import (
    NOT_MEASURED,
    baseline_rows,
    by_run,
    check_claims,
    crossing,
    fmt,
    lacks,
    not_measured,
    problem_columns,
    value_at_step,
)

__all__ = [
    "NOT_MEASURED",
    "baseline_rows",
    "by_run",
    "check_claims",
    "crossing",
    "fmt",
    "lacks",
    "not_measured",
    "problem_columns",
    "value_at_step",
]
