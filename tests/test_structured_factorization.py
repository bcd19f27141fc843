"""Structured matrix factorization with any factor norms (Haeffele & Vidal), the ``structured-factorization`` preset.

Independent references: brute-force scans of the unit spheres for each polar; cvxpy (SCS) for each
proximal map; singular value soft-thresholding (the closed form of the fully observed (2, 2) problem)
for the meta-algorithm; entrywise and row-wise soft-thresholding (the closed forms of the fully
observed (1, 1) and (1, 2) convex problems) for the cvxpy programs.
"""

from __future__ import annotations


import jax
import numpy as np
import pytest

from trajlab.baselines.polars import (
    convex_structured,
    polar,
    polar_pair,
    polar_upper,
    prox_squared_norm,
    structured_meta_algorithm,
)
from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.store import load
from helpers import invoke, run_quick


def _circle(points: int, norm: str, nonnegative: bool = False) -> np.ndarray:
    """Points of the unit sphere of ``norm`` in R^2 (the positive quarter when ``nonnegative``)."""
    angles = np.linspace(0, np.pi / 2 if nonnegative else 2 * np.pi, points)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if norm == "1":
        circle /= np.abs(circle).sum(axis=1, keepdims=True)
    return circle


@pytest.mark.parametrize("norms", ["2,2", "1,1", "1,2", "2,2+"])
def test_polar_against_a_brute_force_scan_of_the_unit_spheres(norms):
    """sup u^T Z v over ||u||_a = ||v||_b = 1 on a dense grid of both spheres (2 x 2 matrices), and the
    returned maximizer attains the value with unit norms."""
    a, b = norms.rstrip("+").split(",")
    nonnegative = norms.endswith("+")
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        for _ in range(3):
            z = rng.standard_normal((2, 2))
            left, right = _circle(2001, a, nonnegative), _circle(2001, b, nonnegative)
            brute = max(0.0, float((left @ z @ right.T).max()))
            value, u, v = (np.asarray(x) for x in polar_pair(z, norms))
            assert float(polar(z, norms)) == pytest.approx(float(value), abs=1e-12)
            assert brute <= value + 1e-12
            assert value == pytest.approx(brute, abs=2e-5)
            assert float(u @ z @ v) == pytest.approx(float(value), abs=1e-10)
            norm = (lambda x, p: np.abs(x).sum() if p == "1" else np.linalg.norm(x))
            assert norm(u, a) == pytest.approx(1.0) and norm(v, b) == pytest.approx(1.0)
            if nonnegative:
                assert (u >= 0).all() and (v >= 0).all()
                assert float(polar_upper(z, norms)) >= value - 1e-12


def test_nonnegative_polar_search_beats_random_sampling_in_higher_dimension():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4, 5))
    with jax.enable_x64(True):
        value = float(polar(z, "2,2+"))
        upper = float(polar_upper(z, "2,2+"))
    us = np.abs(rng.standard_normal((20000, 4)))
    vs = np.abs(rng.standard_normal((20000, 5)))
    sampled = np.einsum("si,ij,sj->s", us / np.linalg.norm(us, axis=1, keepdims=True), z,
                        vs / np.linalg.norm(vs, axis=1, keepdims=True)).max()
    assert sampled <= value + 1e-12 <= upper + 1e-12


@pytest.mark.parametrize("norm,nonnegative", [("2", False), ("1", False), ("2", True)])
def test_prox_of_the_squared_norm_against_cvxpy(norm, nonnegative):
    """argmin_p 1/2 ||p - x||^2 + c/2 ||p||^2 (p >= 0 when non-negative), per column, against SCS."""
    import cvxpy as cp

    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 3))
    for c in (0.3, 2.0):
        with jax.enable_x64(True):
            ours = np.asarray(prox_squared_norm(x, c, norm, nonnegative))
        for column in range(x.shape[1]):
            p = cp.Variable(7)
            penalty = cp.square(cp.norm1(p)) if norm == "1" else cp.sum_squares(p)
            problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(p - x[:, column]) + c / 2 * penalty),
                                 [p >= 0] if nonnegative else [])
            problem.solve(solver="SCS", eps_abs=1e-10, eps_rel=1e-10, max_iters=200_000)
            np.testing.assert_allclose(ours[:, column], p.value, atol=2e-6)


