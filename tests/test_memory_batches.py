"""Memory-aware batches (issue 15, goal 5): the batch size follows the memory estimate.

- :func:`trajlab.engine.memory.batch_capacity` against a brute-force search over the number of
  runs with the estimate itself (the largest n whose estimate fits the budget);
- a sweep whose batch would not fit the (capped) free memory is split, and its results equal the
  same sweep run as one batch;
- ``TRAJLAB_MEMORY_LIMIT`` parsing (bad values: one line, exit 2);
- the estimate against the memory a batch really takes on the CPU (peak RSS of a fresh process,
  measured by the kernel), within a factor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from trajlab import cli
from trajlab.config import RunConfig, replace_dotted
from trajlab.engine import memory
from trajlab.engine.memory import Available
from trajlab.errors import ConfigError
from trajlab.sweep import run_sweep
from trajlab.sweep import runner as sweep_runner


def tiny(**updates) -> RunConfig:
    base = {
        "problem.m": 8, "problem.n": 7, "problem.rank": 2, "problem.observations": 30, "model.depth": 2,
        "model.scale": 0.1, "optimizer.name": "gd", "optimizer.lr": 0.05, "train.max_steps": 60,
        "train.record_points": 8,
    }
    return replace_dotted(RunConfig(), {**base, **updates})


@pytest.mark.parametrize("free", [10**5, 3 * 10**6, 10**7, 10**9, 10**12])
@pytest.mark.parametrize("updates", [{}, {"model.width": 300}, {"train.x64": True, "metrics": ["train_loss", "sharpness"]}])
def test_capacity_is_the_largest_batch_whose_estimate_fits(free, updates, monkeypatch):
    monkeypatch.delenv("TRAJLAB_MEMORY_CHECK", raising=False)
    config = tiny(**updates)
    available = Available(free, "test")
    runs = memory.batch_capacity(config, available, limit=512)
    fits = [n for n in range(1, 513) if memory.estimate(config, n).total <= 0.5 * free]
    assert runs == (max(fits) if fits else 1)


def test_capacity_on_a_gpu_checks_the_device_and_the_host(monkeypatch):
    monkeypatch.delenv("TRAJLAB_MEMORY_CHECK", raising=False)
    config = tiny(**{"model.width": 300})
    one = memory.estimate(config, 1)
    device = Available(10**12, "test", 4 * one.device, "gpu")
    runs = memory.batch_capacity(config, device)
    assert memory.estimate(config, runs).device <= 2 * one.device < memory.estimate(config, runs + 1).device


@pytest.mark.parametrize("text,expected", [("1000", 1000), ("2KiB", 2048), ("1.5 GB", 1_500_000_000), ("3mib", 3 * 2**20)])
def test_memory_limit_parses_units(text, expected, monkeypatch):
    monkeypatch.setenv("TRAJLAB_MEMORY_LIMIT", text)
    assert memory.memory_limit() == expected
    assert memory.available_memory().host <= expected


@pytest.mark.parametrize("text", ["lots", "-5", "2 parsecs", "0", "1e9"])
def test_a_bad_memory_limit_is_one_line_exit_2(text, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJLAB_MEMORY_LIMIT", text)
    with pytest.raises(ConfigError, match="^TRAJLAB_MEMORY_LIMIT must be a number of bytes"):
        memory.memory_limit()
    result = CliRunner().invoke(cli.app, ["run", "dmf-completion", "--quick", "--no-progress", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TRAJLAB_MEMORY_LIMIT" in lines[0]
    assert not (tmp_path / "o").exists()


def test_an_oversized_batch_is_split_and_gives_the_results_of_the_whole_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAJLAB_MEMORY_CHECK", raising=False)
    configs = [tiny(**{"seed": s, "optimizer.lr": lr}) for s in range(3) for lr in (0.03, 0.05)]
    # a limit under which two runs fit half of it and three do not
    two, three = memory.estimate(configs[0], 2).total, memory.estimate(configs[0], 3).total
    monkeypatch.setenv("TRAJLAB_MEMORY_LIMIT", str((2 * two + 2 * three) // 2))
    sizes = []
    original = sweep_runner.group_batches

    def spy(*args, **kwargs):
        batches = original(*args, **kwargs)
        sizes.append([len(b) for b in batches])
        return batches

    monkeypatch.setattr(sweep_runner, "group_batches", spy)
    split = run_sweep(configs, tmp_path / "split", show_progress=False)
    assert sizes[-1] == [2, 2, 2]
    monkeypatch.delenv("TRAJLAB_MEMORY_LIMIT")
    whole = run_sweep(configs, tmp_path / "whole", show_progress=False, max_batch=6)
    assert sizes[-1] == [6]
    a = split.trajectories.sort_values(["run_id", "step"]).reset_index(drop=True)
    b = whole.trajectories.sort_values(["run_id", "step"]).reset_index(drop=True)
    assert list(a["run_id"]) == list(b["run_id"]) and list(a["step"]) == list(b["step"])
    for column in ("train_loss", "test_error"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-5, atol=1e-7)


MEASURE = r"""
import json, sys
import jax
from trajlab.config import RunConfig, replace_dotted
from trajlab.engine import memory, run_configs
config = replace_dotted(RunConfig(), json.loads(sys.argv[1]))
runs = int(sys.argv[2])
run_configs([replace_dotted(config, {"seed": s}) for s in range(runs)])
# VmHWM: the peak resident memory of this address space (ru_maxrss would also count the parent's
# memory before exec: a child of a 6 GB pytest process reads 6 GB)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak": peak,
                  "estimate": memory.estimate(config, runs).total}))
