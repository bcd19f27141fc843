"""Metrics of tensor factorizations (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

Parameter layouts are those of :mod:`trajlab.models.tensor`: CP factors (A_1, ..., A_K) with
A_k of shape (d_k, R); hierarchical ``HTParams(leaves, cores)`` over a balanced binary mode tree.
All functions are pure JAX (jit/vmap-safe) except :func:`estimate_cp_rank` (numpy, final tensors).
"""

from __future__ import annotations

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
    (the "local rank"). Returned array for level l: shape (K / 2^l, r_{l-1}).

    Tucker kind (general cores C of shape (r, r, r')): the children do not share an index, so we
    define (our generalization, not from the paper) one local component per edge and child index:
    for the left child and index a, ||C_n[a, :, :]||_F * ||piece_a||, where piece_a is the child's
    part attached to a (leaf column A[:, a], or child core slice C_c[:, :, a]); likewise for the
    right child with ||C_n[:, a, :]||_F. Both factors can be rescaled against each other without
    changing W or this norm, as the vectors of a CP component; but a core is shared by its three
    edges, so such a rescaling can change the other edges' norms. Returned array for level l: shape
    (K / 2^l, 2, r_{l-1}) with axis 1 = (left, right).
    """
    below = list(params.leaves)
    out = []
    for level_cores in params.cores:
        level = []
        for n, core in enumerate(level_cores):
            left = _child_piece_norms(below[2 * n])
            right = _child_piece_norms(below[2 * n + 1])
            if core.ndim == 2:
                level.append(jnp.sqrt(jnp.sum(core**2, axis=1)) * left * right)
            else:
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


def matricization_effective_ranks(w):
    """Effective rank (Roy & Vetterli 2007) of [W]_{node modes} for every non-root tree node.

    The tree is the balanced binary mode tree of :mod:`trajlab.models.tensor` (order K = 2^L);
    one array per level l = 0..L-1 (leaves first), of shape (K / 2^l,): node n covers the modes
    [n 2^l, (n + 1) 2^l). The ranks of these matricizations are the hierarchical tensor rank of
    Razin et al. 2022. Dense SVDs: small tensors only.
    """
    order = w.ndim
    levels = int(round(np.log2(order)))
    if 2**levels != order:
        raise ValueError(f"matricization_effective_ranks: order must be a power of 2, got {order}")
    out = []
    for level in range(levels):
        span = 2**level
        ranks = [
            effective_rank(jnp.linalg.svd(matricization(w, range(n * span, (n + 1) * span)), compute_uv=False))
            for n in range(order // span)
        ]
        out.append(jnp.stack(ranks))
    return tuple(out)


# --- CP rank estimation (numpy, on final tensors) ------------------------------------------------


def _cp_dense(factors):
    letters = _LETTERS[: len(factors)]
    return np.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


def _cp_als(x, rank, rng, iterations, tol):
    """Best relative error reached by alternating least squares from one random start."""
    order = x.ndim
    letters = _LETTERS[:order]
    norm = np.linalg.norm(x)
    factors = [rng.standard_normal((d, rank)) for d in x.shape]
    error = np.inf
    for iteration in range(iterations):
        for k in range(order):
            others = [j for j in range(order) if j != k]
            spec = letters + "," + ",".join(f"{letters[j]}r" for j in others) + f"->{letters[k]}r"
            mttkrp = np.einsum(spec, x, *[factors[j] for j in others])
            gram = np.ones((rank, rank))
            for j in others:
                gram = gram * (factors[j].T @ factors[j])
            factors[k] = np.linalg.lstsq(gram, mttkrp.T, rcond=None)[0].T
        if iteration % 10 == 9 or iteration == iterations - 1:
            error = min(error, np.linalg.norm(x - _cp_dense(factors)) / norm)
            if error <= tol:
                break
    return error


def estimate_cp_rank(
    tensor, tol: float = 1e-4, max_rank: int = 10, rng=None, restarts: int = 5, iterations: int = 500
) -> int:
    """Smallest r <= max_rank whose CP fit reaches ||W - W_r||_F / ||W||_F <= tol.

    W_r is fit by alternating least squares (Kolda & Bader 2009, Section 3.4) from ``restarts``
    Gaussian starts of ``iterations`` sweeps each. Returns 0 for the zero tensor and max_rank + 1
    (read: "more than max_rank") when no r <= max_rank fits. An upper-bound estimate: ALS may miss
    the best rank-r fit, and tensors near the border of lower-rank sets need larger r. numpy, for
    final tensors only. ``rng``: a numpy Generator or seed (default 0).
    """
    x = np.asarray(tensor, dtype=np.float64)
    if np.linalg.norm(x) == 0:
        return 0
    rng = np.random.default_rng(rng if rng is not None else 0)
    for rank in range(1, max_rank + 1):
        for _ in range(restarts):
            if _cp_als(x, rank, rng, iterations, tol) <= tol:
                return rank
    return max_rank + 1
