"""Serial work of a sweep moved beside its runs (issue 15: every core). The baselines are computed in
a thread: they overlap the runs, come out as when computed after them, and a failing baseline still
fails the sweep after the runs are stored. The next batch's programs are compiled in a thread while
a batch runs, with the same results."""

from __future__ import annotations

import threading
import time

import pandas as pd
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


def test_the_next_batch_is_compiled_ahead_in_a_thread_and_results_are_unchanged(tmp_path, monkeypatch):
    """Three batches (depths 1, 2, 3): the programs of batches 2 and 3 are compiled by the
    compile-ahead thread while the batch before runs, so the main thread's XLA compilations shrink;
    the stored runs equal those of a sweep without it, bit for bit."""
    import collections

    import jax
    from jax import monitoring

    compiled_by = collections.Counter()

    def listen(event, duration, **kwargs):
        if event.endswith("backend_compile_duration"):
            compiled_by[threading.current_thread().name] += 1

    monitoring.register_event_duration_secs_listener(listen)
    configs = [replace_dotted(RunConfig(), {"problem.m": 7, "problem.n": 7, "problem.rank": 1, "problem.observations": 25,
                                            "model.depth": depth, "train.max_steps": 50, "seed": 3,
                                            "metrics": ["train_loss", "singular_values"]}) for depth in (1, 2, 3)]
    jax.clear_caches()
    ahead = run_sweep(configs, tmp_path / "ahead", show_progress=False)
    with_thread = dict(compiled_by)
    compiled_by.clear()
    jax.clear_caches()
    monkeypatch.setattr(runner, "COMPILE_AHEAD", False)
    alone = run_sweep(configs, tmp_path / "alone", show_progress=False)
    assert with_thread.get("trajlab-compile-ahead", 0) >= 6  # init, advance and record of batches 2 and 3
    assert "trajlab-compile-ahead" not in compiled_by
    assert with_thread["MainThread"] <= compiled_by["MainThread"] - 6  # measured 9 against 22
    columns = ["run_id", "status", "steps", "final.train_loss"]
    pd.testing.assert_frame_equal(ahead.runs[columns].sort_values("run_id").reset_index(drop=True),
                                  alone.runs[columns].sort_values("run_id").reset_index(drop=True))
