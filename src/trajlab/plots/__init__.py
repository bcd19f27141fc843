"""Figure helpers shared by the presets: pure functions from the stored sweep tables (DataFrames) to
matplotlib figures, and saving them.

Each preset's own figures live with the preset (:mod:`trajlab.presets`); what is here serves
several of them: :func:`loss_figure` and the line-plot pieces of :mod:`trajlab.plots.lines`,
:func:`table_figure`, :func:`save_figure`.
"""

from trajlab.plots.lines import NUCLEAR_NORM_LABEL, loss_figure
from trajlab.plots.save import save_figure
from trajlab.plots.tables import table_figure

__all__ = [
    "NUCLEAR_NORM_LABEL",
    "loss_figure",
    "save_figure",
    "table_figure",
]
