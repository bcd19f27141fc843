"""Write the documentation's preset pages from the preset registry, with figures from ``--quick`` runs.

For every registered preset (``trajlab.registered_presets()``) this script

1. runs its ``--quick`` sweep into a temporary folder (``trajlab.run(preset, quick=True, out=...)``),
2. saves the preset's figures (``preset.figures(data)``) as small PNGs in ``docs/presets/<name>/``,
3. measures the preset's claims on that quick sweep,
4. writes ``docs/presets/<name>.md`` (description, claims and their quick-run measurement, the
   sweep, the figures) and ``docs/presets/index.md``.

What each quick run gave (claims, wall time, error) is kept in ``docs/presets/quick_runs.json``
(excluded from the built site), so ``--only NAME`` reruns one preset and ``--pages-only`` rewrites
the pages without running anything.

Usage (from the repository root)::

    .venv/bin/python docs/gen_presets.py                 # every preset (minutes on a 2-core CPU)
    .venv/bin/python docs/gen_presets.py --only not-norms dmf-dynamics
    .venv/bin/python docs/gen_presets.py --pages-only    # rewrite the .md from quick_runs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PAGES = DOCS / "presets"
RECORD = PAGES / "quick_runs.json"
DPI = 80
#: Fields every page's base-config table shows, default or not (besides the problem and model sections).
ALWAYS_SHOWN = ("optimizer.name", "optimizer.lr", "train.max_steps", "train.tol")

HOLDS, FAILS, NOT_CHECKED = "\u2713 holds", "\u2717 does not hold", "not checked"


# --- running ---------------------------------------------------------------------------------------


def _verdict(holds) -> str:
    return NOT_CHECKED if holds is None else (HOLDS if holds else FAILS)


def _plain(value):
    """A JSON-safe, readable form of a claim's measured value."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else str(number)


def measure_claims(preset, data) -> list[dict]:
    """Each claim's text, measured value and verdict on ``data``, as ``trajlab report`` shows them
    (:func:`trajlab.check_claims`, which never raises)."""
    import trajlab

    if data is None:
        texts = [c if isinstance(c, str) else c.text for c in preset.claims]
        return [{"text": text, "measured": "the quick run failed", "holds": None} for text in texts]
    return [
        {"text": check.text, "measured": _plain(check.measured), "holds": check.holds}
        for check in trajlab.check_claims(preset.claims, data)
    ]


def save_png(figure, path: Path) -> None:
    """``figure`` as a small PNG: ``DPI`` dots per inch, reduced to a 256-colour palette (Pillow,
    which matplotlib depends on) to keep the committed images small."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    try:
        from PIL import Image
    except ImportError:
        path.write_bytes(buffer.getvalue())
        return
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256)
    image.save(path, format="PNG", optimize=True)


def run_quick(preset, work: Path) -> dict:
    """Run one preset's quick sweep, save its figures, measure its claims; return the record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import trajlab

    record = {"name": preset.name, "error": None, "figures": [], "runs": 0, "statuses": {}}
    start = time.perf_counter()
    data = None
    try:
        data = trajlab.run(preset, quick=True, out=work / preset.name)
        record["runs"] = int(len(data.runs))
        if "status" in data.runs:
            record["statuses"] = {str(k): int(v) for k, v in data.runs["status"].value_counts().items()}
    except Exception as error:  # noqa: BLE001 - one failing preset must not stop the others
        record["error"] = f"the quick run failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        traceback.print_exc()
    record["run_s"] = round(time.perf_counter() - start, 1)

    folder = PAGES / preset.name
    shutil.rmtree(folder, ignore_errors=True)
    if data is not None and preset.figures is not None and len(data.runs):
        try:
            figures = preset.figures(data)
        except Exception as error:  # noqa: BLE001
            record["error"] = f"drawing the figures failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            traceback.print_exc()
            figures = {}
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            save_png(figure, folder / f"{name}.png")
            plt.close(figure)
            record["figures"].append(name)
    record["claims"] = measure_claims(preset, data)
    record["total_s"] = round(time.perf_counter() - start, 1)
    return record


