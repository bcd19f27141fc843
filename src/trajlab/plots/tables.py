"""A table (DataFrame) drawn as a figure, for the presets' summary tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trajlab.plots.lines import format_value

__all__ = ["table_figure"]


def table_figure(table: pd.DataFrame, *, title: str | None = None, number_format: str = "{:.3g}") -> Figure:
    """A DataFrame drawn as a matplotlib table (index levels as leading columns); numbers with ``number_format``."""
    frame = table.reset_index()
    cells = [
        [number_format.format(v) if isinstance(v, (float, np.floating)) and not pd.isna(v) else
         ("-" if pd.isna(v) else format_value(v)) for v in row]
        for row in frame.itertuples(index=False)
    ]
    widths = [max([len(str(column))] + [len(row[i]) for row in cells]) for i, column in enumerate(frame.columns)]
    size = (0.07 * sum(widths) + 0.25 * len(widths) + 0.4, 0.24 * (len(frame) + 1) + (0.45 if title else 0.15))
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    total = float(sum(widths) + 3 * len(widths))
    drawn = ax.table(
        cellText=cells, colLabels=[str(c) for c in frame.columns], cellLoc="right", bbox=[0, 0, 1, 1],
        colWidths=[(w + 3) / total for w in widths],
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    text_columns = {i for i, c in enumerate(frame.columns) if not pd.api.types.is_numeric_dtype(frame[c])}
    for (row, col), cell in drawn.get_celld().items():
        if col in text_columns:
            cell.set_text_props(ha="left")
            cell.PAD = 0.02
    if title:
        ax.set_title(title, fontsize=10)
    return fig
