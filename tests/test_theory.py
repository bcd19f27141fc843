"""Tests of trajlab.theory.end_to_end against independent references.

References: scipy's fractional_matrix_power and numpy eigh (matrix powers); the dense Kronecker
form of the preconditioner (row-major vec: vec(A G B) = (A kron B^T) vec(G)) and its known
spectrum (Arora, Cohen, Hazan, ICML 2018, Claim 1); one factorized GD step on a balanced
factorization written in numpy (first-order agreement with the end-to-end step, Eq. (10));
numpy SVDs for the singular value velocity (Arora, Cohen, Hu, Luo, NeurIPS 2019, Theorem 3);
the definitions of Arora, Cohen, Golowich, Hu (ICLR 2019) for margins, balancedness and the rate.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.linalg import fractional_matrix_power  # noqa: E402

from trajlab.theory import (  # noqa: E402
    deficiency_margin,
    end_to_end_step,
    is_delta_balanced,
    linear_convergence_bound,
    preconditioner_apply,
    preconditioner_matrix,
    psd_power,
    singular_value_velocity,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def np_psd_power(a, power):
    """A^power by numpy eigh, eigenvalues clamped at 0, A^0 = I."""
    if power == 0:
        return np.eye(a.shape[0])
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.clip(values, 0, None) ** power) @ vectors.T


def np_preconditioner(w, depth):
    """Dense P_W on row-major vec: sum_j (W W^T)^((j-1)/N) kron ((W^T W)^((N-j)/N))^T."""
    left, right = w @ w.T, w.T @ w
    return sum(
        np.kron(np_psd_power(left, (j - 1) / depth), np_psd_power(right, (depth - j) / depth).T)
        for j in range(1, depth + 1)
    )


def balanced_layers(w, depth):
    """A balanced factorization of square W: W_1 = S^(1/N) V^T, W_j = S^(1/N), W_N = U S^(1/N)."""
    u, s, vt = np.linalg.svd(w)
    root = np.diag(s ** (1 / depth))
    if depth == 1:
        return [w]
    return [root @ vt] + [root] * (depth - 2) + [u @ root]


def product(layers):
    out = layers[0]
    for layer in layers[1:]:
        out = layer @ out
    return out


def layer_gradients(layers, grad):
    """dL/dW_j = (W_N...W_{j+1})^T grad L(W_e) (W_{j-1}...W_1)^T."""
    n = layers[0].shape[1]
    out = []
    for j in range(len(layers)):
        below = product(layers[:j]) if j > 0 else np.eye(n)
        above = product(layers[j + 1 :]) if j < len(layers) - 1 else np.eye(layers[-1].shape[0])
        out.append(above.T @ grad @ below.T)
    return out


# --- psd_power ---------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [0.5, 1 / 3, 2 / 3, 1.0, 1.5])
def test_psd_power_matches_scipy(power):
    x = rng(1).standard_normal((5, 5))
    a = x @ x.T + 0.1 * np.eye(5)  # positive definite: scipy's principal power is the reference
    expected = np.real(fractional_matrix_power(a, power))
    np.testing.assert_allclose(np.asarray(psd_power(jnp.asarray(a), power)), expected, rtol=1e-9, atol=1e-11)


def test_psd_power_zero_is_identity_even_for_singular_matrices():
    x = rng(2).standard_normal((4, 2))
    singular = x @ x.T  # rank 2
    for a in (singular, np.zeros((4, 4))):
        np.testing.assert_array_equal(np.asarray(psd_power(jnp.asarray(a), 0)), np.eye(4))
        np.testing.assert_array_equal(np.asarray(psd_power(jnp.asarray(a), 0.0)), np.eye(4))


def test_psd_power_rank_deficient_matches_eigh_and_squares_back():
    x = rng(3).standard_normal((5, 2))
    a = x @ x.T  # PSD, rank 2 (eigenvalues ~ 0 may come out slightly negative: clamped)
    half = np.asarray(psd_power(jnp.asarray(a), 0.5))
    np.testing.assert_allclose(half, np_psd_power(a, 0.5), atol=1e-7)
    np.testing.assert_allclose(half @ half, a, atol=1e-10)
    third = np.asarray(psd_power(jnp.asarray(a), 1 / 3))
    np.testing.assert_allclose(third @ third @ third, a, atol=1e-10)
    assert np.all(np.isfinite(third))


# --- the preconditioner P_W -----------------------------------------------------------------------


@pytest.mark.parametrize("shape,depth", [((3, 3), 2), ((3, 3), 3), ((4, 3), 3), ((2, 4), 4), ((3, 4), 1)])
def test_preconditioner_matches_dense_kronecker_formula(shape, depth):
    r = rng(4)
    w, g = r.standard_normal(shape), r.standard_normal(shape)
    dense = np_preconditioner(w, depth)
    applied = np.asarray(preconditioner_apply(jnp.asarray(w), jnp.asarray(g), depth))
    np.testing.assert_allclose(applied.ravel(), dense @ g.ravel(), rtol=1e-8, atol=1e-10)
    matrix = np.asarray(preconditioner_matrix(jnp.asarray(w), depth))
    np.testing.assert_allclose(matrix, dense, rtol=1e-8, atol=1e-10)
    # Claim 1 of ACH18: P_W is symmetric positive semi-definite
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-10)
    assert np.linalg.eigvalsh((matrix + matrix.T) / 2).min() > -1e-10


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_preconditioner_spectrum_matches_claim(depth):
    """For square W = U S V^T, P_W has eigenvalues sum_j s_r^(2(j-1)/N) s_r'^(2(N-j)/N), all r, r'."""
    w = rng(5).standard_normal((3, 3))
    s = np.linalg.svd(w, compute_uv=False)
    expected = np.sort(
        [sum(a ** (2 * (j - 1) / depth) * b ** (2 * (depth - j) / depth) for j in range(1, depth + 1))
         for a in s for b in s]
    )
    matrix = np.asarray(preconditioner_matrix(jnp.asarray(w), depth))
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(matrix)), expected, rtol=1e-8)


def test_preconditioner_is_identity_for_depth_one():
    r = rng(6)
    w, g = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    np.testing.assert_array_equal(np.asarray(preconditioner_apply(jnp.asarray(w), jnp.asarray(g), 1)), g)
    np.testing.assert_allclose(np.asarray(preconditioner_matrix(jnp.asarray(w), 1)), np.eye(12), atol=1e-15)


def test_preconditioner_equals_balanced_factorized_velocity():
    """Theorem 1 of ACH18 at one point: d/dt (W_N...W_1) = -sum_j (..) dW_j (..) = -P_W(grad)."""
    r = rng(7)
    w, grad = r.standard_normal((3, 3)), r.standard_normal((3, 3))
    for depth in (2, 3, 4):
        layers = balanced_layers(w, depth)
        grads = layer_gradients(layers, grad)
        # chain rule of the product, one term per layer: (W_N..W_{j+1}) dW_j/dt (W_{j-1}..W_1)
        velocity = np.zeros_like(w)
        for j in range(depth):
            above = product(layers[j + 1 :]) if j < depth - 1 else np.eye(3)
            below = product(layers[:j]) if j > 0 else np.eye(3)
            velocity += above @ grads[j] @ below
        np.testing.assert_allclose(
            velocity, np.asarray(preconditioner_apply(jnp.asarray(w), jnp.asarray(grad), depth)), rtol=1e-9, atol=1e-10
        )


# --- end_to_end_step ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2, 3])
def test_end_to_end_step_is_factorized_step_to_first_order(depth):
    r = rng(8)
    w, grad = r.standard_normal((3, 3)), r.standard_normal((3, 3))
    layers = balanced_layers(w, depth)
    np.testing.assert_allclose(product(layers), w, atol=1e-12)
    grads = layer_gradients(layers, grad)
    differences = []
    etas = [1e-2, 5e-3, 2.5e-3, 1.25e-3]
    for eta in etas:
        factorized = product([layer - eta * g for layer, g in zip(layers, grads)])
        step = np.asarray(end_to_end_step(jnp.asarray(w), jnp.asarray(grad), depth, eta))
        np.testing.assert_allclose(step, w - eta * np_preconditioner(w, depth).dot(grad.ravel()).reshape(3, 3), atol=1e-12)
        differences.append(np.linalg.norm(factorized - step))
    # the first-order terms agree, so the difference is O(eta^2) (and not zero)
    slope = np.polyfit(np.log(etas), np.log(differences), 1)[0]
    assert 1.9 <= slope <= 2.1
    assert differences[-1] > 1e-9
    # while the step itself moves W at order eta
    assert np.linalg.norm(np.asarray(end_to_end_step(jnp.asarray(w), jnp.asarray(grad), depth, etas[-1])) - w) > 1e-3


def test_end_to_end_step_depth_one_is_gradient_descent():
    r = rng(9)
    w, grad = r.standard_normal((2, 3)), r.standard_normal((2, 3))
    np.testing.assert_allclose(np.asarray(end_to_end_step(jnp.asarray(w), jnp.asarray(grad), 1, 0.1)), w - 0.1 * grad)


# --- singular_value_velocity ---------------------------------------------------------------------


@pytest.mark.parametrize("shape,depth", [((3, 3), 1), ((3, 3), 2), ((4, 3), 3), ((3, 5), 4)])
def test_singular_value_velocity_matches_numpy(shape, depth):
    r = rng(10)
    w, grad = r.standard_normal(shape), r.standard_normal(shape)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    expected = -depth * s ** (2 - 2 / depth) * np.einsum("ir,ij,jr->r", u, grad, vt.T)
    predicted = np.asarray(singular_value_velocity(jnp.asarray(w), jnp.asarray(grad), depth))
    np.testing.assert_allclose(predicted, expected, rtol=1e-9, atol=1e-12)
    # the same from the end-to-end dynamics: d sigma_r/dt = u_r^T (dW/dt) v_r, dW/dt = -P_W(grad)
    velocity = -np_preconditioner(w, depth).dot(grad.ravel()).reshape(shape)
    np.testing.assert_allclose(predicted, np.einsum("ir,ij,jr->r", u, velocity, vt.T), rtol=1e-8, atol=1e-10)


def test_singular_value_velocity_matches_finite_differences_of_end_to_end_dynamics():
    r = rng(11)
    w, grad = r.standard_normal((3, 3)), r.standard_normal((3, 3))
    depth, h = 3, 1e-6
    velocity = -np_preconditioner(w, depth).dot(grad.ravel()).reshape(3, 3)
    plus = np.linalg.svd(w + h * velocity, compute_uv=False)
    minus = np.linalg.svd(w - h * velocity, compute_uv=False)
    np.testing.assert_allclose(
        np.asarray(singular_value_velocity(jnp.asarray(w), jnp.asarray(grad), depth)), (plus - minus) / (2 * h), rtol=1e-6
    )


# --- deficiency_margin, is_delta_balanced, linear_convergence_bound -------------------------------


def test_deficiency_margin_matches_definition_and_sign_cases():
    r = rng(12)
    target = r.standard_normal((3, 5))
    sigma_min = np.linalg.svd(target, compute_uv=False)[-1]  # the min(m, n) = 3rd value
    assert np.linalg.svd(target, compute_uv=False).size == 3
    # at the target: the margin is sigma_min(Phi) > 0
    np.testing.assert_allclose(float(deficiency_margin(jnp.asarray(target), jnp.asarray(target))), sigma_min, rtol=1e-12)
    # general W: sigma_min(Phi) - ||W - Phi||_F
    w = target + 0.1 * r.standard_normal((3, 5))
    np.testing.assert_allclose(
        float(deficiency_margin(jnp.asarray(w), jnp.asarray(target))), sigma_min - np.linalg.norm(w - target), rtol=1e-12
    )
    # close to Phi: positive; at distance exactly sigma_min: zero; far: negative
    direction = r.standard_normal((3, 5))
    direction /= np.linalg.norm(direction)
    assert float(deficiency_margin(jnp.asarray(target + 0.5 * sigma_min * direction), jnp.asarray(target))) > 0
    np.testing.assert_allclose(
        float(deficiency_margin(jnp.asarray(target + sigma_min * direction), jnp.asarray(target))), 0, atol=1e-12
    )
    assert float(deficiency_margin(jnp.asarray(target + 2 * sigma_min * direction), jnp.asarray(target))) < 0
    # W = 0: sigma_min(Phi) - ||Phi||_F < 0 for a target of rank > 1
    assert float(deficiency_margin(jnp.zeros((3, 5)), jnp.asarray(target))) < 0


def test_is_delta_balanced():
    r = rng(13)
    w = r.standard_normal((3, 3))
    layers = [jnp.asarray(layer) for layer in balanced_layers(w, 3)]
    assert bool(is_delta_balanced(layers, 1e-10))
    perturbed = list(layers)
    perturbed[1] = layers[1] + 0.01 * jnp.asarray(r.standard_normal((3, 3)))
    gaps = [
        np.linalg.norm(np.asarray(b).T @ np.asarray(b) - np.asarray(a) @ np.asarray(a).T)
        for a, b in zip(perturbed[:-1], perturbed[1:])
    ]
    delta = max(gaps)
    assert delta > 1e-3
    assert bool(is_delta_balanced(perturbed, delta * (1 + 1e-9)))
    assert not bool(is_delta_balanced(perturbed, delta * (1 - 1e-6)))
    assert bool(is_delta_balanced([jnp.asarray(w)], 0.0))  # depth 1: trivially balanced


def test_linear_convergence_bound_closed_form():
    for depth, loss0, lr, margin, steps in [(1, 2.0, 0.1, 0.5, 10), (2, 1.0, 0.01, 0.3, 100), (4, 3.0, 1e-3, 0.8, 1000)]:
        expected = loss0 * (1 - lr * margin ** (2 * (depth - 1) / depth)) ** steps
        np.testing.assert_allclose(float(linear_convergence_bound(loss0, lr, margin, depth, steps)), expected, rtol=1e-12)
    # depth 1: the rate does not depend on the margin; zero steps: loss(0)
    assert float(linear_convergence_bound(2.0, 0.1, 0.123, 1, 3)) == pytest.approx(2.0 * 0.9**3)
    assert float(linear_convergence_bound(2.0, 0.1, 0.5, 3, 0)) == pytest.approx(2.0)
    steps = np.arange(5)
    np.testing.assert_allclose(np.asarray(linear_convergence_bound(1.0, 0.1, 0.5, 2, steps)), (1 - 0.1 * 0.5) ** steps)


def test_linear_convergence_bound_holds_for_end_to_end_gd_with_a_margin():
    """ICLR 2019, Theorem 1: from a balanced init with deficiency margin c > 0 (and a small step),
    whitened-regression loss 1/2 ||W - Phi||_F^2 under GD is below loss(0) (1 - eta c^(2(N-1)/N))^t."""
    r = rng(14)
    left, _ = np.linalg.qr(r.standard_normal((3, 3)))
    right, _ = np.linalg.qr(r.standard_normal((3, 3)))
    target = left @ np.diag([2.0, 1.5, 1.0]) @ right.T
    w = target + 0.3 * r.standard_normal((3, 3)) / 3
    depth, lr, steps = 3, 1e-3, 300
    margin = float(deficiency_margin(jnp.asarray(w), jnp.asarray(target)))
    assert margin > 0.5
    layers = balanced_layers(w, depth)
    loss0 = 0.5 * np.sum((w - target) ** 2)
    for t in range(1, steps + 1):
        grad = product(layers) - target
        layers = [layer - lr * g for layer, g in zip(layers, layer_gradients(layers, grad))]
        loss = 0.5 * np.sum((product(layers) - target) ** 2)
        assert loss <= float(linear_convergence_bound(loss0, lr, margin, depth, t))
    assert loss < 0.5 * loss0  # the bound is checked along a trajectory that converges
