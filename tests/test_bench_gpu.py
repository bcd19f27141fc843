"""bench/gpu.sh, the GPU report, runs end to end at toy sizes on the CPU (so it cannot rot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trajlab import bench_gpu

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_at_tiny_sizes_and_writes_the_markdown_report(tmp_path):
    out = tmp_path / "report.md"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu.sh"), "--tiny", "--sizes", "1,2", "--presets", "dmf-completion",
         "--out", str(out), "--json", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = out.read_text()
    assert "tiny sizes: a smoke test" in text
    rows = [line for line in text.splitlines() if line.startswith("| float")]
    assert [r.split("|")[1:3] for r in rows] == [[" float32 ", " 1 "], [" float32 ", " 2 "], [" float64 ", " 1 "], [" float64 ", " 2 "]]
    for row in rows:
        assert float(row.split("|")[3].replace(",", "")) > 0  # run-steps per second
    assert "| dmf-completion | done | 6 |" in text
    assert "Goal:" not in text  # no batch of 512 was measured


def test_markdown_states_the_goal_verdict():
    row = dict(dtype="float32", batch=512, run_steps_per_s=3.5e6, run_steps_per_s_median=3.4e6, compile_s=1.0,
               peak_memory=2**30)
    report = dict(tiny=False, steps=2000, date="d", command="bench/gpu.sh",
                  machine=dict(device="cuda:0", device_kind="NVIDIA H200", platform="gpu", cpu="x", cpu_count=16,
                               jax_version="0", numpy_version="0", env={}),
                  throughput=[row], presets=[],
                  headline=dict(status="done", steps=32380, final_train_loss=1e-6, wall_s=3.0, compile_s=1.0,
                                steps_per_s_after_compile=16000.0))
    text = bench_gpu.markdown(report)
    assert "3,500,000 (meets)" in text and "1.0 GiB" in text and "NVIDIA H200" in text
    report["throughput"] = [dict(row, run_steps_per_s=2e6)]
    assert "2,000,000 (misses)" in bench_gpu.markdown(report)


def test_bad_sizes_are_exit_2():
    assert bench_gpu.main(["--tiny", "--sizes", "0", "--presets", ""]) == 2
