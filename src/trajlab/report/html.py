"""A sweep as one self-contained HTML page: pure functions, figures and DataFrames in, HTML text out.

The page needs nothing but itself: figures are PNGs embedded as ``data:`` URLs, the style sheet
and the one small script (open a run's config when its link is followed) are inline, and nothing
is fetched from the network. Every piece of text that comes from data (claims, table cells,
config values, names) goes through :func:`html.escape`.

Pieces: :func:`figure_png`, :func:`dataframe_html`, :func:`claims_html`, :func:`configs_html`,
:func:`provenance_html`; whole pages: :func:`report_page` (one sweep) and :func:`index_page`
(several reports, one line each). The one read from disk: :func:`report_page` embeds the PNGs that
``trajlab landscape`` wrote in the sweep folder (:func:`landscape_images`) when a note names it.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from trajlab.report.tables import _format_cell

__all__ = [
    "ClaimCheck",
    "IndexEntry",
    "claims_html",
    "claims_summary",
    "configs_html",
    "dataframe_html",
    "figure_png",
    "index_page",
    "landscape_images",
    "provenance_html",
    "report_page",
    "runs_summary",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOLDS, FAILS, NOT_CHECKED = "\u2713 holds", "\u2717 does not hold", "not checked"


@dataclass(frozen=True)
class ClaimCheck:
    """A published claim, the value measured on the sweep, and whether it holds there.

    ``holds`` is True / False, or None when the claim was not checked (plain text, or the sweep
    lacks what it needs; ``measured`` then says why).
    """

    text: str
    measured: Any = None
    holds: bool | None = None


@dataclass(frozen=True)
class IndexEntry:
    """One line of :func:`index_page`: a preset's report (``href``, relative), its runs and claims,
    or the ``error`` that stopped it."""

    name: str
    href: str | None
    description: str = ""
    runs: int = 0
    statuses: Mapping[str, int] = field(default_factory=dict)
    claims: Sequence[ClaimCheck] = ()
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# pieces


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def figure_png(figure: Any, *, dpi: int = 110) -> bytes:
    """The PNG bytes of a matplotlib figure (rendered with Agg at ``dpi``; the figure is not closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _figure_html(name: str, image: Any) -> str:
    if isinstance(image, str):  # a figure that could not be drawn: say why
        return (
            f'<figure class="missing" id="figure-{_text(name)}"><p class="note">{_text(name)}: {_text(image)}</p>'
            f"<figcaption>{_text(name)}</figcaption></figure>"
        )
    data = bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else figure_png(image)
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"figure {name!r}: expected PNG bytes or a matplotlib figure")
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure id="figure-{_text(name)}"><img src="data:image/png;base64,{encoded}" alt="{_text(name)}">'
        f"<figcaption>{_text(name)}</figcaption></figure>"
    )


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return _format_cell(value)


def _numeric(values: Any) -> bool:
    dtype = getattr(values, "dtype", None)
    return dtype is not None and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _run_link(run_id: Any) -> str:
    if _format_cell(run_id) == "-":  # missing (a baseline's row)
        return "-"
    return f'<a href="#run-{_text(run_id)}">{_text(run_id)}</a>'


