"""The command line: ``trajlab list / config / run / show / plot / report / reproduce / verify / bench``.

Input errors print one line ``error: ...`` naming the field and what is allowed, and exit with
code 2 before anything is written.

Files written at a path the user names (``report --output``, the pages of ``reproduce --out``,
figures and tables) replace only a regular file that may be written: a folder, a device node, a
FIFO, a symbolic link (never followed, never replaced) or a read-only file (also for root) is a
one-line error; see :mod:`trajlab.safe_files`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from trajlab.errors import TrajlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="trajlab: trajectories of gradient descent.")
console = Console()
if not console.is_terminal:  # logs and CI: do not squeeze tables into 80 columns
    console = Console(width=160)
err_console = Console(stderr=True)


def _fail(message: str) -> None:
    err_console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _resolve(preset_name: str, sets: list[str], quick: bool, x64: bool):
    from trajlab.presets import get_preset
    from trajlab.sweep import parse_assignment, split_axes

    preset = get_preset(preset_name)
    assignments = dict(parse_assignment(text) for text in sets)
    if x64:
        assignments["train.x64"] = True
    fixed, axes = split_axes(assignments)
    return preset, fixed, axes


def _path_option(text: Optional[str], option: str, what: str) -> Optional[Path]:
    """The path an option names; an empty one is an error (``Path("")`` would be the current folder)."""
    if text is None:
        return None
    if not text.strip():
        raise TrajlabError(f"{option}: empty path; give a {what}, or leave {option} out for the default")
    return Path(text)


def default_out(preset_name: str, quick: bool) -> Path:
    return Path("results") / (preset_name + ("-quick" if quick else ""))


@app.command("list")
def list_presets(
    file: Optional[Path] = typer.Argument(None, help="a Python file of your own: list the presets it defines"),
) -> None:
    """List the presets with a one-line description (a file's: run them as FILE:NAME)."""
    from trajlab import cli_cache

    entry = cli_cache.key("list", [], _console_key()) if file is None else None
    if entry is not None and _print_cached(entry):
        return
    from rich.table import Table

    from trajlab.presets import load_presets_file, presets

    try:
        found = load_presets_file(file) if file is not None else list(presets().values())
    except TrajlabError as error:
        _fail(str(error))
    table = Table("preset", "description", box=None)
    for preset in found:
        table.add_row(f"{file}:{preset.name}" if file is not None else preset.name, preset.description)
    with console.capture() as captured:
        console.print(table)
        if file is not None and not found:
            console.print(f"{file} defines no preset (a module-level trajlab.Preset)")
    _print_and_cache(entry, captured.get())


def _console_key() -> list:
    return [console.width, console.color_system, console.is_terminal]


def _print_cached(entry: str) -> bool:
    """Print the cached output of ``entry`` (see :mod:`trajlab.cli_cache`); False when there is none."""
    from trajlab import cli_cache

    text = cli_cache.read(entry)
    if text is None:
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


def _print_and_cache(entry: Optional[str], text: str) -> None:
    from trajlab import cli_cache

    sys.stdout.write(text)
    sys.stdout.flush()
    if entry is not None:
        cli_cache.write(entry, text)


@app.command("config")
def show_config(
    preset: str = typer.Argument(..., help="preset name (see `trajlab list`)"),
    set_: List[str] = typer.Option([], "--set", help="key=value; a list [a,b] sweeps the field"),
    quick: bool = typer.Option(False, "--quick", help="the shrunken preset"),
    x64: bool = typer.Option(False, "--x64", help="float64"),
) -> None:
    """Print the fully resolved config (every field by dotted name) and the swept axes."""
    from trajlab import cli_cache

    # A preset of a user's file is resolved afresh (its file may have changed); built-ins are cached.
    entry = None if ".py:" in preset or preset.endswith(".py") else cli_cache.key(
        "config", [preset, list(set_), quick, x64], _console_key()
    )
    if entry is not None and _print_cached(entry):
        return
    import yaml

    from trajlab.config import to_flat

    try:
        spec, fixed, axes = _resolve(preset, set_, quick, x64)
        base, grid = spec.resolve(fixed, axes, quick)
        configs = spec.configs(fixed, axes, quick)
    except TrajlabError as error:
        _fail(str(error))
    document = {"preset": spec.name, "config": to_flat(base), "sweep": grid, "runs": len(configs)}
    with console.capture() as captured:
        console.print(yaml.safe_dump(document, sort_keys=False), highlight=False, markup=False)
    _print_and_cache(entry, captured.get())


@app.command("run")
def run(
    preset: str = typer.Argument(..., help="preset name (see `trajlab list`) or path/to/file.py:NAME"),
    set_: List[str] = typer.Option([], "--set", help="key=value; a list [a,b] sweeps the field"),
    out: Optional[str] = typer.Option(None, "--out", help="sweep folder (default results/PRESET[-quick])"),
    x64: bool = typer.Option(False, "--x64", help="float64 instead of float32"),
    quick: bool = typer.Option(False, "--quick", help="fewer grid points: minutes on a 2-core CPU"),
    max_batch: Optional[int] = typer.Option(
        None, "--max-batch", help="most runs in one vmapped batch (default: as many as fit half the free memory, at most 512)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="write the preset's figures"),
    executor_name: Optional[str] = typer.Option(
        None, "--executor",
        help="where batches run: auto (default, or $TRAJLAB_EXECUTOR: processes on a multi-core CPU, else inprocess), "
             "inprocess, processes (one worker process per core), dask or slurm (slurm: submitit's job pickles are stored in DIR/slurm "
             "and unpickled by the jobs, so whoever can write the sweep folder can run code in your SLURM jobs; "
             "keep the folder writable by you only)",
    ),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask: scheduler address (default: a local cluster)"),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="processes / dask: worker processes (default: one per core; dask: 2 to 4)"
    ),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="slurm: partition of the batch jobs"),
    slurm_time: Optional[int] = typer.Option(None, "--slurm-time", help="slurm: minutes per batch job (default 60)"),
    slurm_gpus: Optional[int] = typer.Option(None, "--slurm-gpus", help="slurm: GPUs per batch job (default 0)"),
) -> None:
    """Run a preset's sweep into a folder (resumes: finished runs are skipped), then plot it.

    Batches run in this process (on every local GPU), on a Dask cluster (--executor dask) or as
    SLURM jobs (--executor slurm); workers write into the folder, which they must all see.
    """
    from trajlab.executors import make_executor
    from trajlab.store import SweepStore

    executor = None
    folder = out
    try:
        out = _path_option(out, "--out", "folder")
        if max_batch is not None and max_batch < 1:
            raise TrajlabError(f"--max-batch must be an integer >= 1, got {max_batch}")
        from trajlab.executors import default_executor_name, warm_up

        name = executor_name if executor_name is not None else default_executor_name()
        warm_up(name)  # worker processes' fork server imports JAX on another core while presets load
        spec, fixed, axes = _resolve(preset, set_, quick, x64)
        configs = spec.configs(fixed, axes, quick)
        executor = make_executor(
            name, scheduler=scheduler, workers=workers,
            slurm_partition=slurm_partition, slurm_time=slurm_time, slurm_gpus=slurm_gpus, runs=len(configs),
        )
        folder = out if out is not None else default_out(spec.name, quick)
        reason = SweepStore.can_write(folder)
        if reason:
            raise TrajlabError(f"--out: cannot write to folder {str(folder)!r} ({reason})")
        if figures and spec.figures:
            _check_figure_targets(folder, "--out")
        from trajlab.sweep import run_sweep

        baselines = spec.baselines(configs) if spec.baselines else []
        console.print(f"{spec.name}: {len(configs)} runs, {len(baselines)} baselines -> {folder}")
        from trajlab.presets import preset_source

        data = run_sweep(
            configs, folder, preset=spec.name, baselines=baselines, max_batch=max_batch, show_progress=progress,
            executor=executor, preset_source=preset_source(spec),
        )
    except TrajlabError as error:
        _fail(str(error))
    except OSError as error:  # full disk, folder made read-only mid-sweep, ...
        _fail(
            f"--out: cannot write into {str(folder)!r} ({error.strerror or error}); runs finished before "
            "are kept: free space or fix permissions, then rerun the same command to resume"
        )
    finally:
        if executor is not None:
            executor.shutdown()
    _print_summary(data, spec)
    if spec.claims and len(data.runs):
        from trajlab.presets.claims import check_claims
        from trajlab.report import claims_summary

        console.print(f"{spec.name}: {claims_summary(check_claims(spec.claims, data))} (details: trajlab report)",
                      highlight=False)
    if figures and spec.figures:
        saved = (f"the runs are saved in {str(folder)!r}: free space or fix permissions, then "
                 f"`trajlab plot {folder}` writes the figures")
        for path in _write_figures(spec, data, folder, "--out", saved):
            console.print(f"wrote {path}")


