"""Tests for the nuclear-norm minimization baseline.

Independent references: the known ground truth of a recoverable low-rank matrix, numpy's SVD,
and closed-form minimizers of tiny programs (one observed entry; one sensing measurement).
"""

import math

import numpy as np
import pytest

from trajlab.baselines import NuclearNormResult, nuclear_norm_completion, nuclear_norm_sensing
from trajlab.baselines.nuclear_norm import _effective_rank


def _low_rank(rng, m, n, rank):
    return rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))


def _observe(rng, matrix, fraction):
    rows, cols = np.nonzero(rng.random(matrix.shape) < fraction)
    return rows, cols, matrix[rows, cols]


def _roy_vetterli(singular_values):
    p = singular_values / singular_values.sum()
    p = p[p > 0]
    return math.exp(-np.sum(p * np.log(p)))


def _relative_squared_error(x, truth):
    return np.linalg.norm(x - truth) ** 2 / np.linalg.norm(truth) ** 2


# --- recovery against the known ground truth -------------------------------------------------


def test_completion_recovers_low_rank_matrix():
    rng = np.random.default_rng(0)
    truth = _low_rank(rng, 20, 15, rank=2)
    rows, cols, values = _observe(rng, truth, 0.7)

    result = nuclear_norm_completion((20, 15), rows, cols, values, target=truth)

    assert isinstance(result, NuclearNormResult)
    assert result.status == "optimal"
    assert result.solution.shape == (20, 15) and result.solution.dtype == np.float64
    assert _relative_squared_error(result.solution, truth) < 1e-8
    assert result.test_error == pytest.approx(_relative_squared_error(result.solution, truth), rel=1e-9, abs=1e-15)
    assert result.effective_rank == pytest.approx(_roy_vetterli(np.linalg.svd(truth, compute_uv=False)), rel=1e-4)
    assert result.solve_s > 0


def test_sensing_recovers_rank_one_matrix_and_both_layouts_agree():
    rng = np.random.default_rng(0)
    m, n, num_measurements = 12, 10, 80
    truth = _low_rank(rng, m, n, rank=1)
    sensing = rng.standard_normal((num_measurements, m, n))
    measurements = np.einsum("kij,ij->k", sensing, truth)

    stacked = nuclear_norm_sensing((m, n), sensing, measurements, target=truth)
    flat = nuclear_norm_sensing((m, n), sensing.reshape(num_measurements, m * n), measurements, target=truth)

    assert _relative_squared_error(stacked.solution, truth) < 1e-8
    # Row-major vectorization: a column-major mix-up would not recover a rectangular truth.
    np.testing.assert_allclose(flat.solution, stacked.solution, atol=1e-8)
    assert stacked.test_error < 1e-8


@pytest.mark.parametrize("shape", [(6, 25), (25, 6)])
def test_rectangular_completion(shape):
    rng = np.random.default_rng(1)
    truth = _low_rank(rng, *shape, rank=1)
    rows, cols, values = _observe(rng, truth, 0.8)

    result = nuclear_norm_completion(shape, rows, cols, values, target=truth)

    assert result.solution.shape == shape
    assert result.test_error < 1e-6
    np.testing.assert_allclose(result.solution[rows, cols], values, atol=1e-5)


# --- closed forms ------------------------------------------------------------------------------


def test_single_observed_entry_has_closed_form_minimizer():
    # ||X||_* >= ||X||_F >= |X[1, 2]|, with equality only for X = 5 e_1 e_2^T.
    result = nuclear_norm_completion((3, 4), [1], [2], [5.0])
    expected = np.zeros((3, 4))
    expected[1, 2] = 5.0
    np.testing.assert_allclose(result.solution, expected, atol=1e-5)
    assert result.nuclear_norm == pytest.approx(5.0, rel=1e-5)
    assert result.effective_rank == pytest.approx(1.0, abs=1e-4)
    assert math.isnan(result.test_error)


def test_single_measurement_has_closed_form_minimizer():
    # min ||X||_* s.t. <A, X> = y is |y| / ||A||_op (dual norm), attained at y/s1 * u1 v1^T.
    rng = np.random.default_rng(2)
    sensing = rng.standard_normal((1, 4, 3))
    u, s, vt = np.linalg.svd(sensing[0])
    result = nuclear_norm_sensing((4, 3), sensing, [2.0])
    assert result.nuclear_norm == pytest.approx(2.0 / s[0], rel=1e-5)
    np.testing.assert_allclose(result.solution, 2.0 / s[0] * np.outer(u[:, 0], vt[0]), atol=1e-5)


def test_tolerance_covering_all_values_gives_zero_matrix():
    # With tolerance >= max |value| the zero matrix is feasible, so the minimum is 0.
    values = np.array([0.3, -0.2, 0.1])
    result = nuclear_norm_completion((4, 4), [0, 1, 2], [0, 1, 3], values, tolerance=0.3)
    assert result.nuclear_norm < 1e-5
    assert result.effective_rank >= 0


# --- constraints and optimality ------------------------------------------------------------------


def test_equality_constraints_hold_and_tolerance_bounds_residuals():
    rng = np.random.default_rng(3)
    truth = _low_rank(rng, 15, 12, rank=3)
    rows, cols, values = _observe(rng, truth, 0.4)

    exact = nuclear_norm_completion((15, 12), rows, cols, values)
    tolerance = 1e-2
    loose = nuclear_norm_completion((15, 12), rows, cols, values, tolerance=tolerance)

    assert np.max(np.abs(exact.solution[rows, cols] - values)) < 1e-5
    assert np.max(np.abs(loose.solution[rows, cols] - values)) <= tolerance + 1e-5
    # A larger feasible set cannot raise the minimum.
    assert loose.nuclear_norm <= exact.nuclear_norm + 1e-5


