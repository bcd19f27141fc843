"""Metrics of tensor factorizations (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

Parameter layouts are those of :mod:`trajlab.models.tensor`: CP factors (A_1, ..., A_K) with
A_k of shape (d_k, R); hierarchical ``HTParams(leaves, cores)`` over a balanced binary mode tree.
All functions are pure JAX (jit/vmap-safe) except :func:`estimate_cp_rank` (numpy, final tensors).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from trajlab.metrics.spectral import effective_rank

_LETTERS = "abcdefghijklmnopqstuvwxyz"  # 'r' is the component axis


def normalized_reconstruction_error(w, target):
    """||W - W*||_F / ||W*||_F.

    Not squared, unlike the matrix test error ``reconstruction_error`` (||W - W*||_F^2 / ||W*||_F^2);
    this is the reconstruction error plotted by Razin et al. 2021/2022.
    """
    return jnp.sqrt(jnp.sum((w - target) ** 2) / jnp.sum(target**2))


def cp_component_norms(factors):
    """||a_1r ⊗ ... ⊗ a_Kr||_F = prod_k ||A_k[:, r]||_2 for each component r (shape (R,)).

    The component norms whose dynamics Razin et al. 2021 (Theorem 1) show to be incremental:
    d/dt ||component|| is proportional to ||component||^(2 - 2/K) under balanced initialization.
    """
    norms = jnp.sqrt(jnp.sum(factors[0] ** 2, axis=0))
    for factor in factors[1:]:
        norms = norms * jnp.sqrt(jnp.sum(factor**2, axis=0))
    return norms


def top_k_component_norms(factors, k: int):
    """The k largest CP component norms, in descending order, zero-padded when R < k."""
    norms = -jnp.sort(-cp_component_norms(factors))
    if norms.shape[-1] >= k:
        return norms[..., :k]
    return jnp.pad(norms, (0, k - norms.shape[-1]))


def _child_piece_norms(child):
    """Norm of the piece of a child attached to each of its output indices j.

    Leaf (d, r): ||A[:, j]||; product-kind weight matrix (r_in, r): ||M[:, j]||; Tucker core
    (r_in, r_in, r): ||C[:, :, j]||_F.
    """
    return jnp.sqrt(jnp.sum(child.reshape(-1, child.shape[-1]) ** 2, axis=0))


def ht_local_component_norms(params):
    """Local component norms at every internal node, one array per level l = 1..L.

    Product kind (Razin et al. 2022, the factorization they analyze): node n of level l combines
    its children with a shared index a in [r_{l-1}]; the local component (l, n, a) is the a-th row
    of the node's weight matrix M_n together with the a-th column of each child's weight matrix
    (the leaf matrix for l = 1), and its norm is
        ||M_n[a, :]|| * ||child_left[:, a]|| * ||child_right[:, a]||.
    Razin et al. 2022 show these norms evolve incrementally (as CP component norms do) and that the
    number of nonzero ones bounds the rank of the matricization along the node's children
    (the "local rank"). Returned array for level l: shape (nodes of level l, r_{l-1}). This is the
    definition of the authors' code (``HTFactorizationEvaluator``, asafmaman101/imp_reg_htf): the
    product of the children's column norms times the row norms of the next layer's matrix.

    One-child nodes (odd orders; node T = T_child M): the same formula with the one child,
    ||M_n[a, :]|| * ||child[:, a]|| -- as in the authors' code, where a node left over when pooling
    pairs is "pooled" alone and its norm product has that single factor. The pair (row a of M_n,
    column a of the child) can be rescaled against each other without changing W or the norm, as
    the vectors of a CP component.

    Tucker kind (general cores C of shape (r, r, r')): the children do not share an index, so we
    define (our generalization, not from the paper) one local component per edge and child index:
    for the left child and index a, ||C_n[a, :, :]||_F * ||piece_a||, where piece_a is the child's
    part attached to a (leaf column A[:, a], or child core slice C_c[:, :, a]); likewise for the
    right child with ||C_n[:, a, :]||_F. Both factors can be rescaled against each other without
    changing W or this norm, as the vectors of a CP component; but a core is shared by its three
    edges, so such a rescaling can change the other edges' norms. Returned array for level l: shape
    (nodes of level l, 2, r_{l-1}) with axis 1 = (left, right); a one-child node (a matrix, as in
    the product kind) has its norms ||C_n[a, :]|| * ||piece_a|| as "left" and zeros as "right".
    """
    below = list(params.leaves)
    out = []
    for level_cores in params.cores:
        tucker_level = any(core.ndim == 3 for core in level_cores)
        level = []
        for n, core in enumerate(level_cores):
            pieces = [_child_piece_norms(child) for child in below[2 * n : 2 * n + 2]]
            if core.ndim == 2:
                norms = jnp.sqrt(jnp.sum(core**2, axis=1))
                for piece in pieces:
                    norms = norms * piece
                if tucker_level:  # a one-child node among Tucker nodes: (left, right = 0)
                    norms = jnp.stack([norms, jnp.zeros_like(norms)])
                level.append(norms)
            else:
                left, right = pieces
                parent_left = jnp.sqrt(jnp.sum(core**2, axis=(1, 2)))
                parent_right = jnp.sqrt(jnp.sum(core**2, axis=(0, 2)))
                level.append(jnp.stack([parent_left * left, parent_right * right]))
        out.append(jnp.stack(level))
        below = list(level_cores)
    return tuple(out)


def matricization(w, modes):
    """[W]_{modes}: rows indexed by the given modes (in order), columns by the others (in order)."""
    modes = tuple(modes)
    rest = tuple(k for k in range(w.ndim) if k not in modes)
    rows = int(np.prod([w.shape[k] for k in modes]))
    return jnp.transpose(w, modes + rest).reshape(rows, -1)


def _tree_level_sizes(order: int) -> list[int]:
    sizes = [order]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def matricization_effective_ranks(w):
    """Effective rank (Roy & Vetterli 2007) of [W]_{node modes} for every non-root tree node.

    The tree is the mode tree of :mod:`trajlab.models.tensor` (any order K >= 2; adjacent nodes
    paired, an odd level's last node with a one-child parent); one array per level l = 0..L-1
    (leaves first), of shape (nodes of level l,): node n covers the modes [n 2^l, (n + 1) 2^l) cut at
    K. The ranks of these matricizations are the hierarchical tensor rank of Razin et al. 2022 (the
    authors' code tracks the same matricizations). For odd orders a one-child node covers the same
    modes as its child, so both report the same value. Dense SVDs: small tensors only.
    """
    order = w.ndim
    if order < 2:
        raise ValueError(f"matricization_effective_ranks: order must be >= 2, got {order}")
    out = []
    for level, count in enumerate(_tree_level_sizes(order)[:-1]):
        span = 2**level
        ranks = [
            effective_rank(
                jnp.linalg.svd(matricization(w, range(n * span, min((n + 1) * span, order))), compute_uv=False)
            )
            for n in range(count)
        ]
        out.append(jnp.stack(ranks))
    return tuple(out)


# --- CP rank estimation (numpy, on final tensors) ------------------------------------------------


def cp_full_numpy(factors):
    """Dense W = sum_r a_1r ⊗ ... ⊗ a_Kr of numpy factors (d_k, R) (einsum; final tensors)."""
    letters = _LETTERS[: len(factors)]
    return np.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


def _khatri_rao(factors):
    """Column-wise Kronecker product, rows in C order of the factors: (prod d_j, R)."""
    out = factors[0]
    for factor in factors[1:]:
        out = (out[:, None, :] * factor[None, :, :]).reshape(-1, factor.shape[1])
    return out


#: ALS gives up on a start once the relative error improved by less than this fraction over
#: the last :data:`_STALL_WINDOW` sweeps (a swamp or a local minimum; another start may do better).
_STALL_IMPROVEMENT = 1e-3
_STALL_WINDOW = 25


def _cp_als(unfoldings, norm, shape, rank, rng, iterations, tol):
    """Best relative error ||X - X_r||_F / ||X||_F reached by alternating least squares from one
    Gaussian start (at most ``iterations`` sweeps; stops at ``tol`` or when stalled).

    ``unfoldings[k]`` is the mode-k unfolding of X (d_k, prod of the other d in order). Each sweep
    solves A_k = X_(k) KR(others) (Hadamard of the other Gram matrices)^+ for k = 1..K; the error
    after the sweep comes from ||X - X_r||^2 = ||X||^2 - 2 <X_(K) KR, A_K> + ||X_r||^2, with no
    dense reconstruction.
    """
    order = len(shape)
    factors = [rng.standard_normal((d, rank)) for d in shape]
    errors = []
    for _ in range(iterations):
        for k in range(order):
            others = [factors[j] for j in range(order) if j != k]
            mttkrp = unfoldings[k] @ _khatri_rao(others)
            gram = np.ones((rank, rank))
            for factor in others:
                gram = gram * (factor.T @ factor)
            factors[k] = np.linalg.lstsq(gram, mttkrp.T, rcond=None)[0].T
        full_gram = gram * (factors[-1].T @ factors[-1])
        squared = norm**2 - 2 * np.sum(mttkrp * factors[-1]) + np.sum(full_gram)
        errors.append(math.sqrt(max(squared, 0.0)) / norm)
        if errors[-1] <= tol:
            break
        if len(errors) > _STALL_WINDOW and errors[-1 - _STALL_WINDOW] - errors[-1] < _STALL_IMPROVEMENT * errors[-1]:
            break
    return min(errors)


#: Tensors above this many entries are not estimated (the estimate is NaN): bounded cost.
CP_RANK_MAX_ENTRIES = 10**6


def estimate_cp_rank(
    tensor, tol: float = 1e-4, max_rank: int = 10, rng=None, restarts: int = 5, iterations: int = 500
) -> float:
    """Smallest r <= max_rank whose CP fit reaches ||W - W_r||_F / ||W||_F <= tol.

    W_r is fit by alternating least squares (Kolda & Bader 2009, Section 3.4) from ``restarts``
    Gaussian starts of at most ``iterations`` sweeps each (a start also stops once its error
    improved by less than 0.1% over 25 sweeps). Returns 0 for the zero tensor and max_rank + 1
    (read: "more than max_rank") when no r <= max_rank fits. An upper-bound estimate: ALS may miss
    the best rank-r fit, and tensors near the border of lower-rank sets need larger r. numpy, for
    final tensors only. ``rng``: a numpy Generator or seed (default 0).

    Cost: at most max_rank * restarts * iterations sweeps, each K matrix products of
    (d_k x prod d / d_k) by (prod d / d_k x r), i.e. O(K prod(d) r) flops per sweep; tensors with
    more than :data:`CP_RANK_MAX_ENTRIES` entries are not estimated (NaN is returned).
    """
    x = np.asarray(tensor, dtype=np.float64)
    if x.size > CP_RANK_MAX_ENTRIES:
        return math.nan
    norm = float(np.linalg.norm(x))
    if norm == 0:
        return 0
    unfoldings = [np.moveaxis(x, k, 0).reshape(x.shape[k], -1) for k in range(x.ndim)]
    rng = np.random.default_rng(rng if rng is not None else 0)
    for rank in range(1, max_rank + 1):
        for _ in range(restarts):
            if _cp_als(unfoldings, norm, x.shape, rank, rng, iterations, tol) <= tol:
                return rank
    return max_rank + 1
