"""Input checks shared by the table and figure functions."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def require_columns(df: pd.DataFrame | None, columns: Iterable[str], table: str) -> None:
    """Raise ValueError naming the DataFrame and every column it lacks."""
    if df is None:
        raise ValueError(f"{table} is None; expected a DataFrame")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{table} is missing required column(s): {', '.join(missing)}")
