"""Tests of trajlab.metrics against numpy float64 computations and closed forms."""

from __future__ import annotations

import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trajlab.errors import ConfigError  # noqa: E402
from trajlab.metrics import (  # noqa: E402
    METRIC_FUNCTIONS,
    MetricState,
    balancedness,
    balancedness_gaps,
    balancedness_relative,
    distance_from_init,
    effective_rank,
    evaluate_metrics,
    frobenius_norm,
    nuclear_norm,
    resolve_metrics,
    schatten_quasi_norm,
    singular_values,
    top_singular_values,
)
from trajlab.problems import MatrixData, reconstruction_error  # noqa: E402


def np_sigma(w):
    return np.linalg.svd(np.asarray(w), compute_uv=False)


def np_effective_rank(sigma):
    p = sigma / sigma.sum()
    p = p[p > 0]
    return math.exp(-np.sum(p * np.log(p)))


def np_gaps(layers):
    return [np.linalg.norm(b.T @ b - a @ a.T, "fro") for a, b in zip(layers[:-1], layers[1:])]


def random_layers(rng, shapes):
    return [rng.standard_normal(s) for s in shapes]


SHAPES = ((5, 4), (5, 5), (3, 5))  # W_1: 4 -> 5, W_2: 5 -> 5, W_3: 5 -> 3


# --- spectral -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (3, 7), (5, 5)])
def test_singular_values_match_numpy(shape):
    w = np.random.default_rng(0).standard_normal(shape)
    sigma = np.asarray(singular_values(jnp.asarray(w)))
    np.testing.assert_allclose(sigma, np_sigma(w), rtol=1e-12)
    assert np.all(np.diff(sigma) <= 0)


def test_top_singular_values_truncates_and_pads():
    sigma = jnp.asarray([5.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(top_singular_values(sigma, 2), [5.0, 3.0])
    np.testing.assert_array_equal(top_singular_values(sigma, 4), [5.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(top_singular_values(sigma, 7), [5.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0])
    batched = jnp.asarray([[2.0, 1.0], [4.0, 3.0]])
    np.testing.assert_array_equal(top_singular_values(batched, 3), [[2.0, 1.0, 0.0], [4.0, 3.0, 0.0]])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_effective_rank_of_k_equal_values_is_k(k):
    sigma = jnp.asarray([2.5] * k + [0.0] * (6 - k))
    assert float(effective_rank(sigma)) == pytest.approx(k, rel=1e-12)
    # a matrix with k equal singular values (a scaled partial identity)
    w = 3.0 * np.eye(6, 5)[:, :5] * (np.arange(5) < k)
    assert float(effective_rank(singular_values(jnp.asarray(w)))) == pytest.approx(k, rel=1e-12)


def test_effective_rank_of_zero_matrix_is_zero():
    assert float(effective_rank(jnp.zeros(4))) == 0.0


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.floats(0.0, 10.0), min_size=4, max_size=4).filter(lambda v: sum(v) > 1e-3))
def test_effective_rank_matches_entropy_formula(values):
    sigma = np.sort(np.asarray(values))[::-1]
    got = float(effective_rank(jnp.asarray(sigma)))
    assert got == pytest.approx(np_effective_rank(sigma), rel=1e-10)
    assert 1.0 - 1e-12 <= got <= np.count_nonzero(sigma) + 1e-12


def test_norms_match_numpy():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 4))
    sigma = np_sigma(w)
    s = singular_values(jnp.asarray(w))
    assert float(nuclear_norm(s)) == pytest.approx(np.linalg.norm(w, "nuc"), rel=1e-12)
    assert float(frobenius_norm(jnp.asarray(w))) == pytest.approx(np.linalg.norm(w, "fro"), rel=1e-13)
    assert float(frobenius_norm(jnp.asarray(w))) == pytest.approx(np.sqrt(np.sum(sigma**2)), rel=1e-12)
    for p in (0.25, 0.5, 1.0):
        expected = np.sum(sigma**p) ** (1 / p)
        assert float(schatten_quasi_norm(s, p)) == pytest.approx(expected, rel=1e-12)
    assert float(schatten_quasi_norm(s, 1.0)) == pytest.approx(np.linalg.norm(w, "nuc"), rel=1e-12)
    # closed forms: one nonzero value s gives s for every p; k equal values s give k^(1/p) s
    assert float(schatten_quasi_norm(jnp.asarray([3.0, 0.0, 0.0]), 0.5)) == pytest.approx(3.0, rel=1e-14)
    assert float(schatten_quasi_norm(jnp.asarray([2.0, 2.0, 2.0]), 0.5)) == pytest.approx(18.0, rel=1e-14)