# --- writing ---------------------------------------------------------------------------------------


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _defaults(base):
    """{dotted field: default value} for the sections of ``base`` (each section's own defaults)."""
    import trajlab
    from trajlab.registry import get_family

    out = {}
    for section in ("problem", "model"):
        default = type(getattr(base, section))()
        out.update({f"{section}.{k}": v for k, v in trajlab.to_flat(default).items()})
    for section, cls in (("optimizer", trajlab.OptimizerConfig), ("train", trajlab.TrainConfig), ("flow", trajlab.FlowConfig)):
        out.update({f"{section}.{f.name}": getattr(cls(), f.name) for f in dataclasses.fields(cls)})
    out["seed"] = 0
    out["metrics"] = list(get_family(type(base.model).kind).default_metrics)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def _normalize(value):
    return list(value) if isinstance(value, tuple) else value


def _module_of(preset) -> str | None:
    """The module that defines ``preset`` (a module-level variable holding it)."""
    for name, module in sorted(sys.modules.items()):
        if name.startswith("trajlab.") and module is not None and any(v is preset for v in vars(module).values()):
            return name
    return None


def _claim_lines(record: dict | None, preset) -> list[str]:
    claims = record.get("claims") if record else None
    lines = []
    if not preset.claims:
        return ["This preset states no claims."]
    for i, claim in enumerate(preset.claims, 1):
        text = claim if isinstance(claim, str) else claim.text
        lines.append(f"{i}. {text}")
        if claims is not None and i <= len(claims):
            found = claims[i - 1]
            measured = found["measured"]
            measured = "" if measured is None else f": {measured}"
            lines.append("")
            lines.append(f"    *On the `--quick` run:* **{_verdict(found['holds'])}**{measured}")
        lines.append("")
    return lines


def write_page(preset, record: dict | None) -> None:
    import inspect

    import trajlab

    base = preset.base
    flat = trajlab.to_flat(base)
    defaults = _defaults(base)
    changed = [
        (k, v) for k, v in flat.items()
        if k.startswith(("problem.", "model.")) or k in ALWAYS_SHOWN or _normalize(defaults.get(k, object())) != _normalize(v)
    ]
    full_runs = len(preset.configs())
    quick_runs = len(preset.configs(quick=True))
    module = _module_of(preset)

    lines = [f"# {preset.name}", "", f"{preset.description}", ""]
    if module is not None:
        lines += [f"Defined in `{module}`; see [Presets and claims](../api/presets.md) for what a preset holds.", ""]
    lines += [
        "```bash",
        f"trajlab run {preset.name}            # the full sweep: {full_runs} runs",
        f"trajlab run {preset.name} --quick    # the shrunken sweep behind the figures below: {quick_runs} runs",
        f"trajlab report results/{preset.name}-quick",
        "```",
        "",
        "## Claims",
        "",
        "The published claims this preset checks. `trajlab report DIR` measures each on the stored results "
        "of a sweep; below, each is measured on the `--quick` sweep that made the figures, which is much "
        "smaller than the published experiment, so a claim may be *not measured* or even fail there.",
        "",
    ]
    lines += _claim_lines(record, preset)

    lines += ["## Sweep", "", "Base config: the problem and model sections, the optimizer, the stopping rule, and the other fields the preset sets "
              f"to other than their defaults (`trajlab config {preset.name}` shows them all).", "",
              "| field | value |", "|---|---|"]
    lines += [f"| `{k}` | `{_cell(_value(v))}` |" for k, v in changed]
    lines.append("")
    if preset.axes:
        lines += ["Swept axes (every combination is run):", "", "| field | values |", "|---|---|"]
        lines += [f"| `{k}` | `{_cell(_value(v))}` |" for k, v in preset.axes.items()]
        lines.append("")
    if preset.variants:
        lines += ["Variants (each crossed with the grid):", ""]
        lines += [f"- `{_cell(', '.join(f'{k}={_value(v)}' for k, v in variant.items()))}`" for variant in preset.variants]
        lines.append("")
    if preset.quick:
        lines += ["What `--quick` changes (a list sweeps the field):", "", "| field | value |", "|---|---|"]
        lines += [f"| `{k}` | `{_cell(_value(v))}` |" for k, v in preset.quick.items()]
        lines.append("")

    lines += ["## Figures", ""]
    if record is None:
        lines += ["No quick run recorded yet: run `python docs/gen_presets.py --only " + preset.name + "`.", ""]
    else:
        when = record.get("date", "")
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(record.get("statuses", {}).items()))
        lines += [
            f"From the `--quick` run (`trajlab run {preset.name} --quick`): {record.get('runs', 0)} runs"
            + (f" ({statuses})" if statuses else "")
            + f", {record.get('run_s', '?')} s on {record.get('machine', 'a CPU')}"
            + (f", {when}" if when else "")
            + ". The full sweep's figures look different; make them with `trajlab plot DIR`.",
            "",
        ]
        if record.get("error"):
            lines += [f"!!! failure", "", f"    {record['error']}", ""]
        if not record.get("figures") and not record.get("error"):
            lines += ["The run made no figures.", ""]
        for name in record.get("figures", []):
            lines += [f"### {name}", "", f"![{preset.name}: {name}]({preset.name}/{name}.png)", ""]

    if module is not None:
        doc = inspect.getdoc(sys.modules[module]) or ""
        if doc:
            sys.path.insert(0, str(DOCS))
            sys.dont_write_bytecode = True  # no docs/__pycache__
            from griffe_rst import to_markdown  # reST roles and literal blocks as Markdown

            doc = to_markdown(doc)
            lines += ["## Background", "", f"From the docstring of `{module}`:", "", doc, ""]
    (PAGES / f"{preset.name}.md").write_text("\n".join(lines).rstrip() + "\n")


