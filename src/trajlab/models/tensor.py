"""CP and hierarchical tensor factorizations (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

Parameters are pytrees of arrays, so every function here jits, vmaps and differentiates.

CP (Razin et al. 2021, "Implicit Regularization in Tensor Factorization"): an order-K tensor of
shape (d_1, ..., d_K) with R components is held as factors (A_1, ..., A_K), A_k of shape (d_k, R),
and W = sum_r a_1r ⊗ ... ⊗ a_Kr with a_kr = A_k[:, r] (column r), i.e.
W[i_1, ..., i_K] = sum_r prod_k A_k[i_k, r].

Hierarchical tensor factorization over a binary mode tree (pooling size 2), for every order
K >= 2. Level 0 holds the K leaves (mode k is leaf k); each next level pairs adjacent nodes
(0, 1), (2, 3), ... of the level below, and when that level has an odd number of nodes its last one
gets a parent of its own with that single child. The tree has L = ceil(log2 K) levels above the
leaves and its root (level L) covers every mode; node n of level l covers a contiguous range of
modes (:func:`node_modes`), [n 2^l, (n + 1) 2^l) cut at K. For K = 2^L every node has two children
(the balanced binary tree); for K = 3 the tree is leaves {0}, {1}, {2}; level 1: {0, 1} and {2}
(one child); root {0, 1, 2}. This is the tree of the authors' code (github.com/asafmaman101/imp_reg_htf,
``HierarchicalTensorFactorization`` with pool size 2 and the "checkerboard" pattern: an odd node
left over is "pooled" alone, then multiplied by its own weight matrix at the next layer).
``widths`` = (r_0, ..., r_{L-1}) gives the width of every node of each level below the root; the
root has width 1. Parameters are :class:`HTParams` (leaves, cores):

- ``leaves[k]``: matrix of shape (d_k, r_0); its node tensor is T_k[i, a] = leaves[k][i, a].
- ``cores[l - 1][n]``: the node n of level l (l = 1..L). A node with two children is one of two
  kinds (``core`` argument):

  * ``"tucker"`` (hierarchical Tucker, Hackbusch & Kühn 2009): a core C of shape
    (r_{l-1}, r_{l-1}, r_l) and T_node[i_left, i_right, j] = sum_{a,b} T_left[i_left, a]
    T_right[i_right, b] C[a, b, j].
  * ``"product"`` (the hierarchical tensor factorization of Razin, Maman, Cohen 2022, Section 3:
    product pooling with a shared index, as in convolutional arithmetic circuits): a weight matrix
    M of shape (r_{l-1}, r_l) and T_node[i_left, i_right, j] = sum_a T_left[i_left, a]
    T_right[i_right, a] M[a, j]. It is the Tucker kind with the diagonal core
    C[a, b, j] = delta_ab M[a, j]. Rows of M index the node's local components (the index its
    children share), columns the index its parent's children share.

  A node with one child (odd orders only) is a matrix M of shape (r_{l-1}, r_l) of either kind:
  T_node[i, j] = sum_a T_child[i, a] M[a, j] (the paper's formula with a single child).

  W is the root's node tensor with its width-1 axis dropped.

What was checked against the source: the paper's text was not available to us; the "product" nodes,
the tree for odd orders, the parameter shapes (leaves (d, r_0), then one (r_{l-1}, r_l) matrix per
node, the root's (r_{L-1}, 1) being the authors' "linear output layer") and the local components
of :func:`trajlab.metrics.tensor.ht_local_component_norms` were checked against the authors' code
(``tensor_factorization/models/ht_tensor_factorization.py`` and
``evaluation/ht_factorization_evaluator.py`` of asafmaman101/imp_reg_htf): the dense tensor is
built there by einsums "xz,yz,zj->xyj" (children share the index z, then the node's matrix).

Initialization convention (both models): every parameter entry i.i.d. N(0, std^2), ``std`` the
per-factor (per-entry) standard deviation as in Razin et al. 2021/2022. For CP this gives
E ||W||_F^2 = R std^(2K) prod_k d_k; :func:`cp_init_end_to_end` inverts it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

# --- CP -------------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqstuvwxyz"  # 'r' is the component axis


def _gaussian_arrays(key, shapes, std, dtype):
    """Arrays of the given shapes, entries i.i.d. N(0, std^2), from one draw of all entries.

    One draw (not one per array) keeps the compiled random-number code small.
    """
    sizes = [math.prod(s) for s in shapes]
    flat = jnp.asarray(std, dtype) * jax.random.normal(key, (sum(sizes),), dtype)
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    return tuple(flat[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes))


def cp_init(key, shape, rank: int, std, dtype=jnp.float32):
    """Factors (A_1, ..., A_K), A_k of shape (d_k, rank), entries i.i.d. N(0, std^2).

    ``std`` is the per-factor standard deviation (Razin et al. 2021); jit/vmap-safe in key, std.
    """
    return _gaussian_arrays(key, [(d, rank) for d in shape], std, dtype)

def cp_std_for_scale(shape, rank: int, scale):
    """std with E ||W||_F^2 = scale^2: std = (scale^2 / (R prod_k d_k))^(1 / (2K)).

    Since the entries are independent and zero-mean, E W[i]^2 = sum_r prod_k E A_k[i_k, r]^2
    = R std^(2K) for every entry i.
    """
    size = math.prod(shape)
    return (scale**2 / (rank * size)) ** (1.0 / (2 * len(shape)))


def cp_init_end_to_end(key, shape, rank: int, scale, dtype=jnp.float32):
    """:func:`cp_init` with std = :func:`cp_std_for_scale`, so E ||W||_F^2 = scale^2."""
    return cp_init(key, shape, rank, cp_std_for_scale(shape, rank, jnp.asarray(scale, dtype)), dtype)


def cp_full(factors):
    """Dense W = sum_r a_1r ⊗ ... ⊗ a_Kr (einsum; only for small tensors)."""
    letters = _LETTERS[: len(factors)]
    spec = ",".join(f"{c}r" for c in letters) + "->" + letters
    return jnp.einsum(spec, *factors)


def cp_entries(factors, indices):
    """W[i_1, ..., i_K] = sum_r prod_k A_k[i_k, r] for each row of ``indices`` (M, K).

    Gathers the M rows of every factor and multiplies them: memory O(M R), never the dense tensor.
    """
    product = jnp.take(factors[0], indices[:, 0], axis=0)
    for k in range(1, len(factors)):
        product = product * jnp.take(factors[k], indices[:, k], axis=0)
    return jnp.sum(product, axis=-1)


# --- hierarchical -----------------------------------------------------------------------------


class HTParams(NamedTuple):
    """Hierarchical factorization: ``leaves`` (K matrices), ``cores`` (one tuple per level 1..L)."""

    leaves: tuple
    cores: tuple


def tree_level_sizes(order: int) -> tuple[int, ...]:
    """Number of nodes per level, leaves first: (K, ceil(K / 2), ..., 1); ValueError for K < 2."""
    if order < 2:
        raise ValueError(f"hierarchical factorization: the order must be an integer >= 2, got {order}")
    sizes = [order]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return tuple(sizes)


def tree_levels(order: int) -> int:
    """L = ceil(log2 K): the levels above the leaves (the root is level L); ValueError for K < 2."""
    return len(tree_level_sizes(order)) - 1


def node_children(order: int, level: int, node: int) -> tuple[int, ...]:
    """Indices (in level - 1) of the children of node ``node`` of ``level`` >= 1: (2n, 2n + 1), or
    (2n,) for the one-child parent of an odd level's last node."""
    below = tree_level_sizes(order)[level - 1]
    return tuple(c for c in (2 * node, 2 * node + 1) if c < below)