def _short(name):
    """Display name of a column or index level: the last part of a dotted name."""
    return name.rsplit(".", 1)[-1] if isinstance(name, str) else name


def _for_display(table):
    table = table.drop(columns=[c for c in ("run_id",) if c in table.columns])
    table = table.rename(columns=_short)
    table.index = table.index.set_names([_short(n) for n in table.index.names])
    return table


def _final_table(data, spec=None):
    """The table of final values, with the preset's ``table_metrics`` besides the defaults."""
    from trajlab.report import final_table
    from trajlab.report.tables import FINAL_TABLE_METRICS

    extra = tuple(getattr(spec, "table_metrics", ()) or ())
    return final_table(data.runs, data.baselines, metrics=FINAL_TABLE_METRICS + extra)


def _print_summary(data, spec=None) -> None:
    from trajlab.report import render_table, summary_table

    if len(data.runs) == 0:
        console.print("no finished runs")
        return
    summary = summary_table(data.runs)
    title = "summary by " + " and ".join(_short(name) for name in summary.index.names)
    console.print(render_table(_for_display(summary), title=title))
    console.print(render_table(_for_display(_final_table(data, spec)), title="final values"))


def _check_figure_targets(folder: Path, option: str) -> None:
    """Fail before anything is computed or drawn when FOLDER/figures or FOLDER/final_table.csv
    could not be written (a read-only folder, a file where the figures folder goes, ...)."""
    from trajlab.safe_files import folder_problem, output_problem

    figures = Path(folder) / "figures"
    reason = folder_problem(figures)
    if reason:
        raise TrajlabError(f"{option}: cannot write figures into {str(figures)!r} ({reason})")
    table = Path(folder) / "final_table.csv"
    reason = output_problem(table)
    if reason:
        raise TrajlabError(f"{option}: cannot write {str(table)!r} ({reason})")


