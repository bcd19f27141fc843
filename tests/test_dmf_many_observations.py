"""dmf-completion's 5000-observation claim (Arora, Cohen, Hu, Luo 2019; the talk: "all of them ...
nuclear norm of 221 ... effective rank of five"): decided on synthetic sweep tables, against W*'s
spectrum computed here with numpy / scipy (independent of the claim's own computation)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from trajlab.config import ProblemConfig
from trajlab.presets import get_preset
from trajlab.presets.claims import NOT_MEASURED, check_claims
from trajlab.problems.matrix import make_matrix_problem

PROBLEM = {"problem.kind": "completion", "problem.m": 100, "problem.n": 100, "problem.rank": 5,
           "problem.seed": 0, "problem.path": None}


def _target():
    config = ProblemConfig(kind="completion", m=100, n=100, rank=5, observations=5000, seed=0)
    sigma = np.linalg.svd(make_matrix_problem(config).target, compute_uv=False)
    return float(np.exp(entropy(sigma / sigma.sum()))), float(sigma.sum())


def _claim(data):
    claims = get_preset("dmf-completion").claims
    check = check_claims([c for c in claims if "5000 observations" in c.text], data)
    assert len(check) == 1
    return check[0]


def _data(observations=5000, deep_error=1e-6, deep_rank_factor=1.0, nuclear_rank_factor=1.0):
    rank, nuclear = _target()
    rows = [
        {**PROBLEM, "problem.observations": observations, "model.depth": 1, "model.scale": 1e-3,
         "run_id": "d1", "status": "done", "steps": 100, "final.test_error": 0.5,
         "final.effective_rank": 60.0, "final.nuclear_norm": 400.0},
    ]
    for depth in (2, 3, 4):
        rows.append({**PROBLEM, "problem.observations": observations, "model.depth": depth, "model.scale": 1e-3,
                     "run_id": f"d{depth}", "status": "done", "steps": 100, "final.test_error": deep_error,
                     "final.effective_rank": rank * deep_rank_factor, "final.nuclear_norm": nuclear * 1.001})
    baselines = pd.DataFrame([{**PROBLEM, "problem.observations": observations, "baseline": "nuclear_norm",
                               "test_error": 1e-8, "effective_rank": rank * nuclear_rank_factor,
                               "nuclear_norm": nuclear, "status": "optimal"}])
    return SimpleNamespace(runs=pd.DataFrame(rows), trajectories=pd.DataFrame(), baselines=baselines, manifest={})


def test_target_spectrum_is_the_talks():
    rank, nuclear = _target()
    assert rank == pytest.approx(5, abs=0.15) and nuclear == pytest.approx(221, rel=0.01)


def test_all_recover_decides_on_the_numbers():
    check = _claim(_data())
    assert check.holds is True, check.measured
    assert "depth 1: 1 of 1 reached tol" in check.measured and "(not checked)" in check.measured
    assert _claim(_data(deep_error=2e-3)).holds is False  # a deep run did not recover
    assert _claim(_data(deep_rank_factor=1.1)).holds is False  # effective rank 10% off
    assert _claim(_data(nuclear_rank_factor=0.9)).holds is False  # the convex solution's rank is off


def test_all_recover_is_not_measured_without_5000_observations():
    check = _claim(_data(observations=2000))
    assert check.holds is None and check.measured.startswith(NOT_MEASURED)
    quick = get_preset("dmf-completion").configs(quick=True)
    assert {c.problem.observations for c in quick} == {2000}  # so on --quick it reads not measured