# --- balancedness and distances -------------------------------------------------------------


def test_balancedness_matches_numpy():
    layers = random_layers(np.random.default_rng(2), SHAPES)
    gaps = np_gaps(layers)
    jl = tuple(jnp.asarray(w) for w in layers)
    np.testing.assert_allclose(balancedness_gaps(jl), gaps, rtol=1e-12)
    assert float(balancedness(jl)) == pytest.approx(max(gaps), rel=1e-12)
    squared = [np.sum(w**2) for w in layers]
    relative = max(g / ((squared[j] + squared[j + 1]) / 2) for j, g in enumerate(gaps))
    assert float(balancedness_relative(jl)) == pytest.approx(relative, rel=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_balancedness_relative_is_scale_free_and_at_most_two(seed, scale):
    layers = random_layers(np.random.default_rng(seed), SHAPES)
    base = float(balancedness_relative(tuple(jnp.asarray(w) for w in layers)))
    scaled = float(balancedness_relative(tuple(jnp.asarray(scale * w) for w in layers)))
    assert scaled == pytest.approx(base, rel=1e-9)
    assert 0.0 <= base <= 2.0
    # the absolute version scales like scale^2
    assert float(balancedness(tuple(jnp.asarray(scale * w) for w in layers))) == pytest.approx(
        scale**2 * max(np_gaps(layers)), rel=1e-9
    )


def test_balancedness_of_depth_one_and_of_balanced_layers_is_zero():
    (w,) = random_layers(np.random.default_rng(3), ((4, 3),))
    assert float(balancedness((jnp.asarray(w),))) == 0.0
    assert float(balancedness_relative((jnp.asarray(w),))) == 0.0
    assert balancedness_gaps((jnp.asarray(w),)).shape == (0,)
    # W_2 = Q W_1^T-like construction: W_1 = diag(d) V^T, W_2 = U diag(d) are balanced
    rng = np.random.default_rng(4)
    u, _ = np.linalg.qr(rng.standard_normal((5, 3)))
    v, _ = np.linalg.qr(rng.standard_normal((4, 3)))
    d = np.array([2.0, 1.0, 0.5])
    layers = (jnp.asarray(np.diag(d) @ v.T), jnp.asarray(u @ np.diag(d)))
    assert float(balancedness(layers)) < 1e-13
    assert float(balancedness_relative(layers)) < 1e-13


def test_distance_from_init_matches_numpy():
    rng = np.random.default_rng(5)
    layers = random_layers(rng, SHAPES)
    initial = random_layers(rng, SHAPES)
    expected = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(layers, initial)))
    got = distance_from_init(tuple(map(jnp.asarray, layers)), tuple(map(jnp.asarray, initial)))
    assert float(got) == pytest.approx(expected, rel=1e-13)
    flat = np.concatenate([(a - b).ravel() for a, b in zip(layers, initial)])
    assert float(got) == pytest.approx(np.linalg.norm(flat), rel=1e-13)


def test_reconstruction_error_matches_numpy():
    rng = np.random.default_rng(6)
    w, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    expected = np.linalg.norm(w - target) ** 2 / np.linalg.norm(target) ** 2
    assert float(reconstruction_error(jnp.asarray(w), jnp.asarray(target))) == pytest.approx(expected, rel=1e-13)
    assert float(reconstruction_error(jnp.asarray(target), jnp.asarray(target))) == 0.0
    assert float(reconstruction_error(jnp.zeros((5, 3)), jnp.asarray(target))) == pytest.approx(1.0, rel=1e-14)