def _write_figures(spec, data, folder: Path, option: str, saved: str) -> list[Path]:
    """Write the preset's figures into FOLDER/figures and FOLDER/final_table.csv; return the paths.

    A file that cannot be written (a full disk, a read-only folder, a target that is not ours to
    replace) is one line ``error: OPTION: cannot write ...; SAVED`` and exit code 2: the results
    themselves are stored already, and SAVED says so.
    """
    from trajlab.plots import save_figure
    from trajlab.plots.save import FORMATS, _close
    from trajlab.safe_files import OutputError, check_output, write_output

    folder = Path(folder)
    written = []
    pending = []
    try:
        pending = list(spec.figures(data).items())
        while pending:
            name, figure = pending[0]
            for fmt in FORMATS:
                check_output(folder / "figures" / f"{name}.{fmt}", option)
            pending.pop(0)
            written.extend(save_figure(figure, folder / "figures", name))
        table_path = folder / "final_table.csv"
        write_output(table_path, _final_table(data, spec).to_csv().encode("utf-8"), option)
        written.append(table_path)
    except OutputError as error:
        _fail(f"{option}: cannot write {str(error.path)!r} ({error.reason}); {saved}")
    except OSError as error:  # a full disk, a folder made read-only while drawing
        _fail(f"{option}: cannot write into {str(folder / 'figures')!r} ({error.strerror or error}); {saved}")
    finally:
        for _, figure in pending:
            _close(figure)
    return written


def _load(folder: Path):
    from trajlab.store import load

    try:
        return load(folder)
    except TrajlabError as error:
        _fail(str(error))


@app.command("show")
def show(folder: Path = typer.Argument(..., help="a sweep folder")) -> None:
    """Print the summary table and the table of final values of a sweep folder."""
    data = _load(folder)
    _print_summary(data)