def node_modes(order: int, level: int, node: int) -> tuple[int, ...]:
    """Modes covered by node ``node`` of ``level`` (0 = leaves): [node 2^level, (node + 1) 2^level) cut at K."""
    span = 2**level
    return tuple(range(node * span, min((node + 1) * span, order)))


def ht_init(key, shape, widths, std, dtype=jnp.float32, core: str = "tucker") -> HTParams:
    """Every leaf and core entry i.i.d. N(0, std^2) (per-factor std, Razin et al. 2022).

    ``widths`` = (r_0, ..., r_{L-1}), one per level below the root (root width 1); ``core`` is
    ``"tucker"`` (cores (r, r, r')) or ``"product"`` (weight matrices (r, r')); one-child nodes of
    odd orders are (r, r') matrices of either kind (module docstring). One draw, in the order
    leaves, then the nodes level by level.
    """
    if core not in ("tucker", "product"):
        raise ValueError(f"hierarchical factorization: core must be 'tucker' or 'product', got {core!r}")
    order = len(shape)
    sizes = tree_level_sizes(order)
    levels = len(sizes) - 1
    if len(widths) != levels:
        raise ValueError(f"hierarchical factorization: need {levels} widths for order {order}, got {len(widths)}")
    out_widths = list(widths) + [1]
    shapes = [(d, widths[0]) for d in shape]
    for level in range(1, levels + 1):
        r_in, r_out = out_widths[level - 1], out_widths[level]
        for node in range(sizes[level]):
            two = len(node_children(order, level, node)) == 2
            shapes.append((r_in, r_in, r_out) if core == "tucker" and two else (r_in, r_out))
    arrays = _gaussian_arrays(key, shapes, std, dtype)
    leaves, start, cores = arrays[:order], order, []
    for count in sizes[1:]:
        cores.append(arrays[start : start + count])
        start += count
    return HTParams(leaves, tuple(cores))


