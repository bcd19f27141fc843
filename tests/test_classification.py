"""Tests of the classification problems and the hard-margin SVM baseline (float64).

Independent references: scikit-learn's ``log_loss``, ``accuracy_score`` and ``SVC``, numpy
formulas, the closed-form max-margin direction of Soudry et al.'s set (derived by hand), a KKT
certificate computed with scipy's nonnegative least squares, and trigonometric identities.
"""

from __future__ import annotations

import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.optimize import nnls  # noqa: E402

from trajlab.baselines.svm import angle_between, hard_margin_svm, normalized_margin  # noqa: E402
from trajlab.models.mlp import TwoLayer, two_layer_apply  # noqa: E402
from trajlab.problems.classification import (  # noqa: E402
    SOUDRY_MARGIN,
    SOUDRY_MAX_MARGIN,
    accuracy,
    binary_accuracy,
    logistic_loss,
    make_digits,
    make_soudry_separable,
    make_teacher_student,
    softmax_cross_entropy,
    squared_loss,
)

# --- losses -----------------------------------------------------------------------------------


def test_softmax_cross_entropy_matches_sklearn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((40, 5))
    labels = rng.integers(0, 5, 40)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    want = log_loss(labels, probabilities, labels=np.arange(5))
    got = softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    assert float(got) == pytest.approx(want, rel=1e-10)
    # Shift invariance and finiteness for huge logits (log-softmax, not log of softmax).
    shifted = softmax_cross_entropy(jnp.asarray(logits + 1e4), jnp.asarray(labels))
    assert float(shifted) == pytest.approx(want, rel=1e-9)


def test_logistic_loss_matches_numpy_and_is_stable_at_large_margins():
    rng = np.random.default_rng(1)
    f = rng.standard_normal(30) * 3
    y = np.where(rng.random(30) < 0.5, -1.0, 1.0)
    want = np.mean(np.log1p(np.exp(-y * f)))
    assert float(logistic_loss(jnp.asarray(f), jnp.asarray(y))) == pytest.approx(want, rel=1e-12)
    assert float(logistic_loss(jnp.asarray(f[:, None]), jnp.asarray(y))) == pytest.approx(want, rel=1e-12)

    f = jnp.array([1000.0, -1000.0, 1000.0, -1000.0])
    y = jnp.array([1.0, 1.0, -1.0, -1.0])
    per_sample = [float(logistic_loss(f[i : i + 1], y[i : i + 1])) for i in range(4)]
    assert per_sample == [0.0, 1000.0, 1000.0, 0.0]  # log(1 + e^-1000) underflows to 0; log(1 + e^1000) = 1000
    gradient = jax.grad(logistic_loss)(f, y)  # d/df_i = -y_i sigmoid(-y_i f_i) / S
    np.testing.assert_allclose(gradient, [0.0, -0.25, 0.25, 0.0], atol=1e-300)


def test_squared_loss_and_accuracies():
    rng = np.random.default_rng(2)
    outputs, targets = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    assert float(squared_loss(outputs, targets)) == pytest.approx(np.sum((outputs - targets) ** 2) / 7, rel=1e-12)
    column = np.mean((outputs[:, 0] - targets[:, 0]) ** 2)
    assert float(squared_loss(outputs[:, 0], targets[:, 0])) == pytest.approx(column, rel=1e-12)

    from sklearn.metrics import accuracy_score

    logits = rng.standard_normal((50, 4))
    labels = rng.integers(0, 4, 50)
    assert float(accuracy(logits, labels)) == pytest.approx(accuracy_score(labels, logits.argmax(1)))
    f = np.array([0.5, -2.0, 0.0, 3.0])
    assert float(binary_accuracy(f, np.array([1.0, 1.0, 1.0, -1.0]))) == pytest.approx(0.25)


# --- data -------------------------------------------------------------------------------------