def test_sensing_tolerance_bounds_residuals():
    rng = np.random.default_rng(4)
    truth = _low_rank(rng, 6, 5, rank=1)
    sensing = rng.standard_normal((20, 6, 5))
    measurements = np.einsum("kij,ij->k", sensing, truth)
    result = nuclear_norm_sensing((6, 5), sensing, measurements, tolerance=1e-3)
    residuals = np.einsum("kij,ij->k", sensing, result.solution) - measurements
    assert np.max(np.abs(residuals)) <= 1e-3 + 1e-5


def test_solution_nuclear_norm_not_above_feasible_truth():
    # Too few observations to recover a rank-3 20x20 matrix, so the minimizer differs from the truth
    # and must have strictly smaller nuclear norm: the truth is feasible.
    rng = np.random.default_rng(5)
    truth = _low_rank(rng, 20, 20, rank=3)
    rows, cols, values = _observe(rng, truth, 0.3)

    result = nuclear_norm_completion((20, 20), rows, cols, values, target=truth)

    truth_nuclear_norm = np.linalg.svd(truth, compute_uv=False).sum()
    assert result.nuclear_norm <= truth_nuclear_norm * (1 + 1e-6) + 1e-6
    assert result.test_error > 1e-3  # the regime where the inequality has content


# --- spectral summaries ----------------------------------------------------------------------------


def test_nuclear_norm_and_effective_rank_match_numpy_svd():
    rng = np.random.default_rng(6)
    truth = _low_rank(rng, 10, 8, rank=3)
    rows, cols, values = _observe(rng, truth, 0.5)
    result = nuclear_norm_completion((10, 8), rows, cols, values)

    singular_values = np.linalg.svd(result.solution, compute_uv=False)
    assert result.nuclear_norm == pytest.approx(singular_values.sum(), rel=1e-12)
    assert result.effective_rank == pytest.approx(_roy_vetterli(singular_values), rel=1e-12)


def test_effective_rank_of_k_equal_singular_values_is_k():
    rng = np.random.default_rng(7)
    q_left, _ = np.linalg.qr(rng.standard_normal((9, 9)))
    q_right, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    k = 3
    matrix = 2.0 * q_left[:, :k] @ q_right[:, :k].T
    rows, cols = np.indices(matrix.shape).reshape(2, -1)

    result = nuclear_norm_completion(matrix.shape, rows, cols, matrix[rows, cols])

    assert result.effective_rank == pytest.approx(k, rel=1e-4)
    assert _effective_rank(np.array([2.0, 2.0, 2.0, 0.0, 0.0])) == pytest.approx(3.0, rel=1e-14)
    assert _effective_rank(np.array([1.0])) == 1.0
    assert _effective_rank(np.zeros(4)) == 0.0


# --- validation ---------------------------------------------------------------------------------------

_ROWS, _COLS, _VALUES = np.array([0, 1]), np.array([1, 2]), np.array([1.0, 2.0])


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(shape=(0, 3)), "shape"),
        (dict(shape=(3,)), "shape"),
        (dict(shape=(3.0, 3)), "shape"),
        (dict(rows=np.array([0, 3])), "rows"),
        (dict(cols=np.array([-1, 2])), "cols"),
        (dict(rows=np.array([0.0, 1.0])), "rows"),
        (dict(cols=np.array([1, 2, 0])), "cols"),
        (dict(values=np.array([1.0])), "values"),
        (dict(values=np.array([1.0, np.nan])), "values"),
        (dict(rows=np.array([1, 1]), cols=np.array([2, 2])), "rows/cols"),
        (dict(tolerance=-1e-3), "tolerance"),
        (dict(eps=0.0), "eps"),
        (dict(max_iters=0), "max_iters"),
        (dict(target=np.ones((3, 4))), "target"),
        (dict(target=np.zeros((3, 3))), "target"),
    ],
)
def test_completion_rejects_bad_inputs(kwargs, field):
    arguments = dict(shape=(3, 3), rows=_ROWS, cols=_COLS, values=_VALUES)
    arguments.update(kwargs)
    shape, rows, cols, values = (arguments.pop(name) for name in ("shape", "rows", "cols", "values"))
    with pytest.raises(ValueError, match=f"^{field}:"):
        nuclear_norm_completion(shape, rows, cols, values, **arguments)


@pytest.mark.parametrize(
    "sensing, measurements, kwargs, field",
    [
        (np.ones((2, 3, 4)), np.ones(2), {}, "sensing"),
        (np.ones((2, 10)), np.ones(2), {}, "sensing"),
        (np.ones(9), np.ones(1), {}, "sensing"),
        (np.ones((0, 9)), np.ones(0), {}, "sensing"),
        (np.full((1, 3, 3), np.inf), np.ones(1), {}, "sensing"),
        (np.ones((2, 3, 3)), np.ones(3), {}, "measurements"),
        (np.ones((2, 3, 3)), np.ones(2), dict(tolerance=float("nan")), "tolerance"),
        (np.ones((2, 3, 3)), np.ones(2), dict(target=np.ones((3, 2))), "target"),
    ],
)
def test_sensing_rejects_bad_inputs(sensing, measurements, kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        nuclear_norm_sensing((3, 3), sensing, measurements, **kwargs)


def test_inconsistent_measurements_raise_runtime_error():
    sensing = np.ones((2, 3, 3))
    with pytest.raises(RuntimeError, match="infeasible"):
        nuclear_norm_sensing((3, 3), sensing, [1.0, 2.0])
