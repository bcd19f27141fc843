"""Livni, Shalev-Shwartz, Shamir (2014) as shown by Lee: the ``overparam-landscape`` preset.

The direction of the effect: students of a 50-unit ReLU teacher trained by SGD from random init,
the 100-unit student ends far lower than the 50-unit one (medians over seeds).
"""

from __future__ import annotations

import numpy as np

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.store import load
from helpers import invoke


def test_full_grid_is_two_widths_five_seeds_sgd():
    configs = get_preset("overparam-landscape").configs()
    assert len(configs) == 10
    assert {c.model.width for c in configs} == {50, 100}
    assert {c.problem.teacher_width for c in configs} == {50}
    assert all(c.optimizer.batch_size > 0 and c.model.kind == "two_layer" for c in configs)
    assert {c.problem.observations for c in configs} == {4000}


def test_quick_preset_wider_student_ends_lower(tmp_path):
    out = tmp_path / "overparam"
    result = invoke("run", "overparam-landscape", "--quick", "--no-progress", "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    data = load(out)
    assert len(data.runs) == 6 and set(data.runs["status"]) == {"max_steps"}
    final = data.runs.groupby("model.width")["final.train_loss"].median()
    assert final[100] < 0.25 * final[50]
    assert data.runs.loc[data.runs["model.width"] == 100, "final.train_loss"].max() < \
        data.runs.loc[data.runs["model.width"] == 50, "final.train_loss"].min()
    # every run learned: its loss fell by two orders of magnitude or more from init
    for _, trajectory in data.trajectories.groupby("run_id"):
        loss = trajectory.sort_values("step")["train_loss"].to_numpy()
        assert np.isfinite(loss).all() and loss[-1] < 1e-2 * loss[0]
    checks = check_claims(get_preset("overparam-landscape").claims, data)
    assert checks[0].holds is True, checks[0].measured

    result = invoke("plot", out)
    assert result.exit_code == 0, result.output + result.stderr
    for name in ("student_loss", "final_loss"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
