"""Tensor completion and tensor sensing (Razin, Maman, Cohen, ICML 2021 and ICML 2022).

Data are drawn with numpy (float64) from a ``numpy.random.Generator`` so a problem is the same
whatever the JAX backend or precision; losses are pure JAX functions.

- Ground truths: :func:`random_cp_target` (CP rank <= ``rank``) and :func:`random_ht_target`
  (hierarchical rank <= ``widths`` over the mode tree of :mod:`trajlab.models.tensor`, any order
  K >= 2), each rescaled to Frobenius norm ``norm`` (default
  sqrt(prod d), i.e. mean squared entry 1, the convention of :mod:`trajlab.problems.matrix`).
- Completion: M entries drawn uniformly without replacement from the prod(d) entries; the dense
  target is stored too (for the test error), which is fine for small tensors (10^4 entries, e.g.
  10 x 10 x 10 x 10, is 80 kB in float64).
- Sensing: A_i with i.i.d. N(0, 1/prod(d)) entries, y_i = <A_i, W*>; A is stored densely as
  (M, prod(d)), row-major vec (only for small tensors: M prod(d) floats).
- Train loss: mean squared error over the observations, (1/M) sum_i (<obs_i, W> - y_i)^2
  (``convention="mean"``), or 1/2 sum_i (...)^2 (``convention="half_sum"``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class TensorCompletionData(NamedTuple):
    """Observed entries of a tensor (a pytree)."""

    indices: np.ndarray  # (M, K) int32, multi-indices of the observed entries
    values: np.ndarray  # (M,), W*[indices]
    target: np.ndarray  # W*, dense, shape (d_1, ..., d_K)


class TensorSensingData(NamedTuple):
    """Gaussian linear measurements of a tensor (a pytree)."""

    sensing: np.ndarray  # (M, prod(d)), row-major vec of each A_i
    values: np.ndarray  # (M,), y_i = <A_i, W*>
    target: np.ndarray  # W*, dense


def _rescale(w: np.ndarray, norm: float | None) -> np.ndarray:
    norm = math.sqrt(w.size) if norm is None else norm
    return w * (norm / np.linalg.norm(w))


def random_cp_target(shape, rank: int, rng: np.random.Generator, norm: float | None = None) -> np.ndarray:
    """W* = sum_{r < rank} a_1r ⊗ ... ⊗ a_Kr, a_kr i.i.d. N(0, I), rescaled to ||W*||_F = norm.

    ``norm`` None means sqrt(prod d) (mean squared entry 1). Float64, CP rank <= ``rank``
    (equal to it almost surely for small ranks).
    """
    factors = [rng.standard_normal((d, rank)) for d in shape]
    letters = "abcdefghijklmnopqstuvwxyz"[: len(shape)]
    w = np.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)
    return _rescale(w, norm)


def _tree_level_sizes(order: int) -> list[int]:
    """Nodes per level of the mode tree of :mod:`trajlab.models.tensor`: K, ceil(K / 2), ..., 1."""
    sizes = [order]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def ht_full_numpy(leaves, cores):
    """Dense tensor of a hierarchical factorization (numpy; same layout as trajlab.models.tensor):
    children (2n, 2n + 1) of the level below, or (2n,) alone for an odd level's last node."""
    nodes = list(leaves)
    for level_cores in cores:
        merged = []
        for n, c in enumerate(level_cores):
            children = nodes[2 * n : 2 * n + 2]
            if len(children) == 1:
                merged.append(children[0] @ c)
                continue
            left, right = children
            dl, dr = left.shape[:-1], right.shape[:-1]
            lm, rm = left.reshape(-1, left.shape[-1]), right.reshape(-1, right.shape[-1])
            if c.ndim == 3:
                t = np.einsum("xa,yb,abj->xyj", lm, rm, c)
            else:
                t = np.einsum("xa,ya,aj->xyj", lm, rm, c)
            merged.append(t.reshape(dl + dr + (c.shape[-1],)))
        nodes = merged
    return nodes[0][..., 0]


