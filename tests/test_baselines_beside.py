"""A sweep's baselines are computed in a thread beside its runs (issue 15: every core): they overlap
the runs, come out as when computed after them, and a failing baseline still fails the sweep after
the runs are stored."""

from __future__ import annotations

import threading
import time

import pytest

from trajlab.config import RunConfig, replace_dotted
from trajlab.store import load
from trajlab.sweep import runner
from trajlab.sweep.runner import BaselineJob, run_sweep

CONFIGS = [replace_dotted(RunConfig(), {"problem.m": 8, "problem.n": 8, "problem.rank": 1, "problem.observations": 30,
                                        "model.depth": 2, "train.max_steps": 200, "seed": s,
                                        "metrics": ["train_loss"]}) for s in (0, 1)]


def _job(name, compute):
    return BaselineJob(runner.baseline_id(name, {}), {"baseline": name}, compute)


def test_baselines_run_in_a_thread_while_the_runs_go_on(tmp_path, monkeypatch):
    seen = {}
    runs_started = threading.Event()
    original = runner._run_batches

    def run_batches(*args, **kwargs):
        runs_started.set()
        time.sleep(0.5)  # the runs take a while: the baseline must finish meanwhile
        seen["runs_done_at"] = time.perf_counter()
        return original(*args, **kwargs)

    def compute():
        seen["thread"] = threading.current_thread().name
        seen["baseline_done_at"] = time.perf_counter()
        return {"value": 42.0}

    monkeypatch.setattr(runner, "_run_batches", run_batches)
    data = run_sweep(CONFIGS, tmp_path / "a", baselines=[_job("answer", compute)], show_progress=False)
    assert seen["thread"] == "trajlab-baselines" and seen["baseline_done_at"] < seen["runs_done_at"]
    assert list(data.baselines["value"]) == [42.0] and len(data.runs) == 2
    # the same sweep with the baselines after the runs gives the same tables
    monkeypatch.setattr(runner, "BASELINES_BESIDE_RUNS", False)
    after = run_sweep(CONFIGS, tmp_path / "b", baselines=[_job("answer", compute)], show_progress=False)
    assert seen["thread"] == "MainThread"
    assert after.baselines.drop(columns="baseline_id").equals(data.baselines.drop(columns="baseline_id"))
    assert sorted(after.runs["final.train_loss"]) == pytest.approx(sorted(data.runs["final.train_loss"]), rel=1e-6)


def test_a_failing_baseline_fails_the_sweep_after_the_runs_and_the_others_are_kept(tmp_path):
    def broken():
        raise RuntimeError("solver exploded")

    with pytest.raises(RuntimeError, match="solver exploded"):
        run_sweep(CONFIGS, tmp_path / "c", baselines=[_job("fine", lambda: {"value": 1.0}), _job("broken", broken)],
                  show_progress=False)
    data = load(tmp_path / "c")
    assert len(data.runs) == 2 and list(data.baselines["baseline"]) == ["fine"]
