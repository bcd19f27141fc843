"""Tables of sweep results: pure functions from the stored DataFrames to DataFrames / rich tables.

``final_table`` is the table of final values behind the deep matrix factorization figures
(Arora, Cohen, Hu & Luo, NeurIPS 2019), with the nuclear-norm-minimization baseline as rows of
its own; ``summary_table`` is the one-screen health check ``trajlab show`` prints (how many runs
finished, hit ``max_steps`` or diverged, and the spread of their final loss and test error);
``render_table`` turns either into a :class:`rich.table.Table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rich.table import Table

from trajlab.report.columns import require_columns as _require

__all__ = ["BASELINE_LABELS", "final_table", "render_table", "summary_table"]

#: How baseline rows are named in the ``model.depth`` level of :func:`final_table`.
BASELINE_LABELS = {"nuclear_norm": "nuclear norm min."}

_INDEX = ("problem.kind", "problem.observations", "model.depth", "model.scale", "optimizer.lr")
_PROBLEM_INDEX = ("problem.kind", "problem.observations")
_STATUSES = ("done", "max_steps", "diverged")
# The first of these present in a sweep are summarized: the train loss and each family's held-out
# error (matrix test error, tensor reconstruction error, network test loss / accuracy).
_SUMMARY_METRICS = ("train_loss", "test_error", "reconstruction_error", "test_loss", "test_accuracy")


#: The metrics :func:`final_table` shows by default (those a sweep recorded); a preset adds its own
#: with ``Preset.table_metrics``.
FINAL_TABLE_METRICS = (
    "train_loss",
    "test_error",
    "effective_rank",
    "nuclear_norm",
    "reconstruction_error",
    "cp_rank_estimate",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
)


def final_table(
    runs: pd.DataFrame,
    baselines: pd.DataFrame | None = None,
    *,
    metrics: Sequence[str] = FINAL_TABLE_METRICS,
) -> pd.DataFrame:
    """Final values of every run, one row per run, baselines as extra rows.

    Index: those of (``problem.kind``, ``problem.observations``, ``model.depth``,
    ``model.scale``, ``optimizer.lr``) present in ``runs``, then every other config column
    whose value differs between runs (e.g. ``optimizer.name``, ``problem.p``), sorted. Columns:
    ``run_id`` (when present), ``status``, ``steps``, then one column per metric present, named
    without the ``final.`` prefix (``test_error`` holds ``final.test_error``). Several runs may share an index entry
    (seeds); ``run_id`` tells them apart. All runs are listed, diverged ones included.

    Baselines (optional) are rows of the same table, placed after the runs of their problem:
    their ``model.depth`` entry is the baseline's label ("nuclear norm min." for
    ``baseline == "nuclear_norm"``, the raw name otherwise), ``model.scale``/``optimizer.lr``
    and ``steps`` are missing, ``status`` is the solver's, and metrics the baseline does not
    report (e.g. ``train_loss``) are NaN. Only baselines of problems present in ``runs``
    (matched on the shared ``problem.*`` columns) are kept. With baseline rows the
    ``model.depth`` level has object dtype (ints and labels).
    """
    metrics = tuple(m for m in metrics if f"final.{m}" in runs.columns)
    _require(runs, ["status", "steps"], "runs")
    index = [c for c in _INDEX if c in runs.columns] + _varying_config_columns(runs)

    table = runs[index].copy()
    if "run_id" in runs.columns:
        table["run_id"] = runs["run_id"]
    table["status"] = runs["status"]
    table["steps"] = runs["steps"].astype("Int64")
    for metric in metrics:
        table[metric] = pd.to_numeric(runs[f"final.{metric}"], errors="coerce").astype(float)
    table = table.sort_values([*index, *(["run_id"] if "run_id" in table else [])], kind="stable")

    if baselines is not None and len(baselines) > 0:
        _require(baselines, ["baseline"], "baselines")
        rows = _matching_problems(baselines, runs)
        if len(rows):
            extra = pd.DataFrame(index=range(len(rows)))
            for column in index:
                if column == "model.depth":
                    labels = rows["baseline"].astype(str).map(lambda b: BASELINE_LABELS.get(b, b))
                    extra[column] = labels.to_numpy(dtype=object)
                elif column in rows.columns:
                    extra[column] = rows[column].to_numpy()
                else:
                    extra[column] = np.nan
            if "run_id" in table.columns:
                extra["run_id"] = pd.Series([pd.NA] * len(rows), dtype=table["run_id"].dtype)
            extra["status"] = rows["status"].to_numpy() if "status" in rows else pd.NA
            extra["steps"] = pd.array([pd.NA] * len(rows), dtype="Int64")
            for metric in metrics:
                values = rows[metric] if metric in rows.columns else pd.Series(np.nan, index=rows.index)
                extra[metric] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            # Each block is sorted on its own (mixed int/str depths do not compare); a stable
            # sort on the problem columns then slots each baseline after its problem's runs.
            problem_keys = [c for c in _PROBLEM_INDEX if c in index]
            extra = extra.sort_values(problem_keys, kind="stable") if problem_keys else extra
            table = pd.concat(
                [table.assign(_section=0), extra.assign(_section=1)], ignore_index=True
            )
            table = table.sort_values([*problem_keys, "_section"], kind="stable")
            table = table.drop(columns="_section")

    return table.set_index(index) if index else table.reset_index(drop=True)


def _varying_config_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns (dotted names) outside the standard index whose value differs between runs,
    so that rows of e.g. different optimizers or seeds can be told apart."""
    return [
        c
        for c in runs.columns
        if ("." in c or c == "seed")
        and not c.startswith("final.")
        and c not in _INDEX
        and runs[c].astype(str).nunique(dropna=False) > 1
    ]


