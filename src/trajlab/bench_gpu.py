"""The GPU report (issue 15, goal 6): one command that measures what the docs' GPU table needs.

Run it as ``bench/gpu.sh`` on a machine with a GPU (``bench/gpu.sh --tiny`` anywhere: the same code
path at toy sizes, which the test suite runs on the CPU so it cannot rot). It measures, on the
headline configuration of :mod:`trajlab.bench` (100 x 100 completion, rank 5, 2000 observed,
depth 3, normalized GD):

1. **throughput**: run-steps per second of the compiled engine for batches 1, 8, 64, 512, 4096, in
   float32 and then float64 (:func:`trajlab.bench.engine_throughput`: compile excluded, tol = 0 so
   every run stays active), with the compile time and the device's peak memory after each size
   (``memory_stats()['peak_bytes_in_use']``; "n/a" on backends that do not report it);
2. **headline run**: the whole run to train loss 1e-6, end to end (:func:`trajlab.bench.headline_run`);
3. **full presets** that are CPU-infeasible, each end to end in its own process (``trajlab run NAME
   --out DIR``, killed after ``--preset-timeout`` seconds): ``tc-incremental`` (R = 1000),
   ``dmf-completion`` (the full sweep), ``not-norms`` (full).

It writes a markdown report (``--out``, default ``bench-gpu.md``) with the machine, one table per
part, and the goal of the issue: >= 3 million run-steps per second at batch 512 in float32 on one
H100 / H200 (about 5 million is the limit at peak FP32: 12 MFLOP per run-step).

``--tiny``: batches 1 and 2, 5 steps per timing, the headline run capped at 200 steps, and the
presets' ``--quick`` versions capped at 30 steps (a minute on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL_SIZES = (1, 8, 64, 512, 4096)
TINY_SIZES = (1, 2)
PRESETS = ("tc-incremental", "dmf-completion", "not-norms")
GOAL_RUN_STEPS_PER_S = 3e6


def _peak_memory() -> int | None:
    import jax

    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        return None
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def _bytes(value) -> str:
    if value is None:
        return "n/a"
    from trajlab.engine.memory import format_bytes

    return format_bytes(value)


def throughput(sizes, steps: int, x64: bool) -> list[dict]:
    """One row per batch size (see the module docstring)."""
    import jax

    from trajlab.bench import engine_throughput, headline_config

    jax.config.update("jax_enable_x64", bool(x64))
    rows = []
    for size in sizes:
        row = engine_throughput(headline_config(x64=x64), int(size), steps, repeats=3, min_seconds=1.0)
        row["peak_memory"] = _peak_memory()
        row["dtype"] = "float64" if x64 else "float32"
        rows.append(row)
    return rows


def headline(tiny: bool) -> dict:
    import jax

    from trajlab.bench import headline_config, headline_run

    jax.config.update("jax_enable_x64", False)
    config = headline_config(max_steps=200) if tiny else headline_config()
    return headline_run(config)


def run_preset(name: str, tiny: bool, timeout: float, python: str = sys.executable) -> dict:
    """``trajlab run NAME`` end to end in a fresh process (its wall time includes start-up and
    compilation), killed after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory() as folder:
        command = [python, "-m", "trajlab", "run", name, "--out", str(Path(folder) / name), "--no-progress", "--no-figures"]
        if tiny:
            command += ["--quick", "--set", "train.max_steps=30"]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return dict(preset=name, status=f"killed after {timeout:g} s", wall_s=time.perf_counter() - start, runs=None)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            return dict(preset=name, status=f"failed (exit {done.returncode}): {last}", wall_s=wall, runs=None)
        try:
            from trajlab.store import load

            data = load(Path(folder) / name)
            runs = len(data.runs)
            finished = int((data.runs["status"] == "done").sum()) if "status" in data.runs else runs
        except Exception as error:  # noqa: BLE001 - the report says what went wrong
            return dict(preset=name, status=f"ran, but its folder did not load: {error}", wall_s=wall, runs=None)
        return dict(preset=name, status="done", wall_s=wall, runs=runs, reached_tol=finished)