def random_ht_target(
    shape, widths, rng: np.random.Generator, norm: float | None = None, core: str = "tucker"
) -> np.ndarray:
    """Hierarchical factorization with i.i.d. N(0, 1) leaves and cores, rescaled to ||W*||_F = norm.

    Same tree (any order K >= 2, ceil(log2 K) levels), ``widths``, ``core`` kinds and order of the
    draws (leaves, then the nodes level by level) as :func:`trajlab.models.tensor.ht_init`; every
    matricization along a tree node's modes has rank <= that node's width.
    """
    order = len(shape)
    sizes = _tree_level_sizes(order) if order >= 2 else []
    levels = len(sizes) - 1
    if order < 2 or len(widths) != levels:
        raise ValueError(
            f"random_ht_target: need order >= 2 and ceil(log2(order)) = {max(levels, 0)} widths, "
            f"got shape {shape}, widths {widths}"
        )
    out = list(widths) + [1]
    leaves = [rng.standard_normal((d, widths[0])) for d in shape]
    cores = []
    for level in range(1, levels + 1):
        r_in, r_out = out[level - 1], out[level]
        level_cores = []
        for node in range(sizes[level]):
            two = 2 * node + 1 < sizes[level - 1]
            level_cores.append(rng.standard_normal((r_in, r_in, r_out) if core == "tucker" and two else (r_in, r_out)))
        cores.append(level_cores)
    return _rescale(ht_full_numpy(leaves, cores), norm)


def make_tensor_completion(target: np.ndarray, observations: int, rng: np.random.Generator) -> TensorCompletionData:
    """Observe ``observations`` entries of ``target`` drawn uniformly without replacement."""
    flat = rng.choice(target.size, size=observations, replace=False)
    indices = np.stack(np.unravel_index(flat, target.shape), axis=1).astype(np.int32)
    return TensorCompletionData(indices, target.reshape(-1)[flat], target)


def make_tensor_sensing(target: np.ndarray, measurements: int, rng: np.random.Generator) -> TensorSensingData:
    """A_i with i.i.d. N(0, 1/prod(d)) entries stored as (M, prod(d)); y_i = <A_i, W*>."""
    sensing = rng.standard_normal((measurements, target.size)) / math.sqrt(target.size)
    return TensorSensingData(sensing, sensing @ target.reshape(-1), target)


def _squared_error(residuals, convention: str):
    if convention == "mean":
        return jnp.mean(residuals**2)
    if convention == "half_sum":
        return 0.5 * jnp.sum(residuals**2)
    raise ValueError(f"loss convention must be 'mean' or 'half_sum', got {convention!r}")


def tensor_completion_loss(entries, values, convention: str = "mean"):
    """(1/M) sum_i (entries_i - values_i)^2, entries = W[indices] (e.g. from ``cp_entries``).

    ``convention="half_sum"``: 1/2 sum_i (entries_i - values_i)^2 instead.
    """
    return _squared_error(entries - values, convention)


def tensor_sensing_loss(w, sensing, values, convention: str = "mean"):
    """(1/M) sum_i (<A_i, W> - y_i)^2 with A stored as (M, prod(d)) and W dense."""
    return _squared_error(sensing @ w.reshape(-1) - values, convention)


def make_tensor_problem(config, completion: bool | None = None):
    """The data of a ``tensor_completion`` / ``tensor_sensing`` :class:`~trajlab.config.ProblemConfig`.

    Shape (dim,) * order; W* from ``random_cp_target`` (``target=cp``, CP rank ``rank``) or
    ``random_ht_target`` (``target=hierarchical``: product nodes, width ``rank`` at every non-root
    node), rescaled to ||W*||_F^2 = dim^order; one numpy Generator seeded with ``config.seed`` draws
    the target, then the observations.
    """
    rng = np.random.default_rng(config.seed)
    shape = (config.dim,) * config.order
    if config.target == "cp":
        target = random_cp_target(shape, config.rank, rng)
    else:
        widths = (config.rank,) * (len(_tree_level_sizes(config.order)) - 1)
        target = random_ht_target(shape, widths, rng, core="product")
    if completion is None:
        completion = config.kind == "tensor_completion"
    if completion:
        return make_tensor_completion(target, config.observations, rng)
    return make_tensor_sensing(target, config.observations, rng)


def make_matricized_tensor_completion(config):
    """The ``tensor_completion`` problem of ``config`` (same W*, same observed entries for the same
    ``seed``, ``order``, ``dim``, ``rank``, ``target`` and ``observations``) as completion of the
    matrix [W*]_{(1..a)} of shape (m, n) = (dim^a, dim^(order - a)), a = ``row_modes``: rows indexed by the first a
    modes, columns by the others, both in row-major order, so W*.reshape(m, n).

    Returns :class:`trajlab.problems.matrix.MatrixData` (completion: ``rows``, ``cols``, ``values``,
    ``target`` (m, n)), the data of the deep linear family: depth-N matrix factorization of the
    matricized tensor on the same observations as the tensor factorizations.
    """
    from trajlab.problems.matrix import MatrixData

    data = make_tensor_problem(config, completion=True)
    shape = data.target.shape
    flat = np.ravel_multi_index(tuple(data.indices.T.astype(np.int64)), shape)
    rows, cols = np.divmod(flat, config.n)
    target = data.target.reshape(config.m, config.n)
    return MatrixData(target, rows.astype(np.int32), cols.astype(np.int32), None, data.values)