def _combine(children, core):
    """Node rows (..., r') from its children's rows (..., r): Tucker, product or one-child node."""
    if len(children) == 1:
        return children[0] @ core
    left, right = children
    if core.ndim == 3:
        return jnp.einsum("ma,mb,abj->mj", left, right, core)
    return (left * right) @ core


def ht_entries(params: HTParams, indices):
    """W[i_1, ..., i_K] for each row of ``indices`` (M, K), without the dense tensor.

    Gathers leaf rows (M, r_0), then contracts up the tree: at each node an (M, r') array from its
    children's (M, r) arrays, O(M r^2 r') per Tucker node and O(M r r') per product or one-child node.
    """
    rows = [jnp.take(leaf, indices[:, k], axis=0) for k, leaf in enumerate(params.leaves)]
    for level_cores in params.cores:
        rows = [_combine(rows[2 * n : 2 * n + 2], c) for n, c in enumerate(level_cores)]
    return rows[0][:, 0]


def ht_node_tensors(params: HTParams):
    """Dense node tensors per level: level l, node n has shape (d over its modes..., r_l)."""
    tensors = [list(params.leaves)]
    for level_cores in params.cores:
        below = tensors[-1]
        level = []
        for n, c in enumerate(level_cores):
            children = below[2 * n : 2 * n + 2]
            if len(children) == 1:
                (child,) = children
                level.append(child @ c)
                continue
            left, right = children
            dl, dr = left.shape[:-1], right.shape[:-1]
            flat = _combine(
                (
                    jnp.repeat(left.reshape(-1, left.shape[-1]), math.prod(dr), axis=0),
                    jnp.tile(right.reshape(-1, right.shape[-1]), (math.prod(dl), 1)),
                ),
                c,
            )
            level.append(flat.reshape(dl + dr + (c.shape[-1],)))
        tensors.append(level)
    return tensors


def ht_full(params: HTParams):
    """Dense W: the root node tensor with its width-1 axis dropped (only for small tensors)."""
    return ht_node_tensors(params)[-1][0][..., 0]

