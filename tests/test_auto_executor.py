"""--executor auto (the command line's default): worker processes on a multi-core CPU (issue 15, goal 1)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from trajlab import cli
from trajlab.executors import InProcessExecutor, ProcessExecutor, make_executor
from trajlab.executors.processes import default_workers
from trajlab.store import load


def test_auto_picks_one_process_per_core_for_several_runs_on_a_cpu():
    cores = len(os.sched_getaffinity(0))
    assert default_workers() == cores
    several = make_executor("auto", runs=6)
    if cores >= 2:
        assert isinstance(several, ProcessExecutor) and several.workers == min(cores, 6)
    else:
        assert isinstance(several, InProcessExecutor)
    assert isinstance(make_executor("auto", runs=1), InProcessExecutor)  # one run: nothing to share out
    assert make_executor("auto", workers=3, runs=1).workers == 3


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_cli_default_runs_a_sweep_in_worker_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAJLAB_EXECUTOR", raising=False)
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli.app, [
        "run", "dmf-completion", "--quick", "--no-progress", "--no-figures", "--out", str(out),
        "--set", "problem.m=8", "--set", "problem.n=8", "--set", "problem.observations=30",
        "--set", "train.max_steps=50", "--set", "model.depth=[1,2]", "--set", "model.scale=0.1",
    ])
    assert result.exit_code == 0, result.output
    data = load(out)
    assert data.manifest["executor"] == "processes (2 local worker processes)"
    assert len(data.runs) == 2 and set(data.runs["status"]) <= {"done", "max_steps"}


def test_env_sets_the_default_and_reproduce_refuses_cluster_executors(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJLAB_EXECUTOR", "dask")
    result = CliRunner().invoke(cli.app, ["reproduce", "--quick", "not-norms", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--executor: reproduce runs on auto, inprocess or processes, got 'dask'" in result.stderr
