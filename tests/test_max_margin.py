"""Soudry et al. (JMLR 2018): GD on separable data, the ``max-margin`` preset.

Independent references: the closed-form max-margin direction (1/2, 1/2) of the paper's data set
(from its KKT conditions) against the cvxpy solution stored as the baseline; the asymptotics
L(t) ~ ||w_svm||^2 / (lr t) and ||w(t)|| ~ ||w_svm|| log t derived from w(t) = w_svm log t + O(1);
a plain numpy GD loop for the first iterates of the engine's run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.presets.max_margin import PAPER_LR, PROBLEM, angle_decay_fit, paper_step_size
from trajlab.problems.registry import make_network_problem
from trajlab.store import load
from helpers import invoke


def test_paper_step_is_s_over_sigma_max_and_reproduces_the_sum_loss_iterates():
    """lr = S / sigma_max(X) on the mean loss makes the iterates of eta = 1 / sigma_max(X) on the sum loss."""
    data = make_network_problem(PROBLEM)
    x, y = data.inputs, data.labels
    sigma = np.linalg.svd(x, compute_uv=False)[0]
    assert PAPER_LR == paper_step_size(PROBLEM) == x.shape[0] / sigma

    def mean_gradient(w):
        return -(x * (y / (1 + np.exp(y * (x @ w))))[:, None]).mean(axis=0)

    w_mean, w_sum = np.zeros(2), np.zeros(2)
    for _ in range(20):
        w_mean = w_mean - PAPER_LR * mean_gradient(w_mean)
        w_sum = w_sum - (1 / sigma) * x.shape[0] * mean_gradient(w_sum)  # the sum loss's gradient
    np.testing.assert_allclose(w_mean, w_sum, rtol=1e-12)


def test_angle_fit_recovers_an_exact_inverse_log_law():
    t = np.unique(np.round(np.logspace(0, 6, 60)))
    fit = angle_decay_fit(t, 0.3 / np.log(np.maximum(t, 2)))
    assert math.isclose(fit.c, 0.3, rel_tol=1e-12) and fit.r2 > 1 - 1e-12
    power = angle_decay_fit(t, 2.0 * t**-0.25)
    assert math.isclose(power.p, 0.25, rel_tol=1e-9) and power.power_r2 > 1 - 1e-12


def test_quick_preset_angle_decreases_loss_like_one_over_t(tmp_path):
    """``trajlab run max-margin --quick`` then ``trajlab plot``: the SVM baseline is the closed form;
    under GD the angle to w_svm falls along the last two decades (and faster than 1/log t on this set),
    t L(t) lr -> ||w_svm||^2 = 1/2; momentum at the paper's step stalls (documented), at the matched
    effective step it converges like GD."""
    out = tmp_path / "max-margin"
    result = invoke("run", "max-margin", "--quick", "--no-progress", "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    data = load(out)
    assert len(data.runs) == 3 and set(data.runs["status"]) == {"max_steps"}
    svm = data.baselines[data.baselines["baseline"] == "max_margin_svm"].iloc[0]
    np.testing.assert_allclose([svm["w_svm_0"], svm["w_svm_1"]], [0.5, 0.5], atol=1e-9)
    assert math.isclose(svm["margin"], math.sqrt(2), rel_tol=1e-9)
    assert math.isclose(svm["paper_lr"], PAPER_LR, rel_tol=1e-12)

    runs = data.runs.set_index("run_id")
    for run_id, trajectory in data.trajectories.groupby("run_id"):
        run = runs.loc[run_id]
        trajectory = trajectory.sort_values("step")
        steps = trajectory["step"].to_numpy()
        angle = trajectory["angle_to_max_margin"].to_numpy()
        loss = trajectory["train_loss"].to_numpy()
        tail = steps >= steps[-1] / 100
        assert np.all(np.diff(loss) < 0) or run["optimizer.name"] == "momentum"
        effective = run["optimizer.lr"] / (1 - run["optimizer.momentum"] if run["optimizer.name"] == "momentum" else 1)
        if effective <= PAPER_LR * (1 + 1e-9):  # GD, and momentum at GD's effective step
            assert np.all(np.diff(angle[tail]) < 0)
            assert angle[-1] < 0.5 * angle[tail][0] < 0.01
            scaled = angle[tail] * np.log(steps[tail])
            assert scaled[-1] < scaled[0]  # at least as fast as 1/log t
            assert math.isclose(steps[-1] * loss[-1] * effective, 0.5, rel_tol=0.01)
        else:  # the paper's step with momentum: thrown to ||w|| ~ 19 at once, then frozen
            assert trajectory["parameter_norm"].iloc[-1] > 15
            assert math.isclose(angle[-1], angle[tail][0], rel_tol=1e-3)
    gd = data.runs[data.runs["optimizer.name"] == "gd"].iloc[0]
    first = data.trajectories[(data.trajectories["run_id"] == gd["run_id"]) & (data.trajectories["step"] == 1)]
    # one plain GD step from the origin: w_1 = lr * mean(y x) / 2 (sigmoid(0) = 1/2)
    x = make_network_problem(PROBLEM)
    w1 = PAPER_LR * 0.5 * (x.inputs * x.labels[:, None]).mean(axis=0)
    assert math.isclose(float(first["parameter_norm"].iloc[0]), float(np.linalg.norm(w1)), rel_tol=1e-9)

    checks = check_claims(get_preset("max-margin").claims, data)
    assert [c.holds for c in checks] == [True, True, True], [c.measured for c in checks]

    result = invoke("plot", out)
    assert result.exit_code == 0, result.output + result.stderr
    for name in ("max_margin", "angle_decay_fit"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "final_table.csv")) == 4  # 3 runs and the SVM row