def test_digits_shapes_ranges_and_split():
    data = make_digits(seed=0)
    assert data.inputs.shape == (1438, 64) and data.test_inputs.shape == (359, 64)
    assert data.labels.dtype == np.int32 and set(np.unique(data.labels)) == set(range(10))
    everything = np.concatenate([data.inputs, data.test_inputs])
    assert everything.min() == 0.0 and everything.max() == 1.0
    assert np.all(np.isin(everything * 16, np.arange(17)))  # 4-bit pixel counts / 16
    # Same seed, same data; the split covers the subset exactly once (the sum of all features is
    # permutation invariant).
    small = make_digits(subset=100, test_fraction=0.25, seed=3)
    assert small.inputs.shape == (75, 64) and small.test_inputs.shape == (25, 64)
    again = make_digits(subset=100, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(small.inputs, again.inputs)
    other = make_digits(subset=100, test_fraction=0.25, seed=4)
    assert not np.array_equal(small.inputs, other.inputs)
    np.testing.assert_allclose(everything.sum(), make_digits(seed=9, test_fraction=0.5).inputs.sum()
                               + make_digits(seed=9, test_fraction=0.5).test_inputs.sum())
    with pytest.raises(ValueError, match="subset"):
        make_digits(subset=5000)


def test_soudry_set_follows_its_rule():
    data = make_soudry_separable(extra_points=40, delta=0.3, seed=7)
    assert data.inputs.shape == (44, 2) and data.test_inputs.shape == (0, 2)
    np.testing.assert_array_equal(data.inputs[:4], [[0.5, 1.5], [1.5, 0.5], [-0.5, -1.5], [-1.5, -0.5]])
    np.testing.assert_array_equal(data.labels[:4], [1, 1, -1, -1])
    projection = data.inputs[4:] @ np.array([1.0, 1.0]) / math.sqrt(2)
    assert np.all(np.abs(projection) >= math.sqrt(2) + 0.3)
    np.testing.assert_array_equal(data.labels[4:], np.sign(projection))
    np.testing.assert_array_equal(make_soudry_separable(40, 0.3, seed=7).inputs, data.inputs)


def test_teacher_student_outputs_and_orthonormal_teacher():
    data = make_teacher_student(input_dim=6, teacher_hidden=4, train_size=50, test_size=30, seed=1)
    w = data.teacher_hidden
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)
    teacher = TwoLayer(jnp.asarray(w), jnp.asarray(data.teacher_output))
    np.testing.assert_allclose(two_layer_apply(teacher, data.inputs, "relu"), data.outputs, rtol=1e-12)
    want = sum(np.maximum(data.test_inputs @ w[r], 0) for r in range(4))
    np.testing.assert_allclose(data.test_outputs, want, rtol=1e-12)
    noisy = make_teacher_student(6, 4, 50, 30, seed=1, noise=0.1)
    residual = noisy.outputs - data.outputs
    assert 0.05 < residual.std() < 0.15
    np.testing.assert_array_equal(noisy.test_outputs, data.test_outputs)
    gaussian = make_teacher_student(6, 9, 10, 5, seed=1, teacher="gaussian")
    assert gaussian.teacher_hidden.shape == (9, 6)
    with pytest.raises(ValueError, match="orthonormal"):
        make_teacher_student(3, 4, 10)


# --- hard-margin SVM --------------------------------------------------------------------------


def test_svm_on_soudry_set_is_the_closed_form():
    """w_svm = (1/2, 1/2), margin sqrt(2), with or without extra points off the margin."""
    for extra in (0, 30):
        data = make_soudry_separable(extra_points=extra, seed=2)
        result = hard_margin_svm(data.inputs, data.labels)
        np.testing.assert_allclose(result.weights, SOUDRY_MAX_MARGIN, atol=1e-12)
        assert result.margin == pytest.approx(SOUDRY_MARGIN, rel=1e-12)
        np.testing.assert_array_equal(result.support, [0, 1, 2, 3])
        assert float(normalized_margin(result.weights, data.inputs, data.labels)) == pytest.approx(math.sqrt(2))


def separable(rng, samples, dim):
    """Samples with a margin >= 0.2 around a random direction through the origin."""
    truth = rng.standard_normal(dim)
    truth /= np.linalg.norm(truth)
    x = rng.standard_normal((4 * samples, dim))
    x = x[np.abs(x @ truth) > 0.2][:samples]
    return x, np.sign(x @ truth)


def test_svm_satisfies_kkt_and_matches_sklearn_svc_on_a_symmetric_set():
    """KKT (scipy nnls) on a random set; sklearn's SVC (which fits a bias) on a set closed under
    (x, y) -> (-x, -y), where the optimal bias is 0 by symmetry."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(3)
    x, y = separable(rng, 30, 4)
    result = hard_margin_svm(x, y)
    w = result.weights
    signed = y[:, None] * x
    assert np.all(signed @ w >= 1 - 1e-9)
    # Stationarity w = sum_i lambda_i y_i x_i with lambda >= 0 on the support set only.
    lam, residual = nnls(signed[result.support].T, w)
    assert residual < 1e-8
    np.testing.assert_allclose(signed[result.support] @ w, 1.0, atol=1e-8)
    scs = hard_margin_svm(x, y, solver="SCS")
    np.testing.assert_allclose(scs.weights, w, atol=1e-6)

    x, y = separable(rng, 15, 3)
    x, y = np.concatenate([x, -x]), np.concatenate([y, -y])
    svc = SVC(kernel="linear", C=1e8, tol=1e-10).fit(x, y)
    result = hard_margin_svm(x, y)
    assert abs(svc.intercept_[0]) < 1e-5
    np.testing.assert_allclose(result.weights, svc.coef_[0], rtol=1e-5, atol=1e-6)


def test_svm_rejects_non_separable_data():
    x = np.array([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(RuntimeError, match="separable"):
        hard_margin_svm(x, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="labels"):
        hard_margin_svm(x, np.array([1.0, 0.0]))


def test_angle_between_and_margin():
    assert float(angle_between(np.array([1.0, 0.0]), np.array([3.0, 0.0]))) == 0.0
    assert float(angle_between(np.array([1.0, 0.0]), np.array([0.0, 2.0]))) == pytest.approx(math.pi / 2)
    assert float(angle_between(np.array([1.0, 1.0]), np.array([-2.0, -2.0]))) == pytest.approx(math.pi)
    for t in (1e-9, 1e-4, 0.7, 2.5):
        got = float(angle_between(np.array([2.0, 0.0]), np.array([math.cos(t), math.sin(t)])))
        assert got == pytest.approx(t, rel=1e-12)
    u, v = np.random.default_rng(4).standard_normal((2, 6))
    cosine = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
    assert float(angle_between(u, v)) == pytest.approx(math.acos(cosine), rel=1e-12)
    x = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    y = np.array([1.0, 1.0, -1.0])
    assert float(normalized_margin(np.array([3.0, 4.0]), x, y)) == pytest.approx(min(3, 8, 7) / 5)
