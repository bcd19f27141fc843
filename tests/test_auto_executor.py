"""--executor auto (the command line's default): worker processes on a multi-core CPU, this process
otherwise (issue 15, goal 1); the balance of batches over workers against a brute-force optimum."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from trajlab import cli
from trajlab.executors import InProcessExecutor, ProcessExecutor, make_executor
from trajlab.store import load


def test_auto_executor_and_workers_option():
    from trajlab.executors import AutoExecutor

    auto = make_executor("auto", runs=6)
    assert isinstance(auto, AutoExecutor) and isinstance(auto.chosen, InProcessExecutor)  # until a sweep's plan
    assert make_executor("auto", workers=3, runs=1).workers == 3  # --workers asks for worker processes
    assert isinstance(make_executor("auto", workers=3), ProcessExecutor)


def _configs(depths=(1, 2), seeds=(0,), **fixed):
    from trajlab.presets import get_preset
    from trajlab.sweep import split_axes

    settings = {"problem.m": 8, "problem.n": 8, "problem.observations": 30, "train.max_steps": 40,
                "train.record_points": 4, "model.scale": 0.1, "optimizer.lr": 0.05,
                "metrics": ["train_loss"], "model.depth": list(depths), "seed": list(seeds), **fixed}
    fixed_values, axes = split_axes(settings)
    return get_preset("dmf-completion").configs(fixed_values, axes)


def _batches(configs):
    from trajlab.sweep.grid import group_batches

    return group_batches(configs, None)


def test_auto_chooses_worker_processes_only_where_they_can_help(monkeypatch):
    from trajlab import registry
    from trajlab.engine import memory
    from trajlab.executors import auto

    monkeypatch.setattr("trajlab._host.cores", lambda: 2)
    two_structures = _batches(_configs(depths=(1, 2)))
    assert len(two_structures) == 2
    assert auto.worker_lanes(two_structures) == (2, "every core")
    # one group of four runs: split in two halves, one per worker
    assert auto.worker_lanes(_batches(_configs(depths=(2,), seeds=(0, 1, 2, 3))))[0] == 2
    assert auto.worker_lanes(_batches(_configs(depths=(2,))))== (1, "a single batch")
    monkeypatch.setattr("trajlab._host.cores", lambda: 1)
    assert auto.worker_lanes(two_structures) == (1, "one core")
    monkeypatch.setattr("trajlab._host.cores", lambda: 8)
    assert auto.worker_lanes(two_structures)[0] == 2  # no more workers than batches
    # a plug-in only this process can import keeps the sweep here
    monkeypatch.setattr(registry, "origins_of", lambda kinds: ("__main__",))
    assert auto.worker_lanes(two_structures) == (1, "a plug-in defined in __main__")
    monkeypatch.undo()
    monkeypatch.setattr("trajlab._host.cores", lambda: 2)
    # memory: two batches that do not fit side by side in the share a batch may plan for
    need = max(memory.estimate(b[0], len(b)).total for b in two_structures)
    small = memory.Available(int(1.5 * need / memory.BATCH_MEMORY_FRACTION), "test")
    monkeypatch.setattr(memory, "available_memory", lambda: small)
    assert auto.worker_lanes(two_structures)[0] == 1
    roomy = memory.Available(int(2.5 * need / memory.BATCH_MEMORY_FRACTION), "test")
    monkeypatch.setattr(memory, "available_memory", lambda: roomy)
    assert auto.worker_lanes(two_structures)[0] == 2


def _makespan(order, lanes):
    """Simulated pool: each batch (a cost) goes, in order, to the worker that is free first."""
    loads = [0.0] * lanes
    for cost in order:
        loads[loads.index(min(loads))] += cost
    return max(loads)


def _optimum(costs, lanes):
    """Brute force: the least makespan over every assignment of the costs to ``lanes`` workers."""
    import itertools

    best = float("inf")
    for assignment in itertools.product(range(lanes), repeat=len(costs)):
        loads = [0.0] * lanes
        for cost, lane in zip(costs, assignment):
            loads[lane] += cost
        best = min(best, max(loads))
    return best


def test_balance_batches_keeps_every_run_and_stays_within_the_lpt_bound_of_the_optimum():
    import numpy as np

    from trajlab.sweep.grid import balance_batches

    # hand-checked cases (cost = the first letter's weight x runs)
    weight = {"a": 1.0, "c": 2.0, "e": 3.0}

    def cost(batch):
        return weight[batch[0]] * len(batch) if batch[0] in weight else weight[chr(ord(batch[0]) - 1)] * len(batch)

    assert balance_batches([list("ab"), list("cd"), list("ef")], 2, cost) == [list("ef"), list("cd"), list("ab")]
    assert balance_batches([list("abcdefgh")], 2, len) == [list("abcd"), list("efgh")]
    assert balance_batches([list("abc")], 2, len) == [["a"], ["b"], ["c"]]
    assert balance_batches([list("abcde"), ["x"]], 3, len) == [list("ab"), list("de"), ["c"], ["x"]]
    assert balance_batches([list("ab"), list("cd")], 1, len) == [list("ab"), list("cd")]  # one worker: order kept

    rng = np.random.default_rng(0)
    for trial in range(40):
        lanes = int(rng.integers(2, 4))
        per_run = rng.uniform(0.1, 5.0, size=int(rng.integers(1, 6)))
        sizes = rng.integers(1, 4, size=len(per_run))
        batches = [[(g, r) for r in range(size)] for g, size in enumerate(sizes)]
        cost = lambda batch: per_run[batch[0][0]] * len(batch)  # noqa: E731
        planned = balance_batches(batches, lanes, cost)
        assert sorted(run for batch in planned for run in batch) == sorted(run for batch in batches for run in batch)
        costs = [cost(batch) for batch in planned]
        assert costs == sorted(costs, reverse=True)
        share = sum(costs) / lanes
        assert all(c <= share * (1 + 1e-9) for c, batch in zip(costs, planned) if len(batch) >= 2)
        if len(costs) <= 9:  # LPT (Graham 1969): within 4/3 of the best assignment of these batches
            assert _makespan(costs, lanes) <= (4 / 3) * _optimum(costs, lanes) * (1 + 1e-9)
        singles = [per_run[g] for g, size in enumerate(sizes) for _ in range(size)]
        if len(singles) <= 9:  # and within 2 - 1/lanes of the best split into single runs
            assert _makespan(costs, lanes) <= (2 - 1 / lanes) * _optimum(singles, lanes) * (1 + 1e-9)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_cli_default_runs_a_multi_batch_sweep_in_worker_processes_with_equal_results(tmp_path):
    """`trajlab run` as a user types it (no --executor, no TRAJLAB_EXECUTOR) on a multi-core CPU:
    the batches run in worker processes forked from the fork server, and every stored number
    equals the same sweep run in this process (`--executor inprocess`)."""
    import subprocess
    import sys

    import pandas as pd

    settings = ["--set", "problem.m=8", "--set", "problem.n=8", "--set", "problem.observations=30",
                "--set", "train.max_steps=60", "--set", "model.depth=[1,2]", "--set", "model.scale=[0.1,0.2]",
                "--set", "train.x64=true"]
    env = {k: v for k, v in os.environ.items() if k not in ("TRAJLAB_EXECUTOR", "XLA_FLAGS", "TRAJLAB_CPU_DEVICES")}
    folders = {}
    for name, extra in (("auto", []), ("inprocess", ["--executor", "inprocess"])):
        folders[name] = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "trajlab", "run", "dmf-completion", "--quick", "--no-progress",
                               "--no-figures", "--out", str(folders[name]), *settings, *extra],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    auto, here = load(folders["auto"]), load(folders["inprocess"])
    assert auto.manifest["executor"] == "auto: processes (2 local worker processes)"
    assert here.manifest["executor"] == "inprocess"
    assert len(auto.runs) == 4 and set(auto.runs["status"]) <= {"done", "max_steps"}
    columns = [c for c in here.runs.columns if c != "wall_s"]
    pd.testing.assert_frame_equal(auto.runs.sort_values("run_id")[columns].reset_index(drop=True),
                                  here.runs.sort_values("run_id")[columns].reset_index(drop=True),
                                  check_exact=False, rtol=1e-12, atol=1e-14)
    keys = ["run_id", "step"]
    pd.testing.assert_frame_equal(auto.trajectories.sort_values(keys).reset_index(drop=True),
                                  here.trajectories.sort_values(keys).reset_index(drop=True)[auto.trajectories.columns],
                                  check_exact=False, rtol=1e-12, atol=1e-14)
    assert len(here.baselines) == len(auto.baselines) > 0


def test_worker_processes_see_the_environment_of_the_submission(tmp_path, monkeypatch):
    """Workers are forked from a fork server started earlier, with its environment of then: a
    TRAJLAB_* variable set afterwards reaches the worker with each task (here read by a user's
    metric when the worker traces it)."""
    from trajlab.executors import ProcessExecutor, warm_up
    from trajlab.sweep import run_sweep

    warm_up("processes")  # the fork server starts before the variable exists
    monkeypatch.setenv("TRAJLAB_TEST_MARK", "7.5")

    def mark(state):
        import jax.numpy as jnp

        return jnp.asarray(float(os.environ.get("TRAJLAB_TEST_MARK", "-1")))

    executor = ProcessExecutor(workers=2)
    try:
        data = run_sweep(_configs(depths=(1, 2)), tmp_path / "sweep", show_progress=False,
                         extra_metrics={"mark": mark}, executor=executor)
        assert len(data.runs) == 2 and (data.runs["final.mark"] == 7.5).all()
        monkeypatch.delenv("TRAJLAB_TEST_MARK")  # the same workers then see it unset again
        data = run_sweep(_configs(depths=(1, 2)), tmp_path / "again", show_progress=False,
                         extra_metrics={"mark": mark}, executor=executor)
        assert len(data.runs) == 2 and (data.runs["final.mark"] == -1).all()
    finally:
        executor.shutdown()


def test_progress_files_reach_the_callback_of_their_batch(tmp_path):
    """The mechanism by which worker processes report per-step progress: a worker's callback
    writes its latest report to a file, a watcher thread here hands new reports to the batch's
    callback; a batch that ended is forgotten and its file removed."""
    import time

    from trajlab.executors.processes import _ProgressFile, _ProgressWatcher

    watcher = _ProgressWatcher()
    try:
        got = {"a": [], "b": []}
        path_a = watcher.add(got["a"].append)
        path_b = watcher.add(got["b"].append)
        assert path_a != path_b
        _ProgressFile(path_a)(dict(finished=0, runs=2, step=10, loss_min=1.0, loss_max=2.0))
        writer_b = _ProgressFile(path_b)
        writer_b(dict(finished=1, runs=2, step=100, loss_min=0.5, loss_max=0.7))
        writer_b(dict(finished=1, runs=2, step=200, loss_min=0.4, loss_max=0.6))  # within 0.5 s: not written
        writer_b(dict(finished=2, runs=2, step=300, loss_min=0.1, loss_max=0.2))  # the last: always written
        deadline = time.monotonic() + 10
        while (not got["a"] or not got["b"] or got["b"][-1]["step"] != 300) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["step"] for r in got["a"]] == [10]
        assert [r["step"] for r in got["b"]][-1] == 300 and 200 not in [r["step"] for r in got["b"]]
        watcher.remove(path_a)
        assert not os.path.exists(path_a)
        _ProgressFile(path_a)(dict(finished=2, runs=2, step=20, loss_min=1.0, loss_max=2.0))  # a late write
        time.sleep(1.2)
        assert [r["step"] for r in got["a"]] == [10]  # a removed batch is not reported any more
    finally:
        watcher.close()
    assert not os.path.exists(watcher.folder)


def test_worker_processes_report_per_step_progress(tmp_path, monkeypatch):
    """Batches in worker processes report their recording points while they run: every step a
    batch reports is a point of its recording schedule, in increasing order, and the bar ends at
    every run."""
    from trajlab.engine.schedule import recording_steps
    from trajlab.executors import ProcessExecutor
    from trajlab.sweep import progress as progress_module
    from trajlab.sweep import run_sweep

    monkeypatch.setenv("TRAJLAB_PROGRESS_EVERY_S", "0.01")
    reports: dict = {}
    finals = []
    original, original_exit = progress_module.SweepProgress.batch_updater, progress_module.SweepProgress.__exit__

    def spy(self, key):
        forward = original(self, key)

        def update(info):
            reports.setdefault(key, []).append(info)
            forward(info)

        return update

    def exit_(self, *exc):
        finals.append(self.finished)
        return original_exit(self, *exc)

    monkeypatch.setattr(progress_module.SweepProgress, "batch_updater", spy)
    monkeypatch.setattr(progress_module.SweepProgress, "__exit__", exit_)
    configs = _configs(depths=(1, 2), **{"train.max_steps": 3000, "train.record_points": 30, "train.tol": 0.0})
    executor = ProcessExecutor(workers=2)
    try:
        data = run_sweep(configs, tmp_path / "sweep", show_progress=True, executor=executor)
    finally:
        executor.shutdown()
    assert len(data.runs) == 2 and finals == [2]
    schedule = set(int(s) for s in recording_steps(configs[0].train))
    assert reports, "no progress reached the coordinator"
    for batch_reports in reports.values():
        steps = [r["step"] for r in batch_reports]
        assert steps == sorted(steps) and set(steps) <= schedule


def test_bench_cores_times_each_mode_with_its_settings(monkeypatch):
    """`trajlab bench --cores`: each mode is a fresh `trajlab run` with its own environment; the
    reference is the default command pinned to one core (the child's affinity is set before it
    starts), and the speed-ups are measured against it."""
    import subprocess

    from trajlab import bench_cores

    calls = []

    def fake_run(command, capture_output, text, env):
        calls.append((command, env))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(bench_cores.subprocess, "run", fake_run)
    monkeypatch.setenv("TRAJLAB_EXECUTOR", "inprocess")  # the user's own default does not leak into a mode
    result = bench_cores.cores_benchmark("dmf-completion", repeats=1)
    assert [mode for mode in result["times"]] == list(bench_cores.MODES)
    assert result["speedup"][bench_cores.REFERENCE] == 1.0
    by_mode = dict(zip(bench_cores.MODES, calls))
    for mode, (command, env) in by_mode.items():
        assert env["TRAJLAB_COMPILATION_CACHE"] == "0" and "TRAJLAB_EXECUTOR" not in env
        pinned = command[1] == "-c"
        assert pinned == (mode == bench_cores.REFERENCE)
        run = command[3:] if pinned else command
        assert run[1:5] == ["-m", "trajlab", "run", "dmf-completion"] and "--quick" in run
    assert "--executor" not in by_mode["default (auto)"][0] and "--executor" not in by_mode["one core"][0]
    assert by_mode["devices per core"][1]["TRAJLAB_CPU_DEVICES"] == "auto"
    thing_at_a_time = by_mode["one device, one thing at a time"][1]
    assert thing_at_a_time["TRAJLAB_BASELINES_BESIDE"] == "0" and thing_at_a_time["TRAJLAB_COMPILE_AHEAD"] == "0"
    monkeypatch.undo()
    # the reference's child really runs on one core
    import sys

    command = bench_cores.pinned_to_one_core([sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"])
    assert subprocess.run(command, capture_output=True, text=True).stdout.strip() == "1"