def markdown(report: dict) -> str:
    """The report as markdown (what docs/benchmarks.md's GPU section takes)."""
    machine = report["machine"]
    lines = [
        f"# trajlab GPU report ({'tiny sizes: a smoke test, not a measurement' if report['tiny'] else 'full sizes'})",
        "",
        f"- device: {machine['device']} ({machine['device_kind'] or machine['platform']}), "
        f"{machine['cpu_count']} CPU cores ({machine['cpu']})",
        f"- software: JAX {machine['jax_version']}, numpy {machine['numpy_version']}; "
        f"XLA_FLAGS={machine['env'].get('XLA_FLAGS', 'unset')}",
        f"- date: {report['date']}; command: `{report['command']}`",
        "",
        f"## Run-steps per second, headline configuration ({report['steps']} steps per timing, compile excluded)",
        "",
        "| dtype | runs | run-steps/s (best) | median | compile s | peak device memory |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["throughput"]:
        lines.append(
            f"| {row['dtype']} | {row['batch']} | {row['run_steps_per_s']:,.0f} | {row['run_steps_per_s_median']:,.0f} "
            f"| {row['compile_s']:.2f} | {_bytes(row['peak_memory'])} |"
        )
    at_512 = [r for r in report["throughput"] if r["dtype"] == "float32" and r["batch"] == 512]
    if at_512:
        rate = at_512[0]["run_steps_per_s"]
        verdict = "meets" if rate >= GOAL_RUN_STEPS_PER_S else "misses"
        lines += ["", f"Goal: >= {GOAL_RUN_STEPS_PER_S:,.0f} run-steps/s at batch 512 in float32: {rate:,.0f} ({verdict})."]
    h = report["headline"]
    lines += [
        "",
        "## Headline run, end to end",
        "",
        f"{h['status']} after {h['steps']:,} steps (train loss {h['final_train_loss']:.3g}) in {h['wall_s']:.2f} s "
        f"(compile {h['compile_s']:.2f} s, {h['steps_per_s_after_compile']:,.0f} steps/s after it).",
        "",
        "## Full presets, end to end (`trajlab run NAME`, a fresh process each)",
        "",
        "| preset | status | runs | reached tol | wall s |",
        "|---|---|---|---|---|",
    ]
    for row in report["presets"]:
        lines.append(
            f"| {row['preset']} | {row['status']} | {row['runs'] if row['runs'] is not None else '-'} "
            f"| {row.get('reached_tol', '-')} | {row['wall_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/gpu.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a smoke test that runs anywhere)")
    parser.add_argument("--out", default="bench-gpu.md", help="markdown report (default bench-gpu.md)")
    parser.add_argument("--json", default=None, help="also write every figure as JSON here")
    parser.add_argument("--steps", type=int, default=None, help="steps per timing (default 2000; tiny 5)")
    parser.add_argument("--sizes", default=None, help="batch sizes, comma-separated (default 1,8,64,512,4096)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="full presets to run end to end ('' for none)")
    parser.add_argument("--preset-timeout", type=float, default=1800.0, help="seconds before a preset is killed")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(TINY_SIZES if args.tiny else FULL_SIZES)
    steps = args.steps if args.steps is not None else (5 if args.tiny else 2000)
    if steps < 1 or not sizes or min(sizes) < 1:
        print("error: --steps and --sizes must be integers >= 1", file=sys.stderr)
        return 2

    from trajlab.bench import machine_info

    report = dict(tiny=args.tiny, steps=steps, date=time.strftime("%Y-%m-%d %H:%M %Z"),
                  command="bench/gpu.sh " + " ".join(argv if argv is not None else sys.argv[1:]), machine=machine_info())
    rows = []
    for x64 in (False, True):
        rows += throughput(sizes, steps, x64)
        print(f"throughput {'float64' if x64 else 'float32'}: " + ", ".join(
            f"{r['batch']}: {r['run_steps_per_s']:,.0f}" for r in rows if r["dtype"] == ("float64" if x64 else "float32")), flush=True)
    report["throughput"] = rows
    report["headline"] = headline(args.tiny)
    print(f"headline: {report['headline']['wall_s']:.2f} s", flush=True)
    report["presets"] = []
    for name in [n for n in args.presets.split(",") if n.strip()]:
        report["presets"].append(run_preset(name.strip(), args.tiny, args.preset_timeout))
        print(f"preset {name}: {report['presets'][-1]['status']} in {report['presets'][-1]['wall_s']:.1f} s", flush=True)
    text = markdown(report)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
