"""Tests of the tensor factorizations, tensor problems and tensor metrics (float64).

Independent references: numpy sums of outer products and explicit einsums written per order,
entry-by-entry Python loops, dense-mask losses, numpy SVDs, central finite differences.
"""

from __future__ import annotations

import itertools
import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab.metrics.tensor import (  # noqa: E402
    cp_component_norms,
    estimate_cp_rank,
    ht_local_component_norms,
    matricization,
    matricization_effective_ranks,
    normalized_reconstruction_error,
    top_k_component_norms,
)
from trajlab.models.tensor import (  # noqa: E402
    HTParams,
    cp_entries,
    cp_full,
    cp_init,
    cp_init_end_to_end,
    cp_std_for_scale,
    ht_entries,
    ht_full,
    ht_init,
    node_children,
    node_modes,
    tree_level_sizes,
    tree_levels,
)
from trajlab.problems.tensor import (  # noqa: E402
    make_tensor_completion,
    make_tensor_sensing,
    random_cp_target,
    random_ht_target,
    tensor_completion_loss,
    tensor_sensing_loss,
)

KEY = jax.random.PRNGKey(0)

# Jitted once per shape: op-by-op dispatch of the random draws would compile every op separately.
cp_init = jax.jit(cp_init, static_argnums=(1, 2, 4))
ht_init = jax.jit(ht_init, static_argnums=(1, 2, 4), static_argnames=("core",))
cp_full, cp_entries, ht_full, ht_entries = map(jax.jit, (cp_full, cp_entries, ht_full, ht_entries))


def np_cp_full(factors):
    """sum_r of explicit outer products a_1r ⊗ ... ⊗ a_Kr."""
    factors = [np.asarray(f) for f in factors]
    out = np.zeros(tuple(f.shape[0] for f in factors))
    for r in range(factors[0].shape[1]):
        term = factors[0][:, r]
        for f in factors[1:]:
            term = np.multiply.outer(term, f[:, r])
        out += term
    return out


def np_ht_full(params):
    """Explicit einsums per order (2, 3, 4 and 5) and core kind, written out by hand.

    Odd orders: the last node of an odd level has a one-child parent, a matrix (r, r').
    """
    leaves = [np.asarray(x) for x in params.leaves]
    cores = [[np.asarray(c) for c in level] for level in params.cores]
    tucker = cores[0][0].ndim == 3
    if len(leaves) == 3:
        # tree {0,1} {2} | root; level 1 = (node of leaves 0 and 1, one-child node of leaf 2)
        (c01, m2), (root,) = cores
        if tucker:
            return np.einsum("ia,jb,abe,kc,cf,efz->ijk", leaves[0], leaves[1], c01, leaves[2], m2, root)
        return np.einsum("ia,ja,ae,kb,be,ez->ijk", leaves[0], leaves[1], c01, leaves[2], m2, root)
    if len(leaves) == 5:
        # level 1: {0,1} {2,3} {4}(one child); level 2: {0..3} {4}(one child); root
        (c0, c1, p2), (d0, q1), (root,) = cores
        if tucker:
            spec = "ia,jb,abe,kc,ld,cdf,efx,mg,gh,hy,xyz->ijklm"
            return np.einsum(spec, leaves[0], leaves[1], c0, leaves[2], leaves[3], c1, d0, leaves[4], p2, q1, root)
        spec = "ia,ja,ae,kb,lb,be,eh,mc,cg,gh,hz->ijklm"
        return np.einsum(spec, leaves[0], leaves[1], c0, leaves[2], leaves[3], c1, d0, leaves[4], p2, q1, root)
    if len(leaves) == 2:
        (root,) = cores[0]
        spec = "ia,jb,abz->ij" if tucker else "ia,ja,az->ij"
        return np.einsum(spec, *leaves, root)
    assert len(leaves) == 4
    (c1, c2), (root,) = cores
    if tucker:
        return np.einsum("ia,jb,abe,kc,ld,cdf,efz->ijkl", leaves[0], leaves[1], c1, leaves[2], leaves[3], c2, root)
    return np.einsum("ia,ja,ae,kc,lc,ce,ez->ijkl", leaves[0], leaves[1], c1, leaves[2], leaves[3], c2, root)


def all_indices(shape):
    return np.array(list(itertools.product(*[range(d) for d in shape])), dtype=np.int32)