@app.command("plot")
def plot(folder: Path = typer.Argument(..., help="a sweep folder")) -> None:
    """Write the preset's figures of a sweep folder as PNG and SVG into FOLDER/figures."""
    data = _load(folder)
    spec, note = _preset_of(data)
    if spec is None:
        _fail(f"DIR: {str(folder)!r}: {note}")
    if len(data.runs) == 0:
        _fail(f"DIR: {str(folder)!r} has no finished runs to plot")
    try:
        _check_figure_targets(folder, "DIR")
    except TrajlabError as error:
        _fail(f"{error}; nothing was written")
    for path in _write_figures(spec, data, folder, "DIR", "the sweep's results are unchanged"):
        console.print(f"wrote {path}")


# --- report / reproduce: one self-contained HTML page per sweep -----------------------------------


def _preset_of(data):
    """The preset a sweep folder's manifest records (the last one; a user's preset is found again
    through the file the manifest records), or None and a note why not."""
    from trajlab.presets import get_preset, presets as registered

    names = data.manifest.get("presets") or []
    if not names:
        return None, "This sweep folder records no preset: no figures or claims, only its tables and configs."
    name = names[-1]
    if name in registered():
        return registered()[name], None
    source = (data.manifest.get("preset_sources") or {}).get(name)
    if source:
        try:
            return get_preset(source), None
        except TrajlabError as error:
            return None, f"Preset {name!r} could not be loaded from {source} ({error}): no figures or claims."
    return None, (
        f"Preset {name!r} is unknown to this version of trajlab: no figures or claims, only its tables and configs."
    )


def _figure_images(spec, data) -> dict:
    """{name: PNG bytes, or why the figure could not be drawn} of a preset's figures."""
    from trajlab.report import figure_png

    if spec is None or spec.figures is None or len(data.runs) == 0:
        return {}
    try:
        figures = spec.figures(data)
    except Exception as error:  # a page without figures beats no page
        return {"figures": f"could not be drawn ({type(error).__name__}: {error})"}
    images = {}
    for name, figure in figures.items():
        try:
            images[name] = figure_png(figure)
        except Exception as error:
            images[name] = f"could not be drawn ({type(error).__name__}: {error})"
    return images


def _report_html(spec, data, folder: Path, images: dict, notes: list[str]):
    """The report page of a loaded sweep and its claims, checked."""
    from trajlab.presets.claims import check_claims
    from trajlab.report import landscape_images, report_page, summary_table

    notes = [f"Sweep folder: {Path(folder).resolve()}", *notes]
    tables = []
    if len(data.runs):
        for title, make in (
            ("summary by depth", lambda: summary_table(data.runs)),
            ("final values", lambda: _final_table(data, spec)),
        ):
            try:
                tables.append((title, make()))
            except ValueError as error:
                notes.append(f"No table of {title}: {error}")
    checks = check_claims(spec.claims, data) if spec is not None else []
    text = report_page(
        spec.name if spec is not None else Path(folder).resolve().name,
        description=spec.description if spec is not None else "",
        claims=checks,
        figures=images,
        tables=tables,
        configs=data.manifest.get("configs", {}),
        runs=data.runs,
        manifest=data.manifest,
        landscape=landscape_images(folder),
        notes=notes,
    )
    return text, checks


def _check_page_path(path: Path, option: str) -> None:
    """Fail when trajlab must not write the page ``path`` (:func:`trajlab.safe_files.output_problem`:
    not a regular file, a symbolic link, read-only, in a folder that cannot be written)."""
    from trajlab.safe_files import OutputError, check_output

    try:
        check_output(path, option)
    except OutputError as error:
        _fail(str(error))


def _write_page(path: Path, text: str, option: str) -> None:
    """Write a page (or table) atomically over nothing but a regular file that may be written."""
    from trajlab.safe_files import OutputError, write_output

    try:
        write_output(path, text.encode("utf-8"), option)
    except OutputError as error:
        _fail(str(error))