def dataframe_html(df: pd.DataFrame, *, caption: str | None = None, run_links: bool = False) -> str:
    """An HTML ``<table>`` of ``df``: index levels first (unless a default RangeIndex), then columns.

    Cells are formatted like :func:`trajlab.report.render_table` (4 significant digits, "-" when
    missing) and escaped; within a MultiIndex a value equal to the row above (outer levels equal
    too) is left blank. Numeric columns get class ``num`` (right-aligned). With ``run_links``,
    ``run_id`` cells link to the run's config (``#run-<id>``, see :func:`configs_html`).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"dataframe_html expects a pandas DataFrame, got {type(df).__name__}")
    show_index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{_text(caption)}</caption>")
    header, numeric = [], []
    if show_index:
        for level, name in enumerate(df.index.names):
            is_num = _numeric(df.index.get_level_values(level))
            numeric.append(is_num)
            header.append(f'<th{" class=num" if is_num else ""}>{_text("" if name is None else name)}</th>')
    for i, column in enumerate(df.columns):
        is_num = _numeric(df.iloc[:, i])
        numeric.append(is_num)
        header.append(f'<th{" class=num" if is_num else ""}>{_text(column)}</th>')
    parts.append("<thead><tr>" + "".join(header) + "</tr></thead><tbody>")
    columns = [df.iloc[:, i].tolist() for i in range(df.shape[1])]
    names = [str(c) for c in df.columns]
    previous: tuple | None = None
    for position in range(len(df)):
        cells = []
        if show_index:
            key = df.index[position]
            key = key if isinstance(key, tuple) else (key,)
            same_prefix = previous is not None
            for level, value in enumerate(key):
                same_prefix = same_prefix and _same(value, previous[level])
                text = "" if same_prefix and len(key) > 1 else _text(_cell(value))
                cells.append(f'<th{" class=num" if numeric[level] else ""} scope="row">{text}</th>')
            previous = key
        offset = df.index.nlevels if show_index else 0
        for i, values in enumerate(columns):
            value = values[position]
            text = _run_link(value) if run_links and names[i] == "run_id" else _text(_cell(value))
            cells.append(f'<td{" class=num" if numeric[offset + i] else ""}>{text}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _same(a: Any, b: Any) -> bool:
    try:
        if pd.isna(a) and pd.isna(b):
            return True
    except (TypeError, ValueError):
        pass
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _measured_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _verdict(holds: bool | None) -> tuple[str, str]:
    if holds is None:
        return "unchecked", NOT_CHECKED
    return ("holds", HOLDS) if holds else ("fails", FAILS)


def claims_summary(checks: Sequence[ClaimCheck]) -> str:
    """'claims: 2 of 3 hold, 1 not checked': the one-line verdict of a preset."""
    if not checks:
        return "no published claims"
    held = sum(1 for c in checks if c.holds is True)
    unchecked = sum(1 for c in checks if c.holds is None)
    text = f"claims: {held} of {len(checks)} hold{'s' if held == 1 else ''}"
    return text + (f", {unchecked} not checked" if unchecked else "")


def claims_html(checks: Sequence[ClaimCheck]) -> str:
    """A table of claims: the claim, the value measured on the sweep, and the verdict
    (\u2713 holds / \u2717 does not hold / not checked)."""
    rows = []
    for check in checks:
        css, verdict = _verdict(check.holds)
        rows.append(
            f'<tr class="claim {css}"><td>{_text(check.text)}</td><td>{_text(_measured_text(check.measured))}</td>'
            f'<td class="verdict">{_text(verdict)}</td></tr>'
        )
    return (
        '<table class="claims"><thead><tr><th>published claim</th><th>measured on this sweep</th><th>verdict</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _config_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    if value is None:
        return "None"
    return str(value)


def configs_html(configs: Mapping[str, Mapping[str, Any]], runs: pd.DataFrame | None = None) -> str:
    """Every run's flat config, on demand: the fields all runs share once, then a ``<details>`` per
    run (``id="run-<id>"``) with the fields that tell it apart, its status and steps.

    A run's whole config is the shared fields plus its own. Runs in ``configs`` (the manifest)
    without a row in ``runs`` are marked "not finished".
    """
    if not configs:
        return '<p class="note">The manifest records no configs.</p>'
    values = {run_id: {k: _config_value(v) for k, v in config.items()} for run_id, config in configs.items()}
    keys = sorted({k for config in values.values() for k in config})
    first = next(iter(values.values()))
    shared = [k for k in keys if all(k in c and c[k] == first.get(k) for c in values.values())]
    varying = [k for k in keys if k not in shared]
    info = {}
    if runs is not None and len(runs) and "run_id" in runs.columns:
        for _, row in runs.iterrows():
            info[str(row["run_id"])] = row
    parts = [
        f'<details class="shared"><summary>config shared by all {len(values)} runs ({len(shared)} fields)</summary>',
        _key_value_table([(k, first[k]) for k in shared]),
        "</details>",
    ]
    if varying:
        parts.append(f'<p class="note">Fields that differ between runs: {_text(", ".join(varying))}.</p>')

    def sortable(text: str) -> tuple:
        try:
            return (0, float(text), "")
        except ValueError:
            return (1, 0.0, text)

    def order(item):  # by the fields that differ, numbers as numbers
        run_id, config = item
        return tuple(sortable(config.get(k, "")) for k in varying) + ((1, 0.0, str(run_id)),)

    for run_id, config in sorted(values.items(), key=order):
        row = info.get(str(run_id))
        if row is None:
            state = "not finished"
        else:
            state = f"{row.get('status', '?')}, {_format_cell(row.get('steps'))} steps"
        label = ", ".join(f"{k}={config.get(k, '-')}" for k in varying)
        parts.append(
            f'<details class="run" id="run-{_text(run_id)}"><summary><code>{_text(run_id)}</code> '
            f"{_text(label)} <span class=\"state\">({_text(state)})</span></summary>"
            + _key_value_table([(k, config.get(k, "-")) for k in varying] + [("run_id", run_id)])
            + "</details>"
        )
    return "".join(parts)


def _key_value_table(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def provenance_html(manifest: Mapping[str, Any]) -> str:
    """The manifest's record of where the numbers come from (presets, git commit, device, package
    versions, last update), without the configs."""
    pairs = []
    for key in sorted(k for k in manifest if k != "configs"):
        value = manifest[key]
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        pairs.append((key, value))
    return _key_value_table(pairs) if pairs else '<p class="note">The manifest records no provenance.</p>'


# ---------------------------------------------------------------------------------------------
# pages

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.subtitle{color:#555;margin-top:0}.note{color:#666;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #e5e5e5;padding:.2rem .6rem;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #999}.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85rem}
.claims td{max-width:40rem}.verdict{white-space:nowrap;font-weight:600}
.holds .verdict{color:#1a7f37}.fails .verdict{color:#cf222e}.unchecked .verdict{color:#777}
details{margin:.15rem 0}summary{cursor:pointer}details.run summary{font-size:.85rem}
.state{color:#777}.kv th{font-weight:500;color:#444}code{font-size:.85rem}
.index td:first-child{white-space:nowrap}.failed{color:#cf222e}
"""