def central_differences(f, x, eps=1e-6):
    """(f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for every coordinate i, vectorized."""
    basis = eps * jnp.eye(x.shape[0], dtype=x.dtype)
    fv = jax.vmap(f)
    return (fv(x[None, :] + basis) - fv(x[None, :] - basis)) / (2 * eps)


# --- CP model -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,rank", [((3, 4), 2), ((3, 4, 5), 3), ((2, 3, 2, 3), 4)])
def test_cp_full_matches_sum_of_outer_products(shape, rank):
    factors = cp_init(KEY, shape, rank, 1.0, jnp.float64)
    assert [f.shape for f in factors] == [(d, rank) for d in shape]
    np.testing.assert_allclose(np.asarray(cp_full(factors)), np_cp_full(factors), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,rank", [((3, 4, 5), 3), ((2, 3, 2, 3), 4), ((5, 5, 5, 5, 5), 2)])
def test_cp_entries_match_indexing_the_dense_tensor(shape, rank):
    factors = cp_init(KEY, shape, rank, 1.0, jnp.float64)
    idx = all_indices(shape)
    dense = np.asarray(cp_full(factors))
    np.testing.assert_allclose(np.asarray(cp_entries(factors, idx)), dense[tuple(idx.T)], rtol=1e-12, atol=1e-12)


def test_cp_init_std_and_end_to_end_scale():
    shape, rank, std = (6, 7, 8), 50, 0.3
    factors = cp_init(KEY, shape, rank, std, jnp.float64)
    entries = np.concatenate([np.asarray(f).ravel() for f in factors])
    # sample std of n = 1050 Gaussians: relative standard error ~ 1/sqrt(2n) ~ 2.2%
    assert abs(entries.std() / std - 1) < 0.1
    # the closed form: R std^(2K) prod d = scale^2
    s = cp_std_for_scale(shape, rank, 2.5)
    assert rank * s ** (2 * len(shape)) * math.prod(shape) == pytest.approx(2.5**2, rel=1e-12)
    # Monte Carlo: E ||W||_F^2 = scale^2 (order 2 keeps the estimator's variance small)
    shape2, scale = (5, 6), 2.0
    keys = jax.random.split(KEY, 4000)
    sq = jax.jit(jax.vmap(lambda k: jnp.sum(cp_full(cp_init_end_to_end(k, shape2, 10, scale, jnp.float64)) ** 2)))(keys)
    sq = np.asarray(sq)
    assert abs(sq.mean() / scale**2 - 1) < 4 * sq.std() / np.sqrt(sq.size) / scale**2 + 1e-3


# --- hierarchical model ----------------------------------------------------------------------


@pytest.mark.parametrize("core", ["tucker", "product"])
@pytest.mark.parametrize(
    "shape,widths", [((3, 4), (2,)), ((2, 3, 4, 2), (3, 2)), ((3, 4, 2), (3, 2)), ((2, 3, 2, 3, 2), (3, 2, 2))]
)
def test_ht_full_matches_explicit_einsum(core, shape, widths):
    params = ht_init(KEY, shape, widths, 1.0, jnp.float64, core=core)
    np.testing.assert_allclose(np.asarray(ht_full(params)), np_ht_full(params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("core", ["tucker", "product"])
@pytest.mark.parametrize(
    "shape,widths",
    [((2, 3, 4, 2), (3, 2)), ((2,) * 8, (2, 3, 2)), ((3, 4, 2), (3, 2)), ((2, 3, 2, 3, 2), (3, 2, 2)), ((2,) * 7, (2, 3, 2))],
)
def test_ht_entries_match_ht_full(core, shape, widths):
    params = ht_init(KEY, shape, widths, 1.0, jnp.float64, core=core)
    idx = all_indices(shape)
    dense = np.asarray(ht_full(params))
    assert dense.shape == shape
    np.testing.assert_allclose(np.asarray(ht_entries(params, idx)), dense[tuple(idx.T)], rtol=1e-12, atol=1e-12)


def test_ht_shapes_and_supported_orders():
    params = ht_init(KEY, (2, 3, 4, 5), (3, 2), 0.1, jnp.float64)
    assert [x.shape for x in params.leaves] == [(2, 3), (3, 3), (4, 3), (5, 3)]
    assert [[c.shape for c in level] for level in params.cores] == [[(3, 3, 2)] * 2, [(2, 2, 1)]]
    params = ht_init(KEY, (2, 3, 4, 5), (3, 2), 0.1, jnp.float64, core="product")
    assert [[c.shape for c in level] for level in params.cores] == [[(3, 2)] * 2, [(2, 1)]]
    assert tree_levels(8) == 3 and node_modes(8, 1, 2) == (4, 5)
    with pytest.raises(ValueError):
        ht_init(KEY, (2, 3, 4), (2,), 0.1)  # order 3 has ceil(log2 3) = 2 levels
    with pytest.raises(ValueError):
        ht_init(KEY, (2, 3, 4, 5), (2,), 0.1)
    with pytest.raises(ValueError):
        tree_levels(1)


def test_mode_tree_of_every_order():
    """Adjacent nodes are paired; an odd level's last node gets a one-child parent."""
    assert [tree_levels(k) for k in range(2, 10)] == [1, 2, 2, 3, 3, 3, 3, 4]
    assert tree_level_sizes(3) == (3, 2, 1) and tree_level_sizes(5) == (5, 3, 2, 1) and tree_level_sizes(8) == (8, 4, 2, 1)
    assert [node_modes(3, 1, n) for n in range(2)] == [(0, 1), (2,)]
    assert node_modes(3, 2, 0) == (0, 1, 2)
    assert [node_modes(5, 2, n) for n in range(2)] == [(0, 1, 2, 3), (4,)]
    assert node_children(5, 1, 2) == (4,) and node_children(5, 2, 0) == (0, 1) and node_children(5, 3, 0) == (0, 1)
    for order in range(2, 10):
        sizes = tree_level_sizes(order)
        for level in range(1, len(sizes)):
            for node in range(sizes[level]):
                # a node covers exactly its children's modes, in order
                covered = sum((node_modes(order, level - 1, c) for c in node_children(order, level, node)), ())
                assert covered == node_modes(order, level, node)
        assert node_modes(order, len(sizes) - 1, 0) == tuple(range(order))
    params = ht_init(KEY, (2, 3, 4), (3, 2), 0.1, jnp.float64)
    assert [[c.shape for c in level] for level in params.cores] == [[(3, 3, 2), (3, 2)], [(2, 2, 1)]]
    params = ht_init(KEY, (2, 3, 4, 5, 2), (3, 2, 4), 0.1, jnp.float64, core="product")
    assert [[c.shape for c in level] for level in params.cores] == [[(3, 2)] * 3, [(2, 4)] * 2, [(4, 1)]]


def test_ht_product_kind_is_tucker_with_diagonal_cores():
    product = ht_init(KEY, (2, 3, 2, 3), (3, 2), 1.0, jnp.float64, core="product")
    diagonal = [[jnp.einsum("ab,aj->abj", jnp.eye(c.shape[0]), c) for c in level] for level in product.cores]
    tucker = HTParams(product.leaves, tuple(tuple(level) for level in diagonal))
    np.testing.assert_allclose(np.asarray(ht_full(tucker)), np.asarray(ht_full(product)), rtol=1e-12, atol=1e-12)


# --- problems --------------------------------------------------------------------------------


def test_targets_have_requested_norms_and_ranks():
    rng = np.random.default_rng(0)
    w = random_cp_target((4, 5, 6), 2, rng, norm=3.0)
    assert np.linalg.norm(w) == pytest.approx(3.0, rel=1e-12)
    assert np.linalg.norm(random_cp_target((4, 5, 6), 2, rng)) == pytest.approx(np.sqrt(120), rel=1e-12)
    for core in ("tucker", "product"):
        # product kind: rank along a node <= min(its width, its children's width), so widths decrease here
        w = random_ht_target((4, 4, 4, 4), (3, 2), rng, norm=1.5, core=core)
        assert np.linalg.norm(w) == pytest.approx(1.5, rel=1e-12)
        assert np.linalg.matrix_rank(np.asarray(matricization(w, (0,)))) == 3
        assert np.linalg.matrix_rank(np.asarray(matricization(w, (0, 1)))) == 2


def test_random_ht_target_agrees_with_the_model():
    # Same draws in the same order: leaves, then cores level by level.
    shape, widths = (3, 2, 3, 2), (2, 3)
    w = random_ht_target(shape, widths, np.random.default_rng(5), norm=None)
    rng = np.random.default_rng(5)
    leaves = tuple(jnp.asarray(rng.standard_normal((d, 2))) for d in shape)
    cores = ((jnp.asarray(rng.standard_normal((2, 2, 3))), jnp.asarray(rng.standard_normal((2, 2, 3)))),
             (jnp.asarray(rng.standard_normal((3, 3, 1))),))
    dense = np.asarray(ht_full(HTParams(leaves, cores)))
    np.testing.assert_allclose(w, dense * np.sqrt(dense.size) / np.linalg.norm(dense), rtol=1e-12)


@pytest.mark.parametrize("core", ["tucker", "product"])
def test_random_ht_target_agrees_with_the_model_for_odd_orders(core):
    # Order 5: same draws in the same order (leaves, then the nodes level by level), one-child
    # nodes as (r, r') matrices.
    shape, widths = (2, 3, 2, 3, 2), (2, 3, 2)
    w = random_ht_target(shape, widths, np.random.default_rng(8), norm=2.0, core=core)
    params = ht_init(KEY, shape, widths, 1.0, jnp.float64, core=core)
    rng = np.random.default_rng(8)
    leaves = tuple(jnp.asarray(rng.standard_normal(x.shape)) for x in params.leaves)
    cores = tuple(tuple(jnp.asarray(rng.standard_normal(c.shape)) for c in level) for level in params.cores)
    dense = np.asarray(ht_full(HTParams(leaves, cores)))
    np.testing.assert_allclose(w, dense * 2.0 / np.linalg.norm(dense), rtol=1e-12)
    with pytest.raises(ValueError):
        random_ht_target((3, 3, 3), (2,), np.random.default_rng(0))


def test_odd_order_hierarchical_target_has_the_hierarchical_rank():
    """Order 3, widths (3, 2): rank [W]_{0} = rank [W]_{1} = 3 (leaf width), rank [W]_{2} = 2
    (the one-child node {2} maps through an (r_0, r_1) matrix, so its rank is min(3, 2))."""
    w = random_ht_target((5, 5, 5), (3, 2), np.random.default_rng(9), core="product")
    ranks = [np.linalg.matrix_rank(np.asarray(matricization(w, modes)), tol=1e-9) for modes in ((0,), (1,), (2,), (0, 1))]
    assert ranks == [3, 3, 2, 2]


def test_completion_data_and_loss_equal_the_dense_mask_formula():
    rng = np.random.default_rng(1)
    target = random_cp_target((4, 3, 5), 2, rng)
    data = make_tensor_completion(target, 25, rng)
    assert data.indices.dtype == np.int32 and data.indices.shape == (25, 3)
    assert len({tuple(i) for i in data.indices}) == 25  # without replacement
    np.testing.assert_array_equal(data.values, target[tuple(data.indices.T)])
    w = rng.standard_normal(target.shape)
    mask = np.zeros(target.shape)
    mask[tuple(data.indices.T)] = 1
    dense = np.sum(mask * (w - target) ** 2)
    entries = jnp.asarray(w)[tuple(data.indices.T)]
    assert float(tensor_completion_loss(entries, data.values)) == pytest.approx(dense / 25, rel=1e-12)
    assert float(tensor_completion_loss(entries, data.values, "half_sum")) == pytest.approx(dense / 2, rel=1e-12)


def test_sensing_data_and_loss():
    rng = np.random.default_rng(2)
    target = random_cp_target((3, 4, 2), 2, rng)
    data = make_tensor_sensing(target, 30, rng)
    assert data.sensing.shape == (30, 24)
    a = data.sensing.reshape(30, 3, 4, 2)
    np.testing.assert_allclose(data.values, [np.sum(a[i] * target) for i in range(30)], rtol=1e-12)
    w = rng.standard_normal(target.shape)
    expected = np.mean([(np.sum(a[i] * w) - data.values[i]) ** 2 for i in range(30)])
    assert float(tensor_sensing_loss(jnp.asarray(w), data.sensing, data.values)) == pytest.approx(expected, rel=1e-12)
    assert float(tensor_sensing_loss(jnp.asarray(target), data.sensing, data.values)) < 1e-25


def test_completion_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    shape = (3, 4, 3, 4)
    data = make_tensor_completion(random_cp_target(shape, 2, rng), 40, rng)
    cp = cp_init(KEY, shape, 3, 0.8, jnp.float64)
    ht_t = ht_init(KEY, shape, (2, 3), 0.8, jnp.float64, core="tucker")
    ht_p = ht_init(KEY, shape, (2, 3), 0.8, jnp.float64, core="product")
    cases = [(cp, cp_entries), (ht_t, ht_entries), (ht_p, ht_entries)]
    # order 3 (a one-child node), on the observed entries of the first three modes
    data3 = make_tensor_completion(random_cp_target(shape[:3], 2, rng), 20, rng)
    for core in ("tucker", "product"):
        params = ht_init(KEY, shape[:3], (2, 3), 0.8, jnp.float64, core=core)
        flat, unravel = ravel_pytree(params)

        def loss3(x, unravel=unravel):
            return tensor_completion_loss(ht_entries(unravel(x), data3.indices), data3.values)

        grad = np.asarray(jax.jit(jax.grad(loss3))(flat))
        fd = np.asarray(jax.jit(central_differences, static_argnums=0)(loss3, flat))
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    for params, entries in cases:
        flat, unravel = ravel_pytree(params)

        def loss(x, entries=entries, unravel=unravel):
            return tensor_completion_loss(entries(unravel(x), data.indices), data.values)

        grad = np.asarray(jax.jit(jax.grad(loss))(flat))
        fd = np.asarray(jax.jit(central_differences, static_argnums=0)(loss, flat))
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        assert np.abs(grad).max() > 1e-3  # not trivially zero


# --- metrics ---------------------------------------------------------------------------------


def test_normalized_reconstruction_error_is_not_squared():
    rng = np.random.default_rng(4)
    w, t = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    expected = np.sqrt(np.sum((w - t) ** 2)) / np.sqrt(np.sum(t**2))
    assert float(normalized_reconstruction_error(jnp.asarray(w), jnp.asarray(t))) == pytest.approx(expected, rel=1e-12)
    assert float(normalized_reconstruction_error(jnp.asarray(2 * t), jnp.asarray(t))) == pytest.approx(1.0)


def test_cp_component_norms_and_top_k():
    factors = cp_init(KEY, (3, 4, 5), 6, 1.0, jnp.float64)
    expected = [np.linalg.norm(np_cp_full([f[:, r : r + 1] for f in factors])) for r in range(6)]
    np.testing.assert_allclose(np.asarray(cp_component_norms(factors)), expected, rtol=1e-12)
    top = np.asarray(top_k_component_norms(factors, 4))
    np.testing.assert_allclose(top, sorted(expected, reverse=True)[:4], rtol=1e-12)
    padded = np.asarray(top_k_component_norms(factors, 8))
    np.testing.assert_allclose(padded, sorted(expected, reverse=True) + [0, 0], rtol=1e-12)


def test_ht_local_component_norms_product_kind():
    params = ht_init(KEY, (2, 3, 4, 2), (3, 2), 1.0, jnp.float64, core="product")
    leaves = [np.asarray(x) for x in params.leaves]
    (m1, m2), (root,) = [[np.asarray(c) for c in level] for level in params.cores]
    level1, level2 = ht_local_component_norms(params)
    assert level1.shape == (2, 3) and level2.shape == (1, 2)
    for n, m in enumerate((m1, m2)):
        for a in range(3):
            children = np.linalg.norm(leaves[2 * n][:, a]) * np.linalg.norm(leaves[2 * n + 1][:, a])
            expected = np.linalg.norm(m[a]) * children
            assert float(level1[n, a]) == pytest.approx(expected, rel=1e-12)
    for a in range(2):
        expected = abs(root[a, 0]) * np.linalg.norm(m1[:, a]) * np.linalg.norm(m2[:, a])
        assert float(level2[0, a]) == pytest.approx(expected, rel=1e-12)


def test_ht_local_component_norms_tucker_kind_and_rescaling_invariance():
    params = ht_init(KEY, (2, 3, 4, 2), (3, 2), 1.0, jnp.float64, core="tucker")
    leaves = [np.asarray(x) for x in params.leaves]
    (c1, c2), (root,) = [[np.asarray(c) for c in level] for level in params.cores]
    level1, level2 = ht_local_component_norms(params)
    assert level1.shape == (2, 2, 3) and level2.shape == (1, 2, 2)
    for a in range(3):
        assert float(level1[0, 0, a]) == pytest.approx(np.linalg.norm(c1[a]) * np.linalg.norm(leaves[0][:, a]))
        assert float(level1[1, 1, a]) == pytest.approx(np.linalg.norm(c2[:, a]) * np.linalg.norm(leaves[3][:, a]))
    for a in range(2):
        assert float(level2[0, 0, a]) == pytest.approx(np.linalg.norm(root[a]) * np.linalg.norm(c1[:, :, a]))
        assert float(level2[0, 1, a]) == pytest.approx(np.linalg.norm(root[:, a]) * np.linalg.norm(c2[:, :, a]))
    # Rescaling a leaf column by 3 and the matching core slice by 1/3 changes neither W nor that
    # edge's norm. (Other edges' norms may change: a Tucker core is shared by its three edges.)
    scaled_leaf = params.leaves[0].at[:, 1].multiply(3.0)
    scaled_core = params.cores[0][0].at[1].multiply(1 / 3)
    scaled = HTParams((scaled_leaf,) + params.leaves[1:], ((scaled_core, params.cores[0][1]), params.cores[1]))
    np.testing.assert_allclose(np.asarray(ht_full(scaled)), np.asarray(ht_full(params)), rtol=1e-12, atol=1e-12)
    assert float(ht_local_component_norms(scaled)[0][0, 0, 1]) == pytest.approx(float(level1[0, 0, 1]), rel=1e-12)


def test_ht_local_component_norms_one_child_nodes():
    """Order 3: the one-child node {2} has norms ||M[a, :]|| * ||leaf_2[:, a]|| (product kind, and
    the Tucker kind's "left" row with a zero "right" row); the root's children are the two level-1
    matrices."""
    product = ht_init(KEY, (2, 3, 4), (3, 2), 1.0, jnp.float64, core="product")
    leaves = [np.asarray(x) for x in product.leaves]
    (m01, m2), (root,) = [[np.asarray(c) for c in level] for level in product.cores]
    level1, level2 = ht_local_component_norms(product)
    assert level1.shape == (2, 3) and level2.shape == (1, 2)
    for a in range(3):
        pair = np.linalg.norm(m01[a]) * np.linalg.norm(leaves[0][:, a]) * np.linalg.norm(leaves[1][:, a])
        assert float(level1[0, a]) == pytest.approx(pair, rel=1e-12)
        assert float(level1[1, a]) == pytest.approx(np.linalg.norm(m2[a]) * np.linalg.norm(leaves[2][:, a]), rel=1e-12)
    for a in range(2):
        expected = abs(root[a, 0]) * np.linalg.norm(m01[:, a]) * np.linalg.norm(m2[:, a])
        assert float(level2[0, a]) == pytest.approx(expected, rel=1e-12)
    # rescaling leaf 2's column a by 4 and row a of its one-child node by 1/4 changes neither W nor the norm
    scaled = HTParams(
        product.leaves[:2] + (product.leaves[2].at[:, 1].multiply(4.0),),
        ((product.cores[0][0], product.cores[0][1].at[1].multiply(0.25)), product.cores[1]),
    )
    np.testing.assert_allclose(np.asarray(ht_full(scaled)), np.asarray(ht_full(product)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ht_local_component_norms(scaled)[0]), np.asarray(level1), rtol=1e-12)

    tucker = ht_init(KEY, (2, 3, 4), (3, 2), 1.0, jnp.float64, core="tucker")
    leaves = [np.asarray(x) for x in tucker.leaves]
    (c01, m2), (root,) = [[np.asarray(c) for c in level] for level in tucker.cores]
    level1, level2 = ht_local_component_norms(tucker)
    assert level1.shape == (2, 2, 3) and level2.shape == (1, 2, 2)
    for a in range(3):
        assert float(level1[0, 0, a]) == pytest.approx(np.linalg.norm(c01[a]) * np.linalg.norm(leaves[0][:, a]))
        assert float(level1[1, 0, a]) == pytest.approx(np.linalg.norm(m2[a]) * np.linalg.norm(leaves[2][:, a]))
        assert float(level1[1, 1, a]) == 0.0
    for a in range(2):
        assert float(level2[0, 1, a]) == pytest.approx(np.linalg.norm(root[:, a]) * np.linalg.norm(m2[:, a]))


def test_matricization_effective_ranks_odd_orders():
    rng = np.random.default_rng(11)
    for shape in ((3, 4, 5), (2, 3, 2, 3, 2)):
        w = rng.standard_normal(shape)
        levels = jax.jit(matricization_effective_ranks)(jnp.asarray(w))
        order = len(shape)
        sizes = tree_level_sizes(order)
        assert [x.shape for x in levels] == [(n,) for n in sizes[:-1]]
        for level, values in enumerate(levels):
            for node in range(sizes[level]):
                modes = node_modes(order, level, node)
                rest = [k for k in range(order) if k not in modes]
                matrix = np.transpose(w, list(modes) + rest).reshape(int(np.prod([shape[k] for k in modes])), -1)
                assert float(values[node]) == pytest.approx(np_effective_rank(matrix), rel=1e-10)
    # order 3: the one-child node {2} (level 1) repeats leaf 2 (level 0)
    leaves, level1 = matricization_effective_ranks(jnp.asarray(rng.standard_normal((3, 4, 5))))
    assert float(level1[1]) == pytest.approx(float(leaves[2]), rel=1e-12)


def np_effective_rank(matrix):
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return np.exp(-np.sum(p * np.log(p)))


def test_matricization_effective_ranks():
    rng = np.random.default_rng(6)
    # [W]_{(0,1)} = U diag(1, 1, 1) V^T with orthonormal U (9 x 3), V (12 x 3): effective rank 3.
    u = np.linalg.qr(rng.standard_normal((9, 3)))[0]
    v = np.linalg.qr(rng.standard_normal((12, 3)))[0]
    w = (u @ v.T).reshape(3, 3, 3, 4)
    leaves, level1 = jax.jit(matricization_effective_ranks)(jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(level1), [3.0, 3.0], rtol=1e-10)
    ref = [np_effective_rank(np.moveaxis(w, k, 0).reshape(w.shape[k], -1)) for k in range(4)]
    np.testing.assert_allclose(np.asarray(leaves), ref, rtol=1e-10)
    # a rank-one tensor has effective rank 1 along every node
    one = np_cp_full([rng.standard_normal((d, 1)) for d in (2, 3, 4, 5)])
    for level in jax.jit(matricization_effective_ranks)(jnp.asarray(one)):
        np.testing.assert_allclose(np.asarray(level), 1.0, rtol=1e-10)
    # matricization puts the node's modes first, the others in order
    x = rng.standard_normal((2, 3, 4, 5))
    expected = x.transpose(1, 3, 0, 2).reshape(15, 8)
    np.testing.assert_array_equal(np.asarray(matricization(jnp.asarray(x), (1, 3))), expected)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_estimate_cp_rank_recovers_small_ranks(rank):
    target = random_cp_target((4, 4, 4), rank, np.random.default_rng(10 + rank), norm=1.0)
    assert estimate_cp_rank(target, tol=1e-4, max_rank=5, rng=0) == rank


def test_estimate_cp_rank_edge_cases():
    assert estimate_cp_rank(np.zeros((3, 3, 3)), max_rank=3) == 0
    # a generic 2 x 2 x 2 tensor has rank 2 or 3; with max_rank 1 the answer is "more than 1"
    assert estimate_cp_rank(np.random.default_rng(0).standard_normal((2, 2, 2)), max_rank=1, restarts=2) == 2


# --- scale ------------------------------------------------------------------------------------


def test_cp_entries_scale_to_the_published_sizes_under_vmap():
    """Order 4, dimension 10, R = 1000, M = 2000, a batch of 4 runs: loss and gradient compile and run."""
    shape, rank, batch, observations = (10, 10, 10, 10), 1000, 4, 2000
    rng = np.random.default_rng(7)
    flat = rng.choice(10**4, observations, replace=False)
    indices = jnp.asarray(np.stack(np.unravel_index(flat, shape), 1), jnp.int32)
    values = jnp.asarray(rng.standard_normal(observations), jnp.float32)
    keys = jax.random.split(KEY, batch)
    factors = jax.vmap(lambda k: cp_init(k, shape, rank, 1e-1, jnp.float32))(keys)

    def loss(f):
        return tensor_completion_loss(cp_entries(f, indices), values)

    losses, grads = jax.jit(jax.vmap(jax.value_and_grad(loss)))(factors)
    assert losses.shape == (batch,) and losses.dtype == jnp.float32
    assert [g.shape for g in grads] == [(batch, 10, rank)] * 4
    assert bool(jnp.all(jnp.isfinite(losses))) and all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_incremental_spread_is_not_infinite_when_every_component_is_at_half_at_init():
    from trajlab.presets.tensor import _incremental

    assert _incremental([0.0, 0.0, 0.0]) == (True, 1.0)
    assert _incremental([0.0, 5.0, 9.0])[1] == float("inf")
    assert _incremental([2.0, 4.0, 8.0]) == (True, 4.0)
    assert _incremental([8.0, 4.0])[0] is False