@app.command("report")
def report(
    folder: Path = typer.Argument(..., help="a sweep folder"),
    output: Optional[str] = typer.Option(
        None, "--output",
        help="the HTML file (default DIR/report.html); replaces only a regular file you may write, never a "
             "folder, device, FIFO, symbolic link or read-only file",
    ),
) -> None:
    """Write one self-contained HTML page of a sweep folder: the preset's published claims with the
    measured values and verdicts, its figures, the tables of final values, each run's config."""
    try:
        output = _path_option(output, "--output", "file")
    except TrajlabError as error:
        _fail(str(error))
    data = _load(folder)
    path = output if output is not None else Path(folder) / "report.html"
    _check_page_path(path, "--output")
    spec, note = _preset_of(data)
    text, checks = _report_html(spec, data, folder, _figure_images(spec, data), [note] if note else [])
    _write_page(path, text, "--output")
    if checks:
        from trajlab.report import claims_summary

        console.print(f"{spec.name}: {claims_summary(checks)}", highlight=False)
    console.print(f"wrote {path}", highlight=False)


@app.command("reproduce")
def reproduce(
    presets: Optional[List[str]] = typer.Argument(None, help="presets to run (default: all, see `trajlab list`)"),
    quick: bool = typer.Option(False, "--quick", help="the shrunken presets: minutes on a 2-core CPU"),
    out: Optional[str] = typer.Option(None, "--out", help="folder (default results/reproduce[-quick])"),
    set_: List[str] = typer.Option([], "--set", help="key=value applied to every preset; a list [a,b] sweeps"),
    x64: bool = typer.Option(False, "--x64", help="float64 for every preset"),
    max_batch: Optional[int] = typer.Option(
        None, "--max-batch", help="most runs in one vmapped batch (default: as many as fit half the free memory, at most 512)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
    strict: bool = typer.Option(False, "--strict", help="exit code 1 also when a checked claim does not hold"),
    executor_name: Optional[str] = typer.Option(
        None, "--executor", help="auto (default, or $TRAJLAB_EXECUTOR: processes on a multi-core CPU), inprocess or processes"
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="processes: worker processes (default: one per core)"),
) -> None:
    """Run presets into OUT/<preset>/ (resumes: finished runs are skipped), write each one's
    report.html and final_table.csv, and OUT/index.html linking the reports with their claims'
    verdicts. (The figures are in the reports; `trajlab plot OUT/<preset>` writes them as PNG and SVG.)

    Exit code 0 when every preset ran (1 when one failed, or with --strict when a claim does not hold).
    """
    from trajlab.executors import default_executor_name, make_executor
    from trajlab.presets import presets as registered
    from trajlab.report import IndexEntry, claims_summary, index_page, runs_summary
    from trajlab.store import SweepStore

    plans = []
    try:
        choice = executor_name if executor_name is not None else default_executor_name()
        if choice not in ("auto", "inprocess", "processes"):
            raise TrajlabError(f"--executor: reproduce runs on auto, inprocess or processes, got {choice!r}")
        from trajlab.executors import warm_up

        warm_up(choice)
        out = _path_option(out, "--out", "folder")
        if max_batch is not None and max_batch < 1:
            raise TrajlabError(f"--max-batch must be an integer >= 1, got {max_batch}")
        for preset_name in dict.fromkeys(presets or list(registered())):
            spec, fixed, axes = _resolve(preset_name, set_, quick, x64)
            plans.append((spec, spec.configs(fixed, axes, quick)))
        # one executor for every preset: worker processes start once
        executor = make_executor(choice, workers=workers, runs=sum(len(configs) for _, configs in plans))
        root = out if out is not None else Path("results") / ("reproduce-quick" if quick else "reproduce")
        reason = SweepStore.can_write(root)
        if reason:
            raise TrajlabError(f"--out: cannot write to folder {str(root)!r} ({reason})")
        from trajlab.safe_files import check_output

        # Every page and table written outside the sweeps' stores, checked before anything runs.
        check_output(root / "index.html", "--out")
        for spec, _ in plans:
            for name in ("report.html", "final_table.csv"):
                check_output(root / spec.name / name, "--out")
    except TrajlabError as error:
        _fail(str(error))
    from trajlab.sweep import run_sweep

    entries = []
    for spec, configs in plans:
        folder = root / spec.name
        try:
            baselines = spec.baselines(configs) if spec.baselines else []
            console.print(f"{spec.name}: {len(configs)} runs, {len(baselines)} baselines -> {folder}", highlight=False)
            data = run_sweep(
                configs, folder, preset=spec.name, baselines=baselines, max_batch=max_batch, show_progress=progress,
                executor=executor,
            )
        except TrajlabError as error:
            err_console.print(f"error: {spec.name}: {error}", highlight=False, markup=False, soft_wrap=True)
            entries.append(IndexEntry(spec.name, None, spec.description, error=str(error)))
            continue
        images = _figure_images(spec, data)
        if len(data.runs):
            _write_page(folder / "final_table.csv", _final_table(data, spec).to_csv(), "--out")
        text, checks = _report_html(spec, data, folder, images, [])
        _write_page(folder / "report.html", text, "--out")
        runs, statuses = runs_summary(data.runs)
        entries.append(IndexEntry(spec.name, f"{spec.name}/report.html", spec.description, runs, statuses, checks))
        console.print(f"{spec.name}: {claims_summary(checks)}; wrote {folder / 'report.html'}", highlight=False)
    executor.shutdown()
    _write_page(root / "index.html", index_page(entries), "--out")
    console.print(f"wrote {root / 'index.html'}", highlight=False)
    failed = any(entry.error for entry in entries)
    refuted = any(check.holds is False for entry in entries for check in entry.claims)
    if failed or (strict and refuted):
        raise typer.Exit(code=1)


@app.command("verify")
def verify(
    check: List[str] = typer.Option([], "--check", help="run only these checks (repeatable)"),
) -> None:
    """Check the theory of deep linear dynamics numerically; print each check's measured values.

    Exit code 0 when every check passes, 1 otherwise.
    """
    from trajlab.verify import CHECKS, format_results, run_checks

    unknown = [name for name in check if name not in CHECKS]
    if unknown:
        _fail(f"--check: unknown check {unknown[0]!r}; known checks: {', '.join(CHECKS)}")
    results = run_checks(check or None)
    console.print(format_results(results))
    if not all(result.passed for result in results):
        raise typer.Exit(code=1)


@app.command("bench")
def bench(
    batches: str = typer.Option("1,8,64,512", "--batches", help="comma-separated batch sizes"),
    steps: int = typer.Option(200, "--steps", help="steps per timing (use 2000+ on a GPU)"),
    x64: bool = typer.Option(False, "--x64", help="float64"),
    headline: bool = typer.Option(True, "--headline/--no-headline", help="also time the headline run to loss 1e-6"),
    flow: bool = typer.Option(False, "--flow", help="instead: adaptive gradient-flow solver vs tiny-step GD"),
    cores: Optional[str] = typer.Option(
        None, "--cores", help="instead: PRESET's --quick sweep pinned to one core, in process, devices per core and the default (worker processes)"
    ),
    repeats: int = typer.Option(2, "--repeats", help="--cores: timings per mode"),
) -> None:
    """Run-steps per second: the headline config, batched 1..512, vs a plain numpy loop.

    With --flow: gradient evaluations and wall time of the adaptive gradient-flow solver vs
    tiny-step GD at equal distance to a reference flow (float64), as ratios.
    """
    if flow:
        _bench_flow()
        return
    if cores is not None:
        from trajlab.bench_cores import cores_benchmark

        if repeats < 1:
            _fail(f"--repeats must be an integer >= 1, got {repeats}")
        try:
            cores_benchmark(cores, repeats, console=console)
        except RuntimeError as error:
            _fail(str(error))
        return
    from trajlab.bench import run_benchmarks

    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        _fail(f"--batches must be comma-separated integers >= 1, got {batches!r}")
    if steps < 1:
        _fail(f"--steps must be an integer >= 1, got {steps}")
    run_benchmarks(sizes, steps, x64=x64, headline=headline, console=console)


def _bench_flow() -> None:
    from rich.table import Table

    from trajlab.bench_flow import flow_vs_gd

    rows, ratios = flow_vs_gd()
    table = Table("method", "distance to reference at T", "gradient evaluations", "wall s (compiled)", title="gradient flow vs GD, T = 2")
    for row in rows:
        table.add_row(row.method, f"{row.distance:.3g}", f"{row.gradient_evaluations:,}", f"{row.wall_s:.4f}")
    console.print(table)
    matched = Table("solver", "distance", "GD step needed", "GD/solver evaluations", "GD/solver wall", "extrapolated", title="at equal accuracy")
    for ratio in ratios:
        matched.add_row(
            ratio["solver"], f"{ratio['distance']:.3g}", f"{ratio['gd_step_needed']:.3g}",
            f"{ratio['evaluations_ratio']:.3g}", f"{ratio['wall_ratio']:.3g}", str(ratio["extrapolated"]),
        )
    console.print(matched)


def _enable_compilation_cache() -> None:
    """Reuse XLA compilations across invocations (saves 2-3 s per command on a 2-core CPU).

    Off when TRAJLAB_COMPILATION_CACHE=0; the folder is TRAJLAB_COMPILATION_CACHE or
    ~/.cache/trajlab/jax. Set through JAX's environment variables (read when JAX is imported), so
    commands that never import JAX (``--help``, ``list``) do not pay for importing it; an
    explicit JAX_COMPILATION_CACHE_DIR wins.
    """
    import os

    setting = os.environ.get("TRAJLAB_COMPILATION_CACHE", "")
    if setting == "0" or "jax" in sys.modules:
        if setting != "0":  # already imported (e.g. by a plug-in): configure it directly
            import jax

            folder = Path(setting) if setting else Path.home() / ".cache" / "trajlab" / "jax"
            jax.config.update("jax_compilation_cache_dir", str(folder))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        return
    folder = Path(setting) if setting else Path.home() / ".cache" / "trajlab" / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(folder))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