# Following a link to a run's config opens its <details>.
_SCRIPT = """
function openTarget(){var id=decodeURIComponent(location.hash.slice(1));if(!id)return;
var el=document.getElementById(id);if(el&&el.tagName==='DETAILS'){el.open=true;}}
window.addEventListener('hashchange',openTarget);openTarget();
"""


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        # No request may leave the page: only inline styles/scripts and data: images are allowed.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{_SCRIPT}</script></body></html>\n"
    )


#: The note by which ``trajlab report`` names the sweep folder (where ``trajlab landscape`` wrote
#: ``landscape/figures/*.png``), read when :func:`report_page` is not given ``landscape``.
SWEEP_FOLDER_NOTE = "Sweep folder: "
#: The largest landscape figure embedded (bytes); larger files are skipped.
LANDSCAPE_FIGURE_LIMIT = 20 * 2**20


def landscape_images(folder: Any) -> dict[str, bytes]:
    """{name: PNG bytes} of the figures ``trajlab landscape`` wrote in ``folder/landscape/figures``
    (regular ``.png`` files that start with the PNG signature; ``segments`` first, then by name);
    {} when there are none."""
    from pathlib import Path

    figures = Path(folder) / "landscape" / "figures"
    if not figures.is_dir():
        return {}
    images = {}
    paths = sorted(figures.glob("*.png"), key=lambda path: (path.stem != "segments", path.stem))
    for path in paths:
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > LANDSCAPE_FIGURE_LIMIT:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if data.startswith(b"\x89PNG"):
            images[path.stem] = data
    return images