def test_meta_algorithm_on_a_fully_observed_matrix_matches_singular_value_thresholding():
    rng = np.random.default_rng(4)
    y = rng.standard_normal((8, 3)) @ rng.standard_normal((3, 6)) + 0.1 * rng.standard_normal((8, 6))
    y /= np.linalg.norm(y, 2)
    singular = np.linalg.svd(y, compute_uv=False)
    lam = 0.5 * singular[2]
    optimum = float(np.sum(np.minimum(singular, lam) ** 2 / 2 + lam * np.maximum(singular - lam, 0)))
    result = structured_meta_algorithm(y, np.ones_like(y), lam, "2,2")
    assert result["certificate"] and result["polar"] <= 1 + 1e-6
    assert result["objective"] == pytest.approx(optimum, rel=1e-9)
    assert result["columns"] == result["rank"] == int(np.sum(singular > lam))


@pytest.mark.parametrize("norms", ["2,2", "1,1", "1,2"])
def test_convex_problems_match_their_closed_forms_when_fully_observed(norms):
    """(2, 2): singular value soft-thresholding; (1, 1): entrywise soft-thresholding of Y at lambda; (1, 2): each
    row shrunk by max(0, 1 - lambda / ||y_j||)."""
    rng = np.random.default_rng(5)
    y = rng.standard_normal((6, 4))
    lam = 0.7
    if norms == "2,2":
        left, singular, right = np.linalg.svd(y, full_matrices=False)
        x = left @ np.diag(np.maximum(singular - lam, 0)) @ right
        omega = np.maximum(singular - lam, 0).sum()
    elif norms == "1,1":
        x = np.sign(y) * np.maximum(np.abs(y) - lam, 0)
        omega = np.abs(x).sum()
    else:
        rows = np.linalg.norm(y, axis=1, keepdims=True)
        x = np.maximum(0, 1 - lam / rows) * y
        omega = np.linalg.norm(x, axis=1).sum()
    optimum = 0.5 * np.sum((x - y) ** 2) + lam * omega
    result = convex_structured(y, np.ones_like(y), lam, norms)
    assert result["objective"] == pytest.approx(optimum, rel=1e-7)
    np.testing.assert_allclose(result["solution"], x, atol=1e-5)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "structured-factorization"))


def test_quick_preset_claims_hold(quick):
    assert set(quick.runs["model.norms"]) == {"2,2", "2,2+", "1,1", "1,2"}
    checks = check_claims(get_preset("structured-factorization").claims, quick)
    assert [c.holds for c in checks] == [True, True, True, True], [c.measured for c in checks]
    rows = quick.baselines
    meta = rows[rows["baseline"] == "structured_meta_algorithm"].set_index("model.norms")
    convex = rows[rows["baseline"] == "structured_convex"].set_index("model.norms")
    for norms in ("2,2", "1,2", "1,1"):  # certified => the convex optimum, with exact polars
        assert meta.loc[norms, "objective"] == pytest.approx(convex.loc[norms, "objective"], rel=1e-6)
        assert int(meta.loc[norms, "outer_iterations"]) >= 2  # columns were added from a single one
    assert meta.loc["2,2+", "polar"] <= meta.loc["2,2+", "polar_upper"] + 1e-12


def test_figures_draw_on_the_quick_data(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.structured_factorization import structured_figures

    figures = structured_figures(quick)
    assert set(figures) == {"engine_runs", "meta_algorithm"}
    for figure in figures.values():
        assert figure.axes and any(ax.lines for ax in figure.axes)


@pytest.mark.parametrize("field,value,words", [
    ("model.lam_fraction", "-0.5", ["model.lam_fraction", "> 0"]),
    ("model.norms", "3,3", ["model.norms", "2,2+"]),
    ("model.step", "0", ["model.step", "> 0"]),
    ("problem.observed", "1.5", ["problem.observed", "(0, 1]"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, field, value, words):
    result = invoke("run", "structured-factorization", "--quick", "--set", f"{field}={value}", "--no-progress",
                    "--no-figures", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "out").exists()