def write_index(presets: dict, records: dict) -> None:
    lines = [
        "# Presets",
        "",
        "A preset is a named sweep with the published claims it checks and the figures it draws "
        "(`trajlab list` lists them, `trajlab run NAME` runs one, `trajlab report DIR` checks its claims). "
        "Each page below states the preset's claims, its sweep, and its figures from the `--quick` run, "
        "with each claim measured on that quick run.",
        "",
        "These pages are generated by `docs/gen_presets.py` from the preset registry (`trajlab.registered_presets()`); "
        "rerun it after changing a preset. Writing your own preset: [Write your own](../plugins.md).",
        "",
        "| preset | description | claims on the `--quick` run | quick run |",
        "|---|---|---|---|",
    ]
    for name, preset in presets.items():
        record = records.get(name)
        if record is None:
            verdicts, took = "not run", ""
        else:
            counts = {}
            for claim in record.get("claims", []):
                counts[_verdict(claim["holds"])] = counts.get(_verdict(claim["holds"]), 0) + 1
            verdicts = ", ".join(f"{counts[v]} {v}" for v in (HOLDS, FAILS, NOT_CHECKED) if v in counts) or "none"
            if record.get("error"):
                verdicts = "**failed** (see page); " + verdicts
            took = f"{record.get('runs', 0)} runs, {record.get('run_s', '?')} s"
        lines.append(f"| [{name}]({name}.md) | {_cell(preset.description)} | {verdicts} | {took} |")
    lines.append("")
    (PAGES / "index.md").write_text("\n".join(lines))


def _machine() -> str:
    import os

    import jax

    device = jax.devices()[0]
    kind = "CPU" if device.platform == "cpu" else f"{device.platform.upper()} ({device.device_kind})"
    return f"{kind}, {os.cpu_count()} cores" if device.platform == "cpu" else kind


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="run only these presets (pages of the others are rewritten from the record)")
    parser.add_argument("--pages-only", action="store_true", help="run nothing, rewrite the pages from quick_runs.json")
    parser.add_argument("--work", type=Path, default=None, help="keep the quick sweeps in this folder (default: a temporary one)")
    args = parser.parse_args(argv)

    import trajlab

    presets = trajlab.registered_presets()
    PAGES.mkdir(parents=True, exist_ok=True)
    records = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    unknown = [n for n in (args.only or []) if n not in presets]
    if unknown:
        parser.error(f"unknown presets {unknown}; known: {', '.join(presets)}")
    to_run = [] if args.pages_only else (args.only if args.only is not None else list(presets))

    work = args.work or Path(tempfile.mkdtemp(prefix="trajlab-docs-"))
    total = time.perf_counter()
    try:
        machine = _machine() if to_run else ""
        for name in to_run:
            print(f"[gen_presets] {name}: running --quick ...", flush=True)
            record = run_quick(presets[name], work)
            record["machine"] = machine
            record["date"] = datetime.date.today().isoformat()
            record["python"] = platform.python_version()
            records[name] = record
            RECORD.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
            print(f"[gen_presets] {name}: {record['total_s']} s, {record['runs']} runs, "
                  f"figures {record['figures']}, error {record['error']}", flush=True)
            write_page(presets[name], record)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    for name, preset in presets.items():
        write_page(preset, records.get(name))
    write_index(presets, records)
    print(f"[gen_presets] done in {time.perf_counter() - total:.0f} s", flush=True)
    failed = [n for n in to_run if records[n].get("error")]
    if failed:
        print(f"[gen_presets] failed: {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