def report_page(
    title: str,
    *,
    description: str = "",
    claims: Sequence[ClaimCheck] = (),
    figures: Mapping[str, Any] | None = None,
    tables: Sequence[tuple[str, pd.DataFrame]] = (),
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    runs: pd.DataFrame | None = None,
    manifest: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    landscape: Mapping[str, Any] | None = None,
) -> str:
    """One sweep as a self-contained HTML page.

    Sections, in order: title and ``description``; ``notes`` (e.g. "no known preset"); the
    published ``claims`` with what was measured and the verdict; ``figures`` ({name: PNG bytes, a
    matplotlib figure, or a str saying why it could not be drawn}); ``tables`` ((title, DataFrame)
    pairs, ``run_id`` cells linked to the configs); the runs' ``configs`` (the manifest's
    {run_id: flat config}, see :func:`configs_html`, with status and steps from ``runs``); and
    the ``manifest``'s provenance. ``landscape``: {name: PNG bytes or figure} shown in a "Loss
    landscape" section after the figures; when None, the figures of :func:`landscape_images` of the
    folder named by a note starting with :data:`SWEEP_FOLDER_NOTE` (none when there is no such note).
    """
    body = [f"<h1>{_text(title)}</h1>"]
    if description:
        body.append(f'<p class="subtitle">{_text(description)}</p>')
    if runs is not None:
        body.append(f"<p>{_text(_runs_line(runs))}</p>")
    body.extend(f'<p class="note">{_text(note)}</p>' for note in notes)
    if claims:
        body.append(f"<h2>Published claims</h2><p>{_text(claims_summary(claims))} on this sweep.</p>")
        body.append(f'<div class="scroll">{claims_html(claims)}</div>')
    if figures:
        body.append("<h2>Figures</h2>")
        body.extend(_figure_html(name, image) for name, image in figures.items())
    if landscape is None:
        folders = [note[len(SWEEP_FOLDER_NOTE):] for note in notes if str(note).startswith(SWEEP_FOLDER_NOTE)]
        landscape = landscape_images(folders[0]) if folders else {}
    if landscape:
        body.append('<h2 id="loss-landscape">Loss landscape</h2>')
        body.append('<p class="note">Written by <code>trajlab landscape</code>: loss along init &rarr; final and '
                    "between runs, filter-normalized random planes and the trajectory's PCA plane.</p>")
        body.extend(_figure_html(f"landscape-{name}", image) for name, image in landscape.items())
    if tables:
        body.append("<h2>Tables</h2>")
        for name, frame in tables:
            body.append(f'<div class="scroll">{dataframe_html(frame, caption=name, run_links=True)}</div>')
    if configs is not None:
        body.append("<h2>Runs and their configs</h2>")
        body.append(configs_html(configs, runs))
    if manifest is not None:
        body.append("<h2>Provenance</h2>")
        body.append(provenance_html(manifest))
    return _page(title, body)


def _status_counts(runs: pd.DataFrame) -> dict[str, int]:
    if "status" not in runs.columns:
        return {}
    return {str(k): int(v) for k, v in runs["status"].astype(str).value_counts().sort_index().items()}


def _runs_line(runs: pd.DataFrame) -> str:
    if len(runs) == 0:
        return "No finished runs."
    counts = _status_counts(runs)
    detail = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{len(runs)} finished run{'s' if len(runs) != 1 else ''}" + (f": {detail}." if detail else ".")


def index_page(entries: Sequence[IndexEntry], *, title: str = "trajlab: reproduced results") -> str:
    """A page linking several reports, one line per preset: its description, how many runs and
    how many of its claims hold (or why it did not run)."""
    rows = []
    for entry in entries:
        name = f'<a href="{_text(entry.href)}">{_text(entry.name)}</a>' if entry.href else _text(entry.name)
        if entry.error:
            summary = f'<span class="failed">failed: {_text(entry.error)}</span>'
        else:
            statuses = ", ".join(f"{n} {s}" for s, n in sorted(entry.statuses.items()))
            runs = f"{entry.runs} run{'s' if entry.runs != 1 else ''}" + (f" ({statuses})" if statuses else "")
            summary = _text(f"{claims_summary(entry.claims)}; {runs}")
        rows.append(f"<tr><td>{name}</td><td>{_text(entry.description)}</td><td>{summary}</td></tr>")
    table = (
        '<table class="index"><thead><tr><th>preset</th><th>result</th><th>claims and runs</th></tr></thead>'
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )
    return _page(title, [f"<h1>{_text(title)}</h1>", f'<div class="scroll">{table}</div>'])


def runs_summary(runs: pd.DataFrame) -> tuple[int, dict[str, int]]:
    """(number of runs, {status: count}) of a runs table, for :class:`IndexEntry`."""
    return len(runs), _status_counts(runs)
