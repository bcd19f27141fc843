"""Reports: pure functions from the stored sweep tables (DataFrames) to tables and HTML pages."""

from trajlab.report.html import (
    ClaimCheck,
    IndexEntry,
    claims_html,
    claims_summary,
    configs_html,
    dataframe_html,
    figure_png,
    index_page,
    landscape_images,
    provenance_html,
    report_page,
    runs_summary,
)
from trajlab.report.tables import BASELINE_LABELS, final_table, render_table, summary_table

__all__ = [
    "BASELINE_LABELS",
    "ClaimCheck",
    "IndexEntry",
    "claims_html",
    "claims_summary",
    "configs_html",
    "dataframe_html",
    "figure_png",
    "final_table",
    "index_page",
    "landscape_images",
    "provenance_html",
    "render_table",
    "report_page",
    "runs_summary",
    "summary_table",
]
