"""Reports: pure functions from the stored sweep tables (DataFrames) to tables."""

from trajlab.report.tables import BASELINE_LABELS, final_table, render_table, summary_table

__all__ = ["BASELINE_LABELS", "final_table", "render_table", "summary_table"]