"""


def test_the_estimate_is_within_a_factor_of_the_measured_peak():
    """A batch of 32 runs of a 300 x 300 completion problem at width 300 (depth 3, float32, about
    35 MB of parameters in all) against a batch of one, each in a fresh process: the difference of
    their peak resident memory (the kernel's VmHWM: JAX, the compiler and the runtime are common
    to both) is within a factor of 4 of the difference of the estimates."""
    fields = {"problem.m": 300, "problem.n": 300, "problem.rank": 3, "problem.observations": 9000, "model.depth": 3,
              "model.width": 300, "optimizer.name": "gd", "optimizer.lr": 0.01, "model.scale": 0.1,
              "train.max_steps": 30, "train.record_points": 5, "metrics": ["train_loss"]}
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TRAJLAB_CPU_DEVICES")}
    results = {}
    for runs in (1, 32):
        out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(fields), str(runs)], capture_output=True,
                             text=True, timeout=300, check=True, env=env)
        results[runs] = json.loads(out.stdout.strip().splitlines()[-1])
    measured = results[32]["peak"] - results[1]["peak"]
    added = results[32]["estimate"] - results[1]["estimate"]
    assert added / 4 <= measured <= 4 * added, results


def test_the_linearization_beside_a_run_is_counted():
    base = replace_dotted(RunConfig(), {"problem.kind": "teacher_student", "model.kind": "two_layer",
                                        "metrics": ["train_loss"]})
    linear = replace_dotted(base, {"metrics": ["train_loss", "linearization"]})
    plain, carried = memory.estimate(base, 1), memory.estimate(linear, 1)
    assert carried.parameters == plain.parameters
    assert carried.per_run - plain.per_run >= 4 * plain.parameters


def test_init_params_of_a_run_with_its_linearization_are_the_models():
    import jax

    from trajlab import init_params

    base = replace_dotted(RunConfig(), {"problem.kind": "teacher_student", "model.kind": "two_layer",
                                        "metrics": ["train_loss"]})
    linear = replace_dotted(base, {"metrics": ["train_loss", "linearization"]})
    a, b = init_params(base), init_params(linear)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
