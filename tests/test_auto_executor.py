"""--executor auto (the command line's default): worker processes on a multi-core CPU (issue 15, goal 1)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from trajlab import cli
from trajlab.executors import InProcessExecutor, ProcessExecutor, make_executor
from trajlab.store import load


def test_auto_runs_in_process():
    assert isinstance(make_executor("auto", runs=6), InProcessExecutor)
    assert make_executor("auto", workers=3, runs=1).workers == 3  # --workers asks for worker processes
    assert isinstance(make_executor("auto", workers=3), ProcessExecutor)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_cli_shards_a_sweep_over_the_cpu_devices_when_asked(tmp_path, monkeypatch):
    """A fresh `trajlab run` process with TRAJLAB_CPU_DEVICES=auto: one host device per core, each
    batch's runs sharded over them."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TRAJLAB_EXECUTOR", "XLA_FLAGS", "TRAJLAB_CPU_DEVICES")}
    env["TRAJLAB_CPU_DEVICES"] = "auto"
    out = tmp_path / "sweep"
    done = subprocess.run([
        sys.executable, "-m", "trajlab", "run", "dmf-completion", "--quick", "--no-progress", "--no-figures", "--out",
        str(out), "--set", "problem.m=8", "--set", "problem.n=8", "--set", "problem.observations=30",
        "--set", "train.max_steps=50", "--set", "model.depth=2", "--set", "model.scale=[0.1,0.2]",
    ], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = load(out)
    cores = len(os.sched_getaffinity(0))
    assert data.manifest["executor"] == f"inprocess (runs of a batch sharded over {cores} CPU devices)"
    assert len(data.runs) == 2 and set(data.runs["status"]) <= {"done", "max_steps"}


def test_env_sets_the_default_and_reproduce_refuses_cluster_executors(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJLAB_EXECUTOR", "dask")
    result = CliRunner().invoke(cli.app, ["reproduce", "--quick", "not-norms", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--executor: reproduce runs on auto, inprocess or processes, got 'dask'" in result.stderr