# --- landscape: loss-landscape slices of a finished sweep (trajlab.landscape) --------------------


@app.command("landscape")
def landscape_command(
    folder: Path = typer.Argument(..., help="a sweep folder"),
    run: Optional[str] = typer.Option(None, "--run", help="one run id (default: every run)"),
    points: int = typer.Option(21, "--points", help="grid points per axis of the 2-D plane"),
    span: float = typer.Option(1.0, "--span", help="the plane covers [-span, span]^2 in filter-normalized units"),
    chunk: int = typer.Option(256, "--chunk", help="grid points evaluated per vmapped chunk"),
    benchmark: bool = typer.Option(False, "--benchmark", help="also time the vmapped plane against a Python loop over its points"),
) -> None:
    """Loss along init -> final and between runs (barrier), a filter-normalized 2-D plane around
    each final point, and the plane of the trajectory's top two principal directions with the
    trajectory drawn on it: FOLDER/landscape/landscape.parquet and figures."""
    from trajlab.landscape import write_landscape

    data = _load(folder)
    if len(data.runs) == 0:
        _fail(f"DIR: {str(folder)!r} has no finished runs")
    try:
        summary = write_landscape(folder, run=run, points=points, span=span, chunk=chunk, benchmark=benchmark)
    except TrajlabError as error:
        _fail(str(error))
    for (a, b), height in summary["barriers"].items():
        console.print(f"barrier {a} -> {b}: {height:.4g}", highlight=False)
    for rid, shares in summary.get("pca_explained", {}).items():
        console.print(f"trajectory plane {rid}: PC1 {100 * shares[0]:.1f}%, PC2 {100 * shares[1]:.1f}% of the path", highlight=False)
    for note in summary.get("notes", []):
        console.print(note, highlight=False)
    console.print(f"plane: {summary['plane_points_per_s']:.0f} grid points / s", highlight=False)
    if "benchmark" in summary:
        b = summary["benchmark"]
        console.print(
            f"benchmark ({b['points']} points, run {b['run_id']}): vmapped {b['vmapped_points_per_s']:.0f} points / s, "
            f"Python loop {b['loop_points_per_s']:.0f} points / s, ratio {b['ratio']:.1f}", highlight=False)
    for path in summary["paths"]:
        console.print(f"wrote {path}", highlight=False)


def main() -> None:
    _enable_compilation_cache()
    try:
        app()
    except TrajlabError as error:  # anything that slipped past a command
        err_console.print(f"error: {error}", highlight=False, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
