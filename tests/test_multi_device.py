"""Two local CPU devices (forced host devices): the in-process executor runs a batch on each, with the
SVD-based metric recording that used to deadlock both device threads (issue: every core and every
GPU). Reference: the same sweep on one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys, time
import trajlab
from trajlab.executors import InProcessExecutor
import jax
concurrent = sys.argv[2] == "concurrent"
if concurrent:  # the engine without its CPU lock: how the deadlock looked
    import contextlib, trajlab.engine.loop as loop
    loop._exclusive_on_cpu = lambda data: contextlib.nullcontext()
configs = trajlab.grid(None, set={
    "problem.m": 100, "problem.n": 100, "problem.rank": 5, "problem.observations": 2000,
    "model.depth": [1, 2, 3], "model.scale": [1e-2, 1e-3], "optimizer.lr": 1e-3,
    "train.max_steps": 300, "train.record_points": 20})
start = time.perf_counter()
data = trajlab.run(configs, out=sys.argv[1], executor=InProcessExecutor())
print(json.dumps({"devices": jax.local_device_count(), "wall": time.perf_counter() - start,
                  "loss": dict(zip(data.runs["run_id"], data.runs["final.train_loss"]))}))
"""


def _run(folder, devices: int, mode: str = "locked", timeout: float = 240):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(folder), mode], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_cpu_devices_match_one_device(tmp_path):
    one = _run(tmp_path / "one", 1)
    two = _run(tmp_path / "two", 2)
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["loss"].keys() == one["loss"].keys() and len(one["loss"]) == 6
    for run_id, loss in one["loss"].items():
        assert two["loss"][run_id] == pytest.approx(loss, rel=1e-6)


def test_the_quick_dmf_sweep_that_deadlocked_finishes_on_two_cpu_devices(tmp_path):
    """`XLA_FLAGS=--xla_force_host_platform_device_count=2 trajlab run dmf-completion --quick` hung in
    about half of the tries (both device threads waiting in the metric recording of long normalized-GD
    loops; measured 2 of 5 and 3 of 4 here before the fix). It must finish, with its claims holding."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    code = (
        "import sys, trajlab\n"
        "data = trajlab.run('dmf-completion', quick=True, out=sys.argv[1])\n"
        "checks = trajlab.check_claims(trajlab.get_preset('dmf-completion').claims, data)\n"
        "print(sorted(set(data.runs['status'])), [c.holds for c in checks])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "quick")], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['done'] [True, True, None]"  # 3rd: needs 5000 observations


PADDED = r"""
import json, sys
import trajlab, jax
configs = trajlab.grid(None, set={
    "problem.m": 12, "problem.n": 10, "problem.rank": 2, "problem.observations": 60, "train.x64": True,
    "model.depth": 3, "model.scale": 0.1, "optimizer.lr": 0.05, "seed": [0, 1, 2],
    "train.max_steps": 400, "train.record_points": 12, "train.top_k": 3})
# and a metric that carries state between recordings (warm-started eigenvectors, kept per run)
configs = [trajlab.replace_dotted(c, {"metrics": list(c.metrics) + ["edge_tracking"]}) for c in configs]
data = trajlab.run(configs, out=sys.argv[1], executor="inprocess")
frame = data.trajectories.sort_values(["run_id", "step"])
print(json.dumps({"devices": jax.local_device_count(), "executor": data.manifest["executor"],
                  "rows": frame.drop(columns=[c for c in frame.columns if c == "wall_s"]).to_dict("list")}))
"""


def test_a_batch_of_three_runs_sharded_over_two_devices_equals_one_device(tmp_path):
    """trajlab's default on a 2-core CPU: one host device per core, the three runs of the batch
    padded to four and sharded over both; the padding copy is dropped and every recorded value
    equals the one-device run (float64, default metrics with their SVDs, and ``edge_tracking``, whose
    carried eigenvectors go back to their devices after each recording)."""
    results = {}
    for devices in (1, 2):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env["TRAJLAB_CPU_DEVICES"] = str(devices)
        out = subprocess.run([sys.executable, "-c", PADDED, str(tmp_path / str(devices))], capture_output=True,
                             text=True, timeout=240, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        results[devices] = json.loads(out.stdout.strip().splitlines()[-1])
    one, two = results[1], results[2]
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["executor"] == "inprocess (runs of a batch sharded over 2 CPU devices)" and one["executor"] == "inprocess"
    assert one["rows"].keys() == two["rows"].keys() and "track_eig_2" in one["rows"]
    assert len(set(one["rows"]["run_id"])) == 3 and one["rows"]["run_id"] == two["rows"]["run_id"]
    assert one["rows"]["step"] == two["rows"]["step"]
    for column, values in one["rows"].items():
        if column in ("run_id", "step"):
            continue
        assert two["rows"][column] == pytest.approx(values, rel=1e-9, abs=1e-12, nan_ok=True), column
