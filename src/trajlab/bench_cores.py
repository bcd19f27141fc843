"""Every core: one sweep timed on one core and on every core, in the ways trajlab can use them.

``trajlab bench --cores [PRESET]`` runs a preset's ``--quick`` sweep (default ``dmf-completion``)
end to end, each time in a fresh process (``python -m trajlab run PRESET --quick``) into a fresh
folder, with the persistent compilation cache off (so each mode compiles what it needs), in these
modes, alternating, ``repeats`` times:

- ``one core``: the default command with the process (and its children) pinned to one core
  (``sched_setaffinity``): the single-core wall time, the reference of the speed-ups. ``--executor
  auto`` then runs in process, with the baselines and the next batch's compilation in threads
  that share that core;
- ``one device, one thing at a time``: ``TRAJLAB_CPU_DEVICES=1 TRAJLAB_BASELINES_BESIDE=0
  TRAJLAB_COMPILE_AHEAD=0 --executor inprocess``, not pinned: everything one after the other;
- ``in process, one device``: ``--executor inprocess``, not pinned: the runs on one device, the
  baselines (cvxpy) and the next batch's compilation in threads beside them (the default before
  ``auto`` chose worker processes);
- ``devices per core``: ``TRAJLAB_CPU_DEVICES=auto --executor inprocess``: one host device per
  core, each batch's runs sharded over them (:mod:`trajlab.engine.devices`);
- ``default (auto)``: the command as a user types it: on a multi-core CPU, worker processes
  forked from a fork server, the batches balanced over them (:mod:`trajlab.executors.auto`).

It reports each wall time, the median per mode and the speed-up of each mode over ``one core``,
measured side by side in one invocation (the ratios, not the absolute times, are the result on a
machine shared with other work).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = "one core"
#: mode: (environment, --executor or None for the default, pinned to one core)
MODES = {
    REFERENCE: ({}, None, True),
    "one device, one thing at a time": ({"TRAJLAB_CPU_DEVICES": "1", "TRAJLAB_BASELINES_BESIDE": "0",
                                         "TRAJLAB_COMPILE_AHEAD": "0"}, "inprocess", False),
    "in process, one device": ({"TRAJLAB_CPU_DEVICES": "1"}, "inprocess", False),
    "devices per core": ({"TRAJLAB_CPU_DEVICES": "auto"}, "inprocess", False),
    "default (auto)": ({}, None, False),
}


#: A Python launcher that pins itself to its first allowed core, then becomes the command (exec):
#: the pinning happens in the child, after the fork, with no Python code run between fork and exec.
_PIN = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "os.execv(sys.argv[1], sys.argv[1:])")


def pinned_to_one_core(command: list[str]) -> list[str]:
    """``command`` run on one core: its process and every child it starts (affinity is inherited)."""
    return [sys.executable, "-c", _PIN, *command]


def time_mode(preset: str, mode: str, folder: Path, extra: list[str] = ()) -> float:
    env_updates, executor, pinned = MODES[mode]
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRAJLAB_CPU_DEVICES", "XLA_FLAGS", "TRAJLAB_EXECUTOR", "TRAJLAB_BASELINES_BESIDE",
                        "TRAJLAB_COMPILE_AHEAD")}
    env.update(env_updates, TRAJLAB_COMPILATION_CACHE="0")
    command = [sys.executable, "-m", "trajlab", "run", preset, "--quick", "--no-progress", "--no-figures",
               "--out", str(folder), *(["--executor", executor] if executor else []), *extra]
    if pinned:
        command = pinned_to_one_core(command)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{mode}: {' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall


def cores_benchmark(preset: str = "dmf-completion", repeats: int = 2, extra: list[str] = (), console=None) -> dict:
    """Wall times per mode (see the module docstring) and the speed-ups over ``one core``."""
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(repeats):
            for mode in MODES:
                wall = time_mode(preset, mode, Path(root) / f"{repeat}-{mode.replace(' ', '-')}", extra)
                times[mode].append(wall)
                if console is not None:
                    console.print(f"{preset} --quick, {mode}: {wall:.1f} s", highlight=False)
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    base = medians[REFERENCE]
    result = dict(preset=preset, cores=os.cpu_count(), times=times, medians=medians,
                  speedup={mode: base / value for mode, value in medians.items()})
    if console is not None:
        for mode in MODES:
            console.print(f"{mode}: median {medians[mode]:.1f} s, {result['speedup'][mode]:.2f}x one core",
                          highlight=False)
    return result
