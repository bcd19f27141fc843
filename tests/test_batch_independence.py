"""What is and is not bit-identical (reliability issue, item 12).

- The same configs in the same batch (same batch-mates, same order, same device and precision)
  give bit-identical trajectories, run after run.
- A run's result does not depend on its batch-mates up to floating-point rounding: XLA may
  vectorize the reductions of a vmapped batch differently for different batch sizes, so the last
  bits may differ. Measured: here (20 x 20 completion, GD, 300 steps, a run alone vs in a batch of
  4) float32 identical and float64 4e-16 relative; the issue's case (quick dmf-completion,
  normalized GD to loss 1e-6, --max-batch 1 vs default) 9.99764e-07 vs 9.99770e-07, 6e-6
  relative. The tests bound it by 1e-4 (float32) and 1e-11 (float64). Adding runs to a folder
  later batches them differently from a fresh sweep, with the same tolerance; docs/conventions.md
  says this too.
"""

from __future__ import annotations

import numpy as np
import pytest

import trajlab
from trajlab.engine import run_configs

SET = {
    "problem.m": 20, "problem.n": 20, "problem.rank": 2, "problem.observations": 150,
    "optimizer.name": "gd", "optimizer.lr": 0.2, "model.scale": 0.1,
    "train.max_steps": 300, "train.record": "linear", "train.record_every": 100, "train.tol": 0.0,
}


def _batch(x64: bool):
    return trajlab.grid(None, set={**SET, "train.x64": x64, "seed": [0, 1, 2, 3]})


def _losses(result, index):
    rows = np.asarray(result.trajectory["run"]) == index
    return np.asarray(result.trajectory["train_loss"])[rows]


@pytest.mark.parametrize("x64, tolerance", [(False, 1e-4), (True, 1e-11)])
def test_a_run_alone_and_in_a_batch_agree_to_rounding_and_repeats_bit_for_bit(x64, tolerance):
    configs = _batch(x64)
    together = run_configs(configs)
    again = run_configs(configs)
    for name, values in together.trajectory.items():
        np.testing.assert_array_equal(values, again.trajectory[name])  # same batch: bit-identical
    worst = 0.0
    for index, config in enumerate(configs):
        alone = run_configs([config])
        a, b = _losses(alone, 0), _losses(together, index)
        worst = max(worst, float(np.max(np.abs(a - b) / np.abs(b))))
    assert worst < tolerance, worst


def test_one_folder_holds_one_presets_sweep(tmp_path):
    """Reliability item 7: a second preset into a folder is refused up front, before any run."""
    from trajlab.errors import TrajlabError

    folder = tmp_path / "sweep"
    trajlab.run("dmf-dynamics", quick=True, set={"train.max_steps": 20, "model.depth": 1}, out=folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(TrajlabError, match=r"holds the sweep of preset 'dmf-dynamics'; run 'not-norms' into another"):
        trajlab.run("not-norms", quick=True, set={"train.max_steps": 20}, out=folder)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert len(trajlab.load(folder).runs) == 1
