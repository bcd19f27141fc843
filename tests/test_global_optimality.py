"""Haeffele & Vidal (CVPR 2017): the meta-algorithm and its certificate, the ``global-optimality`` preset.

Independent references: the closed form of the nuclear-norm-regularized denoising problem
(singular value soft-thresholding) for the meta-algorithm on a fully observed matrix; cvxpy (SCS)
and the Fenchel dual bound for completion; a brute-force scan of directions for the ReLU polar
search.
"""

from __future__ import annotations

import math

import numpy as np

from trajlab.baselines.meta_algorithm import completion_dual_bound, meta_algorithm_matrix, relu_polar
from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.store import load
from helpers import invoke


def test_meta_algorithm_on_full_observations_matches_singular_value_thresholding():
    """All entries observed: min 1/2 ||X - Y||_F^2 + lam ||X||_* is solved by soft-thresholding the
    singular values of Y at lam; its value is sum_i [min(s_i, lam)^2 / 2 + lam max(s_i - lam, 0)]."""
    rng = np.random.default_rng(3)
    y = rng.standard_normal((8, 3)) @ rng.standard_normal((3, 6)) + 0.1 * rng.standard_normal((8, 6))
    rows, cols = np.divmod(np.arange(48), 6)
    singular = np.linalg.svd(y, compute_uv=False)
    lam = 0.5 * singular[2]
    optimum = float(np.sum(np.minimum(singular, lam) ** 2 / 2 + lam * np.maximum(singular - lam, 0)))
    result = meta_algorithm_matrix((8, 6), rows, cols, y[rows, cols], lam)
    assert result.certificate and result.zero_units >= 1
    assert math.isclose(result.objective, optimum, rel_tol=1e-8)
    x = result.params.outer.T @ result.params.inner
    np.testing.assert_allclose(np.linalg.svd(x, compute_uv=False)[:3], singular[:3] - lam, rtol=1e-5)
    assert completion_dual_bound((8, 6), rows, cols, y[rows, cols], lam, x) <= optimum + 1e-12


def test_relu_polar_search_finds_the_best_of_a_dense_scan_in_two_dimensions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2))
    residual = rng.standard_normal((40, 1))
    value, u, v = relu_polar(x, residual, directions=200)
    angles = np.linspace(0, 2 * np.pi, 20001)
    scan = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    best = np.abs(np.maximum(x @ scan.T, 0).T @ residual[:, 0]).max() / 40
    assert value >= best * (1 - 1e-6)
    assert math.isclose(np.linalg.norm(v), 1) and math.isclose(np.linalg.norm(u), 1)


def test_quick_preset_certificate_holds_and_objective_meets_the_convex_bound(tmp_path):
    out = tmp_path / "global-optimality"
    result = invoke("run", "global-optimality", "--quick", "--no-progress", "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    data = load(out)
    assert len(data.runs) == 2
    rows = data.baselines.set_index("baseline")
    assert set(rows.index) == {"meta_algorithm_matrix", "nuclear_norm_regularized", "meta_algorithm_relu"}
    for name in ("meta_algorithm_matrix", "meta_algorithm_relu"):
        row = rows.loc[name]
        assert bool(row["certificate"]) and int(row["zero_units"]) >= 1 and row["polar_ratio"] <= 1 + 1e-4
        assert int(row["outer_iterations"]) >= 3  # units were added one by one from a single one
    meta, convex = rows.loc["meta_algorithm_matrix"], rows.loc["nuclear_norm_regularized"]
    assert abs(meta["objective"] - convex["objective"]) <= 1e-6 * convex["objective"]
    assert meta["dual_bound"] <= convex["objective"] * (1 + 1e-9)
    assert meta["dual_bound"] <= meta["objective"]
    assert int(meta["rank"]) == int(convex["rank"])
    # without the regularizer, GD on W_2 W_1 fits the entries with a larger nuclear norm
    completion = data.runs[data.runs["problem.kind"] == "completion"].iloc[0]
    assert completion["final.train_loss"] < 1e-3
    assert completion["final.nuclear_norm"] > convex["nuclear_norm"]

    checks = check_claims(get_preset("global-optimality").claims, data)
    assert [c.holds for c in checks] == [True, True], [c.measured for c in checks]

    result = invoke("plot", out)
    assert result.exit_code == 0, result.output + result.stderr
    for name in ("meta_algorithm", "unregularized_runs"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