def _matching_problems(baselines: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in runs.columns if c.startswith("problem.") and c in baselines.columns]
    if not keys:
        return baselines.reset_index(drop=True)
    problems = runs[keys].drop_duplicates()
    return baselines.merge(problems, on=keys, how="inner")


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-depth health check of a sweep (what ``trajlab show`` prints).

    Index ``model.depth`` (``(model.kind, model.depth)`` when a sweep holds a model other than
    the deep linear network; ``model.kind`` alone when no family of the sweep has a depth; "-" for
    the runs of a family without one). Columns: ``runs`` (count), one count per status (``done``,
    ``max_steps``, ``diverged`` always, then any other status seen), and for ``train_loss``,
    ``test_error``, ``reconstruction_error``, ``test_loss`` and ``test_accuracy`` (when their
    ``final.`` column exists) ``<metric> median``, ``<metric> min``, ``<metric> max`` of the final
    values over the **non-diverged** runs of that group (NaN when all diverged; NaN finals are
    skipped).
    """
    _require(runs, ["status"], "runs")
    by_kind = "model.kind" in runs.columns and (
        bool((runs["model.kind"] != "deep_linear").any()) or "model.depth" not in runs.columns
    )
    keys = (["model.kind"] if by_kind else []) + (["model.depth"] if "model.depth" in runs.columns else [])
    if not keys:
        raise ValueError("runs is missing required column(s): model.kind")
    runs = runs.copy()
    for key in keys:  # a family without a depth field groups under "-"
        if runs[key].isna().any():
            runs[key] = runs[key].astype(object).where(runs[key].notna(), "-")
    groups = [runs[k] for k in keys]
    counts = pd.crosstab(groups, runs["status"].astype(str))
    statuses = [*_STATUSES, *sorted(set(counts.columns) - set(_STATUSES))]
    counts = counts.reindex(columns=statuses, fill_value=0).astype("int64")
    counts.columns.name = None
    summary = pd.concat([counts.sum(axis=1).rename("runs"), counts], axis=1)

    kept = runs[runs["status"] != "diverged"]
    for metric in _SUMMARY_METRICS:
        column = f"final.{metric}"
        if column not in runs.columns:
            continue
        values = pd.to_numeric(kept[column], errors="coerce").astype(float)
        if values.isna().all():
            continue
        stats = values.groupby([kept[k] for k in keys]).agg(["median", "min", "max"])
        stats.columns = [f"{metric} {stat}" for stat in stats.columns]
        summary = summary.join(stats, how="left")
    if len(keys) == 1:
        summary.index.name = keys[0]
    try:
        return summary.sort_index()
    except TypeError:  # depths mixed with "-"
        return summary.sort_index(key=lambda index: index.astype(str))


def _is_missing(value: object) -> bool:
    try:
        missing = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(missing) if isinstance(missing, (bool, np.bool_)) else False


def _format_cell(value: object) -> str:
    if _is_missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{float(value):.4g}"
    return str(value)


def render_table(df: pd.DataFrame, title: str | None = None) -> Table:
    """A :class:`rich.table.Table` of ``df``: index levels first (unless a default RangeIndex), then columns.

    Floats print with 4 significant digits, missing values as "-"; within a MultiIndex a
    value equal to the row above (with all outer levels equal too) is left blank, so groups read
    as blocks. Numeric columns are right-aligned.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"render_table expects a pandas DataFrame, got {type(df).__name__}")
    show_index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    table = Table(title=title)

    index_names: list[str] = []
    if show_index:
        index_names = [str(n) if n is not None else "" for n in df.index.names]
        for level, name in enumerate(index_names):
            values = df.index.get_level_values(level)
            table.add_column(name, justify="right" if _numeric(values) else "left", style="bold")
    for column in df.columns:
        table.add_column(str(column), justify="right" if _numeric(df[column]) else "left")

    # Column by column, so an int column stays int even when its row has floats.
    columns = [df.iloc[:, i].tolist() for i in range(df.shape[1])]
    previous: tuple | None = None
    for position in range(len(df)):
        cells: list[str] = []
        if show_index:
            key = df.index[position]
            key = key if isinstance(key, tuple) else (key,)
            same_prefix = previous is not None
            for level, value in enumerate(key):
                same_prefix = same_prefix and _same(value, previous[level])
                cells.append("" if same_prefix and len(key) > 1 else _format_cell(value))
            previous = key
        cells.extend(_format_cell(values[position]) for values in columns)
        table.add_row(*cells)
    return table


def _numeric(values: object) -> bool:
    dtype = getattr(values, "dtype", None)
    return dtype is not None and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _same(a: object, b: object) -> bool:
    if _is_missing(a) and _is_missing(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