# --- the registry ---------------------------------------------------------------------------


# The built-in metrics of the parameters alone (metrics against a reference flow are tested elsewhere).
PARAMETER_METRICS = [
    "train_loss", "test_error", "singular_values", "effective_rank", "nuclear_norm", "schatten_quasi_norm",
    "frobenius_norm", "balancedness", "balancedness_relative", "distance_from_init",
]


def test_evaluate_metrics_matches_numpy_for_every_parameter_metric():
    from trajlab.metrics.generic import GENERIC_METRIC_FUNCTIONS

    assert set(PARAMETER_METRICS) <= set(METRIC_FUNCTIONS) | set(GENERIC_METRIC_FUNCTIONS)
    rng = np.random.default_rng(7)
    layers = random_layers(rng, SHAPES)
    initial = random_layers(rng, SHAPES)
    target = rng.standard_normal((3, 4))
    rows = np.array([0, 1, 2, 2], np.int32)
    cols = np.array([3, 0, 1, 2], np.int32)
    data = MatrixData(jnp.asarray(target), jnp.asarray(rows), jnp.asarray(cols), None, jnp.asarray(target[rows, cols]))
    state = MetricState(tuple(map(jnp.asarray, layers)), tuple(map(jnp.asarray, initial)), None, data, top_k=5,
                        schatten_p=0.4)
    values = evaluate_metrics(resolve_metrics(PARAMETER_METRICS), state)

    w = layers[2] @ layers[1] @ layers[0]
    sigma = np_sigma(w)
    squared = [np.sum(x**2) for x in layers]
    gaps = np_gaps(layers)
    expected = {
        "train_loss": np.mean((w[rows, cols] - target[rows, cols]) ** 2),
        "test_error": np.sum((w - target) ** 2) / np.sum(target**2),
        "effective_rank": np_effective_rank(sigma),
        "nuclear_norm": sigma.sum(),
        "schatten_quasi_norm": np.sum(sigma**0.4) ** (1 / 0.4),
        "frobenius_norm": np.linalg.norm(w),
        "balancedness": max(gaps),
        "balancedness_relative": max(g / ((squared[j] + squared[j + 1]) / 2) for j, g in enumerate(gaps)),
        "distance_from_init": np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(layers, initial))),
    }
    padded = np.concatenate([sigma, np.zeros(5 - sigma.size)])  # 3 values, top_k = 5
    expected.update({f"sv_{i}": padded[i] for i in range(5)})
    assert set(values) == set(expected)
    for name, value in expected.items():
        assert float(values[name]) == pytest.approx(value, rel=1e-11, abs=1e-14), name


def test_registry_user_metrics_and_errors():
    functions = resolve_metrics(["frobenius_norm"], {"first_entry": lambda s: s.end_to_end[0, 0]})
    assert list(functions) == ["frobenius_norm", "first_entry"]
    with pytest.raises(ConfigError, match="metrics"):
        resolve_metrics(["no_such_metric"])
    with pytest.raises(ConfigError, match="metrics"):
        resolve_metrics(["train_loss"], {"train_loss": lambda s: 0.0})
    with pytest.raises(ConfigError, match="metrics"):
        resolve_metrics([], {"not_callable": 3})


def test_generic_metric_names_and_functions_are_the_same_set():
    """The registry lists the generic names without importing JAX; the functions live in
    trajlab.metrics.generic. A metric added to one and not the other would be refused by
    RunConfig or fail when traced; the memory estimate's curvature names must be generic ones."""
    from trajlab import registry
    from trajlab.engine import memory
    from trajlab.metrics.generic import GENERIC_METRIC_FUNCTIONS

    assert set(registry.GENERIC_METRICS) == set(GENERIC_METRIC_FUNCTIONS)
    assert set(memory.CURVATURE_METRICS) <= set(registry.GENERIC_METRICS)
